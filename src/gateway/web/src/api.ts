// The node's REST API as the page uses it: the owner's token (kept in this browser only)
// and typed failures from its `{"error":{"code","message"}}` bodies.

import { blobUrl } from "./pictures";

const TOKEN_KEY = "troupe.token";

export function storedToken(): string {
  return localStorage.getItem(TOKEN_KEY) ?? "";
}

export function storeToken(token: string): void {
  localStorage.setItem(TOKEN_KEY, token);
}

/** A request the node refused or could not answer. */
export class ApiFailure extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

interface ErrorBody {
  error?: { code?: unknown; message?: unknown };
}

/** GETs `path` as JSON with the stored token. */
export async function getJson<T>(path: string): Promise<T> {
  return requestJson<T>(path, { headers: authorization() });
}

/** POSTs `body` as JSON to `path` with the stored token. */
export async function postJson<T>(path: string, body: unknown): Promise<T> {
  return requestJson<T>(path, {
    method: "POST",
    headers: { ...authorization(), "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
}

/** PATCHes `body` as JSON to `path` with the stored token. */
export async function patchJson<T>(path: string, body: unknown): Promise<T> {
  return requestJson<T>(path, {
    method: "PATCH",
    headers: { ...authorization(), "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
}

/** DELETEs `path` with the stored token. */
export async function deleteJson<T>(path: string): Promise<T> {
  return requestJson<T>(path, { method: "DELETE", headers: authorization() });
}

function authorization(): Record<string, string> {
  const token = storedToken();
  return token ? { Authorization: "Bearer " + token } : {};
}

async function requestJson<T>(path: string, init: RequestInit): Promise<T> {
  const answer = await fetch(path, init);
  if (answer.ok) return (await answer.json()) as T;
  let code = "http_" + answer.status;
  let message = answer.statusText;
  try {
    const body = (await answer.json()) as ErrorBody;
    if (typeof body.error?.code === "string") code = body.error.code;
    if (typeof body.error?.message === "string") message = body.error.message;
  } catch {
    // Not JSON: the status says enough.
  }
  throw new ApiFailure(answer.status, code, message);
}

/** What `GET /api/v1/info` says about the node. */
export interface NodeInfo {
  notice?: string;
  provider?: { kind: string; model: string };
  /** The most bytes a message may have. */
  max_payload_bytes?: number;
  /** The most pictures a message may show. */
  max_images_per_message?: number;
  /** Who the token speaks as: a sender's own token names its sender. */
  you?: { sender_id?: string; owner?: boolean };
}

/** A picture a message showed. */
export interface PictureRef {
  upload: string;
  media_type: string;
}

/** One entry of a conversation's history (`GET /api/v1/sessions/{key}`). */
export interface HistoryEntry {
  role: "system" | "user" | "assistant" | "tool";
  content: string;
  message_id?: string;
  images?: PictureRef[];
  tool_calls?: { id: string; name: string; arguments: string }[];
  tool_call_id?: string;
  timestamp: number;
}

/** A conversation as the node keeps it. */
export interface SessionView {
  history: HistoryEntry[];
  /** Set while tool calls wait for the person's yes or no. */
  awaiting?: "confirmation";
}

/** The web conversation `conversationId` as the node keeps it; empty when it has none. */
export async function conversation(conversationId: string): Promise<SessionView> {
  try {
    return await getJson<SessionView>(
      "/api/v1/conversations/" + encodeURIComponent(conversationId) + "?platform=ws",
    );
  } catch (error) {
    if (error instanceof ApiFailure && error.status === 404) return { history: [] };
    throw error;
  }
}

function uploadsPath(conversationId: string, suffix = ""): string {
  return "/api/v1/conversations/" + encodeURIComponent(conversationId) + "/uploads" + suffix + "?platform=ws";
}

/** What the node answers for an uploaded picture. */
export interface Uploaded {
  upload_id: string;
  media_type: string;
  bytes: number;
}

/** Uploads `file` (a picture) into the web conversation `conversationId`. */
export async function uploadPicture(conversationId: string, file: Blob): Promise<Uploaded> {
  return requestJson<Uploaded>(uploadsPath(conversationId), {
    method: "POST",
    headers: { ...authorization(), "Content-Type": file.type || "application/octet-stream" },
    body: file,
  });
}

/**
 * A URL the page can show an uploaded picture from: fetched with the token (an `<img>`
 * cannot send it) and kept as a `blob:` URL.
 */
export async function pictureUrl(conversationId: string, upload: string): Promise<string> {
  const answer = await fetch(uploadsPath(conversationId, "/" + encodeURIComponent(upload)), {
    headers: authorization(),
  });
  if (!answer.ok) throw new ApiFailure(answer.status, "http_" + answer.status, answer.statusText);
  return blobUrl(await answer.blob());
}
