"""Usage reports for a phone screen: short aligned lines in a monospace block.

Every line fits :data:`WIDTH` columns, counted as a terminal would (a CJK character takes two),
so a report neither wraps nor scrolls sideways on a phone. Numbers are right-aligned in
columns; large ones are shortened to at most five characters (``12.3k``, ``4.56M``). The output
is Telegram HTML: a bold title and a ``<pre>`` block, everything escaped.
"""

from __future__ import annotations

import html
import unicodedata
from collections.abc import Iterable, Sequence
from datetime import datetime

from bot.service.i18n import Language, text
from bot.service.limits import QuotaState
from storage.dto import LEDGER_NO_SPARK_CODE, LEDGER_UNDELIVERED
from storage.stats import Ranked, UsageReport, WindowStats

WIDTH = 32
LABEL = 10  # label column; three value columns of 7 follow
KEY = 11  # label column of "label value" lines, a space included
COLUMN = 7
SPARK_LEVELS = "▁▂▃▄▅▆▇█"
# The ledger's codes of its own, named in the error table (Spark's codes show as numbers).
_CODE_LABELS = {LEDGER_NO_SPARK_CODE: "stats_no_code", LEDGER_UNDELIVERED: "stats_undelivered"}


def display_width(value: str) -> int:
    """Columns ``value`` takes in a monospace font (wide and full-width characters: 2)."""
    width = 0
    for char in value:
        if unicodedata.combining(char):
            continue
        wide = unicodedata.east_asian_width(char) in ("W", "F")
        width += 2 if wide or ord(char) >= 0x1F000 else 1
    return width


def fit(value: str, width: int) -> str:
    """``value`` cut to ``width`` columns (ending in "…" when cut)."""
    if display_width(value) <= width:
        return value
    out = ""
    for char in value:
        if display_width(out + char) > width - 1:
            break
        out += char
    return out + "…"


def pad(value: str, width: int, *, right: bool = False) -> str:
    """``value`` padded with spaces to ``width`` columns (right-aligned when ``right``)."""
    value = fit(value, width)
    filler = " " * (width - display_width(value))
    return filler + value if right else value + filler


def compact(number: int) -> str:
    """At most five characters: 9999, 12.3k, 123k, 1.23M, 12.3M, 1.23B."""
    if abs(number) < 10_000:
        return str(number)
    for divisor, suffix in ((1_000, "k"), (1_000_000, "M"), (1_000_000_000, "B")):
        scaled = number / divisor
        if abs(scaled) < 10:
            return f"{scaled:.2f}".rstrip("0").rstrip(".") + suffix
        if abs(scaled) < 100:
            return f"{scaled:.1f}".rstrip("0").rstrip(".") + suffix
        if abs(scaled) < 1000:
            return f"{scaled:.0f}{suffix}"
    return f"{number / 1_000_000_000:.0f}B"


def duration(ms: int | None) -> str:
    """850ms, 1.23s, 12.3s, 123s; "-" when unknown."""
    if ms is None:
        return "-"
    if ms < 1000:
        return f"{ms}ms"
    seconds = ms / 1000
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 100:
        return f"{seconds:.1f}s"
    return f"{seconds:.0f}s"


def sparkline(values: Sequence[int]) -> str:
    """One character per value, scaled to the largest; a blank for zero."""
    peak = max(values, default=0)
    if peak <= 0:
        return " " * len(values)
    top = len(SPARK_LEVELS) - 1
    return "".join(
        " " if value <= 0 else SPARK_LEVELS[min(top, value * top // peak)] for value in values
    )


def pair(label: str, value: str) -> str:
    """A "label value" line with the values aligned."""
    return pad(label, KEY - 1) + " " + value


def row(label: str, values: Iterable[str]) -> str:
    return (pad(label, LABEL) + "".join(pad(v, COLUMN, right=True) for v in values)).rstrip()


def _block(title: str, lines: Iterable[str]) -> str:
    body = "\n".join(lines).rstrip("\n")
    return f"<b>{html.escape(fit(title, WIDTH))}</b>\n<pre>{html.escape(body)}</pre>"


def _window_table(language: Language, windows: Sequence[WindowStats]) -> list[str]:
    heads = [
        text(language, "stats_today") if w.days == 1 else text(language, "stats_days", days=w.days)
        for w in windows
    ]
    lines = [row("", heads)]

    def numbers(label: str, pick: str) -> None:
        lines.append(row(text(language, label), (compact(getattr(w, pick)) for w in windows)))

    def times(label: str, pick: str) -> None:
        lines.append(row(text(language, label), (duration(getattr(w, pick)) for w in windows)))

    numbers("stats_requests", "requests")
    numbers("stats_failed", "failed_requests")
    numbers("stats_users", "users")
    numbers("stats_chats", "chats")
    numbers("stats_prompt", "prompt_tokens")
    numbers("stats_completion", "completion_tokens")
    numbers("stats_total", "total_tokens")
    times("stats_first_p50", "first_token_p50_ms")
    times("stats_first_p95", "first_token_p95_ms")
    times("stats_time_p50", "duration_p50_ms")
    times("stats_time_p95", "duration_p95_ms")
    return lines


def _error_table(language: Language, windows: Sequence[WindowStats]) -> list[str]:
    codes = [code for code, _ in windows[-1].errors]
    if not codes:
        return []
    lines = ["", text(language, "stats_errors")]
    for code in codes:
        label = _CODE_LABELS.get(code)
        label = text(language, label) if label else str(code)
        counts = [dict(w.errors).get(code, 0) for w in windows]
        lines.append(row(label, (compact(n) for n in counts)))
    return lines


def _daily(language: Language, daily: Sequence[int]) -> list[str]:
    days = len(daily)
    peak = max(daily, default=0)
    head = f"{text(language, 'stats_daily')} (max {compact(peak)})"
    left = text(language, "stats_daily_axis", days=days - 1)
    right = text(language, "stats_today")
    gap = max(1, days - display_width(left) - display_width(right))
    return ["", head, sparkline(daily), left + " " * gap + right]


def ranked_name(entry: Ranked) -> str:
    return entry.name or str(entry.id)


def _top(title: str, entries: Sequence[Ranked], total: int) -> list[str]:
    if not entries:
        return []
    lines = ["", title]
    for rank, entry in enumerate(entries, start=1):
        share = f"{round(100 * entry.total_tokens / total)}%" if total else "-"
        lines.append(
            f"{rank} "
            + pad(ranked_name(entry), WIDTH - 14)
            + pad(compact(entry.total_tokens), 6, right=True)
            + pad(share, 5, right=True)
        )
    return lines


def quota_lines(language: Language, state: QuotaState) -> list[str]:
    """The quota block shared by /usage, /quota and /stats user."""
    if state.quota is None:
        quota = text(language, "quota_unlimited")
    else:
        quota = text(language, "quota_per_day", tokens=compact(state.quota))
    quota += " " + text(language, f"quota_source_{state.source}")
    lines = [
        pair(text(language, "quota_line"), quota),
        pair(text(language, "quota_used"), f"{state.used_today:,}"),
    ]
    if state.reserved:
        lines.append(pair(text(language, "quota_reserved"), f"{state.reserved:,}"))
    if state.remaining is not None:
        lines.append(pair(text(language, "quota_left"), f"{state.remaining:,}"))
        lines.append(pair(text(language, "quota_resets"), f"{state.resets_at:%Y-%m-%d %H:%M} UTC"))
    return [fit(line, WIDTH) for line in lines]


def render_report(
    report: UsageReport,
    language: Language,
    *,
    now: datetime,
    subject: str | None = None,
    quota: QuotaState | None = None,
) -> str:
    """/stats, /stats user and /stats chat as Telegram HTML."""
    if report.scope == "all":
        title = text(language, "stats_title_all")
    else:
        key = "stats_title_user" if report.scope == "user" else "stats_title_chat"
        title = text(language, key, name=subject or str(report.subject_id))
    lines = [text(language, "stats_as_of", time=f"{now:%Y-%m-%d %H:%M}")]
    if quota is not None:
        lines += quota_lines(language, quota)
    if report.empty:
        lines += ["", text(language, "stats_empty", days=len(report.daily_tokens))]
        return _block(title, _wrap(lines))
    lines.append("")
    lines += _window_table(language, report.windows)
    lines += _error_table(language, report.windows)
    lines += _daily(language, report.daily_tokens)
    days = report.windows[-1].days
    total = report.windows[-1].total_tokens
    lines += _top(text(language, "stats_top_users", days=days), report.top_users, total)
    lines += _top(text(language, "stats_top_chats", days=days), report.top_chats, total)
    return _block(title, _wrap(lines))


def render_usage(language: Language, *, today: int, month: int, quota: QuotaState) -> str:
    """/usage: the user's own tokens today and this month, and what is left."""
    block = quota_lines(language, quota)  # its "used today" line repeats the first line
    lines = [
        pair(text(language, "usage_today"), f"{today:,}"),
        pair(text(language, "usage_month"), f"{month:,}"),
        block[0],
        *block[2:],
    ]
    return _block(text(language, "usage_title"), _wrap(lines))


def render_quota(language: Language, name: str, quota: QuotaState) -> str:
    """/quota <user> without a value: the user's quota state."""
    return _block(name, quota_lines(language, quota))


def _wrap(lines: Iterable[str]) -> list[str]:
    """Cut any line still wider than the screen (long translations, odd names)."""
    return [fit(line, WIDTH) for line in lines]
