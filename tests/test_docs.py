"""The README and docs/ show what the commands really print.

Every fenced block whose first line starts with ``$ `` is a transcript: each
command in it is run offline (no key, no network) in a fresh folder holding a
copy of ``workflows/``, one folder per page so that a page's blocks build on one
another in order, and what it prints (stdout and stderr together) is compared
with the lines shown under it. A ``python`` block followed at once by an
``output`` block is run the same way. Before comparing, both sides are
normalised for what changes from run to run: times, durations, run-folder
stamps, the temporary folder, and the widths of table columns. ``...`` alone
on a line stands for any number of lines, and inside a line for any text.

A run folder named in a command (``runs/invoice_check-20261125T221623Z``)
means the newest run folder of that workflow the page has made so far.
"""

from __future__ import annotations

import difflib
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>```+)(?P<info>[^`\s]*)\s*$")
RUN_FOLDER = re.compile(r"runs/(?P<name>[A-Za-z0-9_.-]+?)-\d{8}T\d{6}Z(?:-\d+)?")
COMMAND_TIMEOUT = 300


@dataclass
class Block:
    """One fenced block of a page: its info string, first line number and lines."""

    info: str
    line: int
    lines: list[str]


@dataclass
class Step:
    """A command (shell or Python) to run and the output the page shows for it."""

    where: str
    command: str
    expected: list[str] = field(default_factory=list)
    python: bool = False


def blocks(path: Path) -> list[Block]:
    """The fenced blocks of a Markdown file, with their indentation removed."""
    found: list[Block] = []
    lines = path.read_text(encoding="utf-8").split("\n")
    index = 0
    while index < len(lines):
        match = FENCE.match(lines[index])
        if match is None:
            index += 1
            continue
        indent, fence = len(match["indent"]), match["fence"]
        body: list[str] = []
        end = index + 1
        while end < len(lines) and lines[end].strip() != fence:
            body.append(lines[end][indent:] if lines[end][:indent].strip() == "" else lines[end])
            end += 1
        found.append(Block(match["info"], index + 1, body))
        index = end + 1
    return found


def steps(path: Path) -> list[Step]:
    """The commands a page shows with their output, in page order."""
    found: list[Step] = []
    page = blocks(path)
    name = path.relative_to(ROOT)
    for number, block in enumerate(page):
        if block.info == "python" and number + 1 < len(page) and page[number + 1].info == "output":
            following = page[number + 1]
            found.append(Step(f"{name}:{block.line}", "\n".join(block.lines), following.lines, python=True))
            continue
        if not _is_transcript(block):
            continue
        lines = iter(enumerate(block.lines, start=block.line + 1))
        for line_number, line in lines:
            if line.startswith("$ "):
                command = line[2:]
                while command.endswith("\\"):
                    command = command[:-1] + " " + next(lines)[1].strip()
                found.append(Step(f"{name}:{line_number}", command))
            elif found and found[-1].where.startswith(f"{name}:") and not found[-1].python:
                found[-1].expected.append(line)
    return found


def _is_transcript(block: Block) -> bool:
    first = next((line for line in block.lines if line.strip()), "")
    return block.info in ("", "console", "text") and first.startswith("$ ")


def normalise(text: str, folder: Path) -> str:
    """What stays the same from run to run of a command's output."""
    text = text.replace(str(folder.resolve()), "<DIR>").replace(str(folder), "<DIR>")
    text = re.sub(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?", "<TIME>", text)
    text = re.sub(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} UTC", "<TIME>", text)
    text = re.sub(r"\d{8}T\d{6}Z(?:-\d+)?", "<STAMP>", text)
    text = re.sub(r"\b\d+m\d{2}s\b", "<SECONDS>", text)
    text = re.sub(r"\b\d+(?:\.\d+)?s\b", "<SECONDS>", text)
    text = re.sub(r"\b\d[\d,]*(?:\.\d+)? (rows|calls)/s\b", r"<RATE> \1/s", text)
    lines = []
    for line in text.split("\n"):
        line = re.sub(r"([━─═]){2,}", r"\1", line.rstrip())
        lines.append(re.sub(r" {2,}", " ", line))
    while lines and not lines[-1]:
        lines.pop()
    while lines and not lines[0]:
        lines.pop(0)
    return "\n".join(lines)


def matches(expected: str, actual: str) -> bool:
    """Whether `actual` is `expected`, where ``...`` stands for any lines or any text."""
    pattern = []
    for line in expected.split("\n"):
        if line.strip() == "...":
            pattern.append(r"(?:[^\n]*\n)*?")
        else:
            pattern.append("[^\\n]*?".join(re.escape(part) for part in line.split("...")) + r"\n")
    return re.fullmatch("".join(pattern), actual + "\n", flags=re.DOTALL) is not None


def _environment(bin_folder: Path) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.endswith("_API_KEY")
        and not key.startswith(("OTEL_", "ORCHESTRATE_", "AZURE_", "OPENAI_", "ANTHROPIC_"))
        and key not in {"COLUMNS", "LINES", "CI", "GITHUB_STEP_SUMMARY", "REDIS_PASSWORD", "FORCE_COLOR"}
    }
    env["PATH"] = f"{bin_folder}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["TERM"] = "dumb"
    env["NO_COLOR"] = "1"
    env["TZ"] = "UTC"
    return env


def _newest_run(folder: Path, match: re.Match[str]) -> str:
    runs = sorted((folder / "runs").glob(f"{match['name']}-*"), key=lambda path: path.stat().st_mtime_ns)
    return f"runs/{runs[-1].name}" if runs else match[0]


def run_step(step: Step, folder: Path, env: dict[str, str]) -> str:
    """What the step prints, stdout and stderr together, run in `folder`."""
    if step.python:
        argv = [sys.executable, "-c", step.command]
    else:
        argv = ["bash", "-c", RUN_FOLDER.sub(lambda match: _newest_run(folder, match), step.command)]
    done = subprocess.run(
        argv,
        cwd=folder,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )
    return done.stdout.decode("utf-8", errors="replace")


def _page_id(page: Path) -> str:
    return str(page.relative_to(ROOT))


def test_the_pages_show_commands_to_check() -> None:
    shown = {_page_id(page): len(steps(page)) for page in PAGES}
    assert shown["README.md"] >= 6, shown
    assert sum(shown.values()) >= 20, shown


@pytest.mark.parametrize("page", [page for page in PAGES if steps(page)], ids=_page_id)
def test_shown_output_is_what_the_command_prints(page: Path, tmp_path: Path) -> None:
    folder = tmp_path / "work"
    shutil.copytree(
        ROOT / "workflows", folder / "workflows", ignore=shutil.ignore_patterns("runs", "__pycache__", "*.pyc")
    )
    env = _environment(Path(sys.executable).parent)
    problems = []
    for step in steps(page):
        actual = normalise(run_step(step, folder, env), folder)
        expected = normalise("\n".join(step.expected), folder)
        if not matches(expected, actual):
            diff = "\n".join(
                difflib.unified_diff(expected.split("\n"), actual.split("\n"), "shown", "printed", lineterm="")
            )
            problems.append(f"{step.where}: $ {step.command}\n{diff}")
    assert not problems, "\n\n".join(problems)


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_every_plain_block_is_a_transcript_or_a_synopsis(page: Path) -> None:
    """Output shown without the command that prints it cannot be checked, so it is not shown."""
    unchecked = []
    for block in blocks(page):
        if block.info not in ("", "console", "text"):
            continue
        text = [line for line in block.lines if line.strip()]
        synopsis = all(line.startswith(("orchestrate ", " ")) for line in text)
        if not _is_transcript(block) and not synopsis:
            unchecked.append(f"{_page_id(page)}:{block.line}")
    assert not unchecked, f"output shown without its command: {unchecked}"


def test_normalising_keeps_what_matters() -> None:
    folder = Path("/tmp/x")
    printed = "2026-12-03T15:02:54.906Z wf finished in 0.01s\nrun folder: runs/wf-20261203T150254Z\n│ a   │ b │\n"
    shown = "2026-11-25T21:47:09.010Z wf finished in 11.40s\nrun folder: runs/wf-20261125T221623Z\n│ a │ b │"
    assert normalise(printed, folder) == normalise(shown, folder)
    assert not matches(normalise("wf finished: completed", folder), normalise("wf finished: failed", folder))
    assert matches("a\n...\nd", "a\nb\nc\nd")
    assert matches("a\n...\nd", "a\nd")
    assert matches("cost ... left", "cost $1 was left")
    assert not matches("a\n...\nd", "a\nb\nc")


def _anchor(heading: str) -> str:
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_links_lead_to_pages_and_headings_that_exist(page: Path) -> None:
    broken = []
    text = page.read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        file_part, _, anchor = target.partition("#")
        linked = (page.parent / file_part).resolve() if file_part else page
        if not linked.exists():
            broken.append(target)
            continue
        if anchor and linked.suffix == ".md":
            headings = re.findall(r"^#+ (.+)$", linked.read_text(encoding="utf-8"), flags=re.MULTILINE)
            if anchor not in {_anchor(heading) for heading in headings}:
                broken.append(target)
    assert not broken, f"{_page_id(page)}: links to nothing: {broken}"
