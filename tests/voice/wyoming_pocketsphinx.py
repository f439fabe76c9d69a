"""A Wyoming speech-to-text server for the tests: the official `wyoming` library around
CMU PocketSphinx (PyPI `pocketsphinx`, with its packaged US English model), streaming.

    python wyoming_pocketsphinx.py --uri tcp://127.0.0.1:PORT

It answers `describe` with its `info`, and a `transcribe` followed by `audio-start`,
`audio-chunk`s and `audio-stop` with a `transcript`. The model loads once, at start; each
chunk is converted to 16 kHz mono 16-bit (the model's rate) and decoded as it arrives, so
the transcript is ready tens of milliseconds after `audio-stop`, as with any streaming
recogniser.
"""

import argparse
import asyncio
import audioop

from pocketsphinx import Decoder
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
            description="CMU PocketSphinx, streaming, for tests",
            attribution=Attribution(name="CMU", url="https://cmusphinx.github.io/"),
            installed=True,
            version="5.0",
            models=[
                AsrModel(
                    name="en-us",
                    description="US English",
                    attribution=Attribution(name="CMU", url="https://cmusphinx.github.io/"),
                    installed=True,
                    languages=["en"],
                    version="5.0",
                )
            ],
        )
    ]
)


class Handler(AsyncEventHandler):
    """One connection; `decoder` is the server's one model, used by one utterance at a time."""

    def __init__(self, decoder: Decoder, lock: asyncio.Lock, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.decoder = decoder
        self.lock = lock
        self.state = None
        self.decoding = False

    async def begin(self) -> None:
        if not self.decoding:
            await self.lock.acquire()
            self.decoder.start_utt()
            self.decoding = True
        self.state = None

    async def handle_event(self, event: Event) -> bool:
        if Describe.is_type(event.type):
            await self.write_event(INFO.event())
        elif Transcribe.is_type(event.type) or AudioStart.is_type(event.type):
            await self.begin()
        elif AudioChunk.is_type(event.type):
            if not self.decoding:
                await self.begin()
            chunk = AudioChunk.from_event(event)
            audio = chunk.audio
            if chunk.channels == 2:
                audio = audioop.tomono(audio, chunk.width, 0.5, 0.5)
            if chunk.width != 2:
                audio = audioop.lin2lin(audio, chunk.width, 2)
            if chunk.rate != RATE:
                audio, self.state = audioop.ratecv(audio, 2, 1, chunk.rate, RATE, self.state)
            self.decoder.process_raw(audio, False, False)
        elif AudioStop.is_type(event.type):
            text = self.finish()
            await self.write_event(Transcript(text=text).event())
        return True

    def finish(self) -> str:
        if not self.decoding:
            return ""
        self.decoder.end_utt()
        self.decoding = False
        self.lock.release()
        hypothesis = self.decoder.hyp()
        return " ".join(hypothesis.hypstr.split()) if hypothesis else ""

    async def disconnect(self) -> None:
        self.finish()


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--uri", required=True)
    args = parser.parse_args()
    decoder = Decoder(logfn="/dev/null")
    lock = asyncio.Lock()
    server = AsyncServer.from_uri(args.uri)
    await server.run(lambda *handler_args: Handler(decoder, lock, *handler_args))


if __name__ == "__main__":
    asyncio.run(main())
