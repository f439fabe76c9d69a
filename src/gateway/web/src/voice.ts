// Voice in the chat: a microphone button (hold to talk) and a hands-free switch next to
// the message box, when the node can hear (GET /api/v1/voice). The microphone's audio goes
// to the node over the page's WebSocket as 16 kHz PCM16 (docs/protocol.md, "Voice"); what
// was heard comes back as the person's message, and the answer's speech plays as it
// arrives. Speaking while the assistant speaks stops its voice (barge-in), here at once and
// on the node.

import { getJson } from "./api";
import type { Connection, VoiceFrame } from "./connection";
import { t, type Key } from "./i18n";

/** What `GET /api/v1/voice` says the web page may do. */
interface WebVoice {
  push_to_talk: boolean;
  hands_free: boolean;
  wake_word: boolean;
  speaks: boolean;
}

/** The microphone: its stream, and the worklet that turns it into 16 kHz PCM16. */
class Microphone {
  private constructor(
    private readonly stream: MediaStream,
    private readonly context: AudioContext,
  ) {}

  /** Opens the microphone; each 100 ms of audio goes to `frame`. */
  static async open(frame: (pcm: ArrayBuffer) => void): Promise<Microphone> {
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    });
    const context = new AudioContext();
    try {
      await context.audioWorklet.addModule("/app/microphone-worklet.js");
      const worklet = new AudioWorkletNode(context, "troupe-microphone");
      worklet.port.onmessage = (event: MessageEvent<ArrayBuffer>) => frame(event.data);
      context.createMediaStreamSource(stream).connect(worklet);
    } catch (error) {
      for (const track of stream.getTracks()) track.stop();
      void context.close();
      throw error;
    }
    return new Microphone(stream, context);
  }

  close(): void {
    for (const track of this.stream.getTracks()) track.stop();
    void this.context.close();
  }
}

/** Plays the assistant's speech as it arrives, each piece right after the one before. */
class Player {
  private context: AudioContext | null = null;
  private format: { replyId: string; rate: number } | null = null;
  private playing: AudioBufferSourceNode[] = [];
  private nextStart = 0;
  /** Audio pieces played since the page opened (the tests read it). */
  pieces = 0;

  /**
   * Readies the speaker while the person acts (a click or a key): browsers let a page
   * play sound only after that.
   */
  unlock(): void {
    this.context ??= new AudioContext();
    if (this.context.state === "suspended") void this.context.resume();
  }

  /** The audio that follows is the answer to `replyId`, PCM16 at `rate`. */
  announce(replyId: string, rate: number): void {
    this.format = { replyId, rate };
  }

  /** A binary frame: PCM16 of the announced answer. */
  play(pcm: ArrayBuffer): void {
    if (!this.format || pcm.byteLength < 2) return;
    this.context ??= new AudioContext();
    const context = this.context;
    const samples = new Int16Array(pcm, 0, pcm.byteLength >> 1);
    const buffer = context.createBuffer(1, samples.length, this.format.rate);
    const channel = buffer.getChannelData(0);
    for (let index = 0; index < samples.length; index++) channel[index] = samples[index]! / 32768;
    const source = context.createBufferSource();
    source.buffer = buffer;
    source.connect(context.destination);
    const start = Math.max(context.currentTime + 0.02, this.nextStart);
    source.start(start);
    this.nextStart = start + buffer.duration;
    this.playing.push(source);
    this.pieces += 1;
    source.onended = () => {
      this.playing = this.playing.filter((playing) => playing !== source);
      document.body.dataset.speaking = String(this.isPlaying);
    };
    document.body.dataset.speaking = "true";
  }

  get isPlaying(): boolean {
    return this.playing.length > 0;
  }

  /** Stops what plays and what waits to; audio for `replyId` that still comes is dropped. */
  stop(replyId?: string): void {
    if (replyId === undefined || this.format?.replyId === replyId) this.format = null;
    for (const source of this.playing) source.stop();
    this.playing = [];
    this.nextStart = 0;
    document.body.dataset.speaking = "false";
  }
}

export class VoiceControls {
  private microphone: Microphone | null = null;
  private mode: "push_to_talk" | "hands_free" | null = null;
  private readonly player = new Player();
  private abilities: WebVoice | null = null;
  /** The wake word hands-free listening waits for, when it does. */
  private wakeWord = "";
  /** Times the person's speech stopped the assistant's (the tests read it). */
  private bargeIns = 0;
  /** Counts microphone openings and closings: an opening that a release overtook (the
   * browser was still asking for the microphone) is abandoned. */
  private openings = 0;

  constructor(
    private readonly talk: HTMLButtonElement,
    private readonly handsFree: HTMLButtonElement,
    private readonly status: HTMLElement,
    private readonly connection: () => Connection | null,
    private readonly conversation: () => string,
  ) {
    talk.addEventListener("pointerdown", (event) => {
      event.preventDefault();
      void this.startTalking();
    });
    for (const end of ["pointerup", "pointerleave", "pointercancel"]) {
      talk.addEventListener(end, () => this.stopTalking());
    }
    // From the keyboard: Space or Enter held down talks, as a held button does.
    talk.addEventListener("keydown", (event) => {
      if ((event.key === " " || event.key === "Enter") && !event.repeat) {
        event.preventDefault();
        void this.startTalking();
      }
    });
    talk.addEventListener("keyup", (event) => {
      if (event.key === " " || event.key === "Enter") this.stopTalking();
    });
    handsFree.addEventListener("click", () => void this.toggleHandsFree());
  }

  /** Shows the controls the node offers (none when it cannot hear). */
  async offer(): Promise<void> {
    try {
      const voice = await getJson<{ engines?: { web?: WebVoice } }>("/api/v1/voice");
      this.abilities = voice.engines?.web ?? null;
    } catch {
      this.abilities = null;
    }
    const canHear = this.abilities?.push_to_talk === true;
    const recordable = typeof navigator.mediaDevices?.getUserMedia === "function";
    this.talk.hidden = !canHear;
    this.handsFree.hidden = !canHear || this.abilities?.hands_free !== true;
    for (const button of [this.talk, this.handsFree]) {
      button.disabled = !recordable;
      if (!recordable) button.title = t("voiceNeedsSecurePage");
    }
  }

  /** A voice frame from the node. */
  frame(frame: VoiceFrame): void {
    switch (frame.type) {
      case "voice_ready":
        this.wakeWord = frame.wake_word ?? "";
        this.show(this.wakeWord ? "voiceSayWakeWord" : "voiceListening", { word: this.wakeWord });
        break;
      case "wake_word":
        this.show("voiceListening");
        break;
      case "wake_timeout":
        this.show("voiceSayWakeWord", { word: this.wakeWord });
        break;
      case "voice_started":
        // Barge-in: the person speaks; the assistant stops at once.
        if (this.player.isPlaying) this.bargeIns += 1;
        this.player.stop();
        document.body.dataset.bargeIns = String(this.bargeIns);
        this.show("voiceHearing");
        break;
      case "voice_stopped":
        this.show("voiceThinking");
        break;
      case "voice_heard_nothing":
        this.show(this.mode === "hands_free" ? "voiceListening" : "voiceHeardNothing");
        break;
      case "transcript":
        this.show(this.mode === "hands_free" ? "voiceListening" : "voiceIdle");
        break;
      case "speech":
        this.player.announce(frame.in_reply_to, frame.rate);
        break;
      case "speech_stopped":
        this.player.stop(frame.in_reply_to);
        break;
      case "speech_end":
        break;
    }
  }

  /** A binary frame: the answer's speech. */
  audio(pcm: ArrayBuffer): void {
    this.player.play(pcm);
    document.body.dataset.audioPieces = String(this.player.pieces);
  }

  /** The node refused or failed what the microphone sent: it is closed. */
  failed(): void {
    this.close();
  }

  /** The connection dropped: the microphone closes (the node closed it too). */
  disconnected(): void {
    this.close();
    this.player.stop();
  }

  private async startTalking(): Promise<void> {
    if (this.mode === "hands_free" || this.microphone) return;
    this.player.stop();
    if (!(await this.open("push_to_talk"))) return;
    this.talk.setAttribute("aria-pressed", "true");
  }

  private stopTalking(): void {
    if (this.mode !== "push_to_talk") return;
    if (!this.microphone) {
      // Released before the microphone opened: nothing was said.
      this.close();
      return;
    }
    this.connection()?.sendVoice({ type: "voice_end" });
    this.closeMicrophone();
    this.show("voiceThinking");
  }

  private async toggleHandsFree(): Promise<void> {
    if (this.mode === "hands_free") {
      this.connection()?.sendVoice({ type: "voice_stop" });
      this.close();
      return;
    }
    if (!(await this.open("hands_free"))) return;
    this.handsFree.setAttribute("aria-pressed", "true");
  }

  /** Opens the microphone and the node's listening; false (and why, shown) if it cannot. */
  private async open(mode: "push_to_talk" | "hands_free"): Promise<boolean> {
    if (this.abilities?.speaks) this.player.unlock();
    const connection = this.connection();
    if (!connection || connection.state !== "connected") {
      this.show("voiceOffline");
      return false;
    }
    this.mode = mode;
    const opening = ++this.openings;
    let microphone: Microphone;
    try {
      microphone = await Microphone.open((pcm) => this.connection()?.sendAudio(pcm));
    } catch {
      if (opening === this.openings) this.mode = null;
      this.show("voiceNoMicrophone");
      return false;
    }
    if (opening !== this.openings) {
      // Released (or switched off) while the browser was opening it: nothing to hear.
      microphone.close();
      return false;
    }
    this.microphone = microphone;
    const wakeWord = mode === "hands_free" && this.abilities?.wake_word === true;
    connection.sendVoice({
      type: "voice_start",
      mode,
      conversation_id: this.conversation(),
      ...(wakeWord ? { wake_word: true } : {}),
    });
    document.body.dataset.voice = mode;
    return true;
  }

  private closeMicrophone(): void {
    this.openings += 1;
    this.microphone?.close();
    this.microphone = null;
    this.mode = null;
    this.talk.setAttribute("aria-pressed", "false");
    this.handsFree.setAttribute("aria-pressed", "false");
    document.body.dataset.voice = "off";
  }

  private close(): void {
    this.closeMicrophone();
    this.show("voiceIdle");
  }

  private show(key: Key, values: Record<string, string> = {}): void {
    this.status.textContent = key === "voiceIdle" ? "" : t(key, values);
    this.status.hidden = key === "voiceIdle";
  }
}
