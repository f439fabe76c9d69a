// The person's last message and its answer: the one exchange that can be edited and sent
// again, or regenerated. Either sends a message that `replaces` the last one; the node
// drops that exchange from the conversation before answering (and keeps it if the new
// turn fails).

import type { ShownPicture } from "./attachments";
import { t } from "./i18n";

/** The last exchange on screen: the message's id and text, and where both are shown. */
export interface Exchange {
  id: string;
  text: string;
  /** The pictures the message showed: sent again with it. */
  pictures: ShownPicture[];
  question: HTMLElement;
  answer: HTMLElement;
}

/** Sends `text` (with `replaced`'s pictures) in place of `replaced` (whose elements the caller removes). */
export type Resend = (text: string, replaced: Exchange) => void;

function button(className: string, label: string, text: string): HTMLButtonElement {
  const made = document.createElement("button");
  made.type = "button";
  made.className = className;
  made.textContent = text;
  made.setAttribute("aria-label", label);
  return made;
}

export class LastExchange {
  private current: Exchange | null = null;

  constructor(private readonly resend: Resend) {}

  /** The exchange that can now be edited (none: `null`). */
  set(exchange: Exchange | null): void {
    for (const old of document.querySelectorAll(".exchange-action")) old.remove();
    this.current = exchange;
    if (!exchange) return;
    const edit = button("exchange-action edit-message", t("editMessage"), "✎");
    edit.addEventListener("click", () => this.edit(exchange));
    exchange.question.prepend(edit);
  }

  /** The exchange's answer is complete: it can be regenerated. */
  answered(answer: HTMLElement): void {
    const exchange = this.current;
    if (!exchange || exchange.answer !== answer) return;
    const again = button("exchange-action regenerate secondary", t("regenerate"), "↻ " + t("regenerate"));
    again.addEventListener("click", () => this.resend(exchange.text, exchange));
    (answer.querySelector(".answer-actions") ?? answer).append(again);
  }

  private edit(exchange: Exchange): void {
    const bubble = exchange.question.querySelector<HTMLElement>(".text");
    if (!bubble) return;
    const form = document.createElement("form");
    form.className = "edit-form";
    const field = document.createElement("textarea");
    field.value = exchange.text;
    field.rows = Math.min(8, exchange.text.split("\n").length + 1);
    field.setAttribute("aria-label", t("editMessage"));
    const save = button("save", t("save"), t("save"));
    save.type = "submit";
    const cancel = button("secondary", t("cancel"), t("cancel"));
    const close = () => {
      form.replaceWith(bubble);
      this.set(exchange);
    };
    cancel.addEventListener("click", close);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const text = field.value.trim();
      if (text || exchange.pictures.length > 0) this.resend(text, exchange);
    });
    field.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        form.requestSubmit();
      }
      if (event.key === "Escape") close();
    });
    const row = document.createElement("div");
    row.className = "row";
    row.append(save, cancel);
    form.append(field, row);
    for (const old of exchange.question.querySelectorAll(".exchange-action")) old.remove();
    bubble.replaceWith(form);
    field.focus();
  }
}
