"""Ctrl-C in a real terminal (a pseudo-terminal): the message stays, the cursor comes back.

The run is started under a pty sized 80x30 with no CI variable, so the live
table is on; SIGINT is sent once the first frame is drawn. What the terminal
received is then checked: the cancelling message and the resume hint are
there, no frame is drawn after the message (it would overwrite it), and the
last cursor command shows the cursor (what `tput cnorm` sends).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from tests.terminal import Terminal

REPO = Path(__file__).resolve().parents[1]
HIDE, SHOW = "\x1b[?25l", "\x1b[?25h"
CURSOR_UP = "\x1b[1A"  # rich's live display moves up over its last frame before redrawing

SLOW = """\
name: slow_close
cost_budget: 1.0
agents:
  - name: {name}
    module: Finance
    description: waits
    llm_config: {{model: gpt-4o-mini, max_tokens: 20, provider: simulated, latency: 30}}
    prompt_template: reconcile
"""


def _workflow(tmp_path: Path, agents: int = 3) -> Path:
    text = SLOW.format(name="a0")
    for i in range(1, agents):
        text += SLOW.split("agents:\n", 1)[1].format(name=f"a{i}")
    path = tmp_path / "slow.yaml"
    path.write_text(text)
    return path


def _run_in_pty(tmp_path: Path, signals: int) -> tuple[str, int]:
    return _ctrl_c_in_pty(
        tmp_path, ["run", str(_workflow(tmp_path)), "-o", str(tmp_path / "runs")], "agents done", signals=signals
    )


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX pseudo-terminals")
def test_ctrl_c_leaves_the_message_the_resume_hint_and_a_visible_cursor(tmp_path: Path) -> None:
    screen, code = _run_in_pty(tmp_path, signals=1)
    assert code == 130, screen
    message = screen.index("received SIGINT: cancelling")
    assert HIDE in screen[:message]  # the live table was on
    assert CURSOR_UP not in screen[message:], "a frame was drawn over the message"
    assert screen.rfind(SHOW) > screen.rfind(HIDE), "cursor left hidden"
    run_dir = next((tmp_path / "runs").iterdir())
    tail = screen[message:].replace("\r", "")
    assert "3 cancelled" in tail and "interrupted by SIGINT" in tail
    assert f"--resume {run_dir}" in tail.replace("\n", "")


def _ctrl_c_in_pty(
    tmp_path: Path, args: list[str], wait_for: str, columns: int = 80, signals: int = 1
) -> tuple[str, int]:
    """`orchestrate ARGS` in `tmp_path` under a pty `columns` wide: SIGINT once `wait_for` shows."""
    with Terminal(args, tmp_path, columns=columns) as terminal:
        assert terminal.read_until(wait_for, 60), terminal.screen
        terminal.interrupt(signals)
        code = terminal.finish()
        return terminal.screen, code


def _visible_lines(screen: str) -> list[str]:
    """What the terminal shows, a line at a time: a cursor move or erase starts a line, colours go."""
    text = re.sub(r"\x1b\[(?:\d*[AK])", "\n", screen.replace("\r", ""))
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text).split("\n")


def _words(text: str) -> list[str]:
    return text.split()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX pseudo-terminals")
def test_every_line_printed_on_ctrl_c_fits_80_columns_and_the_notice_breaks_between_words(tmp_path: Path) -> None:
    screen, code = _ctrl_c_in_pty(tmp_path, ["run", str(_workflow(tmp_path)), "-o", "runs"], "agents done")
    assert code == 130, screen
    tail = _visible_lines(screen[screen.index("received SIGINT") :])
    too_long = [line for line in tail if len(line) > 80]
    assert too_long == [], too_long
    assert tail[0] == "received SIGINT: cancelling in-flight calls and writing reports"
    assert tail[1] == "  press Ctrl-C again to exit at once"


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX pseudo-terminals")
def test_every_line_printed_on_ctrl_c_of_a_dataset_run_fits_80_columns(tmp_path: Path) -> None:
    (tmp_path / "rows.jsonl").write_text("".join(f'{{"id": {i}}}\n' for i in range(20)))
    args = ["run", str(_workflow(tmp_path)), "--data", "rows.jsonl", "--key", "id", "-o", "runs"]
    screen, code = _ctrl_c_in_pty(tmp_path, args, "in flight")
    assert code == 130, screen
    tail = _visible_lines(screen[screen.index("received SIGINT") :])
    too_long = [line for line in tail if len(line) > 80]
    assert too_long == [], too_long
    assert tail[0] == "received SIGINT: no more rows; cancelling calls in flight, writing reports"
    assert tail[1] == "  press Ctrl-C again to exit at once"
    text = "\n".join(tail)
    assert "--resume runs/slow_close-" in text and "cancelled" in text


def test_the_signal_notice_breaks_between_words_at_any_width(tmp_path: Path) -> None:
    """At 40 columns the notice takes more lines, each word whole, the continuation indented."""
    args = ["run", str(_workflow(tmp_path)), "-o", "runs", "--no-progress"]
    screen, code = _ctrl_c_in_pty(tmp_path, args, "started (attempt 1", columns=40)
    assert code == 130, screen
    lines = _visible_lines(screen[screen.index("received SIGINT") :])
    notice = lines[: lines.index("  press Ctrl-C again to exit at once")]
    assert all(len(line) <= 40 for line in notice), notice
    assert len(notice) > 1 and all(line.startswith("  ") for line in notice[1:])
    assert _words(" ".join(notice)) == _words("received SIGINT: cancelling in-flight calls and writing reports")
