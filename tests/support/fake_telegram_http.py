"""How the Bot API fake reads a request: query string, form, multipart or JSON parameters.

ptb sends form fields whose complex values are JSON-encoded and files as multipart parts;
other clients send JSON bodies or query strings. All end up as one dict of decoded values.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from tests.support.fake_telegram_errors import BotApiError, JsonDict
from tests.support.fake_telegram_state import UploadedFile

# Form fields that are plain strings; every other form field carries a JSON value.
STRING_PARAMS = frozenset(
    {
        "text",
        "caption",
        "parse_mode",
        "language_code",
        "url",
        "callback_query_id",
        "action",
        "secret_token",
        "ip_address",
        "file_id",
        "inline_message_id",
        "business_connection_id",
        "message_effect_id",
        "document",
        "title",
        "description",
        "custom_title",
    }
)


def decode_value(key: str, raw: str) -> Any:
    if key in STRING_PARAMS:
        return raw
    try:
        return json.loads(raw)
    except ValueError:
        return raw


async def decode_params(request: web.Request) -> JsonDict:
    """Parameters from the query string and a form, multipart or JSON body, like Telegram."""
    params: JsonDict = {k: decode_value(k, v) for k, v in request.query.items()}
    if request.method == "POST" and request.body_exists:
        if request.content_type == "application/json":
            try:
                body = await request.json()
            except ValueError:
                raise BotApiError.bad_request("can't parse JSON request body") from None
            if not isinstance(body, dict):
                raise BotApiError.bad_request("JSON request body must be an object")
            params.update(body)
        else:
            form = await request.post()
            for key, value in form.items():
                if isinstance(value, web.FileField):
                    data = value.file.read()
                    params[key] = UploadedFile(value.filename, value.content_type, data)
                else:
                    params[key] = decode_value(key, str(value))
    for key, value in list(params.items()):
        if isinstance(value, str) and value.startswith("attach://"):
            attached = params.pop(value.removeprefix("attach://"), None)
            if isinstance(attached, UploadedFile):
                params[key] = attached
    return params
