// Files attached to a message: text files (picked, dropped or pasted) are read in the
// browser and sent inside the message, each under its name in a fenced block, so the model
// reads them and the conversation keeps them. Anything else is refused with a reason, and
// so is what would make the message larger than the node takes (`max_payload_bytes`).

import { t } from "./i18n";

/** Endings read as text even when the browser gives no `text/` type. */
const TEXT_ENDINGS = new Set([
  "c", "cc", "conf", "cpp", "cs", "css", "csv", "go", "h", "hpp", "html", "ini", "java", "js",
  "json", "jsx", "kt", "log", "md", "py", "rb", "rs", "sh", "sql", "swift", "toml", "ts",
  "tsx", "txt", "xml", "yaml", "yml",
]);

/** A text file ready to send: its name and what it holds. */
export interface TextFile {
  name: string;
  text: string;
}

function ending(name: string): string {
  const dot = name.lastIndexOf(".");
  return dot < 0 ? "" : name.slice(dot + 1).toLowerCase();
}

function looksLikeText(file: File): boolean {
  return file.type.startsWith("text/") || file.type === "application/json" || TEXT_ENDINGS.has(ending(file.name));
}

/** The file's text, or why it cannot be sent. */
async function readText(file: File, room: number): Promise<TextFile | string> {
  if (file.type.startsWith("image/")) return t("attachImage", { name: file.name });
  if (!looksLikeText(file)) return t("attachNotText", { name: file.name });
  if (file.size > room) return t("attachTooLarge", { name: file.name });
  const bytes = new Uint8Array(await file.arrayBuffer());
  if (bytes.includes(0)) return t("attachNotText", { name: file.name });
  try {
    return { name: file.name, text: new TextDecoder("utf-8", { fatal: true }).decode(bytes) };
  } catch {
    return t("attachNotText", { name: file.name });
  }
}

/** `text` with every file after it, under its name, in a fence long enough for it. */
export function withFiles(text: string, files: readonly TextFile[]): string {
  let message = text;
  for (const file of files) {
    const longest = Math.max(2, ...Array.from(file.text.matchAll(/`+/g), (run) => run[0].length));
    const fence = "`".repeat(longest + 1);
    const language = ending(file.name);
    message += `\n\n**${file.name}**\n${fence}${language}\n${file.text.replace(/\n$/, "")}\n${fence}`;
  }
  return message;
}

const encoder = new TextEncoder();

export class Attachments {
  private files: TextFile[] = [];
  /** The most bytes a message may have (the node's `max_payload_bytes`). */
  limit = 64 * 1024;

  constructor(
    private readonly chips: HTMLElement,
    private readonly problem: HTMLElement,
    picker: HTMLInputElement,
    button: HTMLButtonElement,
    dropZone: HTMLElement,
    input: HTMLTextAreaElement,
  ) {
    button.addEventListener("click", () => picker.click());
    picker.addEventListener("change", () => {
      void this.add(Array.from(picker.files ?? []));
      picker.value = "";
    });
    dropZone.addEventListener("dragover", (event) => {
      if (event.dataTransfer?.types.includes("Files")) event.preventDefault();
    });
    dropZone.addEventListener("drop", (event) => {
      const dropped = Array.from(event.dataTransfer?.files ?? []);
      if (dropped.length === 0) return;
      event.preventDefault();
      void this.add(dropped);
    });
    input.addEventListener("paste", (event) => {
      const pasted = Array.from(event.clipboardData?.files ?? []);
      if (pasted.length === 0) return;
      event.preventDefault();
      void this.add(pasted);
    });
  }

  /** The message to send: `text` with the attached files, or why it is too large. */
  message(text: string): { payload: string } | { refused: string } {
    const payload = withFiles(text, this.files);
    if (encoder.encode(payload).length > this.limit) {
      return { refused: t("attachTooLarge", { name: this.files.map((file) => file.name).join(", ") }) };
    }
    return { payload };
  }

  /** Forgets the files (once their message is sent). */
  clear(): void {
    this.files = [];
    this.show();
  }

  /** Says why the message was not sent. */
  refuse(reason: string): void {
    this.problem.textContent = reason;
    this.problem.hidden = false;
  }

  private async add(picked: readonly File[]): Promise<void> {
    const reasons: string[] = [];
    for (const file of picked) {
      const used = encoder.encode(withFiles("", this.files)).length;
      const read = await readText(file, this.limit - used);
      if (typeof read === "string") reasons.push(read);
      else this.files.push(read);
    }
    this.problem.hidden = reasons.length === 0;
    this.problem.textContent = reasons.join(" ");
    this.show();
  }

  private show(): void {
    this.chips.replaceChildren(
      ...this.files.map((file, index) => {
        const chip = document.createElement("span");
        chip.className = "chip";
        chip.textContent = file.name;
        const remove = document.createElement("button");
        remove.type = "button";
        remove.textContent = "×";
        remove.setAttribute("aria-label", t("attachRemove", { name: file.name }));
        remove.addEventListener("click", () => {
          this.files.splice(index, 1);
          this.show();
        });
        chip.append(remove);
        return chip;
      }),
    );
    this.chips.hidden = this.files.length === 0;
  }
}
