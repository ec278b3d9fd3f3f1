"""Public value types of the Spark client: messages in, stream events out.

These are what the rest of the bot sees; wire-level JSON stays inside ``protocol.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["system", "user", "assistant"]
SearchMode = Literal["normal", "deep"]


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: Role
    content: str


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    """A function Spark may ask us to call (``payload.functions.text[]``)."""

    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True, slots=True)
class WebSearch:
    """The ``web_search`` tool (``parameter.chat.tools``)."""

    enable: bool = True
    show_ref_label: bool = False
    search_mode: SearchMode = "normal"


@dataclass(frozen=True, slots=True)
class GenerationOptions:
    """Per-request knobs; None means "the model's default"."""

    temperature: float | None = None
    max_tokens: int | None = None
    top_k: int | None = None
    chat_id: str | None = None
    web_search: WebSearch | None = None
    functions: tuple[FunctionSpec, ...] = ()
    # X1 only (spark-protocol.md §1.1)
    top_p: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    question_tokens: int = 0


@dataclass(frozen=True, slots=True)
class SearchSource:
    index: int
    url: str
    title: str


@dataclass(frozen=True, slots=True)
class FunctionCall:
    name: str
    arguments: str  # JSON text, as Spark sends it


# Stream events, in the order a consumer may see them.


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    text: str


@dataclass(frozen=True, slots=True)
class FunctionCallDelta:
    call: FunctionCall


@dataclass(frozen=True, slots=True)
class SearchSourcesDelta:
    sources: tuple[SearchSource, ...]


@dataclass(frozen=True, slots=True)
class Finished:
    """The last event of every successful stream."""

    usage: Usage
    sid: str


StreamEvent = TextDelta | ReasoningDelta | FunctionCallDelta | SearchSourcesDelta | Finished


@dataclass(frozen=True, slots=True)
class Completion:
    """A whole answer, as returned by ``SparkClient.complete``."""

    text: str
    reasoning: str
    usage: Usage
    sid: str
    function_call: FunctionCall | None = None
    sources: tuple[SearchSource, ...] = field(default=())
