"""Asks Troupe's `/v1/embeddings` for vectors with the official `openai` Python SDK, once
with the SDK's default encoding (base64, which it decodes) and once as floats.

Usage: openai_embeddings.py BASE_URL API_KEY
Prints one JSON object: the model, the sizes, the usage, and which fact each question is
nearest to.
"""
import json
import math
import sys

from openai import OpenAI

FACTS = [
    "My cat is called Mimi.",
    "The train to Lyon leaves at 7:45 tomorrow morning.",
    "I am allergic to peanuts.",
]
QUESTIONS = ["What is the name of my cat?", "When does my train go?", "Which food should I avoid?"]


def cosine(a, b):
    return sum(x * y for x, y in zip(a, b)) / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def main() -> None:
    base_url, api_key = sys.argv[1], sys.argv[2]
    client = OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=60)
    facts = client.embeddings.create(model="all-minilm-l6-v2", input=FACTS)
    questions = client.embeddings.create(model="all-minilm-l6-v2", input=QUESTIONS, encoding_format="float")
    one = client.embeddings.create(model="all-minilm-l6-v2", input="My cat is called Mimi.")
    nearest = []
    for question in questions.data:
        scores = [cosine(question.embedding, fact.embedding) for fact in facts.data]
        nearest.append(scores.index(max(scores)))
    print(json.dumps({
        "model": facts.model,
        "sizes": [len(item.embedding) for item in facts.data + questions.data],
        "indexes": [item.index for item in facts.data],
        "usage": {"prompt_tokens": facts.usage.prompt_tokens, "total_tokens": facts.usage.total_tokens},
        "nearest": nearest,
        "same_text_same_vector": cosine(one.data[0].embedding, facts.data[0].embedding),
    }))


if __name__ == "__main__":
    main()
