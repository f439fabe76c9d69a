// The sidebar: the person's conversations on this node, newest first, each with the title
// the assistant gave it after the first exchange (or the person's own), else the first
// thing they said; with New chat, search over titles and everything said, rename, delete.
// A new conversation's id is `<sender>/<random>`, one the sender owns. The sender's main
// conversation is shared with their other platforms when the owner linked them: the node
// lists it with those platforms, and the item says so.

import { ApiFailure, deleteJson, getJson, patchJson, postJson } from "./api";
import { language, t } from "./i18n";

export interface ConversationSummary {
  key: string;
  conversation_id: string;
  updated_at: number;
  first_message: string;
  messages: number;
  title: string | null;
  /** The person's other linked accounts (`telegram:42`) when the conversation is shared. */
  shared_with?: string[];
}

export interface ConversationActions {
  open(conversationId: string): void;
  created(): string;
  deleted(conversationId: string): void;
}

const SEARCH_PAUSE_MS = 250;

/** The names people know the platforms by; another platform shows as the node names it. */
const PLATFORM_NAMES: Record<string, string> = {
  api: "API",
  discord: "Discord",
  slack: "Slack",
  telegram: "Telegram",
  whatsapp: "WhatsApp",
};

function platformName(platform: string): string {
  return PLATFORM_NAMES[platform] ?? platform;
}

export function newConversationId(sender: string): string {
  const random = crypto.getRandomValues(new Uint32Array(2));
  return sender + "/" + Array.from(random, (n) => n.toString(36)).join("");
}

export class ConversationList {
  private current = "";
  private query = "";
  private searchTimer: number | null = null;
  /** What the last listing said, by conversation id. */
  private known = new Map<string, ConversationSummary>();
  /** Conversations this page asked the assistant to title. */
  private readonly titling = new Set<string>();

  constructor(
    private readonly sender: string,
    private readonly list: HTMLElement,
    private readonly problem: HTMLElement,
    search: HTMLInputElement,
    newChat: HTMLButtonElement,
    private readonly actions: ConversationActions,
  ) {
    search.addEventListener("input", () => {
      if (this.searchTimer !== null) window.clearTimeout(this.searchTimer);
      this.searchTimer = window.setTimeout(() => {
        this.query = search.value.trim();
        void this.refresh();
      }, SEARCH_PAUSE_MS);
    });
    newChat.addEventListener("click", () => {
      this.current = this.actions.created();
      this.markCurrent();
    });
  }

  /** Marks `conversationId` as the one shown. */
  setCurrent(conversationId: string): void {
    this.current = conversationId;
    this.markCurrent();
  }

  /** Lists the conversations again (after an answer, a delete, a search). */
  async refresh(): Promise<void> {
    const query = new URLSearchParams({ sender: this.sender, platform: "ws", limit: "200" });
    if (this.query) query.set("q", this.query);
    try {
      const listed = await getJson<{ conversations: ConversationSummary[] }>(
        "/api/v1/conversations?" + query.toString(),
      );
      if (!this.query) {
        this.known = new Map(listed.conversations.map((item) => [item.conversation_id, item]));
      }
      this.show(listed.conversations);
    } catch (error) {
      const message = error instanceof ApiFailure ? error.message : String(error);
      this.problem.hidden = false;
      this.problem.textContent = t("conversationsFailed", { message });
    }
  }

  private show(conversations: readonly ConversationSummary[]): void {
    this.list.replaceChildren(...conversations.map((item) => this.item(item)));
    this.problem.hidden = conversations.length > 0;
    this.problem.textContent = this.query ? t("noMatches") : t("noConversations");
    this.markCurrent();
  }

  /**
   * After an answer in `conversationId`: lists again, and has the assistant title the
   * conversation when it has no title yet (once per conversation on this page). A titled
   * conversation already at the top only gets its time changed here: the node is not asked
   * to list everything again for every answer.
   */
  async answered(conversationId: string): Promise<void> {
    const known = this.known.get(conversationId);
    const newest = this.known.keys().next().value;
    if (known?.title && !this.query && newest === conversationId) {
      known.updated_at = Math.floor(Date.now() / 1000);
      this.show([...this.known.values()]);
      return;
    }
    await this.refresh();
    if (this.known.get(conversationId)?.title || this.titling.has(conversationId)) return;
    this.titling.add(conversationId);
    try {
      await postJson(this.path(conversationId, "/title"), {});
    } catch {
      return; // Untitled, it is shown by its first message.
    }
    await this.refresh();
  }

  private path(conversationId: string, suffix = ""): string {
    return "/api/v1/conversations/" + encodeURIComponent(conversationId) + suffix + "?platform=ws";
  }

  private markCurrent(): void {
    for (const button of this.list.querySelectorAll<HTMLButtonElement>("button.open")) {
      if (button.value === this.current) button.setAttribute("aria-current", "true");
      else button.removeAttribute("aria-current");
    }
  }

  private item(summary: ConversationSummary): HTMLLIElement {
    const title = summary.title || summary.first_message || t("untitled");
    const item = document.createElement("li");
    const open = document.createElement("button");
    open.type = "button";
    open.className = "open";
    open.value = summary.conversation_id;
    const label = document.createElement("span");
    label.className = "title";
    label.textContent = title;
    const when = document.createElement("span");
    when.className = "when";
    when.textContent = new Date(summary.updated_at * 1000).toLocaleString(language, {
      dateStyle: "short",
      timeStyle: "short",
    });
    open.append(label, when);
    if (summary.shared_with?.length) {
      const shared = document.createElement("span");
      shared.className = "shared";
      const platforms = [...new Set(summary.shared_with.map((member) => platformName(member.split(":")[0] ?? member)))];
      shared.textContent = t("sharedWith", { platforms: platforms.join(", ") });
      open.append(shared);
    }
    open.addEventListener("click", () => {
      this.setCurrent(summary.conversation_id);
      this.actions.open(summary.conversation_id);
    });
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "delete";
    remove.textContent = "×";
    remove.setAttribute("aria-label", t("deleteConversation", { title }));
    remove.addEventListener("click", () => void this.remove(summary.conversation_id, title));
    const rename = document.createElement("button");
    rename.type = "button";
    rename.className = "rename";
    rename.textContent = "✎";
    rename.setAttribute("aria-label", t("renameConversation", { title }));
    rename.addEventListener("click", () => this.startRename(item, summary.conversation_id, title));
    item.append(open, rename, remove);
    return item;
  }

  /** Turns the item into a field: Enter saves the new title, Escape or leaving it cancels. */
  private startRename(item: HTMLLIElement, conversationId: string, title: string): void {
    const field = document.createElement("input");
    field.className = "rename-field";
    field.value = title;
    field.maxLength = 80;
    field.setAttribute("aria-label", t("titleLabel"));
    let done = false;
    const finish = async (save: boolean) => {
      if (done) return;
      done = true;
      const wanted = field.value.trim();
      if (save && wanted && wanted !== title) {
        try {
          await patchJson(this.path(conversationId), { title: wanted });
        } catch (error) {
          const message = error instanceof ApiFailure ? error.message : String(error);
          this.problem.hidden = false;
          this.problem.textContent = t("conversationsFailed", { message });
        }
      }
      await this.refresh();
    };
    field.addEventListener("keydown", (event) => {
      if (event.key === "Enter") void finish(true);
      if (event.key === "Escape") {
        event.stopPropagation();
        void finish(false);
      }
    });
    field.addEventListener("blur", () => void finish(false));
    item.replaceChildren(field);
    field.focus();
    field.select();
  }

  private async remove(conversationId: string, title: string): Promise<void> {
    if (!window.confirm(t("deleteConfirm", { title }))) return;
    try {
      await deleteJson(this.path(conversationId));
    } catch (error) {
      if (!(error instanceof ApiFailure && error.status === 404)) {
        const message = error instanceof ApiFailure ? error.message : String(error);
        this.problem.hidden = false;
        this.problem.textContent = t("conversationsFailed", { message });
        return;
      }
    }
    this.actions.deleted(conversationId);
    await this.refresh();
  }
}
