"""A person linked across platforms, in Troupe's web app (Debian's Chromium through
Playwright): the history their Telegram account wrote (the XSS corpus, echoed back by the
model) shows in the page as their main conversation, inert, and the page continues it.

Usage: browser_linked.py PAGE_URL TOKEN ARTEFACTS_DIR AXE_JS
TOKEN is the person's own token, so the page chats as them. It prints one JSON object with
what it saw. The context bypasses the page's CSP: the sanitizer alone must keep the corpus
inert, so a hole in it would run here and show as `window.__pwned` or a dialog.
"""
import json
import sys

from playwright.sync_api import sync_playwright

from browser_app import (
    ALLOWED_TAGS, DANGER_CHECK, WAIT, artefacts_dir, desktop_context, launch, run_axe,
    screenshots, send, sign_in,
)


def main() -> None:
    url, token, artefacts, axe_js = sys.argv[1:5]
    artefacts = artefacts_dir(artefacts)
    seen = {}
    with sync_playwright() as playwright:
        browser = launch(playwright)
        context = desktop_context(browser)
        page = context.new_page()
        dialogs = []
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        sign_in(page, url, token)
        # The main conversation opens with what was said on Telegram.
        page.wait_for_selector("#log .message.assistant .markdown", timeout=WAIT)
        page.wait_for_selector(".conversation-list .shared", timeout=WAIT)
        seen["sidebar"] = page.locator(".conversation-list .open").all_inner_texts()
        seen["shared"] = page.locator(".conversation-list .shared").all_inner_texts()
        seen["asked_on_telegram"] = page.locator("#log .message.user .text").all_inner_texts()
        seen["answer_text"] = page.locator("#log .message.assistant .markdown").first.inner_text()
        seen["links"] = [
            link.get_attribute("href")
            for link in page.locator("#log .message.assistant .markdown a").all()
        ]
        seen["xss_problems"] = page.evaluate(DANGER_CHECK, ["#log .markdown", ALLOWED_TAGS])
        violations = []
        run_axe(page, axe_js, "linked", violations)
        seen["axe"] = violations
        screenshots(page, artefacts, "chat-linked")

        answer = send(page, "and from the web")
        seen["web_answer"] = answer.locator(".markdown").inner_text()
        # After a reload, the shared conversation holds both platforms' turns.
        page.reload()
        page.wait_for_selector("#status[data-state='connected']", timeout=WAIT)
        page.wait_for_selector(".message.assistant.done:has-text('and from the web')", timeout=WAIT)
        seen["after_reload"] = page.locator("#log .message.user .text").all_inner_texts()
        seen["xss_problems_after_reload"] = page.evaluate(
            DANGER_CHECK, ["#log .markdown", ALLOWED_TAGS])
        seen["pwned"] = page.evaluate("() => window.__pwned ?? null")
        seen["dialogs"] = dialogs
        context.close()
        browser.close()
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
