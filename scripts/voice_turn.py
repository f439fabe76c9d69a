"""A spoken turn's latency as the person hears it, for `./scripts/bench voice-turn`: from the
moment a question's last sample leaves a satellite's microphone to the moment the reply's
first audio reaches its speaker. The satellite is an unmodified wyoming-satellite; this
script is its microphone and its speaker, and writes down those two moments.

    python voice_turn.py question WAV TEXT          Piper (the test venv) says TEXT into WAV
    python voice_turn.py mic WAV LOG COUNT GAP      --mic-command: COUNT questions, GAP s apart
    python voice_turn.py snd LOG                    --snd-command: logs each reply's first audio
    python voice_turn.py report LOG_DIR COUNT URL   waits for the replies, prints the latencies

Each microphone question is WAV (mono 16-bit, any rate) played at real time as raw 16 kHz
PCM16, after 3 s of silence, then silence. Times are wall-clock (`time.time()`), shared by
the two processes.
"""

import audioop
import json
import statistics
import subprocess
import sys
import time
import urllib.request
import wave
from pathlib import Path

RATE = 16000
CHUNK_SAMPLES = 1024
REPO = Path(__file__).resolve().parent.parent


def question(wav, text):
    voice = REPO / ".cache/models/voices/en_US-joe-medium.onnx"
    subprocess.run(
        [str(REPO / ".venv/bin/piper"), "-m", str(voice), "-f", wav,
         "--noise-scale", "0", "--noise-w-scale", "0"],
        input=text.encode(), check=True, capture_output=True,
    )


def speech_at_16k(path):
    with wave.open(path, "rb") as wav:
        frames = wav.readframes(wav.getnframes())
        converted, _ = audioop.ratecv(frames, 2, 1, wav.getframerate(), RATE, None)
        return converted


def mic(wav, log, count, gap):
    speech = speech_at_16k(wav)
    chunk_bytes = 2 * CHUNK_SAMPLES
    silence = bytes(chunk_bytes)
    period = CHUNK_SAMPLES / RATE
    # (audio, whether the question ends with it)
    plan = [(bytes(2 * 3 * RATE), False)]
    for _ in range(count):
        plan.append((speech, True))
        plan.append((bytes(2 * int(gap * RATE)), False))
    out = sys.stdout.buffer
    started = time.monotonic()
    sent = 0
    with open(log, "a") as ended:
        for audio, is_question in plan:
            for start in range(0, len(audio), chunk_bytes):
                out.write(audio[start:start + chunk_bytes].ljust(chunk_bytes, b"\0"))
                out.flush()
                sent += 1
                delay = started + sent * period - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            if is_question:
                ended.write(f"{time.time()}\n")
                ended.flush()
        while True:
            out.write(silence)
            out.flush()
            sent += 1
            delay = started + sent * period - time.monotonic()
            if delay > 0:
                time.sleep(delay)


def snd(log):
    source = sys.stdin.buffer
    last = 0.0
    with open(log, "a") as played:
        while True:
            data = source.read1(65536)
            if not data:
                return
            now = time.time()
            if now - last > 1.0:
                played.write(f"{now}\n")
                played.flush()
            last = now


def times(path):
    try:
        return [float(line) for line in Path(path).read_text().split()]
    except FileNotFoundError:
        return []


def report(log_dir, count, url):
    log_dir = Path(log_dir)
    deadline = time.time() + 30 + count * 15
    while time.time() < deadline:
        ended, played = times(log_dir / "ended.log"), times(log_dir / "played.log")
        if len(ended) >= count and len(played) >= count:
            break
        time.sleep(0.5)
    time.sleep(2)
    ended, played = times(log_dir / "ended.log"), times(log_dir / "played.log")
    latencies = []
    for end in ended:
        first = next((at for at in played if at > end), None)
        if first is not None and first - end < 5:
            latencies.append((first - end) * 1000)
    print(f"questions {len(ended)}, answered aloud {len(latencies)}")
    if latencies:
        print("end of speech to first reply audio at the speaker, ms: "
              + " ".join(f"{value:.0f}" for value in latencies))
        print(f"median {statistics.median(latencies):.0f} ms, max {max(latencies):.0f} ms")
    metrics = urllib.request.urlopen(f"{url}/metrics").read().decode()
    stages = {}
    for line in metrics.splitlines():
        if line.startswith("troupe_voice_stage_seconds_sum") or line.startswith(
            "troupe_voice_stage_seconds_count"
        ):
            name, value = line.rsplit(" ", 1)
            stage = name.split('stage="')[1].split('"')[0]
            stages.setdefault(stage, {})["sum" if "_sum" in name else "count"] = float(value)
    for stage, values in stages.items():
        if values.get("count"):
            mean = values["sum"] / values["count"] * 1000
            print(f"node's stage {stage}: mean {mean:.0f} ms over {values['count']:.0f}")
    print(json.dumps({"latencies_ms": latencies}))


def main():
    command = sys.argv[1]
    if command == "question":
        question(sys.argv[2], sys.argv[3])
    elif command == "mic":
        mic(sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]))
    elif command == "snd":
        snd(sys.argv[2])
    elif command == "report":
        report(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    try:
        main()
    except (BrokenPipeError, KeyboardInterrupt):
        pass
