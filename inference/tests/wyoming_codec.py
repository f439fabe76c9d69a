"""The official `wyoming` library on both ends of Troupe's Wyoming codec.

`write`: writes the fixture events to stdout with `wyoming.event.write_event`.
`read`: reads events from stdin with `wyoming.event.read_event` until the stream ends and
prints them as a JSON list of {"type", "data", "payload_hex"}.
"""

import json
import sys

from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.asr import Transcript
from wyoming.event import Event, read_event, write_event
from wyoming.info import Describe


def fixtures():
    yield Describe().event()
    yield AudioStart(rate=16000, width=2, channels=1).event()
    yield AudioChunk(
        rate=16000, width=2, channels=1, audio=bytes(i % 256 for i in range(2048)), timestamp=0
    ).event()
    yield Transcript(text="what is two plus two? ünïcode ✓").event()
    yield AudioStop().event()


def main():
    if sys.argv[1] == "write":
        for event in fixtures():
            write_event(event, sys.stdout.buffer)
        sys.stdout.buffer.flush()
        return
    events = []
    while True:
        event = read_event(sys.stdin.buffer)
        if event is None:
            break
        events.append(
            {"type": event.type, "data": event.data, "payload_hex": (event.payload or b"").hex()}
        )
    print(json.dumps(events))


if __name__ == "__main__":
    main()
