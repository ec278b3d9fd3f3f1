"""Prometheus metrics of the process, in one registry of its own (no global state).

HTTP requests by route and status; Spark requests of every front end (Telegram, the HTTP
API) by front end, model, outcome and error code, their tokens, time to first token and
duration; streams open now; Telegram Bot API calls and the 429s among them by method.
``GET /metrics`` serves them in the text format.
"""

from __future__ import annotations

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from bot.service.events import SparkCall

_SECONDS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class Metrics:
    """Every metric the process exports; pass one instance to whoever records."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.http_requests = Counter(
            "http_requests",
            "HTTP requests answered, by route and status.",
            ["route", "status"],
            registry=registry,
        )
        self.spark_requests = Counter(
            "spark_requests",
            "Spark requests, by front end (telegram, api), model, outcome (ok, error, "
            "stopped, client_gone, undelivered, interrupted) and error code (empty on "
            "success; negative codes are the ledger's own).",
            ["front_end", "model", "outcome", "code"],
            registry=registry,
        )
        self.spark_tokens = Counter(
            "spark_tokens",
            "Tokens Spark reported, by front end, model and kind (prompt, completion).",
            ["front_end", "model", "kind"],
            registry=registry,
        )
        self.first_token = Histogram(
            "spark_time_to_first_token_seconds",
            "Seconds from the request to Spark's first answer token.",
            ["model"],
            buckets=_SECONDS,
            registry=registry,
        )
        self.duration = Histogram(
            "spark_request_duration_seconds",
            "Seconds from the request to the end of Spark's answer.",
            ["model"],
            buckets=_SECONDS,
            registry=registry,
        )
        self.streams = Gauge(
            "http_streams_in_flight", "Streaming responses open now.", registry=registry
        )
        self.telegram_calls = Counter(
            "telegram_calls", "Bot API calls, by method.", ["method"], registry=registry
        )
        self.telegram_429 = Counter(
            "telegram_429",
            "Bot API calls refused with 429, by method.",
            ["method"],
            registry=registry,
        )

    def request(self, route: str, status: int) -> None:
        self.http_requests.labels(route, str(status)).inc()

    def spark_call(self, call: SparkCall) -> None:
        """Count one Spark request as it ended (the service's observer)."""
        code = "" if call.error_code is None else str(call.error_code)
        self.spark_requests.labels(call.front_end, call.model, call.outcome, code).inc()
        if call.usage is not None:
            tokens = self.spark_tokens
            tokens.labels(call.front_end, call.model, "prompt").inc(call.usage.prompt_tokens)
            tokens.labels(call.front_end, call.model, "completion").inc(
                call.usage.completion_tokens
            )
        if call.outcome == "ok":
            if call.first_token_seconds is not None:
                self.first_token.labels(call.model).observe(call.first_token_seconds)
            self.duration.labels(call.model).observe(call.duration_seconds)

    def telegram_call(self, method: str, status: int) -> None:
        self.telegram_calls.labels(method).inc()
        if status == 429:
            self.telegram_429.labels(method).inc()

    async def handler(self, request: web.Request) -> web.Response:
        """``GET /metrics``."""
        response = web.Response(body=generate_latest(self.registry))
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response
