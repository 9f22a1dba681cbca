"""Headless Chromium driven over the DevTools protocol on a pipe (fds 3 and 4), for the report tests.

No WebDriver, no websocket library: Chromium's ``--remote-debugging-pipe``
reads NUL-terminated JSON commands on fd 3 and writes answers and events on
fd 4. A fresh profile each time, every background service off, and a proxy
on 127.0.0.1 that the browser must use for every request (loopback too), so
a request that leaves the page is recorded by the proxy as well as seen in
the protocol's Network events.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["BROWSER_SERVICE_HOSTS", "Browser", "PageLoad", "RecordingProxy", "chromium_path"]

_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-extensions",
    "--disable-default-apps",
    "--no-default-browser-check",
    "--mute-audio",
    "--hide-scrollbars",
    "--remote-debugging-pipe",
    "--no-pings",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--disable-breakpad",
    "--metrics-recording-only",
    "--disable-features=NetworkTimeServiceQuerying,OptimizationHints,Translate,MediaRouter,"
    "AutofillServerCommunication,CertificateTransparencyComponentUpdater",
)
# Chromium's own services still call home from a fresh profile whatever the flags (the updater,
# account checks); those requests are the browser's, not the page's, and are told apart by host.
BROWSER_SERVICE_HOSTS = (".google.com", ".googleapis.com", ".gstatic.com")


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


class RecordingProxy:
    """An HTTP proxy on 127.0.0.1 that answers every request with 502 and remembers it."""

    def __init__(self) -> None:
        self.requests: list[str] = []  # request lines: "GET http://host/path HTTP/1.1", "CONNECT host:443 ..."
        self._server = socket.socket()
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(16)
        self._server.settimeout(0.2)
        self.port = self._server.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    head = conn.recv(65536).decode("latin-1")
                except OSError:
                    continue
                if head:
                    self.requests.append(head.split("\r\n", 1)[0])
                    try:
                        conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    except OSError:
                        pass

    def page_requests(self) -> list[str]:
        """The recorded requests, less those of Chromium's own background services."""

        def host(line: str) -> str:
            target = line.split(" ")[1] if " " in line else line
            return target.split("//", 1)[-1].split("/", 1)[0].split(":", 1)[0]

        return [line for line in self.requests if not host(line).endswith(BROWSER_SERVICE_HOSTS)]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._server.close()


class PageLoad:
    """What one page load showed: visible text, network requests, a screenshot."""

    def __init__(
        self, text: str, requests: list[str], screenshot: bytes, values: dict[str, Any], pdf: bytes, print_text: str
    ) -> None:
        self.pdf = pdf
        self.print_text = print_text  # the visible text under print media (Ctrl-P)
        self.text = text
        self.requests = requests
        self.screenshot = screenshot
        self.values = values


class Browser:
    """One headless Chromium with a fresh profile; use as a context manager."""

    def __init__(self, proxy_port: int, *, width: int = 1280, height: int = 900) -> None:
        path = chromium_path()
        if path is None:
            raise RuntimeError("chromium is not installed: run .ci/run (installs it) or apt-get install -y chromium")
        self.profile = tempfile.mkdtemp(prefix="orchestrate-chromium-")
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()

        def wire_fds() -> None:  # runs in the child, before exec: the pipe ends become fds 3 and 4
            a, b = os.dup(to_child_r), os.dup(from_child_w)
            os.dup2(a, 3)
            os.dup2(b, 4)

        args = [
            path,
            *_FLAGS,
            f"--user-data-dir={self.profile}",
            f"--window-size={width},{height}",
            f"--proxy-server=http://127.0.0.1:{proxy_port}",
            "--proxy-bypass-list=<-loopback>",
            "about:blank",
        ]
        self.process = subprocess.Popen(
            args,
            preexec_fn=wire_fds,
            close_fds=False,  # noqa: PLW1509
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.send("Browser.close", timeout=5)
        except Exception:
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._to_child)
        os.close(self._from_child)
        shutil.rmtree(self.profile, ignore_errors=True)

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_child], [], [], left)[0]:
                raise TimeoutError("chromium did not answer in time")
            chunk = os.read(self._from_child, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(message)

    def send(
        self, method: str, params: dict[str, Any] | None = None, *, session: str | None = None, timeout: float = 30.0
    ) -> dict[str, Any]:
        self._next_id += 1
        command: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            command["sessionId"] = session
        os.write(self._to_child, json.dumps(command).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            message = self._read_message(deadline)
            if message.get("id") == self._next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def wait_for(self, method: str, *, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        for event in self.events:
            if event.get("method") == method:
                return event
        while True:
            message = self._read_message(deadline)
            self.events.append(message)
            if message.get("method") == method:
                return message

    def load(self, url: str, *, evaluate: tuple[str, ...] = ()) -> PageLoad:
        """Open `url` in a new tab: its visible text, its requests, a screenshot, a print to PDF,
        and `evaluate`'s values."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self.send("Network.enable", session=session)
        self.send("Page.enable", session=session)
        self.events.clear()
        self.send("Page.navigate", {"url": url}, session=session)
        self.wait_for("Page.loadEventFired")
        requests = [
            e["params"]["request"]["url"]
            for e in self.events
            if e.get("method") == "Network.requestWillBeSent" and e.get("sessionId") == session
        ]
        values = {
            expression: self.send(
                "Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=session
            )["result"].get("value")
            for expression in ("document.body.innerText", *evaluate)
        }
        text = values.pop("document.body.innerText")
        shot = self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": False}, session=session)[
            "data"
        ]
        pdf = self.send("Page.printToPDF", {"printBackground": True}, session=session)["data"]
        self.send("Emulation.setEmulatedMedia", {"media": "print"}, session=session)
        print_text = self.send(
            "Runtime.evaluate", {"expression": "document.body.innerText", "returnByValue": True}, session=session
        )["result"]["value"]
        requests += [
            e["params"]["request"]["url"]
            for e in self.events
            if e.get("method") == "Network.requestWillBeSent"
            and e.get("sessionId") == session
            and e["params"]["request"]["url"] not in requests
        ]
        return PageLoad(text, requests, base64.b64decode(shot), values, base64.b64decode(pdf), print_text)


def file_url(path: Path) -> str:
    return path.resolve().as_uri()
