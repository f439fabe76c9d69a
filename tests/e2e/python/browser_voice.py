"""Talks to Troupe's web chat in a real browser (Debian's Chromium through Playwright) with
a fake microphone that plays WAV over and over: a question, then a pause.

Usage: browser_voice.py PAGE_URL TOKEN WAV SCREENSHOT_DIR AXE_JS
Signs in, switches hands-free listening on, and waits until the question is heard (its
transcript shown as the person's message), answered (the answer's text) and spoken (audio
pieces played). The question comes again while the answer plays: that speech must stop
the answer's audio (barge-in). Prints one JSON object with what the page showed, and
keeps screenshots (1280x800 while listening, 360x740 after). The page keeps its own
Content-Security-Policy throughout (the microphone's worklet loads under it); axe-core then
checks the voice controls, listening, in both themes, on a page where the policy is
bypassed to inject it.
"""
import json
import shutil
import sys
import time

from browser_app import AXE_RUN
from playwright.sync_api import sync_playwright

WAIT = 30000



def flags(wav: str) -> list:
    return [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        # A microphone that plays the WAV (looping), granted without asking.
        "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
        "--use-file-for-fake-audio-capture=" + wav,
        "--autoplay-policy=no-user-gesture-required",
    ]


def signed_in(page, url, token):
    page.goto(url)
    page.wait_for_selector("#sign-in[open]", timeout=WAIT)
    page.fill("#token", token)
    page.keyboard.press("Enter")
    page.wait_for_selector("#status[data-state='connected']", timeout=WAIT)
    page.wait_for_selector("#hands-free:not([hidden])", timeout=WAIT)


def axe_violations(browser, url, token, axe_js, shots):
    """Serious or critical axe-core findings with hands-free listening on, both themes."""
    context = browser.new_context(
        viewport={"width": 1280, "height": 800}, locale="en-US", bypass_csp=True
    )
    context.grant_permissions(["microphone"])
    page = context.new_page()
    signed_in(page, url, token)
    page.click("#hands-free")
    page.wait_for_selector("#voice-status:not([hidden])", timeout=WAIT)
    page.add_script_tag(path=axe_js)
    found = []
    for theme in ("light", "dark"):
        page.emulate_media(color_scheme=theme)
        found.extend(page.evaluate(AXE_RUN))
    page.screenshot(path=shots + "/voice-dark.png")
    context.close()
    return found


def main() -> None:
    url, token, wav, shots, axe_js = sys.argv[1:6]
    chromium = shutil.which("chromium")
    if chromium is None:
        sys.exit("chromium is not installed (scripts/test-deps installs it)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=flags(wav))
        context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="en-US")
        context.grant_permissions(["microphone"])
        page = context.new_page()
        signed_in(page, url, token)
        talk_visible = page.is_visible("#talk")
        page.click("#hands-free")
        page.wait_for_selector("body[data-voice='hands_free']", state="attached", timeout=WAIT)
        heard = page.locator(".message.user.spoken .text").first
        heard.wait_for(timeout=WAIT)
        answer = page.locator(".message.assistant.done").first
        answer.wait_for(timeout=WAIT)
        # (The page's policy forbids eval, so waits are on attributes, not functions.)
        page.wait_for_selector("body[data-audio-pieces]", state="attached", timeout=WAIT)
        pieces = int(page.evaluate("document.body.dataset.audioPieces"))
        page.screenshot(path=shots + "/voice-hands-free.png")
        # The question loops: it is said again while the answer plays, and stops it.
        page.wait_for_selector(
            "body[data-barge-ins]:not([data-barge-ins='0'])", state="attached", timeout=WAIT
        )
        speaking_after = page.evaluate("document.body.dataset.speaking")
        pressed = page.get_attribute("#hands-free", "aria-pressed")
        status = page.inner_text("#voice-status")
        page.click("#hands-free")
        page.wait_for_selector("body[data-voice='off']", state="attached", timeout=WAIT)
        # Hold to talk: held for a whole loop of the question, then released.
        spoken_before = page.locator(".message.user.spoken").count()
        page.hover("#talk")
        page.mouse.down()
        page.wait_for_selector("body[data-voice='push_to_talk']", state="attached", timeout=WAIT)
        time.sleep(4.5)
        page.mouse.up()
        page.wait_for_selector("body[data-voice='off']", state="attached", timeout=WAIT)
        held = page.locator(".message.user.spoken").nth(spoken_before)
        held.wait_for(timeout=WAIT)
        held_transcript = held.inner_text()
        # A tap too short to open the microphone leaves nothing open.
        page.hover("#talk")
        page.mouse.down()
        page.mouse.up()
        time.sleep(0.5)
        voice_after_tap = page.evaluate("document.body.dataset.voice")
        page.set_viewport_size({"width": 360, "height": 740})
        page.screenshot(path=shots + "/voice-narrow.png")
        print(json.dumps({
            "talk_visible": talk_visible,
            "pressed_while_listening": pressed,
            "transcript": heard.inner_text(),
            "answer": answer.locator(".markdown").inner_text(),
            "audio_pieces": pieces,
            "barge_ins": int(page.evaluate("document.body.dataset.bargeIns")),
            "speaking_after_barge_in": speaking_after,
            "status_while_listening": status,
            "pressed_after": page.get_attribute("#hands-free", "aria-pressed"),
            "held_transcript": held_transcript,
            "voice_after_tap": voice_after_tap,
            "axe_violations": axe_violations(browser, url, token, axe_js, shots),
        }))
        browser.close()


if __name__ == "__main__":
    main()
