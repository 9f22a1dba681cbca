"""What trips users in everyday output: graph without inputs, and the like (issue 27)."""

from __future__ import annotations

from pathlib import Path

from tests.cli import orchestrate


def test_graph_needs_no_input_values(tmp_path: Path) -> None:
    (tmp_path / "req.yaml").write_text(
        "name: req\ninputs:\n  vendor: {type: string}\nagents:\n  - name: draft\n    module: Finance\n"
        "    prompt_template: Screen {vendor}.\n    llm_config: {model: gpt-4o-mini}\n",
        encoding="utf-8",
    )
    for fmt in ("tree", "mermaid", "json"):
        done = orchestrate("graph", "req.yaml", "--format", fmt, cwd=tmp_path)
        assert done.returncode == 0 and "--input" not in done.stderr, done.stderr
        assert "draft" in done.stdout
    assert "req (1 agent)" in orchestrate("graph", "req.yaml", cwd=tmp_path).stdout
