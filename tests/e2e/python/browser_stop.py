"""Stops answers in the web app, in a real browser (Debian's Chromium through Playwright),
against a node whose model double streams a little and then keeps thinking.

Usage: browser_stop.py PAGE_URL TOKEN ARTEFACTS_DIR AXE_JS
First answer: waits for the streamed words, checks the Stop button is offered, stops it,
and sees the words kept with a "stopped" note. Second: stops an answer before its first
word, and sees the exchange leave the page and the question come back into the message
box. Reloads to see what the node kept. Runs axe-core while Stop is offered, takes
screenshots, and prints one JSON object with what it saw.
"""
import json
import sys

from playwright.sync_api import sync_playwright

from browser_app import (
    WAIT, artefacts_dir, desktop_context, launch, run_axe, screenshots, sign_in,
)


def main() -> None:
    url, token, artefacts, axe_js = sys.argv[1:5]
    artefacts = artefacts_dir(artefacts)
    seen = {}
    with sync_playwright() as playwright:
        browser = launch(playwright)
        context = desktop_context(browser)
        page = context.new_page()
        sign_in(page, url, token)
        seen["stop_hidden_at_start"] = page.is_hidden("#stop")

        page.fill("#input", "Tell me a story")
        page.keyboard.press("Enter")
        page.wait_for_selector(".message.assistant .markdown:has-text('Once upon a time')", timeout=WAIT)
        page.wait_for_selector("#stop:not([hidden])", timeout=WAIT)
        seen["stop_label"] = page.get_attribute("#stop", "aria-label")
        violations = []
        run_axe(page, axe_js, "stop offered", violations)
        screenshots(page, artefacts, "stop-offered-en-US")
        page.click("#stop")
        page.wait_for_selector(".message.assistant.stopped .stopped-note", timeout=WAIT)
        seen["kept"] = page.inner_text(".message.assistant.stopped .markdown")
        seen["note"] = page.inner_text(".message.assistant.stopped .stopped-note")
        page.wait_for_selector("#stop[hidden]", state="attached", timeout=WAIT)
        screenshots(page, artefacts, "stopped-en-US")
        # The stopped exchange is titled like any other; the model double's next answer is
        # the title, so the next message waits for it.
        page.wait_for_selector("#conversation-list .title:has-text('Stories')", timeout=WAIT)

        # Stopped before its first word: nothing of it stays, the question comes back.
        page.fill("#input", "Never mind")
        page.keyboard.press("Enter")
        page.wait_for_selector("#stop:not([hidden])", timeout=WAIT)
        seen["input_while_waiting"] = page.input_value("#input")
        page.click("#stop")
        page.wait_for_function("() => document.querySelector('#input').value === 'Never mind'",
                               timeout=WAIT)
        seen["taken_back"] = page.input_value("#input")
        seen["messages_after_take_back"] = page.locator("#log .message").count()
        seen["focused"] = page.evaluate("() => document.activeElement.id")

        page.reload()
        page.wait_for_selector("#log .message.assistant.done", timeout=WAIT)
        seen["after_reload"] = page.locator("#log .message .markdown, #log .message .text").all_inner_texts()
        seen["axe_violations"] = violations
        browser.close()
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
