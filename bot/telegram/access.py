"""Who may use the bot: ALLOWED_USER_IDS, ALLOWED_CHAT_IDS and ADMIN_USER_IDS.

Empty lists mean everyone. Admins are always allowed. A group on ALLOWED_CHAT_IDS is open to all
its members; otherwise a user must be on ALLOWED_USER_IDS (when that list is set). Refused users
are told once, politely, when they speak to the bot; a refused group is left or ignored, as
UNAUTHORIZED_GROUP_ACTION says. Nobody refused costs a Spark token.

This is the rule only; :mod:`bot.telegram.access_gate` applies it to every update before any
handler.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

GroupAction = Literal["leave", "silent"]


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    notify: bool = False  # tell the user (first refusal only)
    leave_chat: bool = False


class AccessPolicy:
    def __init__(
        self,
        *,
        allowed_user_ids: Iterable[int] = (),
        allowed_chat_ids: Iterable[int] = (),
        admin_user_ids: Iterable[int] = (),
        group_action: GroupAction = "silent",
    ) -> None:
        self._users = frozenset(allowed_user_ids)
        self._chats = frozenset(allowed_chat_ids)
        self._admins = frozenset(admin_user_ids)
        self._group_action = group_action
        self._told: set[tuple[int, int]] = set()

    def is_admin(self, user_id: int) -> bool:
        return user_id in self._admins

    def check(
        self, user_id: int | None, chat_id: int, chat_type: str, *, addressed: bool = True
    ) -> Verdict:
        """Whether ``user_id`` may use the bot in ``chat_id``.

        ``user_id`` is None when nobody in particular acts (a channel post, an anonymous
        sender): only the chat is judged then. A refused user is told only when they
        ``addressed`` the bot, and only the first time, so group chatter never triggers it.
        """
        user_ok = not self._users or (
            user_id is not None and (user_id in self._users or user_id in self._admins)
        )
        if chat_type == "private":
            if user_ok or chat_id in self._chats:
                return Verdict(allowed=True)
            return self._refuse_user(user_id, chat_id, addressed)
        if chat_id in self._chats or (user_id is not None and user_id in self._admins):
            return Verdict(allowed=True)
        if self._chats:
            # The group itself is not allowed.
            return Verdict(allowed=False, leave_chat=self._group_action == "leave")
        return Verdict(allowed=True) if user_ok else self._refuse_user(user_id, chat_id, addressed)

    def _refuse_user(self, user_id: int | None, chat_id: int, addressed: bool) -> Verdict:
        if user_id is None or not addressed:
            return Verdict(allowed=False)
        first_time = (user_id, chat_id) not in self._told
        self._told.add((user_id, chat_id))
        return Verdict(allowed=False, notify=first_time)
