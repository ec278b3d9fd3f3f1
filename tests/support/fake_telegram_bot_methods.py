"""Bot API methods about the bot and its chats: getMe, webhook, commands, chats, files.

getUpdates is served by the HTTP layer because it waits (long polling).
"""

from __future__ import annotations

import contextlib
import json
import re
from typing import Any

from tests.support.fake_telegram_call import ApiCall, Handler
from tests.support.fake_telegram_errors import BotApiError, JsonDict
from tests.support.fake_telegram_state import ChatState

_COMMAND = re.compile(r"^[a-z0-9_]{1,32}$")
# Updates Telegram posts to a webhook at once unless setWebhook's max_connections says.
DEFAULT_WEBHOOK_CONNECTIONS = 40
# setWebhook's secret_token: empty means none.
_SECRET_TOKEN = re.compile(r"[A-Za-z0-9_-]*")
_SCOPES = frozenset(
    {
        "default",
        "all_private_chats",
        "all_group_chats",
        "all_chat_administrators",
        "chat",
        "chat_administrators",
        "chat_member",
    }
)
_ADMIN_RIGHTS = (
    "can_be_edited",
    "is_anonymous",
    "can_manage_chat",
    "can_delete_messages",
    "can_manage_video_chats",
    "can_restrict_members",
    "can_promote_members",
    "can_change_info",
    "can_invite_users",
    "can_post_stories",
    "can_edit_stories",
    "can_delete_stories",
)


def get_me(call: ApiCall) -> JsonDict:
    return dict(call.state.bot_user)


def _true(call: ApiCall) -> bool:
    return True


def set_webhook(call: ApiCall) -> bool:
    url = str(call.params.get("url") or "")
    if url and not url.startswith("https://"):
        raise BotApiError.bad_request("bad webhook: An HTTPS URL must be provided for webhook")
    secret = str(call.params.get("secret_token") or "")
    if len(secret) > 256:
        raise BotApiError.bad_request("secret token is too long")
    if not _SECRET_TOKEN.fullmatch(secret):
        raise BotApiError.bad_request("secret token contains unallowed characters")
    if call.flag("drop_pending_updates"):
        call.state.updates.clear()
    allowed = call.params.get("allowed_updates")
    if isinstance(allowed, list):
        call.state.allowed_updates = [str(kind) for kind in allowed]
    connections = call.int_param("max_connections", required=False)
    call.state.webhook = {
        "url": url,
        "max_connections": DEFAULT_WEBHOOK_CONNECTIONS if connections is None else connections,
    }
    return True


def delete_webhook(call: ApiCall) -> bool:
    if call.flag("drop_pending_updates"):
        call.state.updates.clear()
    call.state.webhook = {"url": ""}
    return True


def get_webhook_info(call: ApiCall) -> JsonDict:
    info: JsonDict = {
        "url": call.state.webhook.get("url", ""),
        "has_custom_certificate": False,
        "pending_update_count": len(call.state.updates),
    }
    if call.state.webhook.get("url"):
        info["max_connections"] = call.state.webhook["max_connections"]
    if call.state.allowed_updates is not None:
        info["allowed_updates"] = list(call.state.allowed_updates)
    return info


def commands_key(scope: Any, language_code: Any) -> tuple[str, str]:
    """Storage key of a command list: the scope (normalized JSON) and the language."""
    if scope is None:
        scope = {"type": "default"}
    if not isinstance(scope, dict) or scope.get("type") not in _SCOPES:
        raise BotApiError.bad_request("BOT_COMMAND_SCOPE_INVALID")
    clean = dict(scope)
    if "chat_id" in clean:
        with contextlib.suppress(TypeError, ValueError):
            clean["chat_id"] = int(clean["chat_id"])
    language = str(language_code or "")
    if language and not re.fullmatch(r"[a-z]{2}", language):
        raise BotApiError.bad_request("LANG_CODE_INVALID")
    return json.dumps(clean, sort_keys=True), language


def set_my_commands(call: ApiCall) -> bool:
    commands = call.params.get("commands")
    if not isinstance(commands, list) or len(commands) > 100:
        raise BotApiError.bad_request("commands must be an array of at most 100 BotCommand")
    clean: list[JsonDict] = []
    for command in commands:
        if not isinstance(command, dict) or not _COMMAND.match(str(command.get("command"))):
            raise BotApiError.bad_request("BOT_COMMAND_INVALID")
        description = command.get("description")
        if not isinstance(description, str) or not 1 <= len(description) <= 256:
            raise BotApiError.bad_request("BOT_COMMAND_DESCRIPTION_INVALID")
        clean.append({"command": command["command"], "description": description})
    scope = call.params.get("scope")
    key = commands_key(scope, call.params.get("language_code"))
    if isinstance(scope, dict) and "chat_id" in scope:
        call.state.chat(scope["chat_id"])  # Telegram: "chat not found" for a chat never seen
    call.state.commands[key] = clean
    return True


def get_my_commands(call: ApiCall) -> list[JsonDict]:
    key = commands_key(call.params.get("scope"), call.params.get("language_code"))
    return [dict(c) for c in call.state.commands.get(key, [])]


def delete_my_commands(call: ApiCall) -> bool:
    key = commands_key(call.params.get("scope"), call.params.get("language_code"))
    call.state.commands.pop(key, None)
    return True


def leave_chat(call: ApiCall) -> bool:
    chat = call.chat()
    if not chat.is_group:
        raise BotApiError.bad_request("chat member status can't be changed in private chats")
    chat.bot_left = True
    return True


def get_chat(call: ApiCall) -> JsonDict:
    chat = call.chat()
    return {
        **chat.info,
        "accent_color_id": 0,
        "max_reaction_count": 11,
        "accepted_gift_types": {
            "unlimited_gifts": False,
            "limited_gifts": False,
            "unique_gifts": False,
            "premium_subscription": False,
            "gifts_from_channels": False,
        },
    }


def _member_status(call: ApiCall, chat: ChatState, user_id: int) -> str:
    if user_id == call.state.bot_id:
        if chat.bot_left:
            return "left"
        return "administrator" if chat.bot_admin else "member"
    if not chat.is_group:
        if user_id != chat.id:
            raise BotApiError.bad_request("user not found")
        return "member"
    if user_id in chat.members:
        return chat.members[user_id]
    if call.state.user(user_id) is None:
        raise BotApiError.bad_request("user not found")
    return "left"


def get_chat_member(call: ApiCall) -> JsonDict:
    chat = call.chat()
    user_id = call.int_param("user_id")
    assert user_id is not None
    status = _member_status(call, chat, user_id)
    member: JsonDict = {"status": status, "user": call.state.user(user_id)}
    if status == "creator":
        member["is_anonymous"] = False
    elif status == "administrator":
        member.update(dict.fromkeys(_ADMIN_RIGHTS, False))
        member.update(can_manage_chat=True, can_delete_messages=True)
    elif status == "kicked":
        member["until_date"] = 0
    return member


def get_file(call: ApiCall) -> JsonDict:
    record = call.state.files.get(str(call.params.get("file_id") or ""))
    if record is None:
        raise BotApiError.bad_request("invalid file_id")
    return record.to_json()


BOT_METHODS: dict[str, Handler] = {
    "getMe": get_me,
    "logOut": _true,
    "close": _true,
    "setWebhook": set_webhook,
    "deleteWebhook": delete_webhook,
    "getWebhookInfo": get_webhook_info,
    "setMyCommands": set_my_commands,
    "getMyCommands": get_my_commands,
    "deleteMyCommands": delete_my_commands,
    "leaveChat": leave_chat,
    "getChat": get_chat,
    "getChatMember": get_chat_member,
    "getFile": get_file,
}
