"""Local checks of a chat request against the model's documented limits.

A request that Spark would reject (spark-protocol.md §3) is refused here, before any network
round trip, with :class:`~bot.errors.SparkRequestInvalid` carrying code
:data:`LOCAL_VALIDATION_CODE` (-1, never a server code) so callers can tell the two apart.
"""

from __future__ import annotations

from collections.abc import Sequence

from bot.spark.errors import SparkRequestInvalid
from bot.spark.models import SparkModel
from bot.spark.protocol import UID_MAX_LENGTH
from bot.spark.types import ChatMessage, GenerationOptions

LOCAL_VALIDATION_CODE = -1
TOP_K_RANGE = (1, 6)
_ROLES = frozenset({"system", "user", "assistant"})


def _invalid(model: SparkModel, detail: str) -> SparkRequestInvalid:
    error = SparkRequestInvalid(
        LOCAL_VALIDATION_CODE, f"request not sent: {detail}", model=model.name
    )
    error.retryable = False
    return error


def validate_request(
    model: SparkModel,
    messages: Sequence[ChatMessage],
    uid: str,
    options: GenerationOptions,
) -> None:
    """Raise :class:`SparkRequestInvalid` (code -1) naming the first rule the request breaks."""
    if not 1 <= len(uid) <= UID_MAX_LENGTH:
        raise _invalid(model, f"uid must be 1..{UID_MAX_LENGTH} characters, got {len(uid)}")
    if not messages:
        raise _invalid(model, "no messages")
    for index, message in enumerate(messages):
        if message.role not in _ROLES:
            raise _invalid(model, f"message {index} has unknown role {message.role!r}")
        if message.role == "system":
            if index != 0:
                raise _invalid(model, f"system message at position {index}; only first allowed")
            if not model.supports_system:
                raise _invalid(model, f"{model.title} does not accept a system message")
        # An empty history entry made Spark answer nothing after ~30 s (spark-protocol.md §6.10).
        if not message.content:
            raise _invalid(model, f"message {index} ({message.role}) is empty")
    if messages[-1].role != "user":
        raise _invalid(model, f"the last message must be the user's, not {messages[-1].role!r}")
    _validate_options(model, options)


def _validate_options(model: SparkModel, options: GenerationOptions) -> None:
    if options.max_tokens is not None and not 1 <= options.max_tokens <= model.max_tokens_limit:
        raise _invalid(
            model,
            f"max_tokens {options.max_tokens} is outside {model.title}'s range "
            f"1..{model.max_tokens_limit}",
        )
    if options.temperature is not None and not 0 < options.temperature <= model.temperature_max:
        raise _invalid(
            model,
            f"temperature {options.temperature} is outside {model.title}'s range "
            f"(0, {model.temperature_max:g}]",
        )
    low, high = TOP_K_RANGE
    if options.top_k is not None and not low <= options.top_k <= high:
        raise _invalid(model, f"top_k {options.top_k} is outside {low}..{high}")
    if model.reasoning and options.top_p is not None and not 0 < options.top_p <= 1:
        raise _invalid(model, f"top_p {options.top_p} is outside (0, 1]")
    for spec in options.functions:
        if not spec.name:
            raise _invalid(model, "a function has an empty name")
