"""A loopback TCP proxy that can drop every connection through it and refuse new ones, as
a network that goes away does: the browser tests use it to take a page offline (Chromium's
offline emulation leaves open WebSockets alone)."""
import socket
import threading


class TcpProxy:
    def __init__(self, target_port: int):
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.online = True
        self.lock = threading.Lock()
        self.open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def go_offline(self) -> None:
        """Drops every connection now and refuses new ones until `go_online`."""
        with self.lock:
            self.online = False
            for connection in self.open:
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                connection.close()
            self.open.clear()

    def go_online(self) -> None:
        with self.lock:
            self.online = True

    def _accept(self) -> None:
        while True:
            client, _ = self.listener.accept()
            with self.lock:
                if not self.online:
                    client.close()
                    continue
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
                self.open += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        for end in (source, sink):
            try:
                end.close()
            except OSError:
                pass
