"""A microphone for wyoming-satellite's --mic-command: plays a WAV file (mono, 16-bit, any
rate) into stdout as raw 16 kHz mono PCM16, paced at real time as a microphone delivers it,
after a moment of silence and followed by silence until it is stopped.

Usage: python paced_mic.py SPEECH.wav [LEADING_SILENCE_SECONDS]

With TROUPE_MIC_GATE set to a path, it sends silence until that file exists, then the
speech: a test opens the gate once the node listens, so no question is spoken to nobody.
"""

import audioop
import os
import sys
import time
import wave

RATE = 16000
CHUNK_SAMPLES = 1024


def speech_at_16k(path):
    with wave.open(path, "rb") as wav:
        if wav.getnchannels() != 1 or wav.getsampwidth() != 2:
            raise SystemExit(f"{path}: expected mono 16-bit audio")
        frames = wav.readframes(wav.getnframes())
        converted, _ = audioop.ratecv(frames, 2, 1, wav.getframerate(), RATE, None)
        return converted


def main():
    speech = speech_at_16k(sys.argv[1])
    leading = float(sys.argv[2]) if len(sys.argv) > 2 else 1.0
    silence = bytes(2 * CHUNK_SAMPLES)
    audio = bytes(2 * int(leading * RATE)) + speech
    gate = os.environ.get("TROUPE_MIC_GATE")
    chunk_bytes = 2 * CHUNK_SAMPLES
    period = CHUNK_SAMPLES / RATE
    out = sys.stdout.buffer
    started = time.monotonic()
    sent = 0
    while True:
        if gate is not None and os.path.exists(gate):
            gate = None
        if audio and gate is None:
            chunk, audio = audio[:chunk_bytes], audio[chunk_bytes:]
        else:
            chunk = silence
        out.write(chunk)
        out.flush()
        sent += 1
        delay = started + sent * period - time.monotonic()
        if delay > 0:
            time.sleep(delay)


if __name__ == "__main__":
    try:
        main()
    except (BrokenPipeError, KeyboardInterrupt):
        pass
