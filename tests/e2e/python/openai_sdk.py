"""Talks to Troupe's OpenAI-compatible facade with the official `openai` Python SDK.

Usage: openai_sdk.py BASE_URL API_KEY
Prints one JSON object: what the SDK received, streamed and not.
"""
import json
import sys

from openai import OpenAI


def main() -> None:
    base_url, api_key = sys.argv[1], sys.argv[2]
    client = OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=30)
    models = [model.id for model in client.models.list()]
    whole = client.chat.completions.create(
        model="troupe",
        user="sdk-user",
        messages=[{"role": "user", "content": "first question"}],
    )
    stream = client.chat.completions.create(
        model="troupe",
        user="sdk-user",
        stream=True,
        stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "second question"}],
    )
    pieces, streamed_usage = [], None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
        if chunk.usage is not None:
            streamed_usage = chunk.usage.model_dump()
    print(json.dumps({
        "models": models,
        "whole": whole.choices[0].message.content,
        "finish_reason": whole.choices[0].finish_reason,
        "pieces": pieces,
        "usage": whole.usage.model_dump() if whole.usage else None,
        "streamed_usage": streamed_usage,
    }))


if __name__ == "__main__":
    main()
