"""A burst of stalled request bodies (for ./scripts/bench): COUNT connections each announce
a 1 MiB body to PATH, send 512 KiB of it and stall; once all are sent, the file SENT is
written; 3 s later they all close.

Usage: body_burst.py PORT PATH COUNT SENT
"""
import socket, sys, time
port, path, count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {1024 * 1024}\r\n\r\n").encode()
chunk = b"x" * (512 * 1024)
sockets, refused = [], 0
for _ in range(count):
    s = socket.create_connection(("127.0.0.1", port))
    s.setblocking(False)
    try:
        s.send(head)
        sent = 0
        while sent < len(chunk):
            try:
                sent += s.send(chunk[sent:])
            except BlockingIOError:
                time.sleep(0.001)
            except OSError:
                refused += 1
                break
    except OSError:
        refused += 1
    sockets.append(s)
print(f"{count} connections sent 512 KiB each ({refused} closed early by the node)", flush=True)
open(sys.argv[4], "w").write("sent")
time.sleep(3)
for s in sockets:
    s.close()
