"""Registry of Spark model versions: endpoint, ``domain``, limits and capabilities.

Figures come from spark-protocol.md §1. Where the official sources disagree about a capability,
the official Java SDK's table (J-MODEL) wins, because it is what iFlytek's own client sends.
Context sizes that no source states are set conservatively (8192) so that history trimming
errs on the side of sending less rather than earning a 10907.
"""

from __future__ import annotations

from dataclasses import dataclass

SPARK_HOST = "spark-api.xf-yun.com"


@dataclass(frozen=True, slots=True)
class SparkModel:
    """One Spark model version as the WebSocket API serves it."""

    name: str
    title: str
    url: str
    domain: str
    context_tokens: int
    max_tokens_limit: int
    default_max_tokens: int
    supports_system: bool
    supports_functions: bool
    supports_web_search: bool
    returns_search_sources: bool = False
    reasoning: bool = False
    temperature_max: float = 1.0
    default_temperature: float = 0.5
    legacy: bool = False
    aliases: tuple[str, ...] = ()

    def prompt_budget(self, max_tokens: int | None = None) -> int:
        """Tokens the messages may use: the context minus the answer's reservation.

        The reservation is ``max_tokens`` but never more than half the context: without the
        cap a model whose default ``max_tokens`` equals its context (X1) could take no question.
        """
        reserved = self.default_max_tokens if max_tokens is None else max_tokens
        return self.context_tokens - min(reserved, self.context_tokens // 2)

    @property
    def path(self) -> str:
        """The URL path, which is also what the simulator routes on."""
        return "/" + self.url.split("://", 1)[1].split("/", 1)[1]


def _url(path: str, host: str = SPARK_HOST) -> str:
    return f"wss://{host}{path}"


MODELS: tuple[SparkModel, ...] = (
    SparkModel(
        name="lite",
        title="Spark Lite",
        url=_url("/v1.1/chat"),
        domain="lite",
        context_tokens=8192,
        max_tokens_limit=4096,
        default_max_tokens=4096,
        supports_system=False,
        supports_functions=False,
        supports_web_search=False,
        aliases=("spark-lite",),
    ),
    SparkModel(
        name="pro",
        title="Spark Pro",
        url=_url("/v3.1/chat"),
        domain="generalv3",
        context_tokens=8192,
        max_tokens_limit=8192,
        default_max_tokens=4096,
        supports_system=True,
        supports_functions=True,
        supports_web_search=True,
        aliases=("spark-pro", "generalv3"),
    ),
    SparkModel(
        name="pro-128k",
        title="Spark Pro-128K",
        url=_url("/chat/pro-128k"),
        domain="pro-128k",
        context_tokens=128 * 1024,
        max_tokens_limit=4096,
        default_max_tokens=4096,
        supports_system=True,
        supports_functions=True,
        supports_web_search=False,
        aliases=("spark-pro-128k", "pro128k", "128k"),
    ),
    SparkModel(
        name="max",
        title="Spark Max",
        url=_url("/v3.5/chat"),
        domain="generalv3.5",
        context_tokens=8192,
        max_tokens_limit=8192,
        default_max_tokens=4096,
        supports_system=True,
        supports_functions=True,
        supports_web_search=True,
        returns_search_sources=True,
        aliases=("spark-max", "generalv3.5"),
    ),
    SparkModel(
        name="max-32k",
        title="Spark Max-32K",
        url=_url("/chat/max-32k"),
        domain="max-32k",
        context_tokens=32 * 1024,
        max_tokens_limit=8192,
        default_max_tokens=4096,
        supports_system=True,
        supports_functions=True,
        supports_web_search=False,
        aliases=("spark-max-32k", "max32k", "32k"),
    ),
    SparkModel(
        name="4.0-ultra",
        title="Spark 4.0 Ultra",
        url=_url("/v4.0/chat"),
        domain="4.0Ultra",
        context_tokens=8192,
        max_tokens_limit=8192,
        default_max_tokens=4096,
        supports_system=True,
        supports_functions=True,
        supports_web_search=True,
        returns_search_sources=True,
        aliases=("ultra", "4.0ultra", "v4", "v4.0", "spark-ultra", "spark-4.0-ultra"),
    ),
    SparkModel(
        name="x1",
        title="Spark X1",
        url=_url("/v1/x1"),
        domain="x1",
        context_tokens=32768,
        max_tokens_limit=32768,
        default_max_tokens=32768,
        supports_system=True,
        supports_functions=True,
        supports_web_search=True,
        reasoning=True,
        temperature_max=2.0,
        default_temperature=1.2,
        aliases=("spark-x1",),
    ),
    SparkModel(
        name="kjwx",
        title="Spark Sci-tech Literature",
        url=_url("/v1.1/chat_kjwx", host="spark-openapi-n.cn-huabei-1.xf-yun.com"),
        domain="kjwx",
        context_tokens=8192,
        max_tokens_limit=4096,
        default_max_tokens=2048,
        supports_system=False,
        supports_functions=False,
        supports_web_search=False,
        aliases=("scitech",),
    ),
    SparkModel(
        name="multilang",
        title="Spark Multilingual",
        url=_url("/v1.1/chat_multilang", host="spark-api-n.xf-yun.com"),
        domain="multilang",
        context_tokens=8192,
        max_tokens_limit=4096,
        default_max_tokens=2048,
        supports_system=False,
        supports_functions=False,
        supports_web_search=False,
    ),
    # Legacy names: the same endpoints under the domains of their era.
    SparkModel(
        name="v1.5",
        title="Spark V1.5 (legacy)",
        url=_url("/v1.1/chat"),
        domain="general",
        context_tokens=8192,
        max_tokens_limit=4096,
        default_max_tokens=2048,
        supports_system=False,
        supports_functions=False,
        supports_web_search=False,
        legacy=True,
        aliases=("v1", "v1.1", "general"),
    ),
    SparkModel(
        name="v2",
        title="Spark V2.0 (legacy)",
        url=_url("/v2.1/chat"),
        domain="generalv2",
        context_tokens=8192,
        max_tokens_limit=8192,
        default_max_tokens=2048,
        supports_system=False,
        supports_functions=False,
        supports_web_search=False,
        legacy=True,
        aliases=("v2.0", "v2.1", "generalv2"),
    ),
    SparkModel(
        name="v3",
        title="Spark V3.0 (legacy)",
        url=_url("/v3.1/chat"),
        domain="generalv3",
        context_tokens=8192,
        max_tokens_limit=8192,
        default_max_tokens=2048,
        supports_system=False,
        supports_functions=True,
        supports_web_search=False,
        legacy=True,
        aliases=("v3.0", "v3.1"),
    ),
    SparkModel(
        name="v3.5",
        title="Spark V3.5 (legacy)",
        url=_url("/v3.5/chat"),
        domain="generalv3.5",
        context_tokens=8192,
        max_tokens_limit=8192,
        default_max_tokens=2048,
        supports_system=True,
        supports_functions=True,
        supports_web_search=False,
        legacy=True,
    ),
)

_BY_KEY: dict[str, SparkModel] = {}
for _model in MODELS:
    for _key in (_model.name, *_model.aliases):
        _BY_KEY.setdefault(_key.lower(), _model)

MODEL_NAMES: tuple[str, ...] = tuple(model.name for model in MODELS)

# Paths the simulator serves, with every domain valid on each path.
DOMAINS_BY_PATH: dict[str, frozenset[str]] = {}
for _model in MODELS:
    DOMAINS_BY_PATH[_model.path] = DOMAINS_BY_PATH.get(_model.path, frozenset()) | {_model.domain}


def find_model(name: str) -> SparkModel | None:
    """Look a model up by name or alias, case-insensitively; None when unknown."""
    return _BY_KEY.get(name.strip().lower())


def get_model(name: str) -> SparkModel:
    """Like :func:`find_model` but raises ``KeyError`` naming the valid choices."""
    model = find_model(name)
    if model is None:
        raise KeyError(f"unknown Spark model {name!r}; choose one of {', '.join(MODEL_NAMES)}")
    return model


def model_for_domain(path: str, domain: str) -> SparkModel | None:
    """The model served at ``path`` under ``domain`` (the simulator's routing)."""
    for model in MODELS:
        if model.path == path and model.domain == domain:
            return model
    return None
