"""Two real browsers (Debian's Chromium through Playwright) on one canvas room.

Usage: browser_canvas.py NODE_URL ROOM TOKEN [SCREENSHOT_DIR]
Ada adds a sticky note, moves it and draws freehand; Bea, in a second browser, must see
each of them and Ada's named cursor, and Ada sees Bea's. Ada's connection is then dropped
by revoking her room token: she edits while it is down, the page mints a new token,
reconnects and re-syncs, and Bea sees the edit. Ada's undo removes only her last edit.
Then Ada asks the assistant in the chat panel (the node's model is a scripted double that
adds a note); both see its answer or its note. Prints one JSON object with what the pages
showed.
"""
import json
import shutil
import sys
import urllib.request

from playwright.sync_api import sync_playwright

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
WAIT = 20000


def open_page(browser, url, token, name):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    minted = []

    def remember_token(response):
        if response.url.endswith("/tokens") and response.request.method == "POST" and response.ok:
            minted.append(response.json()["id"])

    page.on("response", remember_token)
    page.on("dialog", lambda dialog: dialog.accept(token))
    page.goto(url)
    page.wait_for_selector("#status[data-state='synced']", timeout=WAIT)
    page.fill("#name", name)
    page.press("#name", "Enter")
    return page, minted


def board_point(page, x, y):
    box = page.locator("#board").bounding_box()
    return box["x"] + x, box["y"] + y


def drag(page, start, end, steps=8):
    page.mouse.move(*board_point(page, *start))
    page.mouse.down()
    page.mouse.move(*board_point(page, *end), steps=steps)
    page.mouse.up()


def note_x(page, text):
    note = page.locator("g[data-type='note']", has=page.locator(f".note-text:text-is('{text}')"))
    return float(note.locator("rect.note").get_attribute("x"))


def revoke(node_url, token, token_id):
    request = urllib.request.Request(
        f"{node_url}/api/v1/canvas/tokens/{token_id}", method="DELETE",
        headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request) as answer:
        return answer.status


def main() -> None:
    node_url, room, token = sys.argv[1], sys.argv[2], sys.argv[3]
    shots = sys.argv[4] if len(sys.argv) > 4 else None
    chromium = shutil.which("chromium")
    if chromium is None:
        sys.exit("chromium is not installed (scripts/test-deps installs it)")
    url = f"{node_url}/canvas/{room}"
    seen = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=FLAGS)
        ada, ada_tokens = open_page(browser, url, token, "Ada")
        bea, _ = open_page(browser, url, token, "Bea")

        # A note, typed in place.
        ada.keyboard.press("n")
        ada.mouse.click(*board_point(ada, 300, 200))
        ada.wait_for_selector("#editor", state="visible", timeout=WAIT)
        ada.keyboard.type("ship it")
        ada.keyboard.press("Enter")
        bea.wait_for_selector(".note-text:text-is('ship it')", timeout=WAIT)
        before = note_x(bea, "ship it")

        # Moved.
        ada.keyboard.press("v")
        drag(ada, (300, 200), (520, 320))
        moved = before
        for _ in range(100):
            moved = note_x(bea, "ship it")
            if abs(moved - before) > 100:
                break
            bea.wait_for_timeout(100)
        seen["moved_by"] = moved - before

        # Freehand.
        ada.keyboard.press("p")
        drag(ada, (200, 450), (420, 520), steps=20)
        bea.wait_for_selector("g[data-type='stroke']", timeout=WAIT)
        points = bea.locator("g[data-type='stroke'] polyline.stroke").get_attribute("points")
        seen["stroke_points"] = len(points.split())

        # Cursors, both ways.
        ada.mouse.move(*board_point(ada, 700, 300))
        ada.mouse.move(*board_point(ada, 720, 310))
        bea.wait_for_selector(".cursor-label:text-is('Ada')", timeout=WAIT)
        bea.mouse.move(*board_point(bea, 600, 150))
        bea.mouse.move(*board_point(bea, 610, 160))
        ada.wait_for_selector(".cursor-label:text-is('Bea')", timeout=WAIT)
        seen["people_seen_by_bea"] = bea.locator("#people .person").all_inner_texts()
        if shots:
            ada.screenshot(path=f"{shots}/canvas-ada.png")
            bea.screenshot(path=f"{shots}/canvas-bea.png")

        # A dropped connection: Ada's token is revoked; she edits while she is cut off.
        seen["revoked"] = revoke(node_url, token, ada_tokens[-1])
        ada.wait_for_selector("#status:not([data-state='synced'])", timeout=WAIT)
        ada.keyboard.press("n")
        ada.mouse.click(*board_point(ada, 300, 600))
        ada.keyboard.type("written offline")
        ada.keyboard.press("Enter")
        ada.wait_for_selector("#status[data-state='synced']", timeout=WAIT)
        bea.wait_for_selector(".note-text:text-is('written offline')", timeout=WAIT)
        seen["tokens_minted_by_ada"] = len(ada_tokens)

        # Ada's undo takes back her own last edit only.
        ada.keyboard.press("Control+z")
        bea.wait_for_selector(".note-text:text-is('written offline')", state="detached", timeout=WAIT)
        seen["notes_after_undo"] = bea.locator(".note-text").all_inner_texts()
        seen["items_after_undo"] = bea.locator("#count").inner_text()

        # The chat panel: the assistant answers, and its note reaches both boards.
        ada.fill("#chat-input", "Add a note that says the plan is ready")
        ada.keyboard.press("Enter")
        ada.wait_for_selector(".msg.assistant:text-is('I added the note.')", timeout=WAIT)
        bea.wait_for_selector(".note-text:text-is('the plan is ready')", timeout=WAIT)
        seen["assistant_tools"] = ada.locator(".msg.tool").all_inner_texts()
        seen["notes_at_the_end"] = sorted(bea.locator(".note-text").all_inner_texts())
        if shots:
            ada.screenshot(path=f"{shots}/canvas-chat.png")
            bea.screenshot(path=f"{shots}/canvas-after-assistant.png")
        browser.close()
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
