"""`--shard auto`: each platform's variables, the refusal without them, a restarted index resuming its folder,
and the example manifests checked for the fields we rely on."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from orchestrate.errors import UserInputError
from orchestrate.run.shards import PLATFORM_VARIABLES, dataset_digest, resolve_shard, shard_from_environment
from tests.test_shared_processes import environment

ROOT = Path(__file__).resolve().parents[1]
PLATFORM = ("JOB_COMPLETION_INDEX", "CLOUD_RUN_TASK_INDEX", "AWS_BATCH_JOB_ARRAY_INDEX", "ORCHESTRATE_SHARD_INDEX")


def _env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in environment().items() if k not in PLATFORM}
    return {**env, **extra}


def orchestrate(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "orchestrate", *args]
    return subprocess.run(command, cwd=cwd, env=_env(env or {}), capture_output=True, text=True, timeout=120)


def spawn(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "orchestrate", *args]
    return subprocess.Popen(command, cwd=cwd, env=_env(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize(
    ("environ", "shards", "expected", "source"),
    [
        ({"JOB_COMPLETION_INDEX": "0"}, 8, (1, 8), "Kubernetes Indexed Job"),
        ({"JOB_COMPLETION_INDEX": "7"}, 8, (8, 8), "JOB_COMPLETION_INDEX=7"),
        ({"CLOUD_RUN_TASK_INDEX": "2", "CLOUD_RUN_TASK_COUNT": "10"}, None, (3, 10), "Cloud Run job"),
        ({"AWS_BATCH_JOB_ARRAY_INDEX": "4", "AWS_BATCH_JOB_ARRAY_SIZE": "5"}, None, (5, 5), "AWS Batch array job"),
        ({"AWS_BATCH_JOB_ARRAY_INDEX": "1"}, 3, (2, 3), "AWS Batch array job"),
        ({"ORCHESTRATE_SHARD_INDEX": "3", "ORCHESTRATE_SHARD_COUNT": "4"}, None, (4, 4), "ORCHESTRATE_SHARD_INDEX"),
        # Our own variables win over a platform's (a matrix inside a pod, a wrapper that knows better).
        (
            {"ORCHESTRATE_SHARD_INDEX": "0", "ORCHESTRATE_SHARD_COUNT": "2", "JOB_COMPLETION_INDEX": "5"},
            None,
            (1, 2),
            "",
        ),
    ],
)
def test_the_shard_comes_from_the_platforms_variables(
    environ: dict[str, str], shards: int | None, expected: tuple[int, int], source: str
) -> None:
    found = shard_from_environment(environ, shards)
    assert found.pair == expected and source in found.source


@pytest.mark.parametrize(
    ("environ", "shards", "message"),
    [
        ({}, None, "no shard index in the environment"),
        ({"PATH": "/bin"}, 4, "no shard index in the environment"),
        ({"JOB_COMPLETION_INDEX": "2"}, None, "pass --shards N"),
        ({"JOB_COMPLETION_INDEX": "8"}, 8, "must be below the count 8"),
        ({"JOB_COMPLETION_INDEX": "x"}, 8, "not a whole number"),
        (
            {"CLOUD_RUN_TASK_INDEX": "1", "CLOUD_RUN_TASK_COUNT": "3"},
            4,
            "--shards 4 disagrees with CLOUD_RUN_TASK_COUNT=3",
        ),
        ({"CLOUD_RUN_TASK_INDEX": "-1", "CLOUD_RUN_TASK_COUNT": "3"}, None, "must be at least 0"),
    ],
)
def test_missing_or_inconsistent_variables_are_refused(
    environ: dict[str, str], shards: int | None, message: str
) -> None:
    with pytest.raises(UserInputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        shard_from_environment(environ, shards)


def test_shards_goes_only_with_auto() -> None:
    with pytest.raises(UserInputError, match="--shards N goes with --shard auto"):
        resolve_shard("2/4", 4, {})
    assert resolve_shard("2/4", None, {"JOB_COMPLETION_INDEX": "0"}) == ((2, 4), None)


def _dataset(folder: Path, rows: int) -> None:
    (folder / "rows.jsonl").write_text("".join(f'{{"invoice": "INV-{i:04d}"}}\n' for i in range(rows)))
    (folder / "inv.yaml").write_text(
        "name: invoices\ninputs:\n  invoice: {type: string}\n"
        "defaults:\n  llm_config: {model: gpt-4o-mini, max_tokens: 100}\n"
        "agents:\n  - {name: check, module: Finance, prompt_template: 'Check invoice {invoice}.'}\n"
    )


def test_run_refuses_shard_auto_outside_a_platform(tmp_path: Path) -> None:
    _dataset(tmp_path, 4)
    done = orchestrate("run", "inv.yaml", "--simulate", "--data", "rows.jsonl", "--shard", "auto", cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "--shard auto: no shard index in the environment" in done.stderr
    assert not (tmp_path / "runs").exists()  # refused before any folder was made


def test_a_restarted_index_resumes_its_own_folder(tmp_path: Path) -> None:
    _dataset(tmp_path, 40)
    args = ("run", "inv.yaml", "--simulate", "--data", "rows.jsonl", "--shard", "auto", "--shards", "2", "-o", "out")
    env = {"JOB_COMPLETION_INDEX": "1"}
    first = spawn(*args, "--sim-latency", "0.2", "--max-rows-parallel", "2", cwd=tmp_path, env=env)
    folder = tmp_path / "out" / f"invoices-{dataset_digest(tmp_path / 'rows.jsonl')}-shard-2-of-2"
    try:
        deadline = time.monotonic() + 60
        while not (folder / "results.jsonl").exists() or len((folder / "results.jsonl").read_text().splitlines()) < 3:
            assert time.monotonic() < deadline and first.poll() is None, "the first start never got going"
            time.sleep(0.02)
    finally:
        first.send_signal(signal.SIGKILL)  # the node is lost
        first.communicate(timeout=30)
    done_before = {json.loads(line)["key"] for line in (folder / "results.jsonl").read_text().splitlines()}
    assert 3 <= len(done_before) < 20
    again = orchestrate(*args, "--sim-latency", "0.001", cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stderr
    assert f"JOB_COMPLETION_INDEX=1 (Kubernetes Indexed Job): resuming {Path('out') / folder.name}" in again.stderr
    assert [p.name for p in (tmp_path / "out").iterdir()] == [folder.name]  # no second folder
    results = [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines()]
    completed = [r["row"] for r in results if r["status"] == "completed"]
    assert sorted(completed) == list(range(2, 41, 2))  # shard 2 of 2: rows 2, 4, ... 40, each once
    calls = Counter(json.loads(line)["row"] for line in (folder / "calls.jsonl").read_text().splitlines())
    assert set(calls) == {r["key"] for r in results} and set(calls.values()) == {1}  # no row paid twice


def _container(job: dict[str, object]) -> dict[str, object]:
    spec = job["spec"]
    assert isinstance(spec, dict)
    (container,) = spec["template"]["spec"]["containers"]
    return dict(container)


def test_the_kubernetes_example_is_an_indexed_job_we_can_run() -> None:
    job = yaml.safe_load((ROOT / "examples" / "kubernetes-indexed-job.yaml").read_text())
    assert (job["apiVersion"], job["kind"]) == ("batch/v1", "Job")
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed" and spec["completions"] >= 2
    assert isinstance(spec["backoffLimitPerIndex"], int) and spec["backoffLimitPerIndex"] >= 1
    assert spec["template"]["spec"]["restartPolicy"] == "Never"  # what backoffLimitPerIndex requires
    (rule,) = spec["podFailurePolicy"]["rules"]
    assert rule["action"] == "FailIndex" and rule["onExitCodes"]["values"] == [2]  # invalid input: no retry
    container = _container(job)
    command = [str(part) for part in container["command"]]  # type: ignore[attr-defined]
    assert command[:2] == ["orchestrate", "run"]
    assert command[command.index("--shard") + 1] == "auto"
    assert int(command[command.index("--shards") + 1]) == spec["completions"]
    env = {e["name"]: e for e in container["env"]}  # type: ignore[attr-defined]
    assert env["ORCHESTRATE_STATE_URL"]["valueFrom"]["secretKeyRef"]["key"]
    output = command[command.index("--output-dir") + 1]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}  # type: ignore[attr-defined]
    volumes = {v["name"]: v for v in spec["template"]["spec"]["volumes"]}
    (runs,) = [name for name, path in mounts.items() if path == output]
    assert "persistentVolumeClaim" in volumes[runs]
    # Every option of the command is one `orchestrate run` knows.
    shown = orchestrate("run", "-h", cwd=ROOT)
    for part in command:
        if part.startswith("--"):
            assert part in shown.stdout, part


def test_the_cloud_run_example_is_a_job_of_automatic_shards_we_can_run() -> None:
    job = yaml.safe_load((ROOT / "examples" / "cloud-run-job.yaml").read_text())
    assert (job["apiVersion"], job["kind"]) == ("run.googleapis.com/v1", "Job")
    execution = job["spec"]["template"]
    assert execution["metadata"]["annotations"]["run.googleapis.com/execution-environment"] == "gen2"
    assert (
        execution["spec"]["taskCount"] >= 2 and 1 <= execution["spec"]["parallelism"] <= execution["spec"]["taskCount"]
    )
    task = execution["spec"]["template"]["spec"]
    assert isinstance(task["maxRetries"], int) and task["maxRetries"] >= 1  # a retried task resumes its folder
    (container,) = task["containers"]
    command = [str(part) for part in [*container["command"], *container["args"]]]
    assert command[:2] == ["orchestrate", "run"]
    assert command[command.index("--shard") + 1] == "auto"
    assert "--shards" not in command  # CLOUD_RUN_TASK_COUNT gives the count
    env = {e["name"]: e for e in container["env"]}
    assert env["ORCHESTRATE_STATE_URL"]["valueFrom"]["secretKeyRef"]["key"] == "latest"
    output = command[command.index("--output-dir") + 1]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in task["volumes"]}
    (runs,) = [name for name, path in mounts.items() if path == output]
    assert volumes[runs]["csi"]["driver"] == "gcsfuse.run.googleapis.com" and not volumes[runs]["csi"].get("readOnly")
    assert set(mounts) <= set(volumes)
    # The variables Cloud Run sets are the ones --shard auto reads, and the count the task count.
    variables = {index: (count, source) for index, count, source in PLATFORM_VARIABLES}
    assert variables["CLOUD_RUN_TASK_INDEX"] == ("CLOUD_RUN_TASK_COUNT", "Cloud Run job")
    count = execution["spec"]["taskCount"]
    found = shard_from_environment({"CLOUD_RUN_TASK_INDEX": "0", "CLOUD_RUN_TASK_COUNT": str(count)}, None)
    assert found.pair == (1, count)
    shown = orchestrate("run", "-h", cwd=ROOT)
    for part in command:
        if part.startswith("--"):
            assert part in shown.stdout, part


def test_the_github_example_runs_a_matrix_of_automatic_shards_and_merges_them() -> None:
    workflow = yaml.safe_load((ROOT / "examples" / "github-actions-matrix.yml").read_text())
    assert True in workflow or "on" in workflow  # YAML 1.1 reads the key `on` as true
    shard, merge = workflow["jobs"]["shard"], workflow["jobs"]["merge"]
    strategy = shard["strategy"]
    assert strategy["fail-fast"] is False and len(strategy["matrix"]["shard"]) <= 256
    assert shard["env"]["ORCHESTRATE_SHARD_INDEX"] == "${{ strategy.job-index }}"
    assert shard["env"]["ORCHESTRATE_SHARD_COUNT"] == "${{ strategy.job-total }}"
    assert "secrets." in shard["env"]["ORCHESTRATE_STATE_URL"]
    (run,) = [step["run"] for step in shard["steps"] if "orchestrate run" in str(step.get("run"))]
    assert "--shard auto" in run and "--output-dir runs" in run
    assert any("upload-artifact" in str(step.get("uses")) and step.get("if") == "always()" for step in shard["steps"])
    assert merge["needs"] == "shard" and merge["if"] == "always()"
    assert any("orchestrate merge" in str(step.get("run")) for step in merge["steps"])
    # The names its matrix gives the shards match the folders --shard auto makes.
    (merge_run,) = [step["run"] for step in merge["steps"] if "orchestrate merge" in str(step.get("run"))]
    assert f"-of-{len(strategy['matrix']['shard'])}" in merge_run


def test_plan_with_shard_auto_gives_this_shards_rows_and_cost_beside_all_shards(tmp_path: Path) -> None:
    (tmp_path / "rows.jsonl").write_text("".join(f'{{"invoice": "INV-{i:04d}"}}\n' for i in range(20)))
    (tmp_path / "inv.yaml").write_text(
        "name: invoices\ninputs:\n  invoice: {type: string}\nprices:\n  gpt-4o-mini: {input: 1, output: 1}\n"
        "defaults:\n  llm_config: {model: gpt-4o-mini, max_tokens: 100}\n"
        "agents:\n  - {name: check, module: Finance, prompt_template: 'Check invoice {invoice}.'}\n"
    )
    cloud_run = {"CLOUD_RUN_TASK_INDEX": "1", "CLOUD_RUN_TASK_COUNT": "4"}
    args = ("plan", "inv.yaml", "--data", "rows.jsonl", "--shard", "auto")
    shown = orchestrate(*args, "--json", cwd=tmp_path, env=cloud_run)
    assert shown.returncode == 0, shown.stderr
    plan = json.loads(shown.stdout)
    assert plan["shard"] == {"index": 2, "count": 4, "source": "CLOUD_RUN_TASK_INDEX=1 (Cloud Run job)"}
    assert plan["rows"] == 5 and plan["all_shards"]["rows"] == 20
    # Rows of one shape: this shard's bounds are a quarter of every shard's.
    assert plan["all_shards"]["max_cost"] == pytest.approx(4 * plan["max_cost"], rel=1e-3)
    assert plan["all_shards"]["min_cost"] == pytest.approx(4 * plan["min_cost"], rel=1e-3)
    text = orchestrate(*args, cwd=tmp_path, env=cloud_run)
    assert text.returncode == 0, text.stderr
    first = text.stdout.splitlines()[0]
    assert first.startswith("shard 2 of 4 (CLOUD_RUN_TASK_INDEX=1 (Cloud Run job)): 5 of the 20 rows; all 4 shards:")
    assert "invoices: 5 rows to run" in text.stdout
    # Kubernetes sets no count: --shards gives it; --dry-run plans the same way.
    k8s = orchestrate(*args, "--shards", "5", "--json", cwd=tmp_path, env={"JOB_COMPLETION_INDEX": "4"})
    assert k8s.returncode == 0 and json.loads(k8s.stdout)["shard"]["index"] == 5, k8s.stderr
    dry = orchestrate(
        "run", "inv.yaml", "--dry-run", "--data", "rows.jsonl", "--shard", "auto", cwd=tmp_path, env=cloud_run
    )
    assert dry.returncode == 0 and dry.stdout == text.stdout, dry.stderr
    # No platform variable: the same refusal as run's, exit 2.
    none = orchestrate(*args, cwd=tmp_path)
    assert (
        none.returncode == 2 and "no shard index in the environment" in none.stderr and "Traceback" not in none.stderr
    )
    stray = orchestrate("plan", "inv.yaml", "--data", "rows.jsonl", "--shard", "1/2", "--shards", "2", cwd=tmp_path)
    assert stray.returncode == 2 and "--shards N goes with --shard auto" in stray.stderr
