"""API keys at the door: the ``Authorization: Bearer`` key of a request, checked.

A key is looked up by its SHA-256 (the only form stored) and the stored hash is compared with
:func:`hmac.compare_digest`, so neither the lookup nor the comparison depends on how much of
a guess is right. Unknown and revoked keys get 401 before anything else is read, and no key
text ever reaches a log line: the operator sees the key's name.
"""

from __future__ import annotations

import hmac
import secrets

from aiohttp import web

from bot.service.completions import ApiCaller
from bot.web.errors import ApiError, unauthorized
from storage.database import Database
from storage.repositories.api_keys import ApiKeyInfo, key_hash

KEY_PREFIX = "sk-spark-"
# Longer than any key we make, shorter than any header worth hashing.
MAX_KEY_LENGTH = 200


class Unauthorized(Exception):
    def __init__(self, error: ApiError) -> None:
        super().__init__(error.message)
        self.error = error


def new_key() -> str:
    """A fresh key: the prefix and 256 random bits."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def caller_of(key: ApiKeyInfo) -> ApiCaller:
    return ApiCaller(
        key_id=key.id,
        key_name=key.name,
        user_id=key.user_id,
        rate_per_minute=key.rate_per_minute,
        models=key.models,
    )


def bearer_key(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    value = value.strip()
    return value if 0 < len(value) <= MAX_KEY_LENGTH else None


async def authenticate(database: Database, request: web.Request) -> ApiCaller:
    """The caller behind the request's key; raises :class:`Unauthorized`."""
    key = bearer_key(request)
    if key is None:
        raise Unauthorized(unauthorized("No API key: send it as `Authorization: Bearer <key>`."))
    return await authenticate_key(database, key)


async def authenticate_key(database: Database, key: str) -> ApiCaller:
    """The caller behind ``key`` however it came (a header, a WebSocket subprotocol)."""
    if not 0 < len(key) <= MAX_KEY_LENGTH:
        raise Unauthorized(unauthorized("Incorrect API key."))
    hashed = key_hash(key)
    found = await database.api_keys.find(hashed)
    if found is None or not hmac.compare_digest(found.key_hash, hashed):
        raise Unauthorized(unauthorized("Incorrect API key."))
    if found.revoked:
        raise Unauthorized(unauthorized("This API key has been revoked."))
    return caller_of(found)
