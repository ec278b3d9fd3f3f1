"""What a :class:`~bot.spark.client.SparkClient` needs to know, as one typed value.

Built by whoever embeds the client: the bot maps its settings onto it
(:meth:`bot.config.SparkSettings.client_options`), a script writes it out by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.spark.models import SparkModel, get_model
from bot.spark.retry import RetryPolicy, SparkTimeouts
from bot.spark.types import GenerationOptions


@dataclass(frozen=True, slots=True)
class SparkOptions:
    """Credentials, the default model, where to connect, time budgets, retries, defaults.

    ``url`` with a path is used verbatim for every request; without one (``ws://host:port``)
    it replaces scheme and host of each model's URL, so a local simulator can serve every
    model. ``defaults`` are the generation options used when a call passes none, fitted to
    each model's range.
    """

    app_id: str
    api_key: str = field(repr=False)
    api_secret: str = field(repr=False)
    model: SparkModel = field(default_factory=lambda: get_model("lite"))
    url: str | None = None
    timeouts: SparkTimeouts = field(default_factory=SparkTimeouts)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    defaults: GenerationOptions = field(default_factory=GenerationOptions)

    def __post_init__(self) -> None:
        missing = [
            name
            for name, value in (
                ("app_id", self.app_id),
                ("api_key", self.api_key),
                ("api_secret", self.api_secret),
            )
            if not value
        ]
        if missing:
            raise ValueError(f"SparkOptions needs {', '.join(missing)}")
        if self.url is not None and not self.url.startswith(("ws://", "wss://")):
            raise ValueError(f"SparkOptions.url must start with ws:// or wss://, got {self.url!r}")
