"""Python modules named by a workflow (code steps' `function:`, `tools:`), found next to it first.

A team keeps `ap_tools.py` beside `ap_three_way_match.yaml`; `function:
"ap_tools:three_way_match"` must find it wherever `orchestrate` is started
from. So a module is looked up in the workflow file's folder first, then on
the Python path.

`locate` answers "can it be found?" without importing anything (validation
must not run user code): it walks the import system's path finders one
package level at a time, so a parent package's ``__init__`` is not executed
either. `import_module` imports for real, at run time.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import sys
import threading
from pathlib import Path
from types import ModuleType

__all__ = ["import_module", "locate"]

_lock = threading.Lock()


def _search_path(base_dir: str | Path | None) -> list[str]:
    paths = [p for p in sys.path if isinstance(p, str)]
    if base_dir is not None:
        paths.insert(0, str(Path(base_dir).resolve()))
    return paths


def locate(module: str, base_dir: str | Path | None) -> str | None:
    """Where `module` (dotted) would be imported from, or None; imports nothing."""
    parts = module.split(".")
    if parts[0] in sys.builtin_module_names:
        return "built-in"
    search: list[str] | None = _search_path(base_dir)
    origin: str | None = None
    for i, part in enumerate(parts):
        if search is None:  # the parent is a plain module, not a package
            return None
        spec = importlib.machinery.PathFinder.find_spec(part, search)
        if spec is None:
            if i == 0 and parts[0] in sys.modules:  # frozen or already loaded (e.g. zipimport)
                return getattr(sys.modules[parts[0]], "__file__", None) or "loaded"
            return None
        origin = spec.origin or "namespace package"
        locations = spec.submodule_search_locations
        search = list(locations) if locations is not None else None
    return origin


def import_module(module: str, base_dir: str | Path | None) -> ModuleType:
    """Import `module`, looking in `base_dir` (the workflow's folder) first.

    The folder is put at the front of ``sys.path`` only while importing (so the
    module's own imports of its neighbours work too), under a lock.
    """
    if base_dir is None:
        return importlib.import_module(module)
    folder = str(Path(base_dir).resolve())
    with _lock:
        added = folder not in sys.path
        if added:
            sys.path.insert(0, folder)
        try:
            importlib.invalidate_caches()
            return importlib.import_module(module)
        finally:
            if added:
                try:
                    sys.path.remove(folder)
                except ValueError:
                    pass
