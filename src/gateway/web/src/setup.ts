// The first-run set-up: while no model is configured and the page is opened on the machine
// Troupe runs on, the notice offers a form that writes troupe.toml (or says which lines to
// add to the one that exists) through `POST /api/v1/setup`.

import { ApiFailure, getJson, postJson } from "./api";
import { t } from "./i18n";

type Kind = "openai" | "anthropic" | "ollama";

/** What each provider starts with in the form. */
const DEFAULTS: Record<Kind, { model: string; url: string; needsKey: boolean }> = {
  openai: { model: "gpt-4o-mini", url: "https://api.openai.com/v1", needsKey: true },
  anthropic: { model: "claude-sonnet-4-5", url: "https://api.anthropic.com", needsKey: true },
  ollama: { model: "llama3.2", url: "http://127.0.0.1:11434/v1", needsKey: false },
};

interface SetupStatus {
  offered: boolean;
}

interface SetupOutcome {
  written: boolean;
  config_path: string;
  lines: string;
  set_variable?: string;
}

function field<T extends HTMLElement>(id: string): T {
  const found = document.getElementById(id);
  if (!found) throw new Error("the page has no #" + id);
  return found as T;
}

function chosenKind(form: HTMLFormElement): Kind {
  const value = new FormData(form).get("kind");
  return value === "anthropic" || value === "ollama" ? value : "openai";
}

/** Fits the form to the provider chosen: its model, its address, whether it needs a key. */
function fitTo(kind: Kind): void {
  const defaults = DEFAULTS[kind];
  const key = field<HTMLInputElement>("setup-key");
  key.required = defaults.needsKey;
  field("setup-key-row").hidden = !defaults.needsKey;
  field<HTMLInputElement>("setup-model").value = defaults.model;
  field<HTMLInputElement>("setup-url").placeholder = defaults.url;
}

function showOutcome(outcome: SetupOutcome): void {
  const text = outcome.written
    ? t("setupWritten", { path: outcome.config_path })
    : outcome.set_variable
      ? t("setupAddLinesAndVariable", { path: outcome.config_path, variable: outcome.set_variable })
      : t("setupAddLines", { path: outcome.config_path });
  field("setup-done-text").textContent = text;
  field("setup-lines").textContent = outcome.lines;
  field("setup-form").hidden = true;
  field("setup-done").hidden = false;
  field<HTMLButtonElement>("setup-close").focus();
}

async function submit(form: HTMLFormElement): Promise<void> {
  const problem = field("setup-error");
  problem.hidden = true;
  const url = field<HTMLInputElement>("setup-url").value.trim();
  const kind = chosenKind(form);
  const body: Record<string, string> = { kind, model: field<HTMLInputElement>("setup-model").value };
  if (DEFAULTS[kind].needsKey) body.api_key = field<HTMLInputElement>("setup-key").value;
  if (url) body.base_url = url;
  try {
    showOutcome(await postJson<SetupOutcome>("/api/v1/setup", body));
  } catch (error) {
    const message = error instanceof ApiFailure ? error.message : String(error);
    problem.textContent = t("setupFailed", { message });
    problem.hidden = false;
  }
}

/** Adds the set-up button to `notice` when the node offers the set-up to this page. */
export async function offerSetup(notice: HTMLElement): Promise<void> {
  let status: SetupStatus;
  try {
    status = await getJson<SetupStatus>("/api/v1/setup");
  } catch {
    return;
  }
  if (!status.offered || notice.querySelector("button")) return;
  const dialog = field<HTMLDialogElement>("setup");
  const form = field<HTMLFormElement>("setup-form");
  const open = document.createElement("button");
  open.type = "button";
  open.className = "setup-offer";
  open.textContent = t("setupOffer");
  open.addEventListener("click", () => {
    fitTo(chosenKind(form));
    dialog.showModal();
  });
  notice.append(" ", open);
  form.addEventListener("change", (event) => {
    if ((event.target as HTMLInputElement).name === "kind") fitTo(chosenKind(form));
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    void submit(form);
  });
  field("setup-cancel").addEventListener("click", () => dialog.close());
  field("setup-close").addEventListener("click", () => dialog.close());
}
