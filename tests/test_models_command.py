"""`orchestrate models`: the models with a price, what they cost and accept; a workflow's prices: added."""

from __future__ import annotations

import json
from pathlib import Path

from orchestrate.llm.prices import price_table
from tests.test_answer import orchestrate


def test_models_lists_the_price_table_with_capabilities(tmp_path: Path) -> None:
    listed = json.loads(orchestrate("models", "--format", "json", cwd=tmp_path).stdout)["models"]
    table = price_table()["models"]
    assert {e["model"] for e in listed} == set(table)
    mini = next(e for e in listed if e["model"] == "gpt-4o-mini")
    assert mini["provider"] == "openai" and mini["prices"]["input"] == table["gpt-4o-mini"]["input"]
    assert mini["batch_share"] == 0.5 and mini["capabilities"]["tools"] is True
    text = orchestrate("models", "--provider", "openai", cwd=tmp_path).stdout
    row = next(line for line in text.splitlines() if line.startswith("│ gpt-4o-mini "))
    assert f"{table['gpt-4o-mini']['input'] * 1000:.2f}" in row and "50%" in row
    assert "claude" not in text


def test_a_workflows_own_prices_are_listed_and_win(tmp_path: Path) -> None:
    flow = tmp_path / "local.yaml"
    flow.write_text(
        "name: local\nprices:\n  llama-3.1-8b: {input: 0, output: 0}\n  gpt-4o-mini: {input: 0.0001, output: 0.0002}\n"
        "agents:\n  - name: a\n    module: Finance\n    llm_config: {model: llama-3.1-8b}\n    prompt_template: hi\n"
    )
    listed = {
        e["model"]: e for e in json.loads(orchestrate("models", str(flow), "--json", cwd=tmp_path).stdout)["models"]
    }
    assert listed["llama-3.1-8b"]["source"] == "workflow" and listed["llama-3.1-8b"]["prices"]["output"] == 0
    assert listed["gpt-4o-mini"]["source"] == "workflow" and listed["gpt-4o-mini"]["prices"]["input"] == 0.0001
    assert listed["gpt-4o-mini"]["prices"]["cached_input"] == price_table()["models"]["gpt-4o-mini"]["cached_input"]
    text = orchestrate("models", str(flow), cwd=tmp_path).stdout
    assert "llama-3.1-8b (workflow)" in text


def test_an_unknown_provider_is_one_clear_line(tmp_path: Path) -> None:
    done = orchestrate("models", "--provider", "nosuch", cwd=tmp_path)
    assert (
        done.returncode == 2
        and done.stderr.strip() == "error: --provider nosuch: no model of that provider has a price"
    )
