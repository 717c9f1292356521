"""A loopback TCP proxy in front of the S3 server that tests can take down or make lose replies."""

from __future__ import annotations

import select
import socket
import threading

from tests.service import free_port


class FaultyProxy:
    """Forwards 127.0.0.1:port to an upstream; can refuse everything or swallow chosen replies."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self.down = False
        self.swallow_parquet_puts = 0
        self.fail_requests_containing: bytes | None = None
        self.swallowed = 0
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._listener.settimeout(0.2)
        self._stopping = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def endpoint(self) -> str:
        """The URL services should use as their S3 endpoint."""
        return f"http://127.0.0.1:{self.port}"

    def set_down(self, down: bool) -> None:
        """Refuse (accept and reset) every connection, and cut the open ones, while down."""
        self.down = down
        if down:
            with self._lock:
                for sock in list(self._sockets):
                    _close(sock)

    def close(self) -> None:
        """Stop accepting and cut every connection."""
        self._stopping = True
        self.set_down(True)
        self._thread.join(timeout=5)
        self._listener.close()

    def _accept(self) -> None:
        while not self._stopping:
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self.down:
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                client.close()
                continue
            threading.Thread(target=self._pipe, args=(client,), daemon=True).start()

    def _pipe(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
        except OSError:
            _close(client)
            return
        with self._lock:
            self._sockets.update((client, upstream))
        swallow_reply = False
        try:
            while True:
                readable, _, _ = select.select([client, upstream], [], [], 1.0)
                if self.down:
                    return
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if sock is client:
                        first_line = data.split(b"\r\n", 1)[0]
                        if self.fail_requests_containing and self.fail_requests_containing in first_line:
                            client.sendall(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n"
                                           b"Connection: close\r\n\r\n")
                            return
                        if data.startswith(b"PUT ") and b".parquet" in data.split(b"\r\n", 1)[0]:
                            with self._lock:
                                if self.swallow_parquet_puts > 0:
                                    self.swallow_parquet_puts -= 1
                                    swallow_reply = True
                        upstream.sendall(data)
                    elif swallow_reply:
                        with self._lock:
                            self.swallowed += 1
                        return
                    else:
                        client.sendall(data)
        except (OSError, ValueError):  # ValueError: select on a socket another thread closed (taken down)
            return
        finally:
            with self._lock:
                self._sockets.discard(client)
                self._sockets.discard(upstream)
            _close(client)
            _close(upstream)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
