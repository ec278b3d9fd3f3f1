"""What the Spark simulator says: answers, reasoning, search sources, function arguments, tokens.

Everything here is a pure function of its inputs, so a test can compute the exact text a
simulated stream must deliver. Question markers (``[[long:N]]`` ...) are parsed here into a
:class:`Script`; the server in ``simulator.py`` acts on the fault fields, this module on the
content fields. The marker grammar is documented in ``bot/spark/simulator.py``.
"""

from __future__ import annotations

import json
import math
import random
import re
from dataclasses import dataclass, replace
from typing import Any, Literal

from bot.spark.models import SparkModel, model_for_domain

CutoffAction = Literal["error", "abort", "hang"]

# CJK ideographs, CJK punctuation and full-width forms count as "Chinese" for the estimate.
_CJK = re.compile(r"[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef]")

_MARKER = re.compile(
    r"\[\[(?:"
    r"error:(?P<error>\d+)"
    r"|error-after:(?P<error_after_code>\d+):(?P<error_after_n>\d+)"
    r"|close-after:(?P<close_after>\d+)"
    r"|(?P<hang>hang)"
    r"|hang-after:(?P<hang_after>\d+)"
    r"|slow-first:(?P<slow_first>\d+(?:\.\d+)?)"
    r"|long:(?P<long>\d+)"
    r"|(?P<markdown>markdown)"
    r"|answer:(?P<answer>.*?)"
    r"|(?P<search>search)"
    r")\]\]",
    re.DOTALL,
)

# Questions that make a real Spark reach for its search plugin (spark-protocol.md §1.1 notes).
_SEARCH_WORDS = ("weather", "news", "天气", "新闻")


def estimate_tokens(text: str) -> int:
    """Spark's rule of thumb (§3.4): 1.5 CJK characters or ~4 other characters per token, ≥ 1."""
    cjk = len(_CJK.findall(text))
    return max(1, math.ceil(cjk / 1.5) + math.ceil((len(text) - cjk) / 4))


@dataclass(frozen=True, slots=True)
class Script:
    """What one request asks the simulator to do, from question markers or :meth:`inject`."""

    cutoff: int | None = None  # frames sent before the cutoff action
    cutoff_action: CutoffAction | None = None
    cutoff_code: int = 0  # the error code when cutoff_action == "error"
    slow_first: float | None = None
    long: int | None = None
    markdown: bool = False
    answer: str | None = None
    search: bool = False

    def merged(self, other: Script) -> Script:
        """``other`` wins wherever it sets something (an injected fault beats a marker)."""
        changes: dict[str, Any] = {}
        if other.cutoff_action is not None:
            changes.update(
                cutoff=other.cutoff,
                cutoff_action=other.cutoff_action,
                cutoff_code=other.cutoff_code,
            )
        if other.slow_first is not None:
            changes["slow_first"] = other.slow_first
        if other.long is not None:
            changes["long"] = other.long
        if other.answer is not None:
            changes["answer"] = other.answer
        changes["markdown"] = self.markdown or other.markdown
        changes["search"] = self.search or other.search
        return replace(self, **changes)


def parse_markers(question: str) -> tuple[str, Script]:
    """Split a question into its text without markers and the script the markers ask for."""
    script = Script()
    for match in _MARKER.finditer(question):
        script = script.merged(_script_from(match))
    return _MARKER.sub("", question).strip(), script


def parse_fault(fault: str) -> Script | None:
    """The script for an injected fault written like a marker without brackets; None if unknown."""
    match = _MARKER.fullmatch(f"[[{fault}]]")
    return None if match is None else _script_from(match)


def _script_from(match: re.Match[str]) -> Script:
    group = match.group
    if group("error") is not None:
        return Script(cutoff=0, cutoff_action="error", cutoff_code=int(group("error")))
    if group("error_after_code") is not None:
        return Script(
            cutoff=int(group("error_after_n")),
            cutoff_action="error",
            cutoff_code=int(group("error_after_code")),
        )
    if group("close_after") is not None:
        return Script(cutoff=int(group("close_after")), cutoff_action="abort")
    if group("hang") is not None:
        return Script(cutoff=0, cutoff_action="hang")
    if group("hang_after") is not None:
        return Script(cutoff=int(group("hang_after")), cutoff_action="hang")
    if group("slow_first") is not None:
        return Script(slow_first=float(group("slow_first")))
    if group("long") is not None:
        return Script(long=int(group("long")))
    if group("markdown") is not None:
        return Script(markdown=True)
    if group("answer") is not None:
        return Script(answer=group("answer"))
    return Script(search=True)


def answer_text(question: str, model: SparkModel) -> str:
    """The deterministic answer the simulator streams for ``question`` (markers honoured).

    Models that share a path and a domain (a legacy name and its successor) are one model to
    the server, which answers as the first of them in the registry.
    """
    text, script = parse_markers(question)
    served = model_for_domain(model.path, model.domain) or model
    return scripted_answer(text, script, served)


def scripted_answer(text: str, script: Script, model: SparkModel) -> str:
    """The answer for a question already split into text and script."""
    if script.answer is not None:
        return script.answer
    if script.long is not None:
        return long_answer(script.long)
    if script.markdown:
        return MARKDOWN_ANSWER
    return (
        f"{model.title} (simulated) received your question: {text}\n"
        f"这是星火模拟器的确定性回答。The same question always gets this same answer, "
        f"{len(text)} characters of question included."
    )


def reasoning_text(text: str) -> str:
    """What a reasoning model (X1) thinks before it answers."""
    return (
        f"The user asks: {text}\n"
        "Let me think step by step. 先理解问题，再组织回答。"
        "The answer should be short, deterministic and easy to check."
    )


MARKDOWN_ANSWER = (
    "Here is **bold text**, some *italic text* and `inline code`.\n\n"
    "A list:\n"
    "- first item with **emphasis**\n"
    "- second item with a [link](https://example.com/docs?a=1&b=2)\n"
    "- third item: 中文内容\n\n"
    "A fenced code block:\n\n"
    "```python\n"
    "def greet(name: str) -> str:\n"
    '    return f"Hello, {name}! 2 * 3 < 7 & done"\n'
    "```\n\n"
    "That is all."
)

_WORDS = (
    "spark model stream answer token frame socket server client message history context "
    "latency budget retry signal render draft update chat user question careful simple "
    "deterministic paragraph sentence example value result detail"
).split()
_CHINESE = (
    "这是一个用于测试的段落。",
    "模型会逐帧返回内容。",
    "请注意消息长度限制。",
    "星火大模型支持多轮对话。",
)
_CODE_BLOCK = (
    "```python\n"
    "async def stream(frames):\n"
    "    total = 0\n"
    "    async for frame in frames:\n"
    "        total += len(frame)\n"
    "        yield frame  # one delta per frame\n"
    "```"
)


def long_answer(length: int) -> str:
    """Exactly ``length`` characters of varied paragraphs; a fenced code block when > 2000."""
    rng = random.Random(length)
    if length <= 2000:
        return _prose(length, rng)
    head = length // 2 - len(_CODE_BLOCK) // 2
    tail = length - head - len(_CODE_BLOCK) - 4
    return _prose(head, rng) + "\n\n" + _CODE_BLOCK + "\n\n" + _prose(tail, rng)


def _prose(length: int, rng: random.Random) -> str:
    paragraphs: list[str] = []
    size = -2  # the length of the paragraphs joined by blank lines
    while size < length:
        sentences = []
        for _ in range(rng.randint(2, 5)):
            if rng.random() < 0.2:
                sentences.append(rng.choice(_CHINESE))
                continue
            words = [rng.choice(_WORDS) for _ in range(rng.randint(5, 14))]
            sentences.append(" ".join(words).capitalize() + ".")
        paragraph = " ".join(sentences)
        paragraphs.append(paragraph)
        size += len(paragraph) + 2
    text = "\n\n".join(paragraphs)[:length]
    # A cut can leave whitespace at the end, which renderers strip; end on a visible character.
    if text and text[-1].isspace():
        text = text[:-1] + "."
    return text


def wants_search(text: str, script: Script, chat: dict[str, Any], model: SparkModel) -> bool:
    """True when the request gets a plugins frame of search sources first (§4.1)."""
    if not model.returns_search_sources:
        return False
    if not script.search and not any(word in text.lower() for word in _SEARCH_WORDS):
        return False
    for tool in chat.get("tools") or ():
        if isinstance(tool, dict) and tool.get("type") == "web_search":
            search = tool.get("web_search") or {}
            if isinstance(search, dict) and search.get("enable", True) is not False:
                return search.get("show_ref_label") is True
    return False


def search_sources(text: str) -> list[dict[str, Any]]:
    """Deterministic ``{index, url, title}`` entries for a searched question."""
    topic = text[:40] or "query"
    return [
        {"index": 1, "url": "https://example.com/search/1", "title": f"About {topic}"},
        {"index": 2, "url": "https://example.org/news/2", "title": f"{topic} — latest"},
        {"index": 3, "url": "https://example.net/wiki/3", "title": f"{topic}: background"},
    ]


def pick_function(text: str, functions: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The first declared function whose name appears in the question."""
    for function in functions:
        name = function.get("name")
        if isinstance(name, str) and name and name in text:
            return function
    return None


def function_arguments(function: dict[str, Any], text: str) -> str:
    """A JSON string of plausible values for the schema's required properties."""
    parameters = function.get("parameters") or {}
    properties = parameters.get("properties") or {}
    name = str(function.get("name", ""))
    arguments: dict[str, Any] = {}
    for key in parameters.get("required") or ():
        schema = properties.get(key) or {}
        arguments[key] = _plausible(schema, text.replace(name, "").strip() or key)
    return json.dumps(arguments, ensure_ascii=False)


def _plausible(schema: dict[str, Any], text: str) -> Any:
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type", "string")
    values: dict[str, Any] = {
        "integer": 1,
        "number": 1.0,
        "boolean": True,
        "array": [],
        "object": {},
    }
    return values.get(kind, text)
