"""Writing files so that a reader, or a crash, never sees half of one; reading them within a limit.

`atomic_write_text` writes to a temporary file in the same folder, flushes
and fsyncs it, then renames it over the target (atomic on POSIX and on
Windows' same-volume replace) and fsyncs the folder so the rename itself
survives a power cut. A file already at the target stays whole until the
rename: nothing written before is ever lost to a failed write.

A symlink is written through, not replaced: the file it points to is the one
renamed over, so ``--junit link.xml`` keeps the link. A target that is not a
regular file (``/dev/stdout``, a named pipe) is written in place, since
renaming over it would replace the device itself. New files get the mode the
umask allows (0666 minus the umask, like any other tool), not mkstemp's 0600;
an existing file keeps its mode.

`read_bytes_capped` reads at most a limit plus one byte, whatever the file
says its size is, so ``/dev/zero`` or an endless pipe cannot fill memory.

A run folder holds only files we wrote. `open_regular` opens one without ever
blocking (a named pipe put in its place would wait forever for a writer) and
refuses anything but a regular file (`open_regular_text` and `read_regular_text`
for text: every reader of a run folder goes through them); `read_lines_capped` reads a journal a
line at a time, each line at most a limit long; `special_entries` lists what
in a folder is not a regular file or a folder, so a resume refuses it first.
"""

from __future__ import annotations

import io
import os
import pkgutil
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, TextIO

__all__ = [
    "MAX_RESULT_BYTES",
    "NotRegularFileError",
    "TooLargeError",
    "atomic_copy",
    "atomic_write_chunks",
    "atomic_write_text",
    "check_writable",
    "open_regular",
    "open_regular_text",
    "read_bytes_capped",
    "read_lines_capped",
    "read_regular_text",
    "regular_lines",
    "special_entries",
]

_CHUNK = 1 << 16

# The most a reader takes of a run's result.json (a 5,000-agent run writes a few MB).
MAX_RESULT_BYTES = 256 << 20


class TooLargeError(ValueError):
    """A file (or stream) holds more than the limit it is read with."""

    def __init__(self, path: Path | str, limit: int) -> None:
        self.path, self.limit = str(path), limit
        super().__init__(f"{path}: larger than the limit of {limit:,} bytes")


class NotRegularFileError(OSError):
    """Where a file was expected, a named pipe, a device, a socket or a folder."""

    def __init__(self, path: Path | str, what: str) -> None:
        self.path, self.what = str(path), what
        super().__init__(f"{path}: not a regular file ({what})")
        self.strerror = f"not a regular file ({what})"

    def __str__(self) -> str:
        return f"{self.path}: {self.strerror}"


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISDIR(mode):
        return "a folder"
    return "not a file"


def open_regular(path: Path | str) -> BinaryIO:
    """`path` opened for reading in binary, if it is a regular file (symlinks followed).

    Opening never blocks: a named pipe is opened non-blocking, seen to be one, and refused.

    Raises:
        NotRegularFileError: It is a pipe, a device, a socket or a folder.
        OSError: It cannot be opened.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFileError(path, _kind(mode))
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb")


def open_regular_text(path: Path | str, *, errors: str = "strict") -> TextIO:
    """`open_regular`, as UTF-8 text (universal newlines): a run folder's journal read line by line.

    Raises:
        NotRegularFileError: It is a pipe, a device, a socket or a folder.
        OSError: It cannot be opened.
    """
    return io.TextIOWrapper(open_regular(path), encoding="utf-8", errors=errors)


def regular_lines(path: Path | str, *, errors: str = "strict") -> Iterator[str]:
    """The lines of a run folder's text file (a journal: no size limit), read one at a time from a
    regular file (`open_regular_text`); the errors are raised at the first line asked for."""
    with open_regular_text(path, errors=errors) as handle:
        yield from handle


def read_regular_text(path: Path | str, limit: int = MAX_RESULT_BYTES, *, errors: str = "strict") -> str:
    """The UTF-8 text of a run folder's file: a regular file (never a pipe or device), within `limit`.

    Raises:
        TooLargeError: It holds more than `limit` bytes.
        NotRegularFileError: It is not a regular file.
        OSError: It cannot be opened or read.
        UnicodeDecodeError: It is not UTF-8 (with ``errors="strict"``).
    """
    return read_bytes_capped(path, limit, special=False).decode("utf-8", errors=errors)


def read_lines_capped(handle: BinaryIO, path: Path | str, limit: int, *, skip_long: bool = False) -> Iterator[bytes]:
    """The lines of `handle` (newline kept), each read with at most `limit` bytes in memory.

    Args:
        skip_long: A line longer than `limit` is read past (in chunks) and given as ``b""``
            (a reader that skips what does not parse skips it) instead of raising.

    Raises:
        TooLargeError: A line is longer than `limit` bytes (unless `skip_long`).
    """
    while True:
        line = handle.readline(limit + 1)
        if not line:
            return
        if len(line) > limit and not (len(line) == limit + 1 and line.endswith(b"\n")):
            if not skip_long:
                raise TooLargeError(path, limit)
            while line and not line.endswith(b"\n"):
                line = handle.readline(_CHUNK)
            line = b""
        yield line


def special_entries(folder: Path | str) -> list[tuple[Path, str]]:
    """What in `folder` (not below it) is neither a regular file nor a folder, symlinks followed:
    (path, what it is), sorted; a dangling link counts as "a broken link"."""
    found: list[tuple[Path, str]] = []
    for entry in sorted(Path(folder).iterdir()):
        try:
            mode = os.stat(entry).st_mode
        except OSError:
            found.append((entry, "a broken link"))
            continue
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            found.append((entry, _kind(mode)))
    return found


def read_bytes_capped(path: Path | str, limit: int, *, special: bool = True) -> bytes:
    """The bytes of `path`, read in chunks up to `limit` (TooLargeError past it).

    Args:
        special: Whether a pipe or device may be read (``--inputs <(...)``); False for the
            files of a run folder, which are regular files or nothing we wrote.

    Raises:
        TooLargeError: The file holds more than `limit` bytes.
        NotRegularFileError: `special` is False and it is not a regular file.
        OSError: It cannot be opened or read (IsADirectoryError for a folder).
    """
    chunks: list[bytes] = []
    total = 0
    with open(path, "rb") if special else open_regular(path) as handle:
        while True:
            chunk = handle.read(min(_CHUNK, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise TooLargeError(path, limit)
    return b"".join(chunks)


def _flip_umask() -> int:
    mask = os.umask(0o022)  # the portable way to read it is to set it: done once, at import
    os.umask(mask)
    return mask


# Setting the umask to read it, as each write used to, changed it process-wide while other
# threads (a run's workers) made files. Where the kernel shows it (Linux: /proc/self/status)
# it is read there, as it is now; elsewhere it is read once, at import, before any thread runs.
_UMASK_AT_IMPORT = _flip_umask()


def _umask() -> int:
    try:
        with open("/proc/self/status", "rb") as handle:
            for line in handle:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return _UMASK_AT_IMPORT


def _resolve_target(path: Path) -> tuple[Path, os.stat_result | None]:
    """Where writing `path` really lands (symlinks followed) and what is there now.

    A link to a pipe or a device (``/dev/stdout`` when stdout is a pipe: a link to
    ``/proc/self/fd/1``, whose own target ``pipe:[N]`` is no path) is written through as given.
    """
    try:
        info = os.stat(path)
    except OSError:
        info = None
    if info is not None and not stat.S_ISREG(info.st_mode) and not stat.S_ISDIR(info.st_mode):
        return path, info
    target = Path(os.path.realpath(path)) if path.is_symlink() else path
    try:
        return target, os.stat(target)
    except (FileNotFoundError, NotADirectoryError):
        return target, None


def check_writable(path: Path | str) -> str | None:
    """None when a report could be written at `path`, else why not (checked before a run pays)."""
    target, info = _resolve_target(Path(path))
    if info is not None:
        if stat.S_ISDIR(info.st_mode):
            return "is a folder, not a file"
        if not os.access(target, os.W_OK):
            return "is not writable"
        return None
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.exists():
        probe = parent
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        if not probe.is_dir():
            return f"{probe} is not a folder"
        if not os.access(probe, os.W_OK | os.X_OK):
            return f"cannot create folder {parent}: {probe} is not writable"
        return None
    if not parent.is_dir():
        return f"{parent} is not a folder"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"folder {parent} is not writable"
    return None


def atomic_write_text(path: Path | str, text: str, *, encoding: str = "utf-8") -> None:
    """Replace `path` with `text` atomically (temporary file, fsync, rename).

    Symlinks are followed; a special file (device, pipe) is written in place.
    """
    atomic_write_chunks(path, (text,), encoding=encoding)


def atomic_write_chunks(path: Path | str, chunks: Iterable[str], *, encoding: str = "utf-8") -> None:
    """Like `atomic_write_text`, for text made piece by piece (a file too big to build in memory)."""

    def write(handle: BinaryIO) -> None:
        for chunk in chunks:
            handle.write(chunk.encode(encoding))

    _atomic_write(Path(path), write)


def atomic_copy(source: Path | str, path: Path | str) -> None:
    """Replace `path` with a copy of the bytes of `source`, atomically (like `atomic_write_text`)."""

    def write(handle: BinaryIO) -> None:
        with open(source, "rb") as reading:
            shutil.copyfileobj(reading, handle, _CHUNK)

    _atomic_write(Path(path), write)


def _atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    target, info = _resolve_target(path)
    if info is not None and not stat.S_ISREG(info.st_mode):
        with open(target, "wb") as handle:
            write(handle)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    mode = stat.S_IMODE(info.st_mode) if info is not None else 0o666 & ~_umask()
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            write(handle)
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


def package_text(name: str) -> str:
    """The data file `name` shipped in the package (``orchestrate/data/<name>``), as text.

    Read through the package loader's `get_data` (from a zip import too), not
    `importlib.resources.files`: that one's first use in a process imports zipfile and
    importlib's readers, ~1.3 ms of the first workflow's registration (the price table).
    """
    data = pkgutil.get_data("orchestrate", f"data/{name}")
    if data is None:  # a loader that cannot read its files: the general way
        from importlib import resources

        return resources.files("orchestrate").joinpath("data", name).read_text(encoding="utf-8")
    return data.decode("utf-8")
