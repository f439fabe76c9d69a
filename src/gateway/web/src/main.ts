// The app shell: one page for every section (Chat at `/`, Canvas at `/rooms`), with the
// navigation, the connection indicator and the sign-in form they share. A section is a
// `<section data-path>` in index.html and a start function here.

import "./styles.css";
import {
  ApiFailure,
  conversation,
  getJson,
  storeToken,
  type NodeInfo,
  type SessionView,
} from "./api";
import { Attachments } from "./attachments";
import { ChatView } from "./chat";
import { Connection, type ConnectionState, type ServerFrame, type VoiceFrame } from "./connection";
import { ConversationList, newConversationId } from "./conversations";
import { localize, t, type Key } from "./i18n";
import { openRoomOnSubmit, showRooms } from "./rooms";
import { offerSetup } from "./setup";
import { VoiceControls } from "./voice";

function byId<T extends HTMLElement>(id: string): T {
  const found = document.getElementById(id);
  if (!found) throw new Error("the page has no #" + id);
  return found as T;
}

/**
 * Who this page chats as: the sender a sender's own token is bound to, else this
 * browser's own id (kept in localStorage), which the owner's token may speak as.
 */
function senderId(info: NodeInfo): string {
  if (info.you?.sender_id) return info.you.sender_id;
  let id = localStorage.getItem("troupe.sender");
  if (!id) {
    id = "web-" + crypto.getRandomValues(new Uint32Array(2)).join("");
    localStorage.setItem("troupe.sender", id);
  }
  return id;
}

const STATE_TEXT: Record<ConnectionState, Key> = {
  connecting: "statusConnecting",
  connected: "statusConnected",
  offline: "statusOffline",
  unauthorized: "statusSignIn",
};

function showState(state: ConnectionState, waiting: number, model: string): void {
  const status = byId("status");
  status.dataset.state = state;
  let text = t(STATE_TEXT[state]);
  if (state === "connected" && model) text += " · " + model;
  if (waiting > 0) text += " · " + t("queued", { count: waiting });
  byId("status-text").textContent = text;
  askForToken(state === "unauthorized");
}

/** Shows the sign-in dialog (modal: the page behind waits) while the node wants a token. */
function askForToken(needed: boolean): void {
  const dialog = byId<HTMLDialogElement>("sign-in");
  if (needed && !dialog.open) dialog.showModal();
  if (!needed && dialog.open) dialog.close();
}

async function nodeInfo(): Promise<NodeInfo> {
  try {
    return await getJson<NodeInfo>("/api/v1/info");
  } catch {
    return {};
  }
}

/** What to do once the person signs in (set by whichever step asked them to). */
let afterSignIn: () => void = () => {};

/** The node's info, asking for the access token first when the node wants one. */
async function signedInInfo(): Promise<NodeInfo> {
  for (;;) {
    try {
      const info = await getJson<NodeInfo>("/api/v1/info");
      askForToken(false);
      return info;
    } catch (error) {
      if (!(error instanceof ApiFailure && error.status === 401)) return {};
      askForToken(true);
      await new Promise<void>((signedIn) => (afterSignIn = signedIn));
    }
  }
}

/** Whether `conversationId` is one of `sender`'s (`sender` or `sender/…`). */
function owns(sender: string, conversationId: string): boolean {
  return conversationId === sender || conversationId.startsWith(sender + "/");
}

const VOICE_FRAMES = new Set<string>([
  "voice_ready", "wake_word", "wake_timeout", "voice_started", "voice_stopped", "voice_heard_nothing",
  "transcript", "speech", "speech_end", "speech_stopped",
]);
/** Error codes that mean the node closed (or never opened) the microphone. */
const VOICE_ERRORS = new Set(["voice_unavailable", "speech_failed", "audio_too_fast", "audio_too_long"]);

function isVoiceFrame(frame: ServerFrame): frame is VoiceFrame {
  return VOICE_FRAMES.has(frame.type);
}

/** Where the conversation shown is remembered, so a reload shows it again. */
const CURRENT_CONVERSATION = "troupe.conversation";

async function startChat(): Promise<void> {
  // Read at start; the first connection uses it, later ones read it again (a restart after
  // the set-up changes the model).
  let startInfo: NodeInfo | null = await signedInInfo();
  const sender = senderId(startInfo);
  const remembered = localStorage.getItem(CURRENT_CONVERSATION);
  const first = remembered !== null && owns(sender, remembered) ? remembered : sender;
  const chat = new ChatView(byId("log"), byId("composer"), byId("input"), byId("stop"), first);
  const show = (conversationId: string, view: SessionView) => {
    localStorage.setItem(CURRENT_CONVERSATION, conversationId);
    chat.switchTo(conversationId, view);
    toggleDrawer(false);
  };
  const conversations = new ConversationList(
    sender,
    byId("conversation-list"),
    byId("conversations-empty"),
    byId("conversation-search"),
    byId("new-chat"),
    {
      open: (conversationId) => {
        void conversation(conversationId).then((view) => show(conversationId, view));
      },
      created: () => {
        const fresh = newConversationId(sender);
        show(fresh, { history: [] });
        return fresh;
      },
      deleted: (conversationId) => {
        if (conversationId !== chat.conversation) return;
        const fresh = newConversationId(sender);
        show(fresh, { history: [] });
        conversations.setCurrent(fresh);
      },
    },
  );
  conversations.setCurrent(first);
  chat.onAnswered = () => void conversations.answered(chat.conversation);
  const attachments = new Attachments(
    byId("attached"),
    byId("attach-problem"),
    byId("attach-input"),
    byId("attach"),
    byId("chat"),
    byId("input"),
    () => chat.conversation,
  );
  chat.attachments = attachments;
  byId("toggle-conversations").addEventListener("click", () => toggleDrawer());
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && byId("chat").dataset.drawer === "open") toggleDrawer(false);
  });

  let model = "";
  let noticeShown = false;
  let last: { state: ConnectionState; waiting: number } = { state: "connecting", waiting: 0 };
  const refreshInfo = async () => {
    const info = startInfo ?? (await nodeInfo());
    startInfo = null;
    const notice = byId("notice");
    notice.hidden = !info.notice;
    if (info.notice && !noticeShown) {
      noticeShown = true;
      notice.textContent = info.notice;
      void offerSetup(notice);
    }
    model = info.provider ? info.provider.kind + " · " + info.provider.model : "";
    if (info.max_payload_bytes) attachments.limit = info.max_payload_bytes;
    if (info.max_images_per_message) attachments.maxPictures = info.max_images_per_message;
    showState(last.state, last.waiting, model);
  };
  let restored = false;
  let connected: Connection | null = null;
  const voice = new VoiceControls(
    byId("talk"),
    byId("hands-free"),
    byId("voice-status"),
    () => connected,
    () => chat.conversation,
  );
  let voiceOffered = false;
  const connection = new Connection(sender, {
    frame: (frame) => {
      chat.receive(frame);
      if (isVoiceFrame(frame)) voice.frame(frame);
      else if (frame.type === "error" && VOICE_ERRORS.has(frame.code)) voice.failed();
    },
    audio: (pcm) => voice.audio(pcm),
    state: (state, waiting) => {
      last = { state, waiting };
      showState(state, waiting, model);
      if (state !== "connected") {
        voice.disconnected();
        return;
      }
      void refreshInfo();
      if (!voiceOffered) {
        voiceOffered = true;
        void voice.offer();
      }
      if (!restored) {
        restored = true;
        conversation(chat.conversation).then(
          (view) => chat.restore(view),
          () => (restored = false),
        );
        void conversations.refresh();
      }
    },
  });
  chat.attach(connection);
  connected = connection;
  chat.showWaiting(connection.waiting(chat.conversation));
  afterSignIn = () => connection.reconnectNow();
  connection.reconnectNow();
}

/** Opens or closes the conversation list where it is a drawer (narrow screens). */
function toggleDrawer(open?: boolean): void {
  const section = byId("chat");
  const opened = open ?? section.dataset.drawer !== "open";
  section.dataset.drawer = opened ? "open" : "closed";
  const toggle = byId("toggle-conversations");
  toggle.setAttribute("aria-expanded", String(opened));
  // Where it is a drawer, the focus goes into it and back to the button that opened it.
  if (!toggle.offsetParent) return;
  if (opened) byId("new-chat").focus();
  else if (section.contains(document.activeElement) && byId("conversations").contains(document.activeElement)) toggle.focus();
}

/** Stores the token the person enters, then does what waited for it. */
function listenForSignIn(): void {
  byId<HTMLFormElement>("sign-in-form").addEventListener("submit", (event) => {
    event.preventDefault();
    storeToken(byId<HTMLInputElement>("token").value.trim());
    askForToken(false);
    afterSignIn();
  });
}

function startRooms(): void {
  byId("status").hidden = true;
  openRoomOnSubmit(byId("open-room"), byId("room-name"));
  const load = async () => {
    const needsToken = await showRooms(byId("rooms"), byId("rooms-problem"));
    askForToken(needsToken);
  };
  afterSignIn = () => void load();
  void load();
}

const SECTIONS: Record<string, () => void> = {
  "/": () => void startChat(),
  "/rooms": startRooms,
};

function start(): void {
  localize(document);
  const path = location.pathname in SECTIONS ? location.pathname : "/";
  for (const section of document.querySelectorAll<HTMLElement>("main > section[data-path]")) {
    section.hidden = section.dataset.path !== path;
  }
  for (const link of document.querySelectorAll<HTMLAnchorElement>("nav a")) {
    if (link.getAttribute("href") === path) link.setAttribute("aria-current", "page");
  }
  document.title = t(path === "/rooms" ? "navCanvas" : "navChat") + " · " + t("appName");
  listenForSignIn();
  SECTIONS[path]!();
}

start();
