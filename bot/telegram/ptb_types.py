"""The python-telegram-bot generics the bot uses, spelt once."""

from __future__ import annotations

from typing import Any

from telegram.ext import Application, ContextTypes

AnyApplication = Application[Any, Any, Any, Any, Any, Any]
AnyContext = ContextTypes.DEFAULT_TYPE
