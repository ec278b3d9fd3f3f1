"""OpenAI Chat Completions requests, checked and mapped onto Spark's terms.

:func:`parse_chat_request` turns the decoded JSON body into a :class:`ChatRequest` or raises
:class:`InvalidRequest` naming the parameter, the way OpenAI's API does (``param`` is
``messages[2].content``, ``n``...). What Spark cannot honour is refused rather than dropped
quietly: ``n`` > 1, ``logprobs``, images and audio, stop sequences, forced tool choice, a
JSON response format. Knobs Spark has no use for (``top_p``, ``presence_penalty``,
``frequency_penalty``, ``seed``, ``logit_bias``, ``parallel_tool_calls``, ``metadata``...)
are accepted and ignored.

Messages: leading ``system`` (and ``developer``) messages become one system message, or
are put before the first user message on models without a system role; ``tool`` results
become user messages and an assistant's ``tool_calls`` an assistant message that names
them, since Spark's WebSocket API has neither role; consecutive messages of one role are
joined, as Spark expects turns to alternate.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from bot.spark.models import SparkModel, find_model
from bot.spark.types import ChatMessage, FunctionSpec, GenerationOptions, Role

# temperature 0 (what clients send for "deterministic") is below Spark's open range (0, max].
MIN_TEMPERATURE = 0.01
MAX_USER_LENGTH = 256


class InvalidRequest(Exception):
    """A request refused before Spark is called: ``status``, OpenAI's ``type`` and ``code``,
    and the parameter at fault."""

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status: int = 400,
        kind: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        self.status = status
        self.kind = kind


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """A valid request in Spark's terms."""

    model: SparkModel
    messages: tuple[ChatMessage, ...]
    options: GenerationOptions
    stream: bool
    include_usage: bool
    user: str | None


def model_not_found(name: str) -> InvalidRequest:
    return InvalidRequest(
        f"The model `{name}` does not exist or this key may not use it.",
        param="model",
        code="model_not_found",
        status=404,
    )


def parse_chat_request(
    body: Any, *, enabled_models: Collection[str], max_messages: int
) -> ChatRequest:
    """Check ``body`` (decoded JSON) and map it; raises :class:`InvalidRequest`."""
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    model = _model(body.get("model"), enabled_models)
    _refuse_unsupported(body)
    raw_messages = body.get("messages")
    if not isinstance(raw_messages, list) or not raw_messages:
        raise InvalidRequest("`messages` must be a non-empty array.", param="messages")
    if len(raw_messages) > max_messages:
        raise InvalidRequest(
            f"At most {max_messages} messages are accepted, got {len(raw_messages)}.",
            param="messages",
        )
    messages = map_messages(raw_messages, model)
    stream = _bool(body, "stream", default=False)
    stream_options = body.get("stream_options")
    include_usage = False
    if stream_options is not None:
        if not isinstance(stream_options, dict):
            raise InvalidRequest("`stream_options` must be an object.", param="stream_options")
        include_usage = _bool(
            stream_options, "include_usage", default=False, prefix="stream_options."
        )
    functions = _functions(body, model)
    options = GenerationOptions(
        temperature=_temperature(body.get("temperature"), model),
        max_tokens=_max_tokens(body, model),
        functions=functions,
    )
    user = body.get("user")
    if user is not None and (not isinstance(user, str) or not 0 < len(user) <= MAX_USER_LENGTH):
        raise InvalidRequest(
            f"`user` must be a string of 1 to {MAX_USER_LENGTH} characters.", param="user"
        )
    return ChatRequest(
        model=model,
        messages=messages,
        options=options,
        stream=stream,
        include_usage=include_usage,
        user=user,
    )


def _model(name: Any, enabled: Collection[str]) -> SparkModel:
    if not isinstance(name, str) or not name.strip():
        raise InvalidRequest("`model` is required.", param="model")
    model = find_model(name)
    if model is None or model.name not in enabled:
        raise model_not_found(name)
    return model


def _refuse_unsupported(body: dict[str, Any]) -> None:
    n = body.get("n")
    if n is not None and (isinstance(n, bool) or n != 1):
        raise InvalidRequest(
            "Spark writes one answer per request: `n` must be 1.", param="n", code="unsupported"
        )
    for name in ("logprobs", "top_logprobs"):
        if body.get(name) not in (None, False, 0):
            raise InvalidRequest(
                f"Spark does not report log probabilities: `{name}` is not supported.",
                param=name,
                code="unsupported",
            )
    stop = body.get("stop")
    if stop not in (None, "", []):
        raise InvalidRequest(
            "Spark has no stop sequences: `stop` is not supported.",
            param="stop",
            code="unsupported",
        )
    response_format = body.get("response_format")
    if response_format is not None and (
        not isinstance(response_format, dict) or response_format.get("type") != "text"
    ):
        raise InvalidRequest(
            "Spark cannot be held to a JSON format: only `response_format` type `text` is "
            "supported.",
            param="response_format",
            code="unsupported",
        )
    modalities = body.get("modalities")
    if body.get("audio") is not None or (
        isinstance(modalities, list) and any(item != "text" for item in modalities)
    ):
        raise InvalidRequest("Spark answers in text only.", param="modalities", code="unsupported")


def _bool(body: dict[str, Any], name: str, *, default: bool, prefix: str = "") -> bool:
    value = body.get(name, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise InvalidRequest(f"`{name}` must be a boolean.", param=f"{prefix}{name}")
    return value


def _temperature(value: Any, model: SparkModel) -> float | None:
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise InvalidRequest("`temperature` must be a number.", param="temperature")
    if not 0 <= value <= model.temperature_max:
        raise InvalidRequest(
            f"{model.title} takes a `temperature` from 0 to {model.temperature_max:g}, "
            f"got {value:g}.",
            param="temperature",
        )
    return max(float(value), MIN_TEMPERATURE)


def _max_tokens(body: dict[str, Any], model: SparkModel) -> int | None:
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool):
            raise InvalidRequest(f"`{name}` must be an integer.", param=name)
        if not 1 <= value <= model.max_tokens_limit:
            raise InvalidRequest(
                f"{model.title} writes at most {model.max_tokens_limit} tokens: `{name}` must "
                f"be from 1 to {model.max_tokens_limit}, got {value}.",
                param=name,
            )
        return value
    return None


def _functions(body: dict[str, Any], model: SparkModel) -> tuple[FunctionSpec, ...]:
    tools = body.get("tools")
    if body.get("functions") is not None:
        raise InvalidRequest(
            "`functions` is deprecated: declare them in `tools`.", param="functions"
        )
    if tools in (None, []):
        return ()
    if not isinstance(tools, list):
        raise InvalidRequest("`tools` must be an array.", param="tools")
    choice = body.get("tool_choice")
    if choice not in (None, "auto", "none"):
        raise InvalidRequest(
            "Spark decides itself whether to call a function: `tool_choice` may be `auto` or "
            "`none`.",
            param="tool_choice",
            code="unsupported",
        )
    if not model.supports_functions:
        raise InvalidRequest(
            f"{model.title} does not call functions; use a model that does.",
            param="tools",
            code="unsupported",
        )
    specs: list[FunctionSpec] = []
    for index, tool in enumerate(tools):
        where = f"tools[{index}]"
        if not isinstance(tool, dict) or tool.get("type") != "function":
            raise InvalidRequest("Only tools of type `function` are supported.", param=where)
        function = tool.get("function")
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise InvalidRequest("A function needs a `name`.", param=f"{where}.function.name")
        name = function["name"].strip()
        if not name:
            raise InvalidRequest("A function needs a `name`.", param=f"{where}.function.name")
        description = function.get("description") or ""
        parameters = function.get("parameters") or {"type": "object", "properties": {}}
        if not isinstance(description, str) or not isinstance(parameters, dict):
            raise InvalidRequest(
                "`description` must be a string and `parameters` an object.",
                param=f"{where}.function",
            )
        specs.append(FunctionSpec(name=name, description=description, parameters=parameters))
    if choice == "none":
        return ()
    return tuple(specs)


def map_messages(raw: list[Any], model: SparkModel) -> tuple[ChatMessage, ...]:
    """OpenAI messages as Spark's alternating system / user / assistant turns."""
    system: list[str] = []
    turns: list[tuple[Role, str]] = []
    for index, item in enumerate(raw):
        where = f"messages[{index}]"
        if not isinstance(item, dict):
            raise InvalidRequest("Each message must be an object.", param=where)
        role = item.get("role")
        if role in ("system", "developer"):
            if turns:
                raise InvalidRequest(
                    "Spark takes system messages only at the start of the conversation.",
                    param=f"{where}.role",
                )
            text = _content(item.get("content"), where, required=True)
            system.append(text)
        elif role == "user":
            turns.append(("user", _content(item.get("content"), where, required=True)))
        elif role == "assistant":
            text = _content(item.get("content"), where, required=False)
            calls = _tool_calls(item.get("tool_calls"), where)
            text = "\n".join(part for part in (text, calls) if part)
            if text:  # Spark answers nothing to an empty history entry
                turns.append(("assistant", text))
        elif role == "tool":
            call_id = item.get("tool_call_id")
            result = _content(item.get("content"), where, required=False)
            label = f" {call_id}" if isinstance(call_id, str) and call_id else ""
            turns.append(("user", f"Result of function call{label}:\n{result or '(empty)'}"))
        else:
            raise InvalidRequest(
                "A message's role must be system, developer, user, assistant or tool.",
                param=f"{where}.role",
            )
    merged: list[tuple[Role, str]] = []
    for role, text in turns:
        if merged and merged[-1][0] == role:
            merged[-1] = (role, merged[-1][1] + "\n\n" + text)
        else:
            merged.append((role, text))
    if not merged or merged[-1][0] != "user":
        raise InvalidRequest(
            "The last message must be the user's (or a tool result): Spark answers a user.",
            param=f"messages[{len(raw) - 1}].role",
        )
    prompt = "\n\n".join(system)
    messages = [ChatMessage(role, text) for role, text in merged]
    if prompt and model.supports_system:
        messages.insert(0, ChatMessage("system", prompt))
    elif prompt:  # no system role on this model: the instructions lead the first question
        first = next(i for i, message in enumerate(messages) if message.role == "user")
        messages[first] = ChatMessage("user", prompt + "\n\n" + messages[first].content)
    return tuple(messages)


def _content(value: Any, where: str, *, required: bool) -> str:
    if value is None:
        if required:
            raise InvalidRequest("A message needs `content`.", param=f"{where}.content")
        return ""
    if isinstance(value, str):
        text = value
    elif isinstance(value, list):
        parts: list[str] = []
        for index, part in enumerate(value):
            param = f"{where}.content[{index}]"
            if not isinstance(part, dict):
                raise InvalidRequest("A content part must be an object.", param=param)
            kind = part.get("type")
            if kind == "text" and isinstance(part.get("text"), str):
                parts.append(part["text"])
            elif kind in ("image_url", "input_image", "image"):
                raise InvalidRequest(
                    "Spark's chat models read text only: images are not supported.",
                    param=param,
                    code="unsupported",
                )
            else:
                raise InvalidRequest(
                    f"Content parts of type {kind!r} are not supported; send text.",
                    param=param,
                    code="unsupported",
                )
        text = "\n".join(parts)
    else:
        raise InvalidRequest(
            "`content` must be a string or an array of text parts.", param=f"{where}.content"
        )
    if required and not text.strip():
        raise InvalidRequest("A message's `content` must not be empty.", param=f"{where}.content")
    return text


def _tool_calls(value: Any, where: str) -> str:
    """An assistant's earlier function calls, written out so Spark sees what it asked for."""
    if value in (None, []):
        return ""
    if not isinstance(value, list):
        raise InvalidRequest("`tool_calls` must be an array.", param=f"{where}.tool_calls")
    lines: list[str] = []
    for index, call in enumerate(value):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise InvalidRequest(
                "A tool call needs a function name.",
                param=f"{where}.tool_calls[{index}].function.name",
            )
        arguments = function.get("arguments")
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments, ensure_ascii=False)
        call_id = call.get("id")
        label = (
            f"Function call {call_id}" if isinstance(call_id, str) and call_id else "Function call"
        )
        lines.append(f"{label}: {function['name']}({arguments})")
    return "\n".join(lines)
