"""Atomic file writes: a temp file beside the target, synced, then renamed over it, so a kill or a
full disk mid-write leaves either the old complete file or the new one, never a torn one.

A SIGKILL mid-write leaves its temp file behind (hidden, as large as the file). Temp names carry
the writer's host and pid, so the next write beside it (or `remove_stale_temps` at a run's start)
deletes temps whose writer is gone; `.dvcignore` keeps them out of DVC's view meanwhile.

A write that fails for a reason the user must fix (full disk, read-only folder, no permission)
raises `StorageError`: still an OSError (callers that retry I/O keep doing so), with one line that
names the path and the fix instead of torch's "[enforce fail at inline_container.cc]" trace.
"""

from __future__ import annotations

import errno
import os
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, NoReturn


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()
_HOST = socket.gethostname().replace(".", "-")[:40] or "host"
TEMP_SUFFIX = ".tmp"
# A temp nobody has written to for this long belongs to a dead writer, even one on another host
# (whose pid this host cannot check) or one from before temp names carried a pid.
STALE_AFTER_S = 3600.0

_FIXES = {
    errno.ENOSPC: "free some space there or point the output elsewhere",
    errno.EDQUOT: "free some space (disk quota exceeded) or point the output elsewhere",
    errno.EFBIG: "the file exceeds the size limit there (ulimit -f); raise it or point the output elsewhere",
    errno.EROFS: "the filesystem is read-only; point the output at a writable folder",
    errno.EACCES: "no permission; fix the folder's permissions or point the output at a writable folder",
    errno.EPERM: "not permitted (permissions or an immutable folder); point the output at a writable folder",
    errno.ENOTDIR: "a path component is a file, not a folder; remove it or choose another path",
}


class StorageError(OSError):
    """A write the user must unblock (full disk, read-only or forbidden folder): one line."""


def storage_error(exc: BaseException) -> OSError | None:
    """The OSError with a user-fixable errno behind `exc` (torch wraps the one from a full disk in a
    RuntimeError and chains it; its message may be the only trace), or None."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in _FIXES:
            return e
        if "No space left on device" in str(e):
            return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        e = e.__cause__ or e.__context__
    return None


def describe_write_failure(path: Path | str, exc: BaseException, action: str = "write") -> StorageError | None:
    """A StorageError naming `path` and the fix, when `exc` is a user-fixable write failure."""
    found = storage_error(exc)
    if found is None:
        return None
    code = found.errno or errno.EIO
    return StorageError(code, f"cannot {action} {path} ({os.strerror(code)}): {_FIXES[code]}", str(path))


def _temp_prefix(path: Path, pid: int | None = None) -> str:
    return f".{path.name}.{_HOST}-{os.getpid() if pid is None else pid}."


def _parse_temp(name: str) -> tuple[str, str, int | None] | None:
    """`.last.pt.<host>-<pid>.<random>.tmp` -> ('last.pt', host, pid); an old-style
    `.last.pt.<random>.tmp` -> ('last.pt', '', None); None for names this module never makes."""
    if not (name.startswith(".") and name.endswith(TEMP_SUFFIX)):
        return None
    parts = name[1:-len(TEMP_SUFFIX)].split(".")
    if len(parts) < 2:
        return None
    # mkstemp's random part has neither dots nor dashes; the host-pid part is the one before it.
    host, _, pid = parts[-2].rpartition("-")
    if len(parts) >= 3 and host and pid.isdigit():
        return ".".join(parts[:-2]), host, int(pid)
    return ".".join(parts[:-1]), "", None


def _writer_gone(host: str, pid: int | None, age_s: float) -> bool:
    """Whether a temp file's writer no longer runs: it is on this host and its pid is gone, or
    nothing has written to the file for STALE_AFTER_S."""
    if age_s > STALE_AFTER_S:
        return True
    if host != _HOST or pid is None or pid == os.getpid():
        return False  # another host, an old-style name, or this very process: only age tells
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # it runs, under another user
        return False
    return False


def remove_stale_temps(folder: Path, target: str | None = None) -> list[Path]:
    """Delete temp files in `folder` (for `target` only, or for every file) whose writer is gone;
    returns what was removed. Never raises: a temp that cannot be removed is left for later."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        parsed = _parse_temp(entry.name)
        if parsed is None or (target is not None and parsed[0] != target):
            continue
        owner, host, pid = parsed
        if pid is None and not (Path(folder) / owner).exists():
            continue  # an old-style name counts as ours only beside the file it was for
        try:
            if entry.is_file(follow_symlinks=False) and \
                    _writer_gone(host, pid, now - entry.stat(follow_symlinks=False).st_mtime):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            continue
    return removed


def write_temp(path: Path, write: Callable[[IO[bytes]], object]) -> str:
    """Call write(file_obj) on a synced temp file beside `path`; return the temp file's name."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(path.parent, path.name)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(path), suffix=TEMP_SUFFIX)
    except OSError as exc:
        raise (describe_write_failure(path, exc) or exc) from None
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; outputs get the usual mode
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
    except BaseException as exc:  # noqa: BLE001 -- _discard cleans up and always re-raises
        _discard(tmp, path, exc)
    return tmp


def atomic_write_bytes(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Call write(file_obj) on a temp file beside `path`, then rename it into place."""
    path = Path(path)
    tmp = write_temp(path, write)
    try:
        os.replace(tmp, path)
    except BaseException as exc:  # noqa: BLE001 -- _discard cleans up and always re-raises
        _discard(tmp, path, exc)


def _discard(tmp: str, path: Path, exc: BaseException) -> NoReturn:
    """Remove the temp file of a failed write and re-raise, as one line when the environment caused it."""
    Path(tmp).unlink(missing_ok=True)
    clear = describe_write_failure(path, exc) if isinstance(exc, Exception) else None
    if clear is not None:
        raise clear from None
    raise exc


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, lambda f: f.write(text.encode()))


def check_writable(folder: Path, what: str) -> None:
    """Create `folder` and a file in it now, so an unwritable output shows before the compute:
    raises StorageError naming `what` (e.g. the config key) and the folder."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=_temp_prefix(folder / "probe"), suffix=TEMP_SUFFIX)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        code = exc.errno if exc.errno in _FIXES else errno.EACCES
        raise StorageError(code, f"{what}: cannot write to {folder} ({exc.strerror or exc}): "
                                 f"{_FIXES[code]}", str(folder)) from None
