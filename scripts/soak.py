"""The load and the samples of ./scripts/soak (standard library only).

Four loads run side by side, each paced, each timing its turns: WebSocket conversations,
REST turns, signed-webhook bridge messages (answered at the receiver this script runs), and
the calculator skill through the tool loop. Every SAMPLE seconds a line gives the node's
RSS, open file descriptors and the period's latency percentiles; the summary compares the
first sample after warm-up (the first tenth of the run, at least one sample) with the last.

With --cycle MINUTES the run is cycles instead of one steady stretch: a burst (`troupe
bench`: 1,000 sessions take 10,000 turns at 2,000/s), the mixed load until the cycle's
quiet period, then quiet (no turns) until every session has passivated and 30 s more. The
RSS at the end of each quiet period is compared with the node's idle RSS, taken the same
way before the first cycle.
"""

import argparse
import base64
import hashlib
import hmac
import http.client
import http.server
import json
import os
import socket
import struct
import threading
import time

ARGS = argparse.ArgumentParser()
ARGS.add_argument("--pid", type=int, required=True)
ARGS.add_argument("--port", type=int, required=True)
ARGS.add_argument("--receiver", type=int, required=True)
ARGS.add_argument("--minutes", type=float, required=True)
ARGS.add_argument("--sample", type=float, required=True)
ARGS.add_argument("--secret", required=True)
ARGS.add_argument("--cycle", type=float, default=0, help="minutes per burst cycle (0: steady)")
ARGS.add_argument("--troupe", help="the troupe binary, for the bursts")


class Stats:
    """Latencies and errors of the current sample period, per load."""

    def __init__(self):
        self.lock = threading.Lock()
        self.latencies, self.errors, self.turns = [], 0, 0

    def record(self, seconds=None, error=False):
        with self.lock:
            if error:
                self.errors += 1
            else:
                self.turns += 1
                self.latencies.append(seconds)

    def take(self):
        with self.lock:
            taken = (sorted(self.latencies), self.errors, self.turns)
            self.latencies, self.errors, self.turns = [], 0, 0
            return taken


STATS = Stats()
DELIVERED = []
# Set while the loads hold still (a quiet period).
QUIET = threading.Event()


def paced(period, stop, action):
    """Calls `action` every `period` seconds until `stop` is set."""
    next_at = time.monotonic()
    while not stop.is_set():
        if QUIET.is_set():
            stop.wait(0.1)
            next_at = time.monotonic()
            continue
        try:
            action()
        except Exception:  # a failed turn is counted, the load goes on
            STATS.record(error=True)
        next_at += period
        stop.wait(max(0.0, next_at - time.monotonic()))


def rest_turn(port, body):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    started = time.monotonic()
    connection.request("POST", "/api/v1/messages", json.dumps(body),
                       {"content-type": "application/json"})
    answer = connection.getresponse()
    payload = json.loads(answer.read())
    connection.close()
    if answer.status != 200:
        raise RuntimeError(payload)
    STATS.record(time.monotonic() - started)
    return payload["reply"]["payload"]


def websocket(port):
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        head += sock.recv(1)
    if not head.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(head)
    return sock


def ws_send(sock, value):
    data, mask = json.dumps(value).encode(), os.urandom(4)
    length = len(data)
    header = bytes([0x81, 0x80 | length]) if length < 126 else bytes([0x81, 0xFE]) + struct.pack(">H", length)
    sock.sendall(header + mask + bytes(byte ^ mask[index % 4] for index, byte in enumerate(data)))


def ws_receive(sock):
    def exactly(count):
        data = b""
        while len(data) < count:
            chunk = sock.recv(count - len(data))
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        return data
    first, second = exactly(2)
    length = second & 0x7F
    if length == 126:
        length = struct.unpack(">H", exactly(2))[0]
    elif length == 127:
        length = struct.unpack(">Q", exactly(8))[0]
    payload = exactly(length)
    return json.loads(payload) if first & 0x0F == 1 else None


def ws_load(port, stop, users, period):
    sockets = [websocket(port) for _ in range(users)]
    for index, sock in enumerate(sockets):
        ws_send(sock, {"type": "hello", "sender_id": f"soak-ws-{index}"})
    counter = [0]

    def turn():
        counter[0] += 1
        sock = sockets[counter[0] % users]
        message_id = f"w{counter[0]}"
        started = time.monotonic()
        ws_send(sock, {"type": "message", "id": message_id, "payload": f"hello {counter[0]}"})
        while True:
            frame = ws_receive(sock)
            if frame and frame.get("in_reply_to") == message_id and frame["type"] in ("reply", "error"):
                if frame["type"] == "error":
                    raise RuntimeError(frame)
                STATS.record(time.monotonic() - started)
                return

    paced(period, stop, turn)


def hook_load(port, secret, stop, period):
    counter = [0]

    def turn():
        counter[0] += 1
        body = json.dumps({"id": f"h{counter[0]}", "sender_id": f"hook-{counter[0] % 20}",
                           "payload": f"from the hub {counter[0]}"}).encode()
        stamp = str(int(time.time()))
        signature = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        started = time.monotonic()
        connection.request("POST", "/bridges/hooks/webhook", body, {
            "content-type": "application/json", "x-troupe-timestamp": stamp,
            "x-troupe-signature": f"v1={signature}"})
        answer = connection.getresponse()
        answer.read()
        connection.close()
        if answer.status != 202:
            raise RuntimeError(answer.status)
        STATS.record(time.monotonic() - started)

    paced(period, stop, turn)


class Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        DELIVERED.append(time.monotonic())
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def node_sample(pid):
    with open(f"/proc/{pid}/status") as status:
        rss = next(int(line.split()[1]) for line in status if line.startswith("VmRSS"))
    return rss / 1024, len(os.listdir(f"/proc/{pid}/fd"))


def percentile(values, share):
    return values[min(len(values) - 1, int(len(values) * share))] * 1000 if values else float("nan")


def main():
    args = ARGS.parse_args()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.receiver), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    stop = threading.Event()
    counter = [0]

    def rest():
        counter[0] += 1
        rest_turn(args.port, {"sender_id": f"soak-rest-{counter[0] % 50}", "payload": f"hi {counter[0]}"})

    def skill():
        answer = rest_turn(args.port, {"sender_id": "soak-skill",
                                       "payload": '/tool calculator__evaluate {"expression": "6 * 7"}'})
        if "42" not in answer:
            raise RuntimeError(answer)

    loads = [
        threading.Thread(target=ws_load, args=(args.port, stop, 20, 0.01)),
        threading.Thread(target=paced, args=(0.02, stop, rest)),
        threading.Thread(target=hook_load, args=(args.port, args.secret, stop, 0.05)),
        threading.Thread(target=paced, args=(0.2, stop, skill)),
    ]
    samples, started = [], time.monotonic()

    def sample_until(deadline):
        while time.monotonic() < deadline:
            time.sleep(max(0.0, min(args.sample, deadline - time.monotonic())))
            rss, fds = node_sample(args.pid)
            latencies, errors, turns = STATS.take()
            row = ((time.monotonic() - started) / 60, rss, fds, turns, errors,
                   percentile(latencies, 0.5), percentile(latencies, 0.99), len(DELIVERED))
            samples.append(row)
            print("%6.1f  %8.1f  %3d  %5d  %6d  %6.1f  %6.1f  %9d" % row, flush=True)

    for load in loads:
        load.start()
    print("minute   rss_mib  fds  turns  errors  p50_ms  p99_ms  delivered", flush=True)
    if args.cycle:
        cycles(args, started, sample_until)
    else:
        sample_until(started + args.minutes * 60)
    stop.set()
    for load in loads:
        load.join()
    server.shutdown()
    warm = max(1, len(samples) // 10)
    first, last = samples[warm - 1], samples[-1]
    growth = (last[1] - first[1]) / first[1] * 100
    total_turns = sum(row[3] for row in samples)
    total_errors = sum(row[4] for row in samples)
    print(f"summary: {args.minutes:g} min, {total_turns} turns, {total_errors} errors, "
          f"{len(DELIVERED)} bridge replies delivered; RSS {first[1]:.1f} -> {last[1]:.1f} MiB "
          f"after warm-up ({growth:+.2f} %), fds {first[2]} -> {last[2]}, "
          f"p50 {first[5]:.1f} -> {last[5]:.1f} ms, p99 {first[6]:.1f} -> {last[6]:.1f} ms")


def quiet_rss(port, pid):
    """Holds the loads still until every session has passivated and 30 s more (the
    allocator's pages go back); returns the node's RSS then."""
    QUIET.set()
    time.sleep(1)  # turns in flight finish
    while True:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request("GET", "/metrics")
        page = connection.getresponse().read().decode()
        connection.close()
        if "\ntroupe_sessions_active 0\n" in page:
            break
        time.sleep(1)
    time.sleep(30)
    rss, _ = node_sample(pid)
    QUIET.clear()
    return rss


def burst(args):
    """1,000 sessions (200 connections x 5 conversations) take 10,000 turns at 2,000/s."""
    import subprocess
    report = subprocess.run(
        [args.troupe, "bench", "--url", f"ws://127.0.0.1:{args.port}/ws", "--sessions", "200",
         "--messages", "50", "--conversations", "5", "--in-flight", "4", "--rate", "2000"],
        capture_output=True, text=True, check=False).stdout
    lines = [line for line in report.splitlines() if line.startswith(("replies", "errors", "latency"))]
    return "; ".join(" ".join(line.split()) for line in lines)


def cycles(args, started, sample_until):
    """Bursts, mixed load and quiet periods until the run's time is up."""
    sample_until(time.monotonic() + 20)  # warm-up: every path taken
    idle = quiet_rss(args.port, args.pid)
    print(f"idle RSS {idle:.1f} MiB", flush=True)
    worst, cycle = 0.0, 0
    while time.monotonic() - started < args.minutes * 60:
        cycle += 1
        cycle_end = time.monotonic() + args.cycle * 60
        print(f"cycle {cycle} burst: {burst(args)}", flush=True)
        # Leave about a minute and a half for the quiet period.
        sample_until(cycle_end - 90)
        rss = quiet_rss(args.port, args.pid)
        worst = max(worst, rss - idle)
        print(f"cycle {cycle} quiet: RSS {rss:.1f} MiB ({rss - idle:+.1f} over idle)", flush=True)
    print(f"quiet periods: at most {worst:+.1f} MiB over the idle {idle:.1f} MiB in {cycle} cycles",
          flush=True)


if __name__ == "__main__":
    main()
