"""Takes the README's screenshots of the chat page, at desktop and phone width.

Start the demo first (``python -m bot web --simulate``), then::

    python docs/screenshots.py http://127.0.0.1:8080

It asks a few questions through the page itself and writes docs/chat-desktop.png and
docs/chat-phone.png. Uses the system's Chromium (``/usr/bin/chromium``).
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")

from playwright.async_api import Page, async_playwright

HERE = Path(__file__).parent


async def ask(page: Page, text: str) -> None:
    answered = await page.locator(".message.answer:not(.streaming)").count()
    await page.fill("#question", text)
    await page.press("#question", "Enter")
    await page.wait_for_function(
        f"document.querySelectorAll('.message.answer:not(.streaming)').length > {answered}",
        timeout=60000,
    )


async def new_conversation(page: Page) -> None:
    count = await page.locator("#conversations li").count()
    await page.click("#new")
    await page.wait_for_function(
        f"document.querySelectorAll('#conversations li').length > {count} && "
        "document.querySelectorAll('.message').length === 0"
    )


async def main(base: str) -> None:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=["--no-sandbox"]
        )
        # The page's CSP forbids eval, which Playwright's waits use.
        page = await browser.new_page(viewport={"width": 1280, "height": 820}, bypass_csp=True)
        await page.goto(base + "/")
        await page.wait_for_selector("body[data-ready=true]")
        await page.select_option("#model", "lite")
        await new_conversation(page)
        await ask(page, "什么是黑洞？")
        await page.select_option("#model", "x1")
        await new_conversation(page)
        await ask(page, "Show me some Markdown [[markdown]]")
        await page.locator(".reasoning summary").last.click()
        await page.wait_for_timeout(300)
        await page.screenshot(path=str(HERE / "chat-desktop.png"))

        phone = await browser.new_page(
            viewport={"width": 390, "height": 844},
            device_scale_factor=2,
            locale="zh-CN",
            bypass_csp=True,
        )
        await phone.goto(base + "/")
        await phone.wait_for_selector("body[data-ready=true]")
        await phone.wait_for_selector(".message.answer")
        await phone.click("#menu")  # the list slides in at phone width
        await phone.wait_for_timeout(400)
        await phone.locator("#conversations li .title", has_text="什么是黑洞").first.click()
        await phone.wait_for_timeout(300)
        await phone.screenshot(path=str(HERE / "chat-phone.png"))
        await browser.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8080"))
