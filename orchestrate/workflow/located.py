"""A workflow document as plain values with the line and column of every node, and how a path reads.

The checks (`checks`, `language_checks`, `capability_checks`) and the loader all
report problems through `Located`, so it sits below them all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from orchestrate.errors import Problem

__all__ = ["Key", "Located", "path_text"]

Key = tuple[str | int, ...]


@dataclass
class Located:
    """A YAML document as plain values, with the line and column of every node."""

    value: Any
    file: str
    values: dict[Key, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Key, tuple[int, int]] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)
    base_dir: str | None = None  # where named modules and prompt files are found first (else the file's folder)

    def within(self, path: Key, needle: str, message: str, span: int, *, hint: str = "") -> Problem:
        """A problem at `needle` inside the text node at `path` (e.g. a placeholder in a
        multi-line template), searched over the node's first `span` lines."""
        start = self.values.get(path)
        if start is not None and self.lines:
            line, col = start
            for index in range(line - 1, min(len(self.lines), line - 1 + span)):
                found = self.lines[index].find(needle, col - 1 if index == line - 1 else 0)
                if found >= 0:
                    return Problem(
                        self.file, index + 1, found + 1, message, path_text(path), hint=hint, length=len(needle)
                    )
        return self.at(path, message, hint=hint)

    def at(self, path: Key, message: str, *, key: bool = False, hint: str = "") -> Problem:
        """A problem at `path` (or at its key), falling back to the closest enclosing node."""
        shown = path_text(path)
        if key and path in self.keys:
            line, col = self.keys[path]
            return Problem(self.file, line, col, message, shown, hint=hint, length=len(str(path[-1])))
        probe = tuple(path)
        while probe:
            if probe in self.values:
                line, col = self.values[probe]
                return Problem(self.file, line, col, message, shown, hint=hint)
            probe = probe[:-1]
        line, col = self.values.get((), (1, 1))
        return Problem(self.file, line, col, message, shown, hint=hint)

    def renamed(self, fixes: list[tuple[Key, str, str]]) -> Located:
        """A copy with each misspelled key renamed to the key meant, positions carried over."""
        import copy

        value = copy.deepcopy(self.value)
        values, keys = dict(self.values), dict(self.keys)
        for parent, wrong, right in fixes:
            node: Any = value
            for part in parent:
                if isinstance(node, dict):
                    node = node[part]
                elif isinstance(node, list) and isinstance(part, int):  # jsonschema's paths index lists by int
                    node = node[part]
                else:
                    node = None
            if not isinstance(node, dict) or wrong not in node or right in node:
                continue
            node[right] = node.pop(wrong)
            old, new = (*parent, wrong), (*parent, right)
            for table in (values, keys):
                for path in [p for p in table if p[: len(old)] == old]:
                    table[new + path[len(old) :]] = table[path]
        return Located(value, self.file, values, keys, self.lines)


def path_text(path: Key) -> str:
    """A JSON path as people write it: agents[2].llm_config.model."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text
