"""A zero-latency OpenAI Chat Completions test double (aiohttp), for the facade benchmark.

Answers `POST /v1/chat/completions` at once, as the published API does: a `chat.completion`
object, or with `"stream": true` server-sent `chat.completion.chunk` events ending in
`data: [DONE]`. Usage: python scripts/facade_double.py HOST:PORT
"""

import json
import sys
import time

from aiohttp import web

REPLY = "ok"


def completion(model: str) -> dict:
    return {
        "id": "chatcmpl-double",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": REPLY},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
    }


def chunk(model: str, delta: dict, finish: str | None) -> bytes:
    body = {
        "id": "chatcmpl-double",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(body).encode() + b"\n\n"


async def chat(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    model = body.get("model", "double")
    if not body.get("stream"):
        return web.json_response(completion(model))
    response = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await response.prepare(request)
    await response.write(chunk(model, {"role": "assistant", "content": REPLY}, None))
    await response.write(chunk(model, {}, "stop"))
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


def main() -> None:
    host, port = sys.argv[1].rsplit(":", 1)
    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    web.run_app(app, host=host, port=int(port), access_log=None, print=None)


if __name__ == "__main__":
    main()
