// The chat: the person's messages, the assistant's answers rendered as markdown while they
// stream, the tools it runs as cards, and reminders as they arrive.

import { pictureUrl, type SessionView } from "./api";
import { revokeBlobUrls } from "./pictures";
import type { Attachments, ShownPicture } from "./attachments";
import { Connection, type MessageFrame, type ServerFrame } from "./connection";
import { LastExchange } from "./exchange";
import { t } from "./i18n";
import { copyButton, renderMarkdown } from "./markdown";

/** One answer on its way: where it is shown and the text so far. */
interface Answer {
  article: HTMLElement;
  tools: HTMLElement;
  body: HTMLElement;
  text: string;
  renderQueued: boolean;
  /** What the person asked, when sent from this page: a turn stopped before its first
   * word gives it back to the message box. */
  asked?: Asked;
}

/** What the person asked: the words, the pictures shown with them, and where it is. */
interface Asked {
  text: string;
  pictures: ShownPicture[];
  question: HTMLElement;
}

/** A tool the assistant runs, shown as a collapsible card. */
interface ToolCard {
  card: HTMLDetailsElement;
  status: HTMLElement;
  startedAt: number;
}

function newMessageId(): string {
  const random = crypto.getRandomValues(new Uint32Array(2));
  return "web-" + Date.now().toString(36) + "-" + Array.from(random, (n) => n.toString(36)).join("");
}

/** JSON the model or a tool wrote, indented; anything else as it came. */
function pretty(value: unknown): string {
  return typeof value === "string" ? value : JSON.stringify(value, null, 2);
}

function element<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className: string,
  text?: string,
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** Under a finished answer: a button that copies it (as the markdown it came in). */
function addAnswerActions(answer: Answer): void {
  const actions = element("div", "answer-actions");
  const copy = copyButton(answer.text, t("copyAnswer"));
  copy.classList.add("copy-answer");
  actions.append(copy);
  answer.article.append(actions);
}

function confirmButton(label: string, word: string, className: string): HTMLButtonElement {
  const button = element("button", className, label);
  button.type = "button";
  button.value = word;
  return button;
}

function newAnswer(): Answer {
  const article = element("article", "message assistant pending");
  article.setAttribute("aria-label", t("assistant"));
  const tools = element("div", "tools");
  const body = element("div", "markdown", t("thinking"));
  article.append(tools, body);
  return { article, tools, body, text: "", renderQueued: false };
}

/** JSON when `text` is JSON, else the text itself (as the node's tool frames do). */
function jsonOrText(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

/** A failed tool call's result is `{"error": {"code", "message"}}`. */
function isToolError(result: unknown): boolean {
  return typeof result === "object" && result !== null && "error" in result;
}

function newToolCard(answer: Answer, name: string, args: unknown): ToolCard {
  const card = element("details", "tool-card running");
  const summary = element("summary", "");
  const status = element("span", "tool-status", t("toolRunning"));
  summary.append(element("span", "tool-name", name), status);
  const argumentsBlock = element("div", "tool-section");
  argumentsBlock.append(element("h4", "", t("toolArguments")), element("pre", "", pretty(args)));
  card.append(summary, argumentsBlock);
  answer.tools.append(card);
  return { card, status, startedAt: performance.now() };
}

/** Marks the card done or failed; `elapsedMs` is null for a call from the history. */
function endToolCard(tool: ToolCard, ok: boolean, result: unknown, elapsedMs: number | null): void {
  tool.card.classList.remove("running");
  tool.card.classList.add(ok ? "succeeded" : "failed");
  const done = elapsedMs === null ? t("toolDoneEarlier") : t("toolDone", { ms: elapsedMs });
  tool.status.textContent = ok ? done : t("toolFailed");
  const resultBlock = element("div", "tool-section");
  resultBlock.append(element("h4", "", t("toolResult")), element("pre", "", pretty(result)));
  tool.card.append(resultBlock);
  if (!ok) tool.card.open = true;
}

/** The pictures a message showed: from URLs at hand, or fetched (`later`). */
function pictureRow(pictures: readonly string[], later: readonly Promise<string>[]): HTMLElement {
  const row = element("div", "pictures");
  const image = () => {
    const shown = element("img", "");
    shown.alt = t("pictureSent");
    row.append(shown);
    return shown;
  };
  for (const url of pictures) image().src = url;
  for (const url of later) {
    const shown = image();
    url.then((fetched) => (shown.src = fetched)).catch(() => shown.classList.add("missing"));
  }
  return row;
}

export class ChatView {
  private readonly answers = new Map<string, Answer>();
  /** Ids of the messages sent from this page (a late restore must not show them twice). */
  private readonly sentHere = new Set<string>();
  private readonly toolCards = new Map<string, ToolCard>();
  private connection: Connection | null = null;
  /** Called when an answer is complete (the conversation list changes). */
  onAnswered: () => void = () => {};
  /** The exchange that can be edited or regenerated. */
  private readonly last = new LastExchange((text, replaced) => {
    if (!this.connection) return;
    replaced.question.remove();
    replaced.answer.remove();
    this.send(text, replaced.id, replaced.pictures);
  });

  constructor(
    private readonly log: HTMLElement,
    private readonly form: HTMLFormElement,
    private readonly input: HTMLTextAreaElement,
    /** Shown while an answer is being generated: stops it. */
    private readonly stopButton: HTMLButtonElement,
    /** The conversation shown and written to. */
    private conversationId: string,
  ) {
    stopButton.addEventListener("click", () => this.stopAnswers());
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.sendTyped();
    });
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.sendTyped();
      }
    });
    // The box grows with what is typed (up to the stylesheet's max-height), then scrolls.
    input.addEventListener("input", () => this.fitInput());
    this.showEmptyHint();
  }

  attach(connection: Connection): void {
    this.connection = connection;
  }

  /** Files attached to the next message. */
  attachments: Attachments | null = null;

  get conversation(): string {
    return this.conversationId;
  }

  /**
   * Shows another conversation: `view` as the node keeps it. Answers still on their way in
   * the one left are not shown here (they are in its history when it is opened again).
   */
  switchTo(conversationId: string, view: SessionView): void {
    this.conversationId = conversationId;
    this.answers.clear();
    this.toolCards.clear();
    this.sentHere.clear();
    this.last.set(null);
    this.showStop();
    // Pictures were uploaded into the conversation left; those it showed are freed.
    this.attachments?.clear();
    revokeBlobUrls();
    this.log.replaceChildren();
    this.showEmptyHint();
    this.restore(view);
    this.input.focus();
  }

  /** A frame from the node. */
  receive(frame: ServerFrame): void {
    switch (frame.type) {
      case "delta":
        this.extend(frame.in_reply_to, frame.payload);
        break;
      case "reply":
        this.finish(frame.in_reply_to, frame.payload, frame.awaiting === "confirmation", frame.stopped === true);
        break;
      case "error":
        this.fail(frame.in_reply_to, frame.code, frame.message);
        break;
      case "tool_call":
        this.toolStarted(frame.in_reply_to, frame.call_id, frame.name, frame.arguments);
        break;
      case "tool_result":
        this.toolEnded(frame.call_id, frame.ok, frame.result);
        break;
      case "notification":
        this.notify(frame.payload);
        break;
      case "ack":
        this.answers.get(frame.id)?.article.classList.add("stored");
        break;
      case "transcript":
        if (frame.conversation_id === this.conversationId) this.heard(frame.id, frame.payload);
        break;
    }
  }

  private sendTyped(): void {
    const text = this.input.value.trim();
    const message = this.attachments ? this.attachments.message(text) : { payload: text };
    if ("refused" in message) {
      this.attachments?.refuse(message.refused);
      return;
    }
    const payload = message.payload.trim();
    const pictures = "pictures" in message ? message.pictures : [];
    if (!payload && pictures.length === 0) return;
    if (this.send(payload, undefined, pictures)) {
      this.input.value = "";
      this.fitInput();
      this.attachments?.clear();
    }
  }

  private fitInput(): void {
    this.input.style.height = "auto";
    this.input.style.height = this.input.scrollHeight + 2 + "px";
  }

  /**
   * Sends `text` as the person's message (in place of the message `replaces` when given);
   * false when there is no connection yet.
   */
  private send(text: string, replaces?: string, pictures: ShownPicture[] = []): boolean {
    if (!this.connection) return false;
    const id = newMessageId();
    this.sentHere.add(id);
    // Pictures from the history have no local URL yet: they are fetched from the node.
    const atHand = pictures.filter((picture) => picture.url).map((picture) => picture.url);
    const fetched = pictures
      .filter((picture) => !picture.url)
      .map((picture) => pictureUrl(this.conversationId, picture.upload));
    const question = this.userMessage(text, atHand, fetched);
    this.append(question);
    const answer = this.pendingAnswer();
    answer.asked = { text, pictures, question };
    this.answers.set(id, answer);
    this.showStop();
    this.last.set({ id, text, pictures, question, answer: answer.article });
    const attachments = pictures.map((picture) => ({ content_type: "image" as const, upload_id: picture.upload }));
    this.connection.send({
      type: "message",
      id,
      conversation_id: this.conversationId,
      content_type: "text",
      payload: text,
      ...(replaces === undefined ? {} : { replaces }),
      ...(attachments.length === 0 ? {} : { attachments }),
    });
    return true;
  }

  /** What the person said aloud, as the node heard it: their message, awaiting its answer. */
  private heard(id: string, text: string): void {
    this.sentHere.add(id);
    const question = this.userMessage(text);
    question.classList.add("spoken");
    this.append(question);
    const answer = this.pendingAnswer();
    this.answers.set(id, answer);
    this.showStop();
    this.last.set({ id, text, pictures: [], question, answer: answer.article });
  }

  /**
   * Shows messages typed before a reload and not answered yet, each waiting for its
   * answer (the connection sends them again); the history restored later goes above them.
   */
  showWaiting(frames: readonly MessageFrame[]): void {
    for (const frame of frames) {
      this.sentHere.add(frame.id);
      const pictures = (frame.attachments ?? []).map((shown) => pictureUrl(this.conversationId, shown.upload_id));
      const question = this.userMessage(frame.payload, [], pictures);
      this.append(question);
      const answer = this.pendingAnswer();
      answer.asked = { text: frame.payload, pictures: [], question };
      this.answers.set(frame.id, answer);
    }
    this.showStop();
  }

  /** Stop is offered while an answer of this conversation is on its way. */
  private showStop(): void {
    this.stopButton.hidden = this.answers.size === 0;
    this.stopButton.disabled = false;
  }

  /** Asks the node to stop every answer on its way here; each ends with its own frame. */
  private stopAnswers(): void {
    if (!this.connection) return;
    let asked = false;
    for (const id of this.answers.keys()) {
      const frame = { type: "stop" as const, in_reply_to: id, conversation_id: this.conversationId };
      asked = this.connection.sendNow(frame) || asked;
    }
    if (asked) this.stopButton.disabled = true;
  }

  /**
   * The reply asks whether to run tool calls: Allow and Refuse buttons send the words the
   * node reads as yes and no, and the cards of the waiting calls say they wait.
   */
  private askToConfirm(answer: Answer): void {
    for (const status of answer.tools.querySelectorAll<HTMLElement>(".tool-card.running .tool-status")) {
      status.textContent = t("toolAwaiting");
    }
    const group = element("div", "confirm");
    group.setAttribute("role", "group");
    group.setAttribute("aria-label", t("confirmLabel"));
    const buttons = [
      confirmButton(t("allow"), "yes", "allow"),
      confirmButton(t("refuse"), "no", "refuse secondary"),
    ];
    for (const button of buttons) {
      button.addEventListener("click", () => {
        if (!this.send(button.value)) return;
        for (const each of buttons) each.disabled = true;
        button.setAttribute("aria-pressed", "true");
        // A call's time runs from the person's answer, not from the question.
        for (const tool of this.toolCards.values()) {
          if (answer.tools.contains(tool.card)) tool.startedAt = performance.now();
        }
      });
    }
    group.append(...buttons);
    answer.article.insertBefore(group, answer.article.querySelector(".answer-actions"));
  }

  private showEmptyHint(): void {
    this.log.append(element("p", "empty-hint", t("emptyChat")));
  }

  private append(node: HTMLElement): void {
    this.log.querySelector(".empty-hint")?.remove();
    const atBottom = this.log.scrollHeight - this.log.scrollTop - this.log.clientHeight < 48;
    this.log.append(node);
    if (atBottom) this.log.scrollTop = this.log.scrollHeight;
  }

  /** The person's message: its pictures (from URLs, or fetched by `later`) and its text. */
  private userMessage(text: string, pictures: readonly string[] = [], later: Promise<string>[] = []): HTMLElement {
    const article = element("article", "message user");
    article.setAttribute("aria-label", t("you"));
    if (pictures.length + later.length === 0) {
      article.append(element("div", "text", text));
      return article;
    }
    const said = element("div", "said");
    said.append(pictureRow(pictures, later));
    if (text) said.append(element("div", "text", text));
    article.append(said);
    return article;
  }


  private pendingAnswer(): Answer {
    const answer = newAnswer();
    this.append(answer.article);
    return answer;
  }

  private extend(id: string, piece: string): void {
    const answer = this.answers.get(id);
    if (!answer) return;
    answer.text += piece;
    this.queueRender(answer);
  }

  /** Renders at most once a frame, however fast the pieces come. */
  private queueRender(answer: Answer): void {
    if (answer.renderQueued) return;
    answer.renderQueued = true;
    window.requestAnimationFrame(() => {
      answer.renderQueued = false;
      this.render(answer);
    });
  }

  private render(answer: Answer): void {
    const atBottom = this.log.scrollHeight - this.log.scrollTop - this.log.clientHeight < 48;
    answer.article.classList.remove("pending");
    renderMarkdown(answer.body, answer.text);
    if (atBottom) this.log.scrollTop = this.log.scrollHeight;
  }

  private finish(id: string, text: string, asksToConfirm: boolean, stopped: boolean): void {
    const answer = this.answers.get(id);
    if (!answer) return;
    answer.text = text;
    this.render(answer);
    answer.article.classList.add("done");
    this.answers.delete(id);
    this.showStop();
    if (stopped) {
      answer.article.classList.add("stopped");
      answer.article.append(element("p", "stopped-note", t("stoppedNote")));
    }
    addAnswerActions(answer);
    if (asksToConfirm) this.askToConfirm(answer);
    else this.last.answered(answer.article);
    this.onAnswered();
  }

  private fail(id: string | undefined, code: string, message: string): void {
    const answer = id === undefined ? undefined : this.answers.get(id);
    const line = element("p", "error-text", t("errorPrefix") + ": " + message);
    line.dataset.code = code;
    line.setAttribute("role", "alert");
    if (id === undefined || answer === undefined) {
      const article = element("article", "message assistant failed");
      article.append(line);
      this.append(article);
      return;
    }
    this.answers.delete(id);
    this.showStop();
    if (code === "stopped" && answer.asked) {
      this.takeBack(answer, answer.asked);
      return;
    }
    answer.article.classList.remove("pending");
    answer.article.classList.add("failed");
    answer.body.replaceChildren(line);
    // The node kept nothing of a failed turn: there is no last exchange to replace.
    this.last.set(null);
  }

  /**
   * A turn stopped before its first word left nothing on the node: the exchange leaves the
   * page too, and what the person asked goes back into the message box to edit or resend.
   */
  private takeBack(answer: Answer, asked: Asked): void {
    asked.question.remove();
    answer.article.remove();
    this.last.set(null);
    if (this.input.value.trim() === "") {
      this.input.value = asked.text;
      this.fitInput();
      this.attachments?.restore(asked.pictures);
    }
    this.input.focus();
    if (this.log.childElementCount === 0) this.showEmptyHint();
  }

  private toolStarted(id: string, callId: string, name: string, args: unknown): void {
    const answer = this.answers.get(id);
    if (!answer) return;
    answer.article.classList.remove("pending");
    this.toolCards.set(callId, newToolCard(answer, name, args));
  }

  private toolEnded(callId: string, ok: boolean, result: unknown): void {
    const tool = this.toolCards.get(callId);
    if (!tool) return;
    this.toolCards.delete(callId);
    endToolCard(tool, ok, result, Math.round(performance.now() - tool.startedAt));
  }

  /**
   * Shows the conversation as the node keeps it (after a reload), above anything typed
   * since: the person's messages, the tools each answer ran, and the answers.
   */
  restore(view: SessionView): void {
    const earlier = document.createDocumentFragment();
    const cards = new Map<string, ToolCard>();
    let answer: Answer | null = null;
    let last: Answer | null = null;
    let asked: { id: string; text: string; pictures: ShownPicture[]; question: HTMLElement } | null = null;
    // Messages sent from this page are shown already, with their answers.
    let shownHere = false;
    for (const entry of view.history) {
      if (entry.role === "user") {
        answer = null;
        shownHere = entry.message_id !== undefined && this.sentHere.has(entry.message_id);
        if (!shownHere) {
          const images = entry.images ?? [];
          const fetched = images.map((image) => pictureUrl(this.conversationId, image.upload));
          const question = this.userMessage(entry.content, [], fetched);
          earlier.append(question);
          const pictures: ShownPicture[] = images.map((image, index) => ({
            upload: image.upload,
            url: "",
            name: t("picture") + " " + (index + 1),
          }));
          asked = entry.message_id === undefined ? null : { id: entry.message_id, text: entry.content, pictures, question };
        }
      } else if (shownHere) {
        continue;
      } else if (entry.role === "assistant") {
        if (!answer) {
          answer = newAnswer();
          earlier.append(answer.article);
        }
        for (const call of entry.tool_calls ?? []) {
          cards.set(call.id, newToolCard(answer, call.name, jsonOrText(call.arguments)));
        }
        if ((entry.tool_calls ?? []).length === 0) {
          answer.text = entry.content;
          answer.article.classList.remove("pending");
          answer.article.classList.add("done", "earlier");
          renderMarkdown(answer.body, entry.content);
          addAnswerActions(answer);
          last = answer;
          answer = null;
        }
      } else if (entry.role === "tool" && entry.tool_call_id !== undefined) {
        const card = cards.get(entry.tool_call_id);
        const result = jsonOrText(entry.content);
        if (card) endToolCard(card, !isToolError(result), result, null);
      }
    }
    if (earlier.childNodes.length === 0) return;
    if (view.awaiting === "confirmation" && last !== null) this.askToConfirm(last);
    // The newest exchange can be edited, unless this page has sent one since.
    if (asked !== null && this.sentHere.size === 0) {
      this.last.set({ ...asked, answer: last?.article ?? asked.question });
      if (last !== null && view.awaiting !== "confirmation") this.last.answered(last.article);
    }
    this.log.querySelector(".empty-hint")?.remove();
    this.log.prepend(earlier);
    this.log.scrollTop = this.log.scrollHeight;
  }

  private notify(text: string): void {
    const article = element("article", "message assistant notification");
    article.setAttribute("aria-label", t("reminder"));
    const body = element("div", "markdown");
    renderMarkdown(body, text);
    article.append(body);
    this.append(article);
  }
}
