"""Drives Troupe's web app in a real browser (Debian's Chromium through Playwright) against
a node whose model is the test double that echoes ("echo: …", streamed word by word) and
calls a tool on "/tool NAME ARGS".

Usage: browser_app.py PAGE_URL TOKEN ARTEFACTS_DIR AXE_JS XSS_CORPUS
In English and in Simplified Chinese, it signs in, gets a streamed markdown answer (a
table and highlighted code, copied with its button), a tool card, and the XSS corpus back
as the model's answer and inside a tool's arguments and result. It runs axe-core on every
section in both themes, takes screenshots at 1280x800 and 360x740 in both themes into
ARTEFACTS_DIR. Then, through a proxy it can cut, it sends two messages while the page is
offline and lets the connection come back. It prints one JSON object with what it saw.

The contexts bypass the page's CSP: the sanitizer, not the CSP, must keep the corpus inert,
so a hole in it would run here and show as `window.__pwned` or a dialog.
"""
import json
import shutil
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright
from tcp_proxy import TcpProxy

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
WAIT = 20000
SIZES = [(1280, 800), (360, 740)]
THEMES = ["light", "dark"]

MARKDOWN = """Here is what you asked for:

| Planet | Moons |
|---|---|
| Earth | 1 |
| Mars | 2 |

```rust
fn main() {
    let greeting = "hello";
    println!("{greeting}");
}
```

- one
- **two**"""

# Every element an answer may hold (ours included: the code block's figure and button).
ALLOWED_TAGS = [
    "a", "blockquote", "br", "button", "code", "del", "details", "div", "em", "figcaption", "figure",
    "h1", "h2", "h3", "h4", "h5", "h6", "hr", "img", "li", "ol", "p", "pre", "span", "strong",
    "summary", "table", "tbody", "td", "th", "thead", "tr", "ul",
]

DANGER_CHECK = """([root, allowed]) => {
  const problems = [];
  for (const element of document.querySelectorAll(root + ' *')) {
    const tag = element.tagName.toLowerCase();
    if (!allowed.includes(tag)) problems.push('element ' + tag);
    for (const attribute of element.attributes) {
      const name = attribute.name.toLowerCase();
      const value = attribute.value.trim().toLowerCase();
      if (name.startsWith('on') || name === 'style' || name === 'id' || name === 'name') {
        problems.push(tag + ' has ' + name);
      }
      if (name === 'href' && !/^(https?:|mailto:|#|\\/)/.test(value)) {
        problems.push(tag + ' ' + name + '=' + value);
      }
      // Images load only from this node.
      if (name === 'src' && new URL(attribute.value, location.href).origin !== location.origin) {
        problems.push('img from ' + value);
      }
    }
  }
  return problems;
}"""

AXE_RUN = """async () => {
  const result = await axe.run(document, { resultTypes: ['violations'] });
  return result.violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.map((n) => n.target.join(' ')) }));
}"""


def chromium_path():
    """Debian's Chromium (scripts/test-deps installs it); never a downloaded one."""
    chromium = shutil.which("chromium")
    if chromium is None:
        sys.exit("chromium is not installed (scripts/test-deps installs it)")
    return chromium


def launch(playwright):
    """Debian's Chromium, headless, with the flags every browser test uses."""
    return playwright.chromium.launch(executable_path=chromium_path(), args=FLAGS)


def desktop_context(browser, locale="en-US"):
    """A 1280x800 context that bypasses the page's CSP: the sanitizer alone must hold."""
    return browser.new_context(
        locale=locale, bypass_csp=True, viewport={"width": 1280, "height": 800},
    )


def artefacts_dir(path):
    artefacts = Path(path)
    artefacts.mkdir(parents=True, exist_ok=True)
    return artefacts


def sign_in(page, url, token):
    """Opens the chat, enters the token when the sign-in dialog asks, waits to connect."""
    page.goto(url + "/")
    page.wait_for_selector("#sign-in[open]", timeout=WAIT)
    page.fill("#token", token)
    page.keyboard.press("Enter")
    page.wait_for_selector("#status[data-state='connected']", timeout=WAIT)


def send(page, text):
    """Sends `text` and waits for its answer to finish; returns the answer's element."""
    done_before = page.locator(".message.assistant.done, .message.assistant.failed").count()
    page.fill("#input", text)
    page.keyboard.press("Enter")
    answers = page.locator(".message.assistant.done, .message.assistant.failed")
    answers.nth(done_before).wait_for(timeout=WAIT)
    return answers.nth(done_before)


def tab_stops(page, count):
    """Where Tab takes the focus, from the top of the page, as `tag#id.class` strings."""
    page.locator("body").focus()
    page.evaluate("() => document.activeElement && document.activeElement.blur()")
    stops = []
    for _ in range(count):
        page.keyboard.press("Tab")
        stops.append(page.evaluate(
            "() => { const e = document.activeElement; return e.tagName.toLowerCase()"
            " + (e.id ? '#' + e.id : '') + (e.className ? '.' + String(e.className).split(' ')[0] : ''); }"
        ))
    return stops


def confirm(page, text, button):
    """Asks for a note that needs the person's yes, clicks `button`, and says what it saw."""
    asked = send(page, '/tool notes__remember {"text":"%s"}' % text)
    seen = {
        "question": asked.locator(".markdown").inner_text(),
        "waiting": asked.locator(".tool-card .tool-status").inner_text(),
        "buttons": asked.locator(".confirm button").all_inner_texts(),
    }
    finished = page.locator(".message.assistant.done, .message.assistant.failed")
    before = finished.count()
    asked.locator(".confirm " + button).click()
    finished.nth(before).wait_for(timeout=WAIT)
    seen["sent"] = page.locator(".message.user .text").last.inner_text()
    seen["disabled"] = asked.locator(".confirm button:disabled").count()
    seen["card"] = asked.locator(".tool-card").get_attribute("class")
    seen["card_status"] = asked.locator(".tool-card .tool-status").inner_text()
    seen["answer"] = finished.nth(before).locator(".markdown").inner_text()
    return seen


def run_axe(page, axe_js, where, found):
    page.add_script_tag(path=axe_js)
    for theme in THEMES:
        page.emulate_media(color_scheme=theme)
        for violation in page.evaluate(AXE_RUN):
            found.append({"where": where, "theme": theme, **violation})


def screenshots(page, artefacts, name):
    for theme in THEMES:
        page.emulate_media(color_scheme=theme)
        for width, height in SIZES:
            page.set_viewport_size({"width": width, "height": height})
            page.screenshot(path=str(artefacts / f"{name}-{theme}-{width}x{height}.png"))
    page.set_viewport_size({"width": SIZES[0][0], "height": SIZES[0][1]})


def one_language(browser, url, token, locale, artefacts, axe_js, corpus):
    context = browser.new_context(
        locale=locale, bypass_csp=True, viewport={"width": 1280, "height": 800},
    )
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=url)
    page = context.new_page()
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    seen = {"locale": locale}

    page.goto(url + "/")
    page.wait_for_selector("#sign-in[open]", timeout=WAIT)
    seen["sign_in_title"] = page.inner_text("#sign-in-title")
    sign_in(page, url, token)
    seen["status"] = page.inner_text("#status")
    seen["html_lang"] = page.get_attribute("html", "lang")
    seen["send_label"] = page.inner_text("#send")

    answer = send(page, MARKDOWN)
    seen["table"] = answer.locator("table tr").all_inner_texts()
    seen["highlighted_tokens"] = answer.locator("code.hljs span[class^='hljs-']").count()
    seen["code_language"] = answer.locator(".code-block figcaption span").inner_text()
    answer.locator(".code-block .copy").click()
    page.wait_for_selector(".code-block .copy:text-matches('^(Copied|已复制)$')", timeout=WAIT)
    seen["copied"] = page.evaluate("() => navigator.clipboard.readText()")
    seen["list_bold"] = answer.locator("li strong").all_inner_texts()
    answer.locator(".answer-actions .copy-answer").click()
    page.wait_for_selector(".copy-answer:text-matches('^(Copied|已复制)$')", timeout=WAIT)
    seen["copied_answer"] = page.evaluate("() => navigator.clipboard.readText()")
    # The message box grows with what is typed, and shrinks back once it is sent.
    height = "() => document.getElementById('input').clientHeight"
    empty = page.evaluate(height)
    page.fill("#input", "one\ntwo\nthree\nfour\nfive\nsix")
    seen["input_grows"] = page.evaluate(height) > empty + 40
    page.fill("#input", "")

    tool = send(page, '/tool calculator__evaluate {"expression":"6 * 7"}')
    card = tool.locator(".tool-card")
    seen["tool_name"] = card.locator(".tool-name").inner_text()
    seen["tool_status"] = card.locator(".tool-status").inner_text()
    seen["tool_classes"] = card.get_attribute("class")
    card.locator("summary").click()
    seen["tool_sections"] = card.locator(".tool-section pre").all_inner_texts()
    seen["tool_answer"] = tool.locator(".markdown").inner_text()

    seen["tab_stops"] = tab_stops(page, 40)

    # A tool that needs a yes: allowed once, then refused.
    seen["confirmations"] = [confirm(page, "milk", ".allow"), confirm(page, "eggs", ".refuse")]

    # The answers so far, as a person would see them.
    screenshots(page, artefacts, f"chat-{locale}")

    xss = send(page, corpus)
    hostile_tool = send(
        page,
        '/tool calculator__evaluate {"expression":"<img src=x onerror=window.__pwned=99>"}',
    )
    hostile_card = hostile_tool.locator(".tool-card")
    if hostile_card.get_attribute("open") is None:  # a failed call's card opens by itself
        hostile_card.locator("summary").click()
    seen["hostile_tool_sections"] = hostile_tool.locator(".tool-section pre").all_inner_texts()
    seen["xss_answer_text"] = xss.locator(".markdown").inner_text()
    seen["xss_problems"] = page.evaluate(DANGER_CHECK, ["#log .markdown", ALLOWED_TAGS])
    seen["tool_card_elements"] = page.evaluate(
        "() => [...document.querySelectorAll('#log .tool-section *')].map((e) => e.tagName.toLowerCase())"
    )
    # Give anything that slipped through the chance to run: hover, focus and click the links.
    for link in xss.locator("a").all():
        link.hover()
    page.wait_for_timeout(300)
    seen["pwned"] = page.evaluate("() => window.__pwned ?? null")
    seen["dialogs"] = dialogs

    violations = []
    run_axe(page, axe_js, "chat", violations)
    screenshots(page, artefacts, f"chat-xss-{locale}")

    # A reload shows the conversation as the node keeps it, through the same sanitizer,
    # and a question still waiting for a yes or no keeps its buttons.
    send(page, '/tool notes__remember {"text":"bread"}')
    page.reload()
    page.wait_for_selector("#status[data-state='connected']", timeout=WAIT)
    page.locator(".message.assistant.earlier").nth(8).wait_for(timeout=WAIT)
    restored = {
        "user_messages": page.locator(".message.user").count(),
        "answers": page.locator(".message.assistant.earlier").count(),
        "table": page.locator(".message.assistant.earlier table tr").all_inner_texts()[:3],
        "tool_statuses": page.locator(".tool-card .tool-status").all_inner_texts(),
        "tool_classes": [card.get_attribute("class") for card in page.locator(".tool-card").all()],
        "xss_problems": page.evaluate(DANGER_CHECK, ["#log .markdown", ALLOWED_TAGS]),
        "tool_card_elements": page.evaluate(
            "() => [...document.querySelectorAll('#log .tool-section *')].map((e) => e.tagName.toLowerCase())"
        ),
    }
    for link in page.locator("#log .markdown a").all():
        link.hover()
    page.wait_for_timeout(300)
    restored["pwned"] = page.evaluate("() => window.__pwned ?? null")
    waiting = page.locator(".message.assistant.earlier").last
    restored["waiting_buttons"] = waiting.locator(".confirm button").all_inner_texts()
    finished = page.locator(".message.assistant.done, .message.assistant.failed")
    before = finished.count()
    waiting.locator(".confirm .allow").click()
    finished.nth(before).wait_for(timeout=WAIT)
    restored["allowed_after_reload"] = finished.nth(before).locator(".markdown").inner_text()
    restored["dialogs"] = dialogs
    seen["restored"] = restored

    page.goto(url + "/rooms")
    page.wait_for_selector("#rooms li", timeout=WAIT)
    seen["rooms"] = page.locator("#rooms li a").all_inner_texts()
    seen["rooms_heading"] = page.inner_text(".rooms h1")
    seen["current_nav"] = page.inner_text("nav a[aria-current='page']")
    run_axe(page, axe_js, "rooms", violations)
    screenshots(page, artefacts, f"rooms-{locale}")

    # The whiteboard of a room speaks the same language.
    page.goto(url + "/canvas/team-board")
    page.wait_for_selector("#status[data-state='synced']", timeout=WAIT)
    seen["canvas"] = {
        "lang": page.get_attribute("html", "lang"),
        "status": page.inner_text("#status"),
        "count": page.inner_text("#count"),
        "nav": page.locator("header nav a").all_inner_texts(),
        "send": page.inner_text("#chat-form button"),
    }
    run_axe(page, axe_js, "canvas", violations)
    screenshots(page, artefacts, f"canvas-{locale}")
    seen["axe_violations"] = violations
    context.close()
    return seen


def offline_queue(browser, url):
    """Drops the page's connection, sends two messages while offline, and lets it back."""
    proxy = TcpProxy(int(url.rsplit(":", 1)[1]))
    through = f"http://127.0.0.1:{proxy.port}"
    context = browser.new_context(locale="en-US")
    page = context.new_page()
    sign_in(page, through, sys.argv[2])
    proxy.go_offline()
    page.wait_for_selector("#status[data-state='offline']", timeout=WAIT)
    for text in ["first while offline", "second while offline"]:
        page.fill("#input", text)
        page.keyboard.press("Enter")
    seen = {"while_offline": page.inner_text("#status")}
    proxy.go_online()
    done = page.locator(".message.assistant.done")
    done.nth(1).wait_for(timeout=WAIT)
    page.wait_for_selector("#status[data-state='connected']", timeout=WAIT)
    seen["answers"] = done.locator(".markdown").all_inner_texts()
    seen["after"] = page.inner_text("#status")

    # Typed offline, then the tab is closed: the message is sent when the page is opened
    # again, once.
    proxy.go_offline()
    page.wait_for_selector("#status[data-state='offline']", timeout=WAIT)
    page.fill("#input", "third before closing")
    page.keyboard.press("Enter")
    page.close()
    proxy.go_online()
    page = context.new_page()
    page.goto(through + "/")
    page.wait_for_selector(".message.assistant.done:has-text('echo: third before closing')", timeout=WAIT)
    page.wait_for_selector("#status[data-state='connected']", timeout=WAIT)
    seen["after_reopening"] = page.locator("#log .message .text, #log .message .markdown").all_inner_texts()
    seen["left_to_send"] = page.evaluate(
        "() => Object.keys(localStorage).filter((key) => key.startsWith('troupe.unsent.')).length")
    context.close()
    return seen


def main() -> None:
    url, token, artefacts, axe_js, corpus_path = sys.argv[1:6]
    artefacts = artefacts_dir(artefacts)
    corpus = Path(corpus_path).read_text()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=FLAGS)
        seen = {
            locale: one_language(browser, url, token, locale, artefacts, axe_js, corpus)
            for locale in ["en-US", "zh-CN"]
        }
        seen["offline"] = offline_queue(browser, url)
        browser.close()
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
