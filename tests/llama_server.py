"""A real llama.cpp server on 127.0.0.1: llama-cpp-python's OpenAI-compatible server
(``python -m llama_cpp.server``, the test extra ``orchestrate[llama]``) serving the tiny
model of tests/tiny_gguf.py under the name ``tiny-llama``.

Without llama-cpp-python the tests that use it are skipped on a developer's machine and
fail in CI (``CI=true``), where ``.ci/run`` installs the extra.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.needs import need

__all__ = ["MODEL", "LlamaServer", "need_llama_cpp"]

MODEL = "tiny-llama"


def need_llama_cpp() -> None:
    """Skip (fail in CI) when llama-cpp-python or gguf is not installed (it builds llama.cpp: minutes)."""
    need("llama_cpp", "gguf", extra="test,llama")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LlamaServer:
    """One server process; `url` is its OpenAI base (``http://127.0.0.1:PORT/v1``)."""

    def __init__(self, model: Path, *, context: int, log: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.context = context
        self._log = log
        command = [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--model_alias", MODEL]
        command += ["--n_ctx", str(context), "--chat_format", "chatml", "--n_threads", "1", "--seed", "29"]
        command += ["--host", "127.0.0.1", "--port", str(self.port)]
        self._out = log.open("wb")
        self._process = subprocess.Popen(command, stdout=self._out, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Until it lists its model (loading takes a few seconds on a loaded machine)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"llama.cpp server exited: {self._log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/models", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"llama.cpp server not ready in {timeout}s: {self._log.read_text()[-2000:]}")

    def stop(self) -> None:
        self._process.terminate()
        try:
            self._process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._out.close()
