// The page's WebSocket to `/ws`: says hello with the sender id and token, reconnects on
// its own with a growing pause, and keeps every message until it is answered. A message
// typed while offline waits here and goes out on reconnect; one whose answer was lost
// with a dropped connection is sent again with the same id, and the node answers a
// repeated id with its first reply, so each message is answered once.

import { storedToken } from "./api";

/** A message the person sends (the protocol's `message` frame). */
export interface MessageFrame {
  type: "message";
  id: string;
  conversation_id: string;
  content_type: "text";
  payload: string;
  /** The id of the person's last message, which this one replaces. */
  replaces?: string;
  /** Pictures uploaded into the conversation that the message shows. */
  attachments?: { content_type: "image"; upload_id: string }[];
}

/** Stops generating the answer to the message `in_reply_to`. */
export interface StopFrame {
  type: "stop";
  in_reply_to: string;
  conversation_id: string;
}

/** Frames that drive the page's microphone and speaker (docs/protocol.md, "Voice"). */
export type VoiceFrame =
  | { type: "voice_ready"; mode: "push_to_talk" | "hands_free"; rate: number; wake_word: string | null; speaks: boolean }
  | { type: "wake_word"; name: string }
  | { type: "wake_timeout" }
  | { type: "voice_started" }
  | { type: "voice_stopped" }
  | { type: "voice_heard_nothing" }
  | { type: "transcript"; id: string; conversation_id: string; payload: string }
  | { type: "speech"; in_reply_to: string; rate: number; width: number; channels: number }
  | { type: "speech_end"; in_reply_to: string }
  | { type: "speech_stopped"; in_reply_to: string; reason: "interrupted" | "failed"; message?: string };

/** What the page sends to open, end or close its microphone, or to silence the assistant. */
export type VoiceRequest =
  | { type: "voice_start"; mode: "push_to_talk" | "hands_free"; conversation_id: string; wake_word?: boolean }
  | { type: "voice_end" }
  | { type: "voice_stop" }
  | { type: "speech_stop" };

/** Every frame the node sends on `/ws`. */
export type ServerFrame =
  | VoiceFrame
  | { type: "ack"; id: string }
  | { type: "delta"; in_reply_to: string; payload: string }
  | { type: "reply"; id: string; in_reply_to: string; payload: string; awaiting?: "confirmation"; stopped?: boolean }
  | { type: "stop_result"; in_reply_to: string; outcome: "stopping" | "not_running" }
  | { type: "error"; in_reply_to?: string; code: string; message: string }
  | { type: "tool_call"; in_reply_to: string; call_id: string; name: string; arguments: unknown }
  | { type: "tool_result"; in_reply_to: string; call_id: string; name: string; ok: boolean; result: unknown }
  | { type: "notification"; id: string; payload: string; timestamp: number };

export type ConnectionState = "connecting" | "connected" | "offline" | "unauthorized";

export interface ConnectionListener {
  frame(frame: ServerFrame): void;
  /** A binary frame: the answer's speech, PCM16 as the last `speech` frame said. */
  audio(pcm: ArrayBuffer): void;
  state(state: ConnectionState, waiting: number): void;
}

const FIRST_PAUSE_MS = 500;
const LONGEST_PAUSE_MS = 10_000;

function isServerFrame(value: unknown): value is ServerFrame {
  return typeof value === "object" && value !== null && typeof (value as { type?: unknown }).type === "string";
}

function queueKey(senderId: string): string {
  return "troupe.unsent." + senderId;
}

/** The frames a page kept for `key`; whatever is not a message frame is dropped. */
function readQueue(key: string): MessageFrame[] {
  let stored: unknown;
  try {
    stored = JSON.parse(localStorage.getItem(key) ?? "[]");
  } catch {
    return [];
  }
  if (!Array.isArray(stored)) return [];
  return stored.filter(
    (frame: unknown): frame is MessageFrame =>
      typeof frame === "object" &&
      frame !== null &&
      (frame as MessageFrame).type === "message" &&
      typeof (frame as MessageFrame).id === "string" &&
      typeof (frame as MessageFrame).conversation_id === "string" &&
      typeof (frame as MessageFrame).payload === "string",
  );
}

export class Connection {
  private socket: WebSocket | null = null;
  private stateNow: ConnectionState = "connecting";
  private pauseMs = FIRST_PAUSE_MS;
  private retry: number | null = null;
  /**
   * Sent or waiting to be, in the order typed, until a reply or an error answers them. Kept
   * in `localStorage` too, so that what was typed offline is sent after a reload or when
   * the tab is opened again (once: the node answers a repeated id from its history).
   */
  private readonly unanswered = new Map<string, MessageFrame>();

  constructor(
    private readonly senderId: string,
    private readonly listener: ConnectionListener,
  ) {
    for (const frame of readQueue(queueKey(senderId))) this.unanswered.set(frame.id, frame);
    // Back online: try at once rather than wait out the pause (an open connection stays).
    window.addEventListener("online", () => {
      if (this.stateNow !== "connected") this.reconnectNow();
    });
  }

  get state(): ConnectionState {
    return this.stateNow;
  }

  /** Connects (again, at once) with the stored token. */
  reconnectNow(): void {
    if (this.retry !== null) window.clearTimeout(this.retry);
    this.retry = null;
    this.pauseMs = FIRST_PAUSE_MS;
    if (this.socket && this.socket.readyState <= WebSocket.OPEN) this.socket.close();
    this.open();
  }

  /** Messages of `conversationId` typed before and not answered yet (after a reload). */
  waiting(conversationId: string): MessageFrame[] {
    return [...this.unanswered.values()].filter((frame) => frame.conversation_id === conversationId);
  }

  /** Sends `frame` now if connected, else on reconnect. */
  send(frame: MessageFrame): void {
    this.unanswered.set(frame.id, frame);
    this.keepQueue();
    if (this.stateNow === "connected" && this.socket) this.socket.send(JSON.stringify(frame));
    else this.announce(this.stateNow);
  }

  /** Sends `frame` if connected now; false otherwise (a stop means nothing later). */
  sendNow(frame: StopFrame): boolean {
    if (this.stateNow !== "connected" || !this.socket) return false;
    this.socket.send(JSON.stringify(frame));
    return true;
  }

  /** Sends a voice frame if connected now; false otherwise (a microphone is live only). */
  sendVoice(frame: VoiceRequest): boolean {
    if (this.stateNow !== "connected" || !this.socket) return false;
    this.socket.send(JSON.stringify(frame));
    return true;
  }

  /** Sends microphone audio (16 kHz mono PCM16) if connected now. */
  sendAudio(pcm: ArrayBuffer): void {
    if (this.stateNow === "connected" && this.socket) this.socket.send(pcm);
  }

  private open(): void {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const socket = new WebSocket(scheme + location.host + "/ws");
    socket.binaryType = "arraybuffer";
    this.socket = socket;
    this.announce("connecting");
    socket.onopen = () => {
      const token = storedToken();
      socket.send(JSON.stringify({ type: "hello", sender_id: this.senderId, token: token || undefined }));
      this.pauseMs = FIRST_PAUSE_MS;
      this.announce("connected");
      for (const frame of this.unanswered.values()) socket.send(JSON.stringify(frame));
    };
    socket.onmessage = (event: MessageEvent) => this.receive(event.data);
    socket.onclose = () => {
      if (this.socket !== socket) return;
      this.socket = null;
      if (this.stateNow === "unauthorized") return;
      this.announce("offline");
      this.retry = window.setTimeout(() => {
        this.retry = null;
        this.open();
      }, this.pauseMs);
      this.pauseMs = Math.min(this.pauseMs * 2, LONGEST_PAUSE_MS);
    };
  }

  private receive(data: unknown): void {
    if (data instanceof ArrayBuffer) {
      this.listener.audio(data);
      return;
    }
    if (typeof data !== "string") return;
    let frame: unknown;
    try {
      frame = JSON.parse(data);
    } catch {
      return;
    }
    if (!isServerFrame(frame)) return;
    if (frame.type === "error" && frame.code === "unauthorized") {
      this.announce("unauthorized");
      return;
    }
    if (frame.type === "reply" || frame.type === "error") {
      if (frame.in_reply_to !== undefined && this.unanswered.delete(frame.in_reply_to)) this.keepQueue();
    }
    this.listener.frame(frame);
  }

  private keepQueue(): void {
    const key = queueKey(this.senderId);
    try {
      if (this.unanswered.size === 0) localStorage.removeItem(key);
      else localStorage.setItem(key, JSON.stringify([...this.unanswered.values()]));
    } catch {
      // Storage full or refused: the queue still lives as long as the page.
    }
  }

  private announce(state: ConnectionState): void {
    this.stateNow = state;
    this.listener.state(state, state === "connected" ? 0 : this.unanswered.size);
  }
}
