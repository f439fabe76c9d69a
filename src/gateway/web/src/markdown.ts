// Markdown answers as people expect them: GitHub-flavoured markdown (tables, lists, links,
// code) parsed by `marked`, sanitized by DOMPurify, code highlighted by highlight.js, and a
// copy button on every code block. Nothing in an answer can run script or load anything:
// HTML in the markdown is shown as text, the output is sanitized all the same, links open in a new tab without a referrer, and images load only
// from this node or inline data (a remote image in an answer could carry data out in its
// URL, so it is shown as a link instead).

import DOMPurify, { type Config } from "dompurify";
import { Marked } from "marked";
import hljs from "highlight.js/lib/core";
import bash from "highlight.js/lib/languages/bash";
import c from "highlight.js/lib/languages/c";
import cpp from "highlight.js/lib/languages/cpp";
import css from "highlight.js/lib/languages/css";
import diff from "highlight.js/lib/languages/diff";
import go from "highlight.js/lib/languages/go";
import java from "highlight.js/lib/languages/java";
import javascript from "highlight.js/lib/languages/javascript";
import json from "highlight.js/lib/languages/json";
import markdownLanguage from "highlight.js/lib/languages/markdown";
import python from "highlight.js/lib/languages/python";
import rust from "highlight.js/lib/languages/rust";
import shell from "highlight.js/lib/languages/shell";
import sql from "highlight.js/lib/languages/sql";
import typescript from "highlight.js/lib/languages/typescript";
import xml from "highlight.js/lib/languages/xml";
import yaml from "highlight.js/lib/languages/yaml";
import { t } from "./i18n";

const languages = {
  bash, c, cpp, css, diff, go, java, javascript, json, markdown: markdownLanguage, python,
  rust, shell, sql, typescript, xml, yaml,
};
for (const [name, definition] of Object.entries(languages)) hljs.registerLanguage(name, definition);

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

// HTML written into an answer is shown as the text it is, as the ChatGPT and Claude apps
// do: it is the model quoting markup far more often than wanting it rendered, and an
// unclosed `<style>` or `<table>` would otherwise swallow the rest of the answer.
const marked = new Marked({
  gfm: true,
  breaks: false,
  async: false,
  renderer: {
    html({ text, block }): string {
      return block ? `<p class="raw-html">${escapeHtml(text)}</p>` : escapeHtml(text);
    },
  },
});

/** What the sanitizer lets through: formatting only, never forms, styles or frames. */
const SANITIZE: Config & { RETURN_DOM_FRAGMENT: true } = {
  RETURN_DOM_FRAGMENT: true,
  FORBID_TAGS: ["style", "form", "input", "button", "textarea", "select", "option", "iframe", "svg", "math"],
  // No ids or names either: an answer must not clobber the page's own (`#log`, `#input`).
  FORBID_ATTR: ["style", "srcset", "action", "formaction", "id", "name"],
  ALLOW_DATA_ATTR: false,
};

/** Renders `text` (markdown) into `target`, replacing what it showed. */
export function renderMarkdown(target: HTMLElement, text: string): void {
  const html = marked.parse(text, { async: false });
  const fragment = DOMPurify.sanitize(html, SANITIZE);
  secureLinks(fragment);
  keepImagesLocal(fragment);
  wrapTables(fragment);
  decorateCodeBlocks(fragment);
  target.replaceChildren(fragment);
}

function secureLinks(root: DocumentFragment): void {
  for (const link of root.querySelectorAll("a")) {
    const href = link.getAttribute("href") ?? "";
    if (href.startsWith("#")) continue;
    link.target = "_blank";
    link.rel = "noopener noreferrer nofollow";
  }
}

function isLocalImage(source: string): boolean {
  if (/^data:image\/(png|gif|jpeg|webp);/i.test(source)) return true;
  try {
    return new URL(source, location.href).origin === location.origin;
  } catch {
    return false;
  }
}

function keepImagesLocal(root: DocumentFragment): void {
  for (const image of root.querySelectorAll("img")) {
    const source = image.getAttribute("src") ?? "";
    if (source !== "" && isLocalImage(source)) {
      image.loading = "lazy";
      continue;
    }
    if (source === "") {
      // The sanitizer took a dangerous source away: say what the image was.
      const text = document.createElement("span");
      text.className = "blocked-image";
      text.textContent = t("imageBlocked", { alt: image.alt });
      image.replaceWith(text);
      continue;
    }
    const link = document.createElement("a");
    link.href = source;
    link.target = "_blank";
    link.rel = "noopener noreferrer nofollow";
    link.className = "blocked-image";
    link.textContent = t("imageBlocked", { alt: image.alt || source });
    image.replaceWith(link);
  }
}

function wrapTables(root: DocumentFragment): void {
  for (const table of root.querySelectorAll("table")) {
    const wrapper = document.createElement("div");
    wrapper.className = "table-wrap";
    wrapper.tabIndex = 0;
    table.replaceWith(wrapper);
    wrapper.appendChild(table);
  }
}

function languageOf(code: HTMLElement): string | null {
  const match = /(?:^|\s)language-([\w+-]+)/.exec(code.className);
  const name = match?.[1]?.toLowerCase() ?? null;
  return name !== null && hljs.getLanguage(name) ? name : null;
}

function decorateCodeBlocks(root: DocumentFragment): void {
  for (const pre of root.querySelectorAll("pre")) {
    const code = pre.querySelector("code");
    if (!code) continue;
    const source = code.textContent ?? "";
    const language = languageOf(code);
    if (language !== null) {
      // highlight.js escapes the text it is given; its output is sanitized once more all the same.
      const highlighted = hljs.highlight(source, { language, ignoreIllegals: true }).value;
      code.replaceChildren(DOMPurify.sanitize(highlighted, SANITIZE));
      code.classList.add("hljs");
    }
    const block = document.createElement("figure");
    block.className = "code-block";
    const header = document.createElement("figcaption");
    const label = document.createElement("span");
    label.textContent = language ?? t("code");
    header.append(label, copyButton(source));
    pre.tabIndex = 0;
    pre.replaceWith(block);
    block.append(header, pre);
  }
}

/** A button that copies `source`, says whether it did, then reads "Copy" again. */
export function copyButton(source: string, description?: string): HTMLButtonElement {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "copy";
  button.textContent = t("copy");
  // A description, not a name: the name stays the visible "Copy" / "Copied".
  if (description !== undefined) button.title = description;
  button.addEventListener("click", () => {
    void copyText(source).then((copied) => {
      button.textContent = copied ? t("copied") : t("copyFailed");
      window.setTimeout(() => (button.textContent = t("copy")), 2000);
    });
  });
  return button;
}

/** Copies `text`: the Clipboard API where the page is a secure context, else a selection. */
async function copyText(text: string): Promise<boolean> {
  if (navigator.clipboard && window.isSecureContext) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch {
      // Fall through to the selection.
    }
  }
  const area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.className = "offscreen";
  document.body.appendChild(area);
  area.select();
  const copied = document.execCommand("copy");
  area.remove();
  return copied;
}
