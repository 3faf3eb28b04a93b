"""Writing files so that nothing a user made is lost: the one atomic-write routine of the library."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path, write, suffix: str = ".tmp") -> Path:
    """Write a file through `write(f)` so that `path` is either its old self or complete and new.

    write(f): fills the binary file object f; an exception from it (a failed check of a
    download, Ctrl-C) leaves `path` untouched and removes the temporary file.
    The bytes go to a temporary file in path's folder, are flushed and fsynced, and os.replace
    moves it into place (atomic on POSIX and Windows); the folder is fsynced too, so the rename
    itself survives a crash. The file gets the usual permissions (0666 minus the umask).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())             # mkstemp makes 0600
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if hasattr(os, "O_DIRECTORY"):                   # make the rename durable (POSIX)
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return path
