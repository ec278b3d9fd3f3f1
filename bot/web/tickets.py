"""Short-lived WebSocket tickets: a browser cannot set headers on a WebSocket, so it first
asks for a ticket with its key (``POST /v1/ws/tickets``) and offers the ticket as a
subprotocol. A ticket is random, used once, and expires after ``TICKET_SECONDS``; it never
travels in a URL, so it never lands in an access log.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from bot.service.clock import SYSTEM_CLOCK, Clock
from bot.service.completions import ApiCaller

TICKET_SECONDS = 30.0
TICKET_PREFIX = "wst-"
# Tickets nobody used are swept when there are this many.
_SWEEP_AT = 4096


@dataclass(frozen=True, slots=True)
class _Issued:
    caller: ApiCaller
    expires_at: float


class Tickets:
    def __init__(self, clock: Clock = SYSTEM_CLOCK, lifetime: float = TICKET_SECONDS) -> None:
        self._clock = clock
        self.lifetime = lifetime
        self._issued: dict[str, _Issued] = {}

    def issue(self, caller: ApiCaller) -> str:
        now = self._clock.now()
        if len(self._issued) >= _SWEEP_AT:
            self._issued = {t: i for t, i in self._issued.items() if i.expires_at > now}
        ticket = TICKET_PREFIX + secrets.token_urlsafe(24)
        self._issued[ticket] = _Issued(caller, now + self.lifetime)
        return ticket

    def redeem(self, ticket: str) -> ApiCaller | None:
        """The ticket's caller, once; None when unknown, used or expired."""
        issued = self._issued.pop(ticket, None)
        if issued is None or issued.expires_at <= self._clock.now():
            return None
        return issued.caller
