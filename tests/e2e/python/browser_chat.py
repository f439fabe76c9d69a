"""Drives Troupe's web chat page in a real browser (Debian's Chromium through Playwright).

Usage: browser_chat.py PAGE_URL TOKEN
Enters the token when the page asks for it, sends a message, waits for the streamed reply,
and prints one JSON object with what the page showed.
"""
import json
import shutil
import sys

from playwright.sync_api import sync_playwright

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def main() -> None:
    url, token = sys.argv[1], sys.argv[2]
    chromium = shutil.which("chromium")
    if chromium is None:
        sys.exit("chromium is not installed (scripts/test-deps installs it)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=FLAGS)
        page = browser.new_page()
        asked = []

        def answer_token_prompt(dialog):
            asked.append(dialog.message)
            dialog.accept(token)

        page.on("dialog", answer_token_prompt)
        # Without a token the first connection is refused: the page asks for one, stores it,
        # and reconnects (after 1.5 s "disconnected, retrying…").
        with page.expect_event("dialog", timeout=20000):
            page.goto(url)
        # The page's CSP forbids eval, so waits use selectors, never JavaScript strings.
        connected = "#status:text-matches('^connected')"
        page.wait_for_selector("#status:text-matches('^disconnected')", timeout=20000)
        page.wait_for_selector(connected, timeout=20000)
        page.fill("#input", "hello from a real browser")
        page.keyboard.press("Enter")
        page.wait_for_selector(".msg.assistant:text-matches('browser')", timeout=20000)
        print(json.dumps({
            "user": page.inner_text(".msg.user"),
            "assistant": page.inner_text(".msg.assistant"),
            "notice": page.inner_text("#notice"),
            "tools": [line.inner_text() for line in page.query_selector_all(".msg.tool")],
        }))
        browser.close()


if __name__ == "__main__":
    main()
