"""Validation of the one request frame a Spark client sends after the handshake (§3).

:func:`check_request` turns raw text into a :class:`ValidRequest` or raises
:class:`RequestRejected` carrying the error code and detail a real server answers with. The
checks run in the order a schema-first server would: JSON, schema, domain, licence, values,
token budget.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from bot.spark.models import SparkModel, model_for_domain
from bot.spark.simulator_content import estimate_tokens

UID_MAX_LENGTH = 32
ROLES = frozenset({"system", "user", "assistant"})
TOP_K_RANGE = (1, 6)


class RequestRejected(Exception):
    """The request earns an error frame with ``code`` and ``detail``."""

    def __init__(self, code: int, detail: str, model: SparkModel | None = None) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail
        self.model = model


@dataclass(frozen=True, slots=True)
class ValidRequest:
    model: SparkModel
    messages: list[tuple[str, str]]  # (role, content)
    chat: dict[str, Any]  # parameter.chat as sent
    functions: list[dict[str, Any]]
    max_tokens: int
    prompt_tokens: int
    question_tokens: int

    @property
    def question(self) -> str:
        return self.messages[-1][1]


def prompt_token_budget(model: SparkModel, max_tokens: int) -> int:
    """Tokens the message contents may use (:meth:`SparkModel.prompt_budget`)."""
    return model.prompt_budget(max_tokens)


def _schema(path: str, rule: str) -> RequestRejected:
    return RequestRejected(10004, f"'{path}' {rule}")


def _dict(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _schema(path, "is required and must be an object")
    return value


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def decode_request(raw: str | bytes) -> dict[str, Any]:
    """The request frame as a JSON object; raises :class:`RequestRejected` when it is not one."""
    try:
        data = json.loads(raw)
    except ValueError:
        raise RequestRejected(10003, "invalid request: not valid JSON") from None
    return _dict(data, "$")


def check_request(data: dict[str, Any], path: str, app_id: str) -> ValidRequest:
    """Validate a decoded request frame received on ``path``; raises :class:`RequestRejected`."""
    header = _dict(data.get("header"), "$.header")
    if not isinstance(header.get("app_id"), str):
        raise _schema("$.header.app_id", "is required and must be a string")
    uid = header.get("uid")
    if uid is not None and not isinstance(uid, str):
        raise _schema("$.header.uid", "must be a string")
    if uid is not None and len(uid) > UID_MAX_LENGTH:
        raise _schema("$.header.uid", f"length must be less or equal than {UID_MAX_LENGTH}")
    chat = _dict(_dict(data.get("parameter"), "$.parameter").get("chat"), "$.parameter.chat")
    domain = chat.get("domain")
    if not isinstance(domain, str):
        raise _schema("$.parameter.chat.domain", "is required and must be a string")
    model = model_for_domain(path, domain)
    if model is None:
        raise RequestRejected(10003, "invalid model domain")
    if header["app_id"] != app_id:
        raise RequestRejected(11200, "app_id not authorized", model)
    payload = _dict(data.get("payload"), "$.payload")
    messages = _messages(_dict(payload.get("message"), "$.payload.message").get("text"), model)
    max_tokens = _check_chat(chat, model)
    functions = _functions(payload.get("functions"))
    prompt_tokens = sum(estimate_tokens(content) for _, content in messages)
    budget = prompt_token_budget(model, max_tokens)
    if prompt_tokens > budget:
        raise RequestRejected(
            10907,
            f"tokens exceed the limit: input {prompt_tokens} > {budget} "
            f"(context {model.context_tokens}, max_tokens {max_tokens})",
            model,
        )
    return ValidRequest(
        model=model,
        messages=messages,
        chat=chat,
        functions=functions,
        max_tokens=max_tokens,
        prompt_tokens=prompt_tokens,
        question_tokens=estimate_tokens(messages[-1][1]),
    )


def _messages(items: Any, model: SparkModel) -> list[tuple[str, str]]:
    if not isinstance(items, list) or not items:
        raise _schema("$.payload.message.text", "must be a non-empty array")
    messages: list[tuple[str, str]] = []
    for index, item in enumerate(items):
        where = f"$.payload.message.text[{index}]"
        item = _dict(item, where)
        role, content = item.get("role"), item.get("content")
        if not isinstance(role, str) or not isinstance(content, str):
            raise _schema(where, "needs string role and content")
        if role not in ROLES:
            raise RequestRejected(
                10005, f"{where}.role {role!r} is not one of {sorted(ROLES)}", model
            )
        if role == "system":
            # Legacy versions predate the system role (§1.2); newer ones accept it first only.
            if model.legacy and not model.supports_system:
                raise RequestRejected(
                    10005, f"role system is not supported by {model.domain}", model
                )
            if index != 0:
                raise RequestRejected(10005, "the system message must be the first message", model)
        messages.append((role, content))
    if messages[-1][0] != "user":
        raise RequestRejected(10005, "the last message must have role user", model)
    return messages


def _check_chat(chat: dict[str, Any], model: SparkModel) -> int:
    """Check the generation parameters; returns the effective ``max_tokens``."""
    max_tokens = chat.get("max_tokens", model.default_max_tokens)
    if (
        not isinstance(max_tokens, int)
        or isinstance(max_tokens, bool)
        or not 1 <= max_tokens <= model.max_tokens_limit
    ):
        raise RequestRejected(
            10005,
            f"max_tokens must be in [1, {model.max_tokens_limit}], got {max_tokens!r}",
            model,
        )
    temperature = chat.get("temperature", model.default_temperature)
    if not _number(temperature) or not 0 < temperature <= model.temperature_max:
        raise RequestRejected(
            10005,
            f"temperature must be in (0, {model.temperature_max}], got {temperature!r}",
            model,
        )
    top_k = chat.get("top_k", 4)
    low, high = TOP_K_RANGE
    if not isinstance(top_k, int) or isinstance(top_k, bool) or not low <= top_k <= high:
        raise RequestRejected(10005, f"top_k must be in [{low}, {high}], got {top_k!r}", model)
    return max_tokens


def _functions(value: Any) -> list[dict[str, Any]]:
    if value is None:
        return []
    items = _dict(value, "$.payload.functions").get("text")
    if not isinstance(items, list):
        raise _schema("$.payload.functions.text", "must be an array")
    for index, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise _schema(f"$.payload.functions.text[{index}].name", "must be a string")
    return items
