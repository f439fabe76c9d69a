// Files attached to a message (picked, dropped or pasted). Text files are read in the
// browser and sent inside the message, each under its name in a fenced block, so the model
// reads them and the conversation keeps them. Pictures (PNG, JPEG, GIF, WebP) are uploaded
// into the conversation at once and shown by the message, for a vision model to see.
// Anything else is refused with a reason, and so is what would make the message larger
// than the node takes (`max_payload_bytes`) or show more pictures than it allows.

import { uploadPicture } from "./api";
import { blobUrl, revokeBlobUrl } from "./pictures";
import { t } from "./i18n";

/** The picture types vision models take. */
const PICTURE_TYPES = new Set(["image/png", "image/jpeg", "image/gif", "image/webp"]);

/** A picture uploaded for a message: its upload id, and a URL this page shows it from. */
export interface ShownPicture {
  upload: string;
  url: string;
  name: string;
}

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
  private pictures: ShownPicture[] = [];
  /** Pictures on their way to the node. */
  private uploading = 0;
  /** The most bytes a message may have (the node's `max_payload_bytes`). */
  limit = 64 * 1024;
  /** The most pictures a message may show (the node's `uploads.max_images_per_message`). */
  maxPictures = 4;

  constructor(
    private readonly chips: HTMLElement,
    private readonly problem: HTMLElement,
    picker: HTMLInputElement,
    button: HTMLButtonElement,
    dropZone: HTMLElement,
    input: HTMLTextAreaElement,
    /** The conversation pictures are uploaded into (the one shown). */
    private readonly conversation: () => string,
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

  /** The message to send: `text` with the attached files and pictures, or why not. */
  message(text: string): { payload: string; pictures: ShownPicture[] } | { refused: string } {
    if (this.uploading > 0) return { refused: t("attachUploading") };
    const payload = withFiles(text, this.files);
    if (encoder.encode(payload).length > this.limit) {
      return { refused: t("attachTooLarge", { name: this.files.map((file) => file.name).join(", ") }) };
    }
    return { payload, pictures: [...this.pictures] };
  }

  /** Forgets what was attached (once its message is sent, or the conversation changes). */
  clear(): void {
    this.files = [];
    this.pictures = [];
    this.problem.hidden = true;
    this.show();
  }

  /** Attaches pictures uploaded before again (a stopped message given back). */
  restore(pictures: readonly ShownPicture[]): void {
    const room = this.maxPictures - this.pictures.length;
    this.pictures.push(...pictures.filter((picture) => picture.url).slice(0, Math.max(0, room)));
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
      if (file.type.startsWith("image/")) {
        const refused = await this.upload(file);
        if (refused) reasons.push(refused);
        continue;
      }
      const used = encoder.encode(withFiles("", this.files)).length;
      const read = await readText(file, this.limit - used);
      if (typeof read === "string") reasons.push(read);
      else this.files.push(read);
    }
    this.problem.hidden = reasons.length === 0;
    this.problem.textContent = reasons.join(" ");
    this.show();
  }

  /** Uploads a picture into the conversation; why not, when it cannot be. */
  private async upload(file: File): Promise<string | null> {
    const name = file.name || t("picture");
    if (!PICTURE_TYPES.has(file.type)) return t("attachImage", { name });
    if (this.pictures.length + this.uploading >= this.maxPictures) {
      return t("attachTooManyPictures", { count: this.maxPictures });
    }
    this.uploading += 1;
    this.show();
    try {
      const uploaded = await uploadPicture(this.conversation(), file);
      this.pictures.push({ upload: uploaded.upload_id, url: blobUrl(file), name });
      return null;
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      return t("attachUploadFailed", { name, reason });
    } finally {
      this.uploading -= 1;
      this.show();
    }
  }

  private show(): void {
    const chip = (label: string, remove: () => void, picture?: string): HTMLElement => {
      const made = document.createElement("span");
      made.className = picture ? "chip picture" : "chip";
      if (picture) {
        const thumbnail = document.createElement("img");
        thumbnail.src = picture;
        thumbnail.alt = "";
        made.append(thumbnail);
      }
      made.append(label);
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = "×";
      button.setAttribute("aria-label", t("attachRemove", { name: label }));
      button.addEventListener("click", () => {
        remove();
        this.show();
      });
      made.append(button);
      return made;
    };
    const uploading = Array.from({ length: this.uploading }, () => {
      const pending = document.createElement("span");
      pending.className = "chip uploading";
      pending.textContent = t("attachUploadingOne");
      return pending;
    });
    this.chips.replaceChildren(
      ...this.pictures.map((picture, index) =>
        chip(picture.name, () => revokeBlobUrl(this.pictures.splice(index, 1)[0]?.url ?? ""), picture.url),
      ),
      ...uploading,
      ...this.files.map((file, index) => chip(file.name, () => this.files.splice(index, 1))),
    );
    this.chips.hidden = this.files.length + this.pictures.length + this.uploading === 0;
  }
}
