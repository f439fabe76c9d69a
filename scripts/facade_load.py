"""The peers' load script for an OpenAI-compatible endpoint (aiohttp): U users, each posting
M messages back to back as `{"messages": [...], "user": SID}`. Prints the throughput and,
for each `--pid`, that process's CPU time per message (utime + stime from /proc).

Usage: python scripts/facade_load.py --url http://HOST:PORT --users U --messages M [--pid PID]...
"""

import argparse
import asyncio
import os
import time

import aiohttp

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


async def user(session: aiohttp.ClientSession, url: str, sid: str, messages: int, errors: list):
    for index in range(messages):
        body = {"model": "troupe", "messages": [{"role": "user", "content": f"hello {index}"}], "user": sid}
        async with session.post(url, json=body) as response:
            await response.read()
            if response.status != 200:
                errors.append(response.status)


async def run(args) -> None:
    url = args.url.rstrip("/") + "/v1/chat/completions"
    connector = aiohttp.TCPConnector(limit=0)
    errors: list = []
    before = {pid: cpu_seconds(pid) for pid in args.pid}
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        await asyncio.gather(
            *(user(session, url, f"user-{n}", args.messages, errors) for n in range(args.users))
        )
        elapsed = time.perf_counter() - started
    total = args.users * args.messages
    print(f"{total} messages from {args.users} users in {elapsed:.2f} s: {total / elapsed:.0f}/s, errors {len(errors)}")
    for pid in args.pid:
        used = cpu_seconds(pid) - before[pid]
        print(f"pid {pid}: {used:.2f} s CPU, {used / total * 1e6:.0f} us per message")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--messages", type=int, default=20)
    parser.add_argument("--pid", type=int, action="append", default=[])
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
