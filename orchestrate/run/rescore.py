"""Scoring what a run already recorded (`orchestrate eval`), and comparing with a baseline.

A run folder holds result.json (one case); a dataset folder holds rows.jsonl
(a case per row, with the columns its expectations read). Each case's agents
are scored as recorded, with the expectations of the workflow given (perhaps
edited since): the deterministic kinds call nothing; a rubric asks its judge
only when asked to, through an engine under a budget.

A baseline is an earlier run or dataset folder (or an eval file); each case's
outcomes are compared with its own, by case key and expectation: the cases
that went pass -> fail (a regression) and fail -> pass, each expectation's pass
rate then and now, and the cost and seconds per case.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from orchestrate.errors import UserInputError
from orchestrate.fsutil import read_regular_text, regular_lines
from orchestrate.run.evaluation import EvaluationTotals, Evaluator, row_line
from orchestrate.run.protection import shown_reason
from orchestrate.workflow.models import Workflow

__all__ = ["Case", "Comparison", "compare", "fill_columns", "keeps_content", "load_cases", "outcomes_of", "rescore"]


@dataclass
class Case:
    """One recorded run (or dataset row) as eval reads it."""

    key: str
    document: dict[str, Any]

    @property
    def results(self) -> dict[str, dict[str, Any]]:
        return {a["name"]: a for a in self.document.get("agents") or []}

    @property
    def tries(self) -> list[Mapping[str, Any]]:
        """Every try recorded (``--repeat K``): the case's own (its first) and each later one's
        (``repeat.runs``), each with ``agents``, ``outputs``, ``started_at``, ``completed_at``."""
        repeat = self.document.get("repeat")
        later = repeat.get("runs") if isinstance(repeat, Mapping) else None
        return [self.document, *(r for r in later or () if isinstance(r, Mapping))]

    @property
    def unrecorded_tries(self) -> int:
        """Tries the run made whose answers the folder does not hold (written before it kept them)."""
        repeat = self.document.get("repeat")
        if not isinstance(repeat, Mapping):
            return 0
        return max(0, int(repeat.get("tries") or 1) - 1 - len(repeat.get("runs") or ()))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(read_regular_text(path))
    except OSError as exc:
        raise UserInputError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise UserInputError(f"{path}: not valid JSON: {exc}") from None


def load_cases(run_dir: Path) -> list[Case]:
    """The cases recorded in a run folder (result.json) or a dataset folder (rows.jsonl)."""
    rows = run_dir / "rows.jsonl"
    if rows.is_file():
        cases: dict[str, Case] = {}
        for number, line in enumerate(regular_lines(rows), 1):
            if not line.strip():
                continue
            try:
                document = json.loads(line)
            except ValueError:
                raise UserInputError(f"{rows}:{number}:1: not valid JSON") from None
            cases[str(document.get("key"))] = Case(str(document.get("key")), document)  # a resumed row: its last
        return list(cases.values())
    result = run_dir / "result.json"
    if not result.is_file():
        raise UserInputError(f"{run_dir}: not a run folder (no result.json or rows.jsonl)")
    return [Case("run", _read_json(result))]


def fill_columns(cases: list[Case], template: Workflow, run_dir: Path, data: Path | None) -> str | None:
    """Give the cases of a dataset folder written before rows.jsonl kept the columns that
    expectations read (``columns``) those columns, from the data file it ran on, by row key.

    The data file is `data`, else the one the folder's result.json names (as given when it
    ran, so relative to where it ran). Returns why it could not be done (None: done, or
    nothing was missing); the cases are then scored without them (errors naming the column).
    """
    from orchestrate.workflow.dataset import Dataset, Row
    from orchestrate.workflow.expectations import row_columns

    wanted = row_columns(template)
    missing = [c for c in cases if c.key != "run" and wanted - set(c.document.get("columns") or {})]
    if not wanted or not missing:
        return None
    recorded: dict[str, Any] = {}
    try:
        recorded = json.loads(read_regular_text(run_dir / "result.json"))
    except (OSError, ValueError):
        pass
    named = sorted(wanted)[:3]
    if data is None and isinstance(recorded.get("data"), str) and recorded["data"] not in ("-", "<stdin>"):
        data = Path(recorded["data"])
    if data is None or not data.is_file():
        where = f" ({data} is not there)" if data is not None else ""
        return (
            f"{run_dir}: its rows.jsonl does not hold the columns the expectations read ({', '.join(named)}; "
            f"a folder written before expectations kept them){where}: give --data FILE, the data file it ran on"
        )
    dataset = Dataset(
        data,
        workflow_name=template.name,
        declared=template.inputs,
        key=recorded.get("key") if isinstance(recorded.get("key"), str) else None,
        label=str(data),
        columns=wanted,
    )
    # Every column is read (a column the run's --answers read is in the file too): none is refused.
    dataset.columns = frozenset(_header(data, dataset.format)) - set(template.inputs)
    found: dict[str, dict[str, Any]] = {}
    for item in dataset:
        if isinstance(item, Row):
            found[item.key] = {**item.values, **item.columns}
    unmatched = 0
    for case in missing:
        values = found.get(case.key)
        if values is None:
            unmatched += 1
            continue
        case.document["columns"] = {name: values[name] for name in wanted if name in values}
    if unmatched:
        return f"{data}: {unmatched} of the {len(missing)} recorded rows are not in it (matched by key)"
    return None


def _header(path: Path, form: str) -> set[str]:
    """The column names of a CSV file's header, or every key of a JSONL file's objects."""
    import csv

    with open(path, encoding="utf-8-sig", newline="") as handle:
        if form == "csv":
            delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
            return {name.strip() for name in next(csv.reader(handle, delimiter=delimiter), [])}
        names: set[str] = set()
        for line in handle:
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                names.update(value)
        return names


def _moment(text: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(text) if isinstance(text, str) else None
    except ValueError:
        return None


async def rescore(
    template: Workflow,
    cases: list[Case],
    *,
    engine: Any = None,
    budget_account: str | None = None,
    min_pass_rate: float | None = None,
) -> tuple[EvaluationTotals, list[dict[str, Any]]]:
    """Each case scored with `template`'s expectations: the totals, and a line per case.

    A case run with ``--repeat K`` is scored on every try it recorded, as the run scored it:
    its pass rate over the tries and pass^K, held to `min_pass_rate` (None: every try)."""
    from orchestrate.run.evaluation import repeated
    from orchestrate.workflow.dataset import instantiate

    evaluator = Evaluator(template)
    repeat = max((len(case.tries) for case in cases), default=1)
    totals = EvaluationTotals(repeat=repeat, min_pass_rate=min_pass_rate)
    lines = []
    for index, case in enumerate(cases):
        doc = case.document
        row = {**(doc.get("inputs") or {}), **(doc.get("columns") or {})}
        documents = []
        for n, recorded in enumerate(case.tries, 1):
            workflow = instantiate(
                template, dict(doc.get("inputs") or {}), f"eval-{index}" + (f".{n}" if n > 1 else "")
            )
            workflow.output_values = dict(recorded.get("outputs") or {})
            workflow.started_at = _moment(recorded.get("started_at"))
            workflow.completed_at = _moment(recorded.get("completed_at"))
            results = {a["name"]: a for a in recorded.get("agents") or [] if isinstance(a, Mapping) and "name" in a}
            if engine is not None:
                engine.cost_tracker.set_workflow_budget(workflow.id, None, parent=budget_account)
                engine.workflows[workflow.id] = workflow
            try:
                documents.append(await evaluator.evaluate(workflow, engine=engine, row=row, results=results))
            finally:
                if engine is not None:
                    engine.workflows.pop(workflow.id, None)
        document = documents[0] if len(documents) == 1 else repeated(documents)
        totals.add(document, case.key)
        lines.append(
            {
                "key": case.key,
                # What the case cost when it ran, its judges (and --repeat tries) included, as
                # results.jsonl counts it; from the agents, as folders written before total_cost
                # counted the judges did not.
                "cost": sum(float(a.get("cost") or 0.0) for a in doc.get("agents") or ())
                + float((doc.get("expectations") or {}).get("judge_cost") or 0.0)
                + float((doc.get("repeat") or {}).get("cost") or 0.0),
                "seconds": doc.get("duration_seconds"),
                **row_line(document),
            }
        )
    return totals, lines


def keeps_content(template: Workflow, cases: list[Case]) -> bool:
    """Whether what eval writes and prints may quote the answers: not when the run kept no
    content (``store_content: false`` or ``--no-content`` when it ran) nor when the workflow
    scoring it says so."""
    from orchestrate.run.protection import Policy

    if not Policy.from_dict(template.data_protection).store_content:
        return False
    for case in cases:
        policy = case.document.get("data_protection")
        if case.document.get("content_kept") is False or (
            isinstance(policy, Mapping) and policy.get("store_content") is False
        ):
            return False
    return True


def outcomes_of(path: Path) -> dict[str, dict[str, Any]]:
    """Per case key, its recorded evaluation line (counts, outcomes, cost, seconds), from a run
    folder, a dataset folder, or an eval file (eval-*.json)."""
    if path.is_file():
        document = _read_json(path)
        return {str(c["key"]): c for c in document.get("cases", [])}
    results = path / "results.jsonl"
    if results.is_file():
        found: dict[str, dict[str, Any]] = {}
        for line in regular_lines(results):
            if line.strip():
                entry = json.loads(line)
                evaluation = entry.get("expectations") or {"outcomes": []}
                found[str(entry.get("key"))] = {
                    **evaluation,
                    "cost": entry.get("cost"),
                    "seconds": entry.get("seconds"),
                }
        return found
    result = path / "result.json"
    if not result.is_file():
        raise UserInputError(f"--baseline {path}: not a run folder, dataset folder or eval file")
    document = _read_json(result)
    evaluation = document.get("expectations") or {"outcomes": []}
    return {"run": {**evaluation, "cost": document.get("total_cost"), "seconds": document.get("duration_seconds")}}


@dataclass
class Comparison:
    """What changed against a baseline."""

    regressions: list[dict[str, Any]] = field(default_factory=list)  # pass -> fail (or error)
    fixes: list[dict[str, Any]] = field(default_factory=list)  # fail/error -> pass
    rates: list[dict[str, Any]] = field(default_factory=list)  # per expectation: before, after, delta
    cost: dict[str, float | None] = field(default_factory=dict)  # mean per case: before, after
    seconds: dict[str, float | None] = field(default_factory=dict)
    tolerance: float = 0.0

    @property
    def dropped(self) -> list[dict[str, Any]]:
        """Expectations whose pass rate fell by more than the tolerance."""
        return [r for r in self.rates if r["delta"] is not None and r["delta"] < -self.tolerance - 1e-12]

    @property
    def regressed(self) -> bool:
        return bool(self.regressions or self.dropped)

    def to_dict(self) -> dict[str, Any]:
        return {
            "regressions": self.regressions,
            "fixes": self.fixes,
            "pass_rates": self.rates,
            "cost_per_case": self.cost,
            "seconds_per_case": self.seconds,
            "tolerance": self.tolerance,
            "regressed": self.regressed,
        }

    def lines(self, limit: int = 5) -> Iterator[str]:
        yield (
            f"baseline: {len(self.regressions)} pass -> fail, {len(self.fixes)} fail -> pass"
            + (f", {len(self.dropped)} pass rate(s) down more than {self.tolerance:g}" if self.dropped else "")
        )
        for r in self.regressions[:limit]:
            yield f"  regressed: {r['key']}: {r['agent']}: {r['name']}: {shown_reason(r.get('reason')) or r['status']}"
        for r in self.dropped[:limit]:
            yield f"  pass rate: {r['agent']}: {r['name']}: {r['before']:.0%} -> {r['after']:.0%}"
        if self.cost.get("before") is not None and self.cost.get("after") is not None:
            yield f"  cost per case: ${self.cost['before']:.6f} -> ${self.cost['after']:.6f}"
        if self.seconds.get("before") is not None and self.seconds.get("after") is not None:
            yield f"  seconds per case: {self.seconds['before']:.2f} -> {self.seconds['after']:.2f}"


def _statuses(entry: Mapping[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(o["agent"], o["name"]): o for o in entry.get("outcomes", ())}


def _rates(cases: Mapping[str, Mapping[str, Any]]) -> dict[tuple[str, str], tuple[int, int]]:
    counts: dict[tuple[str, str], tuple[int, int]] = {}
    for entry in cases.values():
        for key, o in _statuses(entry).items():
            if o["status"] == "skipped":
                continue
            passed, total = counts.get(key, (0, 0))
            counts[key] = (passed + (o["status"] == "pass"), total + 1)
    return counts


def _mean(cases: Mapping[str, Mapping[str, Any]], field_name: str) -> float | None:
    values = [float(c[field_name]) for c in cases.values() if isinstance(c.get(field_name), (int, float))]
    return round(sum(values) / len(values), 10) if values else None


def compare(
    current: Mapping[str, Mapping[str, Any]], baseline: Mapping[str, Mapping[str, Any]], *, tolerance: float = 0.0
) -> Comparison:
    """The changes from `baseline` to `current` (both: case key -> evaluation line)."""
    result = Comparison(tolerance=tolerance)
    for key, entry in current.items():
        before = baseline.get(key)
        if before is None:
            continue
        then = _statuses(before)
        for name, outcome in _statuses(entry).items():
            old = then.get(name)
            if old is None:
                continue
            change = {
                "key": key,
                "agent": name[0],
                "name": name[1],
                "status": outcome["status"],
                "reason": outcome.get("reason", ""),
            }
            if old["status"] == "pass" and outcome["status"] in ("fail", "error"):
                result.regressions.append(change)
            elif old["status"] in ("fail", "error") and outcome["status"] == "pass":
                result.fixes.append(change)
    shared = {k: v for k, v in baseline.items() if k in current}
    before_rates, after_rates = _rates(shared), _rates(current)
    for name in sorted(set(before_rates) | set(after_rates)):
        b, a = before_rates.get(name), after_rates.get(name)
        rate_then = b[0] / b[1] if b and b[1] else None
        rate_now = a[0] / a[1] if a and a[1] else None
        delta = round(rate_now - rate_then, 6) if rate_then is not None and rate_now is not None else None
        result.rates.append({"agent": name[0], "name": name[1], "before": rate_then, "after": rate_now, "delta": delta})
    result.cost = {"before": _mean(shared, "cost"), "after": _mean(current, "cost")}
    result.seconds = {"before": _mean(shared, "seconds"), "after": _mean(current, "seconds")}
    return result


def gate(code: int, run_dir: Path, baseline: Path | None, tolerance: float, write: Any) -> int:
    """After a run: compare its folder with `baseline` (when given), say what changed with
    `write`, record it in baseline.json, and return EXIT_REGRESSION when it regressed
    (`code` otherwise, or when the run itself failed)."""
    if baseline is None:
        return code
    from orchestrate.run.evaluation import EXIT_EXPECTATIONS, EXIT_REGRESSION, write_evaluation

    comparison = compare(outcomes_of(run_dir), outcomes_of(baseline), tolerance=tolerance)
    write_evaluation(run_dir, {"path": str(baseline), **comparison.to_dict()}, "baseline.json", kind="baseline")
    for line in comparison.lines():
        write(line)
    if comparison.regressed and code in (0, EXIT_EXPECTATIONS):
        return EXIT_REGRESSION
    return code


def check_baseline(baseline: Path | None) -> None:
    """Refuse, before anything is paid for, a --baseline that cannot be read."""
    if baseline is not None:
        outcomes_of(baseline)
