"""Where a long answer is cut into Telegram-sized parts, and how the parts join back.

Owns the cutting rules for Markdown source: parts of at most `limit` UTF-16 code units (the
unit Telegram counts in), cut at the best boundary available — a blank line or a code block's
edge, a newline, a sentence end, a space, and only as a last resort anywhere that does not break
a character cluster. A fenced code block that fits in one part is never cut; a longer one is cut
at its own newlines, the fence closed at the end of the part and re-opened (same info string)
at the start of the next one, so each part is valid Markdown on its own.

`rejoin` undoes `split_text` exactly: it recognises the fence lines the splitter added from the
fence state of the text rebuilt so far, so it needs nothing but the parts.

The one exception to exactness: Telegram rejects a message that is only whitespace, so a run
of whitespace outside code longer than a quarter of a part is shortened (head and tail kept, so
line structure and indentation survive) before splitting. Nothing visible is ever dropped.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_left, bisect_right
from dataclasses import dataclass

from bot.service.visible_text import is_blank

TELEGRAM_TEXT_LIMIT = 4096
# Below this a part could not carry a re-opened fence plus some code.
MIN_SPLIT_LIMIT = 200
# Longer "fence" lines are read as text: a re-opened fence must stay small next to the limit.
_MAX_FENCE_LINE = 48

# Characters Telegram treats as empty besides Unicode whitespace (bot.service.visible_text):
# a part made only of these is rejected as empty.
_BLANK_CHARS = r"\s\u180e\u200b-\u200f\u202e\u2060\u2800\ufeff\ufffc"
_VISIBLE = re.compile(rf"[^{_BLANK_CHARS}]")
_AFTER_BLANK_LINE = re.compile(rf"^(?:(?!\n)[{_BLANK_CHARS}])*\n", re.MULTILINE)
_ASTRAL = re.compile("[\U00010000-\U0010ffff]")
_OPENER = re.compile(r"(?P<indent> *)(?P<marker>`{3,}|~{3,})(?P<info>.*)", re.DOTALL)
# A partial line inside a code block that would read as a closing fence if a line ended there.
_FENCE_LIKE = re.compile(r"[ \t]*[`~]+[ \t\r]*")
_SENTENCE_END = re.compile(
    r"(?:[。！？]+|[.!?]+(?=[\s\"'”’)\]]|[^\x00-\x7f]|$))[\"'”’)\]」』）】]*[ \t]*"
)
# Spaces after visible text on the same line: indentation is no place for a cut.
_SPACE_RUN = re.compile(r"(?<=[^\n])[ \t\u3000]+")
_ZWJ = "\u200d"


def utf16_len(text: str) -> int:
    """Length of `text` in UTF-16 code units, the unit of Telegram's limits and offsets."""
    if text.isascii():
        return len(text)
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


@dataclass(frozen=True, slots=True)
class _Fence:
    """An open fenced code block, as its opening line was written."""

    opener: str
    indent: str
    marker: str

    @property
    def reopen(self) -> str:
        return self.opener + "\n"

    @property
    def close(self) -> str:
        return self.indent + self.marker


def _open_fence(line: str) -> _Fence | None:
    if len(line) > _MAX_FENCE_LINE:
        return None
    match = _OPENER.fullmatch(line)
    if match is None:
        return None
    marker = match["marker"]
    if marker[0] == "`" and "`" in match["info"]:
        return None
    return _Fence(line, match["indent"], marker)


def _closes(fence: _Fence, line: str) -> bool:
    body = line.lstrip(" ")
    run = len(body) - len(body.lstrip(fence.marker[0]))
    return run >= len(fence.marker) and not body[run:].strip(" \t\r")


@dataclass(frozen=True, slots=True)
class _FenceTracker:
    """Fence state after the complete lines fed so far; the partial last line waits.

    Only complete lines count so that a prefix ending mid-line has the same state whether or
    not the rest of that line is known: splitter and `rejoin` must agree on it.
    """

    state: _Fence | None = None
    pending: str = ""

    def fed(self, text: str) -> _FenceTracker:
        state = self.state
        lines = (self.pending + text).split("\n")
        for line in lines[:-1]:
            if state is None:
                state = _open_fence(line)
            elif _closes(state, line):
                state = None
        return _FenceTracker(state, lines[-1])


@dataclass(frozen=True, slots=True)
class _Block:
    """A fenced code block: character span, line numbers and whether it fits in one part."""

    start: int
    end: int
    opener_line: int
    closer_line: int | None
    fits: bool


class _Units:
    """UTF-16 offsets of string indexes, without a table as long as the text."""

    def __init__(self, text: str) -> None:
        self._astral = [match.start() for match in _ASTRAL.finditer(text)]

    def __call__(self, index: int) -> int:
        return index + bisect_left(self._astral, index)

    def index_within(self, start: int, budget: int, stop: int) -> int:
        """The largest index `i <= stop` with `self(i) - self(start) <= budget`."""
        base = self(start)
        low, high = start, min(stop, start + budget)
        while low < high:
            middle = (low + high + 1) // 2
            if self(middle) - base <= budget:
                low = middle
            else:
                high = middle - 1
        return low


class _Layout:
    """Line table, fence state per line and code blocks of one text."""

    def __init__(self, text: str, limit: int) -> None:
        self.text = text
        self.units = _Units(text)
        self.starts: list[int] = [0]
        self.states: list[_Fence | None] = []
        self.blocks: list[_Block] = []
        self.block_of_line: list[int | None] = []
        lines = text.split("\n")
        state: _Fence | None = None
        open_line = 0
        for index, line in enumerate(lines):
            self.states.append(state)
            self.block_of_line.append(len(self.blocks) if state is not None else None)
            if index == len(lines) - 1:
                break
            next_start = self.starts[-1] + len(line) + 1
            if state is None:
                state = _open_fence(line)
                if state is not None:
                    open_line = index
                    self.block_of_line[index] = len(self.blocks)
            elif _closes(state, line):
                self._add_block(open_line, index, next_start, limit)
                state = None
            self.starts.append(next_start)
        if state is not None:
            self._add_block(open_line, None, len(text), limit)

    def _add_block(self, opener: int, closer: int | None, end: int, limit: int) -> None:
        start = self.starts[opener]
        fits = self.units(end) - self.units(start) <= limit
        self.blocks.append(_Block(start, end, opener, closer, fits))

    def line_of(self, pos: int) -> int:
        return bisect_right(self.starts, pos) - 1

    def fence_at(self, pos: int) -> _Fence | None:
        """The fence a cut at `pos` would fall inside (the prefix's fence state)."""
        return self.states[self.line_of(pos)]


class _Splitter:
    """Greedy cutter: each part ends at the best boundary that fits in it."""

    def __init__(self, text: str, limit: int) -> None:
        self.limit = limit
        self.layout = _Layout(text, limit)
        self.text = text
        self.units = self.layout.units
        visible = [match.start() for match in _VISIBLE.finditer(text, max(0, len(text) - 64))]
        # A cut must leave visible text after it; this is the last place one may fall.
        self.last_visible = visible[-1] if visible else self._last_visible(text)
        self.first_visible = 0
        line_starts = self.layout.starts[1:]
        after_blank = [match.end() for match in _AFTER_BLANK_LINE.finditer(text)]
        block_edges = [edge for block in self.layout.blocks for edge in (block.start, block.end)]
        self.tiers: list[list[int]] = [
            sorted({*after_blank, *block_edges}),
            line_starts,
            [match.end() for match in _SENTENCE_END.finditer(text)],
            [match.end() for match in _SPACE_RUN.finditer(text)],
        ]

    @staticmethod
    def _last_visible(text: str) -> int:
        found = -1
        for match in _VISIBLE.finditer(text):
            found = match.start()
        return found

    def split(self) -> list[str]:
        text = self.text
        if is_blank(text):
            return []
        parts: list[str] = []
        pos = 0
        while True:
            fence = self.layout.fence_at(pos) if pos else None
            head = fence.reopen if fence is not None else ""
            budget = self.limit - utf16_len(head)
            first = _VISIBLE.search(text, pos)
            self.first_visible = first.start() if first is not None else len(text)
            if self.units(len(text)) - self.units(pos) <= budget:
                parts.append(head + text[pos:])
                return parts
            cut = self._choose(pos, budget)
            parts.append(head + text[pos:cut] + self._tail(cut))
            pos = cut

    def _tail(self, cut: int) -> str:
        """The closing fence added when a part ends at a line start inside a code block.

        A cut in the middle of a code line (only for lines longer than a part) gets no closing
        fence: it would need a newline the answer does not have, and Markdown closes a fence
        left open at the end of a message anyway.
        """
        fence = self.layout.fence_at(cut)
        if fence is None or self.text[cut - 1] != "\n":
            return ""
        return fence.close

    def _choose(self, pos: int, budget: int) -> int:
        units = self.units
        max_end = units.index_within(pos, budget, len(self.text))
        for keep_blocks in (True, False):
            chosen: int | None = None
            for tier in self.tiers:
                cut = self._best_in(tier, pos, max_end, budget, keep_blocks)
                if cut is None:
                    continue
                if chosen is None:
                    chosen = cut
                if 2 * (units(cut) - units(pos)) >= budget:
                    chosen = cut
                    break
            if chosen is None:
                chosen = self._hard_cut(pos, max_end, budget, keep_blocks)
            if chosen is not None:
                return chosen
        # Unreachable for texts that went through _shorten_blank_runs; still always progress.
        return max(max_end, pos + 1)

    def _best_in(
        self, tier: list[int], pos: int, max_end: int, budget: int, keep_blocks: bool
    ) -> int | None:
        index = bisect_right(tier, max_end) - 1
        while index >= 0 and tier[index] > pos:
            cut = tier[index]
            if self._allowed(pos, cut, budget, keep_blocks):
                return cut
            index -= 1
        return None

    def _hard_cut(self, pos: int, max_end: int, budget: int, keep_blocks: bool) -> int | None:
        fallback: int | None = None
        for cut in range(max_end, pos, -1):
            if not self._allowed(pos, cut, budget, keep_blocks):
                continue
            if _inside_cluster(self.text, cut):
                fallback = fallback if fallback is not None else cut
                if max_end - cut > 32:
                    return fallback
                continue
            return cut
        return fallback

    def _allowed(self, pos: int, cut: int, budget: int, keep_blocks: bool) -> bool:
        text = self.text
        layout = self.layout
        if not pos < cut < len(text):
            return False
        if text[cut - 1] == "\r" and text[cut] == "\n":
            return False
        line = layout.line_of(cut)
        at_line_start = layout.starts[line] == cut
        block_index = layout.block_of_line[line]
        if block_index is not None:
            block = layout.blocks[block_index]
            if cut > block.start and not self._cut_in_block_ok(block, line, cut, at_line_start):
                return False
            if cut > block.start and keep_blocks and block.fits:
                return False
        fence = layout.fence_at(cut)
        tail = fence.close if fence is not None and at_line_start else ""
        if self.units(cut) - self.units(pos) + utf16_len(tail) > budget:
            return False
        part_visible = layout.fence_at(pos) is not None or bool(tail) or self.first_visible < cut
        rest_visible = fence is not None or cut <= self.last_visible
        return part_visible and rest_visible

    def _cut_in_block_ok(self, block: _Block, line: int, cut: int, at_line_start: bool) -> bool:
        if line in (block.opener_line, block.closer_line):
            # Fence lines stay whole, and a part never ends right before a closing fence (the
            # next part would hold an empty block).
            return False
        if at_line_start:
            return line != block.opener_line + 1
        partial = self.text[self.layout.starts[line] : cut]
        # rejoin would take such a partial line for the closing fence the splitter adds.
        return _FENCE_LIKE.fullmatch(partial) is None


def _inside_cluster(text: str, cut: int) -> bool:
    """True when cutting before text[cut] would break a user-perceived character."""
    after = text[cut]
    before = text[cut - 1]
    if before == _ZWJ or after == _ZWJ or after in "\ufe0e\ufe0f":
        return True
    code = ord(after)
    if 0x1F3FB <= code <= 0x1F3FF or 0xE0020 <= code <= 0xE007F:
        return True
    if 0x1F1E6 <= code <= 0x1F1FF and 0x1F1E6 <= ord(before) <= 0x1F1FF:
        return True
    return unicodedata.category(after).startswith("M")


def _shorten_blank_runs(text: str, limit: int) -> str:
    """Shorten whitespace runs outside code that no part could carry with visible text."""
    keep = limit // 4
    if len(text) <= keep:
        return text
    layout: _Layout | None = None
    pieces: list[str] = []
    done = 0
    for match in re.finditer(rf"[{_BLANK_CHARS}]{{{keep + 1},}}", text):
        layout = layout or _Layout(text, limit)
        if layout.fence_at(match.end()) is not None:
            continue
        head = keep // 2
        pieces += [
            text[done : match.start() + head],
            text[match.end() - (keep - head) : match.end()],
        ]
        done = match.end()
    if not pieces:
        return text
    pieces.append(text[done:])
    return "".join(pieces)


def split_text(text: str, limit: int = TELEGRAM_TEXT_LIMIT) -> list[str]:
    """Split Markdown `text` into parts of at most `limit` UTF-16 code units each.

    Every part is non-blank; a blank `text` gives no parts. `rejoin(split_text(t)) == t` for
    every `t` without a whitespace run (outside code) longer than `limit // 4`.
    """
    if limit < MIN_SPLIT_LIMIT:
        raise ValueError(f"limit must be at least {MIN_SPLIT_LIMIT} UTF-16 units, got {limit}")
    if utf16_len(text) <= limit:
        return [] if is_blank(text) else [text]
    return _Splitter(_shorten_blank_runs(text, limit), limit).split()


def rejoin(parts: list[str]) -> str:
    """The text `split_text` was given: the parts joined, the fence lines it added dropped."""
    tracker = _FenceTracker()
    pieces: list[str] = []
    last = len(parts) - 1
    for index, part in enumerate(parts):
        body = part
        fence = tracker.state
        if fence is not None and body.startswith(fence.reopen):
            body = body[len(fence.reopen) :]
        newline = body.rfind("\n")
        if index < last and newline >= 0:
            closing = tracker.fed(body[: newline + 1]).state
            if closing is not None and body[newline + 1 :] == closing.close:
                body = body[: newline + 1]
        tracker = tracker.fed(body)
        pieces.append(body)
    return "".join(pieces)
