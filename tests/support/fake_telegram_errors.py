"""Error answers of the Bot API fake: Telegram's status codes, descriptions and parameters.

A `BotApiError` is both what the fake raises internally to answer a request with an error and
the value tests hand to `FakeTelegram.fail_next` to script a fault.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

JsonDict = dict[str, Any]

NOT_MODIFIED = (
    "message is not modified: specified new message content and reply markup are exactly the "
    "same as a current content and reply markup of the message"
)


class BotApiError(Exception):
    """One Bot API error answer: `{"ok": false, "error_code", "description", "parameters"}`."""

    def __init__(
        self, error_code: int, description: str, parameters: JsonDict | None = None
    ) -> None:
        super().__init__(f"{error_code} {description}")
        self.error_code = error_code
        self.description = description
        self.parameters = dict(parameters or {})

    def to_json(self) -> JsonDict:
        body: JsonDict = {
            "ok": False,
            "error_code": self.error_code,
            "description": self.description,
        }
        if self.parameters:
            body["parameters"] = dict(self.parameters)
        return body

    @property
    def retry_after(self) -> int | None:
        value = self.parameters.get("retry_after")
        return value if isinstance(value, int) else None

    def copy(self) -> BotApiError:
        return BotApiError(self.error_code, self.description, self.parameters)

    @classmethod
    def bad_request(cls, text: str) -> BotApiError:
        prefix = "Bad Request: "
        return cls(400, text if text.startswith(prefix) else prefix + text)

    @classmethod
    def cant_parse_entities(
        cls, detail: str = "Can't find end of the entity starting at byte offset 0"
    ) -> BotApiError:
        return cls.bad_request(f"can't parse entities: {detail}")

    @classmethod
    def message_not_found(cls) -> BotApiError:
        return cls.bad_request("message to edit not found")

    @classmethod
    def not_modified(cls) -> BotApiError:
        return cls.bad_request(NOT_MODIFIED)

    @classmethod
    def too_many_requests(cls, retry_after: int) -> BotApiError:
        if retry_after < 1:
            raise ValueError(f"retry_after must be at least 1 second, got {retry_after}")
        return cls(
            429,
            f"Too Many Requests: retry after {retry_after}",
            {"retry_after": retry_after},
        )

    @classmethod
    def forbidden(cls, text: str) -> BotApiError:
        return cls(403, f"Forbidden: {text}")

    @classmethod
    def blocked_by_user(cls) -> BotApiError:
        return cls.forbidden("bot was blocked by the user")

    @classmethod
    def drafts_unavailable(cls) -> BotApiError:
        return cls.bad_request("TEXTDRAFT_PEER_INVALID")

    @classmethod
    def chat_not_found(cls) -> BotApiError:
        return cls.bad_request("chat not found")

    @classmethod
    def unauthorized(cls) -> BotApiError:
        return cls(401, "Unauthorized")

    @classmethod
    def not_found(cls) -> BotApiError:
        return cls(404, "Not Found")

    @classmethod
    def conflict(cls, text: str) -> BotApiError:
        return cls(409, f"Conflict: {text}")


@dataclass(slots=True)
class _Fault:
    method: str
    error: BotApiError
    remaining: int
    chat_id: int | None


class FaultScript:
    """Errors a test asked the fake to answer with, consumed in the order they were added."""

    def __init__(self) -> None:
        self._faults: list[_Fault] = []

    def add(
        self, method: str, error: BotApiError, *, times: int = 1, chat_id: int | None = None
    ) -> None:
        if times < 1:
            raise ValueError(f"times must be at least 1, got {times}")
        self._faults.append(_Fault(method, error, times, chat_id))

    def take(self, method: str, chat_id: int | None) -> BotApiError | None:
        for fault in self._faults:
            if fault.method == method and fault.chat_id in (None, chat_id):
                fault.remaining -= 1
                if fault.remaining == 0:
                    self._faults.remove(fault)
                return fault.error.copy()
        return None
