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

import hashlib
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

    A module found in the folder is that folder's own. The first folder to load a
    name keeps it (``tools``); when that name is already taken by a module from
    elsewhere (another workflow's folder, or an installed package), the folder's
    module is loaded under a package named for the folder
    (``_orchestrate_workflow_<digest>.tools``). So two workflows in two folders,
    each with a ``tools.py``, each get their own and never run the other's code. The folder is at the front of ``sys.path`` only while importing
    (so the module's own imports of its neighbours work too), under a lock. A module
    not in the folder is imported from the Python path as usual.

    Nothing is written to the workflow's folder: no ``__pycache__`` is left beside a
    tool module (``sys.dont_write_bytecode`` is set while importing, then put back).
    """
    if base_dir is None:
        return importlib.import_module(module)
    folder = str(Path(base_dir).resolve())
    top = module.split(".")[0]
    with _lock:
        mine = importlib.machinery.PathFinder.find_spec(top, [folder]) is not None
        taken = sys.modules.get(top)
        elsewhere = taken is not None and not _loaded_from(taken, folder)
        name = f"{_folder_package(folder)}.{module}" if mine and elsewhere else module
        added = folder not in sys.path
        if added:
            sys.path.insert(0, folder)
        writes_bytecode = sys.dont_write_bytecode
        sys.dont_write_bytecode = True  # the workflow's folder is the user's: leave no __pycache__ in it
        try:
            importlib.invalidate_caches()
            return importlib.import_module(name)
        finally:
            sys.dont_write_bytecode = writes_bytecode
            if added:
                try:
                    sys.path.remove(folder)
                except ValueError:
                    pass


def _loaded_from(module: ModuleType, folder: str) -> bool:
    """Whether `module` (a top-level module or package) was loaded from `folder`."""
    where = getattr(module, "__file__", None)
    if where:
        return str(Path(where).resolve().parent) == folder or (
            Path(where).name == "__init__.py" and str(Path(where).resolve().parent.parent) == folder
        )
    return any(str(Path(p).resolve().parent) == folder for p in getattr(module, "__path__", []) or [])


def _folder_package(folder: str) -> str:
    """The name of a package whose modules are `folder`'s files (made once per folder)."""
    name = "_orchestrate_workflow_" + hashlib.sha256(folder.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    if name not in sys.modules:
        package = ModuleType(name, f"the modules of the workflow folder {folder}")
        package.__path__ = [folder]
        package.__package__ = name
        sys.modules[name] = package
    return name
