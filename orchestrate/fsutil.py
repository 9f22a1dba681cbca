"""Writing files so that a reader, or a crash, never sees half of one.

`atomic_write_text` writes to a temporary file in the same folder, flushes
and fsyncs it, then renames it over the target (atomic on POSIX and on
Windows' same-volume replace) and fsyncs the folder so the rename itself
survives a power cut. A file already at the target stays whole until the
rename: nothing written before is ever lost to a failed write.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

__all__ = ["atomic_write_chunks", "atomic_write_text"]


def atomic_write_text(path: Path | str, text: str, *, encoding: str = "utf-8") -> None:
    """Replace `path` with `text` atomically (temporary file, fsync, rename)."""
    atomic_write_chunks(path, (text,), encoding=encoding)


def atomic_write_chunks(path: Path | str, chunks: Iterable[str], *, encoding: str = "utf-8") -> None:
    """Like `atomic_write_text`, for text made piece by piece (a file too big to build in memory)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding=encoding, newline="\n") as handle:
            for chunk in chunks:
                handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(target.parent)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # some platforms cannot open a folder; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
