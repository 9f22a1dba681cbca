"""An approval runs its agent once: resuming the same waiting folder again never pays twice.

The approved agent is a code step with a side effect (it appends a line to a ledger
file, as a payment would). Approve, resume, Ctrl-C after the payment, resume the
first folder again: refused, naming the run that acted on it, and the ledger holds
one line. Two resumes of the same folder at once: one runs it, the other is refused.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.cli import orchestrate

STEPS = """\
import os
import time
from pathlib import Path

LEDGER = Path(__file__).with_name("ledger.txt")


def pay(amount):
    with open(LEDGER, "a") as handle:
        handle.write(f"paid {amount} by pid {os.getpid()}\\n")
    return {"paid": amount}


def settle():
    if os.environ.get("SETTLE_SLOWLY"):
        time.sleep(60)
    return {"settled": True}
"""

FLOW = """\
name: vendor_payment
cost_budget: 1.0
defaults: {module: Finance}
agents:
  - name: pay
    function: "pay_steps:pay"
    arguments: {amount: 1250}
    approval: {message: "Pay 1250 to the vendor?"}
  - name: settle
    dependencies: [pay]
    function: "pay_steps:settle"
"""


def _setup(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "pay_steps.py").write_text(STEPS)
    (tmp_path / "payment.yaml").write_text(FLOW)
    done = orchestrate("run", "payment.yaml", "--simulate", "-o", "runs", cwd=tmp_path)
    assert done.returncode == 4, done.stderr  # waiting for approval
    (waiting,) = (tmp_path / "runs").iterdir()
    approved = orchestrate("approve", str(waiting), "pay", "--by", "controller", cwd=tmp_path)
    assert approved.returncode == 0, approved.stderr
    return waiting, tmp_path / "ledger.txt"


def _payments(ledger: Path) -> int:
    return len(ledger.read_text().splitlines()) if ledger.exists() else 0


def test_resuming_the_waiting_folder_again_after_an_interrupted_resume_never_pays_twice(tmp_path: Path) -> None:
    waiting, ledger = _setup(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.update(CI="true", SETTLE_SLOWLY="1")
    first = subprocess.Popen(
        [sys.executable, "-m", "orchestrate", "run", "--resume", str(waiting)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while _payments(ledger) == 0 and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.05)
    assert _payments(ledger) == 1, first.communicate()
    first.send_signal(signal.SIGINT)  # Ctrl-C while settle runs, after the payment
    _, stderr = first.communicate(timeout=60)
    assert first.returncode == 130, stderr
    resumed = sorted(p for p in (tmp_path / "runs").iterdir() if p != waiting)
    assert len(resumed) == 1
    second = resumed[0]

    again = orchestrate("run", "--resume", str(waiting), cwd=tmp_path)
    assert again.returncode == 2, (again.stdout, again.stderr)
    named = second.relative_to(tmp_path)  # as the run was given its folder: -o runs
    assert f"already acted on by the resumed run {named}" in again.stderr
    assert f"resume {named} instead" in again.stderr
    assert again.stderr.startswith("error: ") and again.stderr.count("\n") == 1 and again.stdout == ""  # said alone
    assert _payments(ledger) == 1
    assert sorted(p for p in (tmp_path / "runs").iterdir()) == sorted([waiting, second])  # no empty folder left

    finished = orchestrate("run", "--resume", str(second), "--json", cwd=tmp_path)
    assert finished.returncode == 0, finished.stderr
    assert json.loads(finished.stdout)["runs"][0]["status"] == "completed"
    assert _payments(ledger) == 1  # the payment that completed in the second run was reused


def test_two_resumes_of_one_waiting_folder_at_once_pay_once(tmp_path: Path) -> None:
    waiting, ledger = _setup(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env["CI"] = "true"
    both = [
        subprocess.Popen(
            [sys.executable, "-m", "orchestrate", "run", "--resume", str(waiting)],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outcomes = sorted((p.wait(timeout=120), p.communicate()[1]) for p in both)
    assert [code for code, _ in outcomes] == [0, 2], outcomes
    assert "already acted on by the resumed run" in outcomes[1][1]
    assert _payments(ledger) == 1
    document = json.loads((waiting / "approvals.json").read_text())
    assert document["decisions"]["pay"]["approved"] is True  # the decision itself is kept as it was
    assert set(document["acted_on"]) == {"pay"}
