"""The chat page in real headless Chromium (Playwright over the system's browser): sign in,
ask and watch the answer grow, stop, reload and find the history, and an answer full of
hostile Markdown that executes nothing."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.spark.simulator import SimulatorOptions
from tests.support.browser import chromium, chromium_missing
from tests.support.gateway import RunningGateway, start_gateway
from tests.support.web_client import WebClient

missing = chromium_missing()
pytestmark = pytest.mark.skipif(missing is not None, reason=missing or "")

if missing is None:
    from playwright.async_api import Page

# Records every state the answer's text went through, as the reader saw it.
WATCH_ANSWERS = """
window.__states = [];
new MutationObserver(() => {
  const last = [...document.querySelectorAll('.message.answer .markdown')].pop();
  if (last) {
    const text = last.textContent;
    if (window.__states[window.__states.length - 1] !== text) window.__states.push(text);
  }
}).observe(document, {subtree: true, childList: true, characterData: true});
"""


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[RunningGateway]:
    async with contextlib.AsyncExitStack() as resources:
        options = SimulatorOptions(frame_interval=0.05, chars_per_frame=10)
        yield await start_gateway(tmp_path, resources, simulator_options=options)


@pytest.fixture
async def page(gateway: RunningGateway) -> AsyncIterator[Page]:
    async with chromium() as browser:
        # The page's Content-Security-Policy would also stop the test's own probes; without
        # it, the sanitiser alone is what keeps hostile answers inert.
        context = await browser.new_context(
            viewport={"width": 1200, "height": 800}, bypass_csp=True
        )
        page = await context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        await page.add_init_script(WATCH_ANSWERS)
        yield page
        await context.close()
        assert errors == []


async def sign_in(page: Page, gateway: RunningGateway, name: str = "alice") -> str:
    key = await gateway.create_key(name)
    await page.goto(gateway.base_url + "/")
    await page.wait_for_selector("body[data-ready=true]")
    await page.fill("#key", key)
    await page.click("#signin button[type=submit]")
    await page.wait_for_selector("#app:not([hidden])")
    return key


async def ask(page: Page, text: str) -> None:
    await page.fill("#question", text)
    await page.press("#question", "Enter")


async def last_answer_done(page: Page) -> Any:
    await page.wait_for_function(
        "document.querySelectorAll('.message.answer').length > 0 && "
        "!document.querySelector('.message.answer.streaming')",
        timeout=20000,
    )
    return await page.locator(".message.answer .markdown").last.inner_text()


async def test_sign_in_ask_watch_it_grow_and_find_it_after_a_reload(
    page: Page, gateway: RunningGateway
) -> None:
    key = await sign_in(page, gateway)
    await ask(page, "[[long:300]]")
    final = await last_answer_done(page)
    states: list[str] = await page.evaluate("window.__states")
    growing = [state for state in states if state and state != final.strip()]
    assert len(growing) >= 2, states  # at least two intermediate states before the last one
    assert final.strip()
    assert final.replace("\n", "").startswith(growing[0].replace("\n", "")[:10])
    async with WebClient(gateway.base_url, key) as web:
        stored = (await web.get(1))["messages"]
    assert stored[-1]["status"] == "complete"

    await page.reload()
    await page.wait_for_selector(".message.answer")
    assert await page.locator(".message.user").first.inner_text() == "[[long:300]]"
    assert await page.locator("#conversations li").count() == 1
    assert "[[long:300]]" in await page.locator("#conversations li").first.inner_text()


async def test_the_stop_button_stops_the_answer(page: Page, gateway: RunningGateway) -> None:
    key = await sign_in(page, gateway)
    await ask(page, "[[hang-after:4]] [[long:500]]")
    await page.wait_for_function("window.__states.some((s) => s.length > 0)")
    await page.click("#stop")
    await last_answer_done(page)
    note = await page.locator(".message.answer .note").last.inner_text()
    assert "Stopped." in note or "已停止" in note
    assert await page.locator("#send").is_visible()
    async with WebClient(gateway.base_url, key) as web:
        answer = (await web.get(1))["messages"][-1]
    assert answer["status"] == "cancelled"
    assert answer["content"]


HOSTILE = (
    "[[answer:**bold** <img src=x onerror=\"window.__pwned='img'\">"
    "<script>window.__pwned='script'</script>"
    " [click](javascript:window.__pwned='link')"
    " <a href=\"javascript:window.__pwned='anchor'\">anchor</a>"
    " <svg><animate onbegin=\"window.__pwned='svg'\"/></svg>"
    " <iframe srcdoc=\"<script>parent.__pwned='iframe'</script>\"></iframe>"
    " <div style=\"background:url(javascript:window.__pwned='css')\""
    " onmouseover=\"window.__pwned='hover'\">hover</div>]]"
)


async def test_hostile_markdown_in_an_answer_executes_nothing(
    page: Page, gateway: RunningGateway
) -> None:
    await sign_in(page, gateway)
    await ask(page, HOSTILE)
    await last_answer_done(page)
    answer = page.locator(".message.answer .markdown").last
    assert await answer.locator("strong").inner_text() == "bold"  # Markdown still renders
    html = await answer.inner_html()
    for forbidden in (
        "<script",
        "onerror",
        "onbegin",
        "onmouseover",
        "javascript:",
        "<iframe",
        "style=",
    ):
        assert forbidden not in html.lower(), (forbidden, html)
    for link in await answer.locator("a").all():
        await link.click(modifiers=[])
    await answer.hover()
    # A sentinel: a question answered after the clicks, so anything they started has run.
    await ask(page, "[[answer:sentinel]]")
    assert (await last_answer_done(page)).strip() == "sentinel"
    assert await page.evaluate("window.__pwned") is None
