"""The repositories, one per aggregate, each method one unit of work.

Every method runs one unit of work (:mod:`storage.backends`) and returns frozen values
(:mod:`storage.dto`); the SQL of a repository sits in its own module beside it. A
:class:`~storage.database.Database` builds them all when it is constructed:
``database.users``, ``.chats``, ``.conversations``, ``.messages``, ``.usage``, ``.updates``,
``.api_keys``, ``.web_conversations`` and ``.stats`` (:mod:`storage.stats`).
"""

from __future__ import annotations

from storage.backends import Backend
from storage.dto import Clock


class Repository:
    """Runs its methods' units of work on ``backend``; time comes from ``clock``."""

    def __init__(self, backend: Backend, clock: Clock) -> None:
        self.backend = backend
        self.clock = clock
