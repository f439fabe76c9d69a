"""A Wyoming speech-to-text server for the tests: the official `wyoming` library around
Debian's pocketsphinx (`pocketsphinx_continuous`, English).

    python wyoming_pocketsphinx.py --uri tcp://127.0.0.1:PORT

It answers `describe` with its `info`, and a `transcribe` followed by `audio-start`,
`audio-chunk`s and `audio-stop` with a `transcript`: the audio is converted to 16 kHz mono
16-bit (pocketsphinx's model rate) and recognised when it stops.
"""

import argparse
import asyncio
import audioop
import subprocess
import tempfile
import wave

from wyoming.asr import Transcribe, Transcript
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.event import Event
from wyoming.info import AsrModel, AsrProgram, Attribution, Describe, Info
from wyoming.server import AsyncEventHandler, AsyncServer

RATE = 16000

INFO = Info(
    asr=[
        AsrProgram(
            name="pocketsphinx",
            description="CMU PocketSphinx (Debian), for tests",
            attribution=Attribution(name="CMU", url="https://cmusphinx.github.io/"),
            installed=True,
            version="0.8",
            models=[
                AsrModel(
                    name="en-us",
                    description="US English",
                    attribution=Attribution(name="CMU", url="https://cmusphinx.github.io/"),
                    installed=True,
                    languages=["en"],
                    version="0.8",
                )
            ],
        )
    ]
)


def recognise(pcm: bytes) -> str:
    with tempfile.NamedTemporaryFile(suffix=".wav") as file:
        with wave.open(file.name, "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(RATE)
            out.writeframes(pcm)
        result = subprocess.run(
            ["pocketsphinx_continuous", "-infile", file.name, "-logfn", "/dev/null"],
            capture_output=True,
            text=True,
            check=False,
        )
        return " ".join(result.stdout.split())


class Handler(AsyncEventHandler):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.pcm = b""
        self.state = None

    async def handle_event(self, event: Event) -> bool:
        if Describe.is_type(event.type):
            await self.write_event(INFO.event())
        elif Transcribe.is_type(event.type) or AudioStart.is_type(event.type):
            self.pcm, self.state = b"", None
        elif AudioChunk.is_type(event.type):
            chunk = AudioChunk.from_event(event)
            audio = chunk.audio
            if chunk.channels == 2:
                audio = audioop.tomono(audio, chunk.width, 0.5, 0.5)
            if chunk.width != 2:
                audio = audioop.lin2lin(audio, chunk.width, 2)
            if chunk.rate != RATE:
                audio, self.state = audioop.ratecv(audio, 2, 1, chunk.rate, RATE, self.state)
            self.pcm += audio
        elif AudioStop.is_type(event.type):
            text = await asyncio.get_running_loop().run_in_executor(None, recognise, self.pcm)
            await self.write_event(Transcript(text=text).event())
            self.pcm = b""
        return True


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--uri", required=True)
    args = parser.parse_args()
    server = AsyncServer.from_uri(args.uri)
    await server.run(Handler)


if __name__ == "__main__":
    asyncio.run(main())
