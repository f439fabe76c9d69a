"""Drives the web app's conversations in a real browser (Debian's Chromium through
Playwright) against a node whose model echoes ("echo: …").

Usage: browser_conversations.py PAGE_URL TOKEN ARTEFACTS_DIR AXE_JS
Creates two conversations (each titled by the model after its first answer: the double
echoes), switches between them, searches, renames one, deletes one (accepting the
confirmation), reloads, and checks the phone layout's drawer; runs axe-core in both themes,
takes screenshots, and prints one JSON object with what it saw.
"""
import json
import struct
import sys
import zlib

from playwright.sync_api import sync_playwright

from browser_app import (
    WAIT, artefacts_dir, desktop_context, launch, run_axe, screenshots, send, sign_in,
)


def solid_png(width, height, rgb):
    """A PNG of one colour, written by hand (zlib and the chunk layout of the PNG spec)."""
    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))
    row = b"\x00" + bytes(rgb) * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(row * height)) + chunk(b"IEND", b""))


PICTURE_PNG = solid_png(96, 64, (220, 80, 60))
LOADED_PICTURES = ("[...document.querySelectorAll('#log .message.user .pictures img')]"
                   ".filter((image) => image.complete && image.naturalWidth > 0).length")


def shown_pictures(page):
    """How many pictures the person's messages show, loaded."""
    return page.evaluate("() => " + LOADED_PICTURES)


def titles(page):
    return page.locator("#conversation-list .title").all_inner_texts()


def wait_for_titles(page, expected):
    page.wait_for_function(
        "(expected) => JSON.stringify([...document.querySelectorAll('#conversation-list .title')]"
        ".map((e) => e.textContent)) === JSON.stringify(expected)",
        arg=expected,
        timeout=WAIT,
    )


def main() -> None:
    url, token, artefacts, axe_js = sys.argv[1:5]
    artefacts = artefacts_dir(artefacts)
    with sync_playwright() as playwright:
        browser = launch(playwright)
        context = desktop_context(browser)
        page = context.new_page()
        confirmations = []
        page.on("dialog", lambda dialog: (confirmations.append(dialog.message), dialog.accept()))
        sign_in(page, url, token)
        page.wait_for_selector("#conversations-empty:not([hidden])", timeout=WAIT)
        seen = {"empty": page.inner_text("#conversations-empty")}

        send(page, "Apples are red")
        wait_for_titles(page, ["echo: Apples are red"])
        # `updated_at` counts seconds: the second conversation is a second newer.
        page.wait_for_timeout(1100)
        page.click("#new-chat")
        seen["after_new_chat"] = page.locator("#log .message").count()
        send(page, "Pears are green")
        wait_for_titles(page, ["echo: Pears are green", "echo: Apples are red"])
        seen["current"] = page.inner_text("#conversation-list .open[aria-current='true'] .title")
        pears = page.get_attribute("#conversation-list .open[aria-current='true']", "value")

        page.click("#conversation-list .open:has-text('Apples are red')")
        page.wait_for_selector("#log .message.user:has-text('Apples are red')", timeout=WAIT)
        seen["switched"] = page.locator("#log .message .markdown, #log .message .text").all_inner_texts()
        apples = page.get_attribute("#conversation-list .open[aria-current='true']", "value")

        page.fill("#conversation-search", "PEARS")
        wait_for_titles(page, ["echo: Pears are green"])
        page.fill("#conversation-search", "")
        wait_for_titles(page, ["echo: Pears are green", "echo: Apples are red"])

        # Renamed by the person: Enter keeps the new title.
        page.click("#conversation-list li:has-text('Pears are green') .rename")
        page.fill("#conversation-list .rename-field", "Green pears")
        page.keyboard.press("Enter")
        wait_for_titles(page, ["Green pears", "echo: Apples are red"])

        violations = []
        run_axe(page, axe_js, "conversations", violations)
        screenshots(page, artefacts, "conversations-en-US")

        page.click("#conversation-list li:has-text('Apples are red') .delete")
        wait_for_titles(page, ["Green pears"])
        seen["confirmations"] = confirmations
        seen["after_delete"] = page.locator("#log .message").count()

        page.click("#conversation-list .open:has-text('Green pears')")
        page.wait_for_selector("#log .message.user:has-text('Pears are green')", timeout=WAIT)
        page.reload()
        page.wait_for_selector("#log .message.user:has-text('Pears are green')", timeout=WAIT)
        seen["after_reload"] = page.locator("#log .message.user .text").all_inner_texts()
        wait_for_titles(page, ["Green pears"])

        # Edit the last message and send it again, then regenerate the answer: each time
        # the exchange is replaced, on the page and on the node.
        finished = page.locator(".message.assistant.done")
        page.click(".message.user .edit-message")
        page.fill(".edit-form textarea", "Pears are yellow")
        page.keyboard.press("Enter")
        page.wait_for_selector(".message.assistant.done:has-text('echo: Pears are yellow')", timeout=WAIT)
        seen["after_edit"] = page.locator("#log .message .text, #log .message .markdown").all_inner_texts()
        page.click(".message.assistant .regenerate")
        page.wait_for_selector(".message.assistant.done .regenerate", timeout=WAIT)
        seen["after_regenerate"] = page.locator("#log .message .text, #log .message .markdown").all_inner_texts()
        seen["answers_after_regenerate"] = finished.count()
        page.reload()
        page.wait_for_selector("#log .message.user:has-text('Pears are yellow')", timeout=WAIT)
        seen["after_edit_reload"] = page.locator("#log .message .text, #log .message .markdown").all_inner_texts()

        # A text file goes inside the message, a picture is uploaded and shown by it, and a
        # picture of a type vision models do not take is refused with a reason.
        page.set_input_files("#attach-input", files=[
            {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"Buy milk\nand bread\n"},
        ])
        page.wait_for_selector("#attached .chip:has-text('notes.txt')", timeout=WAIT)
        page.set_input_files("#attach-input", files=[
            {"name": "pixel.png", "mimeType": "image/png", "buffer": PICTURE_PNG},
            {"name": "drawing.svg", "mimeType": "image/svg+xml", "buffer": b"<svg onload=alert(1)>"},
        ])
        page.wait_for_selector("#attached .chip.picture:has-text('pixel.png')", timeout=WAIT)
        page.wait_for_selector("#attach-problem:not([hidden])", timeout=WAIT)
        seen["refused_image"] = page.inner_text("#attach-problem")
        seen["chips"] = page.locator("#attached .chip").count()
        page.screenshot(path=str(artefacts / "attach-en-US-1280x800.png"))
        page.fill("#input", "What is in the file?")
        page.keyboard.press("Enter")
        page.wait_for_selector(".message.assistant.done:has-text('Buy milk')", timeout=WAIT)
        seen["file_answer"] = page.locator(".message.assistant.done .markdown").last.inner_text()
        seen["chips_after_send"] = page.locator("#attached .chip").count()
        seen["pictures_shown"] = shown_pictures(page)
        page.screenshot(path=str(artefacts / "picture-sent-en-US-1280x800.png"))
        page.reload()
        page.wait_for_selector("#log .message.user .pictures img", timeout=WAIT)
        page.wait_for_function(LOADED_PICTURES + " > 0", timeout=WAIT)
        seen["pictures_after_reload"] = shown_pictures(page)
        # The conversation left frees the pictures it showed.
        shown = page.get_attribute("#log .message.user .pictures img", "src")
        page.click("#new-chat")
        page.wait_for_function("() => !document.querySelector('#log .message')", timeout=WAIT)
        seen["picture_url_after_leaving"] = page.evaluate(
            "(url) => fetch(url).then(() => 'kept', () => 'revoked')", shown)

        page.set_viewport_size({"width": 360, "height": 740})
        seen["drawer_closed"] = page.is_visible("#conversations")
        page.click("#toggle-conversations")
        seen["drawer_open"] = page.is_visible("#conversations")
        page.screenshot(path=str(artefacts / "conversations-drawer-en-US-light-360x740.png"))
        run_axe(page, axe_js, "drawer", violations)
        page.keyboard.press("Escape")
        seen["drawer_after_escape"] = page.is_visible("#conversations")
        seen["axe_violations"] = violations
        seen["ids"] = {"apples": apples, "pears": pears}
        browser.close()
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
