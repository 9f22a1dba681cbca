"""`latest` names the newest run folder for `audit verify` and `audit show` too, as for show and report."""

from __future__ import annotations

from pathlib import Path

from tests import cli

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = str(ROOT / "workflows" / "finance_month_end_close.yaml")


def test_audit_verify_and_show_take_latest(tmp_path: Path) -> None:
    for _ in range(2):
        done = cli.orchestrate("run", WORKFLOW, "--simulate", "-q", cwd=tmp_path, columns=80, ci=False)
        assert done.returncode == 0, done.stderr
    newest = max((tmp_path / "runs").iterdir(), key=lambda p: p.name)
    verified = cli.orchestrate("audit", "verify", "latest", cwd=tmp_path, columns=80, ci=False)
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.startswith(f"runs/{newest.name}: ok")
    shown = cli.orchestrate("audit", "show", "@latest", cwd=tmp_path, columns=80, ci=False)
    direct = cli.orchestrate("audit", "show", f"runs/{newest.name}", cwd=tmp_path, columns=80, ci=False)
    assert shown.returncode == 0 and shown.stdout == direct.stdout and "run_started" in shown.stdout


def test_latest_with_no_run_yet_is_one_line(tmp_path: Path) -> None:
    done = cli.orchestrate("audit", "verify", "latest", cwd=tmp_path, columns=80, ci=False)
    assert done.returncode == 2 and done.stderr == "error: latest: no run folder in ./runs yet\n"
