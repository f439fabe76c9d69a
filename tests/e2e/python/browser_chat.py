"""Drives Troupe's web chat in a real browser (Debian's Chromium through Playwright).

Usage: browser_chat.py PAGE_URL TOKEN
Signs in with the token when the page asks for it, sends a message, waits for the streamed
answer, and prints one JSON object with what the page showed.
"""
import json
import shutil
import sys

from playwright.sync_api import sync_playwright

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
WAIT = 20000


def main() -> None:
    url, token = sys.argv[1], sys.argv[2]
    chromium = shutil.which("chromium")
    if chromium is None:
        sys.exit("chromium is not installed (scripts/test-deps installs it)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=FLAGS)
        page = browser.new_page()
        # Without a token the node refuses the connection: the page asks for the token in
        # its sign-in dialog, stores it, and connects again.
        page.goto(url)
        page.wait_for_selector("#sign-in[open]", timeout=WAIT)
        page.fill("#token", token)
        page.keyboard.press("Enter")
        page.wait_for_selector("#status[data-state='connected']", timeout=WAIT)
        page.fill("#input", "hello from a real browser")
        page.keyboard.press("Enter")
        answer = page.locator(".message.assistant.done")
        answer.wait_for(timeout=WAIT)
        tools = []
        for card in answer.locator(".tool-card").all():
            card.locator("summary").click()
            tools.append({
                "name": card.locator(".tool-name").inner_text(),
                "status": card.locator(".tool-status").inner_text(),
                "classes": card.get_attribute("class"),
                "sections": card.locator(".tool-section pre").all_inner_texts(),
            })
        print(json.dumps({
            "user": page.inner_text(".message.user .text"),
            "assistant": answer.locator(".markdown").inner_text(),
            "notice": page.inner_text("#notice"),
            "tools": tools,
        }))
        browser.close()


if __name__ == "__main__":
    main()
