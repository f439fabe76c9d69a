"""The load and the samples of ./scripts/soak (standard library only).

Four loads run side by side, each paced, each timing its turns: WebSocket conversations,
REST turns, signed-webhook bridge messages (answered at the receiver this script runs), and
the calculator skill through the tool loop. Every SAMPLE seconds a line gives the node's
RSS, open file descriptors and the period's latency percentiles; the summary compares the
first sample after warm-up (the first tenth of the run, at least one sample) with the last.
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


def paced(period, stop, action):
    """Calls `action` every `period` seconds until `stop` is set."""
    next_at = time.monotonic()
    while not stop.is_set():
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
    for load in loads:
        load.start()
    samples, started = [], time.monotonic()
    print("minute   rss_mib  fds  turns  errors  p50_ms  p99_ms  delivered", flush=True)
    while time.monotonic() - started < args.minutes * 60:
        time.sleep(args.sample)
        rss, fds = node_sample(args.pid)
        latencies, errors, turns = STATS.take()
        row = ((time.monotonic() - started) / 60, rss, fds, turns, errors,
               percentile(latencies, 0.5), percentile(latencies, 0.99), len(DELIVERED))
        samples.append(row)
        print("%6.1f  %8.1f  %3d  %5d  %6d  %6.1f  %6.1f  %9d" % row, flush=True)
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


if __name__ == "__main__":
    main()
