"""``python -m bot keys create|list|revoke``: the operator's side of API keys.

A new key is printed once and stored only as its hash; lost keys are revoked and replaced,
never shown again. Each command migrates the database first, like ``python -m bot migrate``.
"""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from bot.config import Settings
from bot.errors import ConfigError
from bot.spark.models import MODEL_NAMES, find_model
from bot.startup_failures import database_failures
from bot.web.keys import new_key
from storage.database import create_database
from storage.migrate import upgrade
from storage.repositories.api_keys import ApiKeyInfo, KeyNameTaken, key_hash

MAX_NAME_LENGTH = 64


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = commands.add_parser("keys", help="create, list and revoke keys of the HTTP API")
    actions = keys.add_subparsers(dest="keys_command", required=True)
    create = actions.add_parser("create", help="make a key (shown once)")
    create.add_argument("name", help="a name for the key, shown in /stats and logs")
    create.add_argument("--daily-tokens", type=int, default=None, metavar="N")
    create.add_argument("--rate", type=int, default=None, metavar="N", help="requests a minute")
    create.add_argument("--models", default=None, metavar="a,b", help="models the key may use")
    create.add_argument(
        "--user",
        type=int,
        default=None,
        metavar="TELEGRAM_ID",
        help="bill the key to this Telegram user: it shares the user's daily quota",
    )
    actions.add_parser("list", help="list keys (never their text)")
    revoke = actions.add_parser("revoke", help="revoke a key at once")
    revoke.add_argument("name")


def _models(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    names: list[str] = []
    for part in value.replace(";", ",").split(","):
        if not part.strip():
            continue
        model = find_model(part)
        if model is None:
            raise ConfigError(
                f"--models: unknown model {part.strip()!r}; choose from {', '.join(MODEL_NAMES)}"
            )
        names.append(model.name)
    return tuple(dict.fromkeys(names))


def _check(args: argparse.Namespace) -> None:
    name = str(args.name).strip()
    if not name or len(name) > MAX_NAME_LENGTH or any(ch.isspace() for ch in name):
        raise ConfigError(f"key name: 1 to {MAX_NAME_LENGTH} characters without spaces")
    for flag, value in (("--daily-tokens", args.daily_tokens), ("--rate", args.rate)):
        if value is not None and value < 1:
            raise ConfigError(f"{flag} must be a positive number")
    if args.user is not None and args.user <= 0:
        raise ConfigError("--user must be a Telegram user id (a positive number)")
    if args.user is not None and args.daily_tokens is not None:
        raise ConfigError(
            "--daily-tokens: a key billed to a Telegram user shares that user's quota; "
            "set it with /quota in Telegram"
        )


def _describe(key: ApiKeyInfo) -> str:
    limits = [
        f"user {key.user_id}",
        f"daily tokens {key.daily_tokens}" if key.daily_tokens else "daily tokens: default",
        f"rate {key.rate_per_minute}/min" if key.rate_per_minute else "rate: default",
        f"models {','.join(key.models)}" if key.models else "models: all enabled",
        f"created {key.created_at:%Y-%m-%d %H:%M} UTC",
        f"REVOKED {key.revoked_at:%Y-%m-%d %H:%M} UTC" if key.revoked_at else "active",
    ]
    return f"{key.name}: " + "; ".join(limits)


async def run(settings: Settings, args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    url = settings.database.url
    with database_failures(url):
        await upgrade(url)
        database = create_database(url)
    try:
        if args.keys_command == "create":
            _check(args)
            key = new_key()
            try:
                info = await database.api_keys.create(
                    str(args.name).strip(),
                    key_hash(key),
                    daily_tokens=args.daily_tokens,
                    rate_per_minute=args.rate,
                    models=_models(args.models),
                    user_id=args.user,
                )
            except KeyNameTaken:
                raise ConfigError(f"a key named {args.name!r} exists already") from None
            print(_describe(info), file=out)
            print(f"key: {key}", file=out)
            print("Store it now: it is kept only as a hash and cannot be shown again.", file=out)
            return 0
        if args.keys_command == "list":
            keys = await database.api_keys.list_all()
            for info in keys:
                print(_describe(info), file=out)
            if not keys:
                print("no keys yet: python -m bot keys create NAME", file=out)
            return 0
        revoked = await database.api_keys.revoke(str(args.name))
        if not revoked:
            raise ConfigError(f"no active key named {args.name!r}")
        print(f"{args.name}: revoked", file=out)
        return 0
    finally:
        await database.dispose()
