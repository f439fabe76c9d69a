"""Drives the operator's dashboard (/ops) in a real browser (Debian's Chromium through
Playwright), under the page's own Content-Security-Policy.

Usage: browser_ops.py NODE_URL TOKEN TROUPE_BINARY ARTEFACTS_DIR AXE_JS
Signs in, watches the numbers while `troupe bench` sends load, then prints `KILL` and
waits for a line on stdin (the test stops the bridge's platform meanwhile) and times how
long the bridge takes to show as down. Runs axe-core, takes screenshots, and prints one
JSON object with what it saw as its last line.
"""
import json
import subprocess
import sys
import time

from playwright.sync_api import sync_playwright

from browser_app import FLAGS, SIZES, THEMES, WAIT, artefacts_dir, chromium_path, run_axe


def figure(page, label):
    """The number shown under `label` in the traffic figures."""
    text = page.inner_text(f".figure[data-figure='{label}'] .value")
    return float(text.replace(",", "")) if text not in ("–", "") else 0.0


def bridge_state(page, name):
    return page.inner_text(f"[data-bridge='{name}']")


def pictures(page, artefacts, name):
    """The whole page, from its top, in both themes at both sizes."""
    for theme in THEMES:
        page.emulate_media(color_scheme=theme)
        for width, height in SIZES:
            page.set_viewport_size({"width": width, "height": height})
            page.evaluate("window.scrollTo(0, 0)")
            page.wait_for_timeout(1100)  # the next snapshot is drawn at this size
            page.screenshot(path=str(artefacts / f"{name}-{theme}-{width}x{height}.png"), full_page=True)
    page.set_viewport_size({"width": SIZES[0][0], "height": SIZES[0][1]})


def watch_load(page, binary, url, token):
    """Runs a bench against the node and samples the page while it runs."""
    bench = subprocess.Popen(
        [binary, "bench", "--url", url.replace("http://", "ws://") + "/ws", "--sessions", "20",
         "--messages", "40", "--rate", "200", "--token", token],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    rates, messages = [], []
    while bench.poll() is None:
        rates.append(figure(page, "Turns / s"))
        messages.append(figure(page, "Messages in"))
        time.sleep(0.5)
    output = bench.stdout.read()
    # The window still holds the load for a few seconds after it ends.
    for _ in range(4):
        rates.append(figure(page, "Turns / s"))
        messages.append(figure(page, "Messages in"))
        time.sleep(0.5)
    return {"bench_exit": bench.returncode, "bench": output[-400:], "rates": rates,
            "messages": messages}


def main() -> None:
    url, token, binary, artefacts, axe_js = sys.argv[1:6]
    artefacts = artefacts_dir(artefacts)
    seen = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=FLAGS)
        # The page's own CSP stays on: everything it shows must work under it.
        context = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 800})
        page = context.new_page()
        errors = []
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.goto(url + "/ops")
        page.wait_for_selector("#sign-in:not([hidden])", timeout=WAIT)
        page.fill("#token", token)
        page.keyboard.press("Enter")
        page.wait_for_selector("#status.good", timeout=WAIT)
        seen["status"] = page.inner_text("#status")
        seen["sections"] = page.eval_on_selector_all("main h2", "nodes => nodes.map(n => n.firstChild.textContent.trim())")
        seen["before"] = figure(page, "Messages in")
        seen["load"] = watch_load(page, binary, url, token)
        page.wait_for_timeout(1500)
        seen["providers"] = page.inner_text("#providers")
        seen["stages"] = page.inner_text("#stages")
        seen["usage"] = page.inner_text("#usage")
        page.click("button[data-by='model']")
        seen["usage_by_model"] = page.inner_text("#usage")
        page.click("button[data-period='week']")
        seen["usage_week"] = page.inner_text("#usage")
        seen["failed"] = page.inner_text("#failed")
        seen["tree"] = page.inner_text("#tree")
        page.wait_for_selector("#workflows table[data-runs]", timeout=WAIT)
        seen["workflows"] = page.inner_text("#workflows")
        seen["bridge_before"] = bridge_state(page, "tg")
        pictures(page, artefacts, "ops-under-load")

        print("KILL", flush=True)
        sys.stdin.readline()
        killed = time.monotonic()
        page.wait_for_function(
            "() => document.querySelector(\"[data-bridge='tg']\")?.textContent.startsWith('down')",
            timeout=WAIT,
        )
        seen["bridge_down_after_secs"] = round(time.monotonic() - killed, 2)
        seen["bridge_after"] = bridge_state(page, "tg")
        seen["bridges"] = page.inner_text("#bridges")
        pictures(page, artefacts, "ops-bridge-down")
        seen["console_errors"] = errors

        axe_context = browser.new_context(locale="en-US", bypass_csp=True)
        axe_page = axe_context.new_page()
        axe_page.goto(url + "/ops")
        axe_page.fill("#token", token)
        axe_page.keyboard.press("Enter")
        axe_page.wait_for_selector("#status.good", timeout=WAIT)
        violations = []
        run_axe(axe_page, axe_js, "ops", violations)
        seen["axe_violations"] = violations
        browser.close()
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
