"""Ctrl-C outside a run (a run handles it itself: tests/test_interrupt.py) is news, not an error."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

WORKFLOW = Path(__file__).resolve().parents[1] / "workflows" / "invoice_review.yaml"  # an openai model


def test_ctrl_c_while_a_command_waits_is_one_plain_line_and_exit_130(tmp_path: Path) -> None:
    with socket.socket() as silent:  # accepts, never answers: doctor waits on it
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        env = {
            **{k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")},
            "OPENAI_API_KEY": "sk-test-ctrl-c-0123456789",
            "OPENAI_BASE_URL": f"http://127.0.0.1:{port}/v1",
            "CI": "true",
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "orchestrate", "doctor", str(WORKFLOW)],
            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        silent.settimeout(60)
        connection, _ = silent.accept()  # doctor is now waiting for the endpoint's answer
        with connection:
            time.sleep(0.2)
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "error:" not in err and "Traceback" not in err and "sk-test" not in err
