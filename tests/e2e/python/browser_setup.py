"""Drives the web app's first-run set-up in a real browser (Debian's Chromium through
Playwright) on a node that has no model and already has a troupe.toml.

Usage: browser_setup.py PAGE_URL TOKEN ARTEFACTS_DIR AXE_JS
Signs in, opens the set-up from the notice, checks that the form follows the provider
chosen, runs axe-core on the open dialog in both themes, takes screenshots, saves an
Anthropic key, and prints one JSON object with what it saw.
"""
import json
import sys

from playwright.sync_api import sync_playwright

from browser_app import FLAGS, WAIT, artefacts_dir, chromium_path, run_axe, screenshots, sign_in


def main() -> None:
    url, token, artefacts, axe_js = sys.argv[1:5]
    artefacts = artefacts_dir(artefacts)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=FLAGS)
        context = browser.new_context(locale="en-US", bypass_csp=True)
        page = context.new_page()
        sign_in(page, url, token)
        page.wait_for_selector("#notice .setup-offer", timeout=WAIT)
        seen = {"notice": page.inner_text("#notice")}
        page.click("#notice .setup-offer")
        page.wait_for_selector("#setup[open]", timeout=WAIT)
        models = {}
        for kind in ["openai", "ollama", "anthropic"]:
            page.check(f"#setup input[name='kind'][value='{kind}']")
            models[kind] = {
                "model": page.input_value("#setup-model"),
                "key_shown": page.is_visible("#setup-key"),
            }
        seen["models"] = models
        page.fill("#setup-key", "sk-ant-from-the-browser")
        violations = []
        run_axe(page, axe_js, "setup", violations)
        screenshots(page, artefacts, "setup-en-US")
        seen["axe_violations"] = violations
        page.click("#setup-form button[type='submit']")
        page.wait_for_selector("#setup-done:not([hidden])", timeout=WAIT)
        seen["done"] = page.inner_text("#setup-done-text")
        seen["lines"] = page.inner_text("#setup-lines")
        screenshots(page, artefacts, "setup-done-en-US")
        page.click("#setup-close")
        seen["closed"] = not page.is_visible("#setup")
        browser.close()
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
