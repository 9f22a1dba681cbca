"""The life of a loopback test server: an HTTP server on 127.0.0.1, serving in a daemon thread
while its `with` block runs. The fake providers subclass it and give it their handler."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self

__all__ = ["LoopbackServer"]


class LoopbackServer:
    port: int
    origin: str  # http://127.0.0.1:PORT

    def _listen(self, handler: type[BaseHTTPRequestHandler], port: int = 0) -> None:
        """Bind (port 0: any free one); serving starts when the `with` block is entered."""
        self._server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.origin = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
