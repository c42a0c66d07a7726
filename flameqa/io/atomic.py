"""Crash-safe file writes: a hidden temp file in the destination's folder, fsync, then rename.

Use :func:`create_temp` instead of :func:`tempfile.mkstemp` for any file that is renamed into place
as an output. ``mkstemp`` always creates mode 0600, and the rename keeps that mode, so outputs came
out owner-only whatever the umask and a shared output folder was unreadable to others.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

# Random-name retries before giving up; a clash needs the same 8 random bytes in one folder, so
# running out means something else is wrong (e.g. a folder we cannot create files in).
_MAX_TRIES = 100

_FLAGS = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)


def create_temp(dir: str | os.PathLike, prefix: str = "", suffix: str = ".tmp") -> tuple[int, str]:
    """Create a new, empty, uniquely named file in ``dir``; returns ``(fd, path)`` like ``mkstemp``.

    Unlike ``mkstemp`` the file gets the mode a plain ``open()`` would give it: requested as 0o666
    and reduced by the kernel with the process umask (and the folder's default ACL, if any), so it
    can be renamed into place as a final output with normal permissions.

    Why the kernel and not ``os.chmod(tmp, 0o666 & ~umask)``: the only portable way to read the
    umask is ``os.umask(0); os.umask(m)``, which briefly sets a process-global umask of 0 that any
    other thread creating a file at that moment would inherit (world-writable files), and caching it
    at import would miss a later ``os.umask`` call. Letting ``os.open`` apply it is atomic, always
    current, and exactly what ``open()`` does. ``O_EXCL`` keeps mkstemp's guarantee that the name
    is new, and ``O_NOFOLLOW`` that it is not a planted symlink.
    """
    d = os.fspath(dir)
    for _ in range(_MAX_TRIES):
        path = os.path.join(d, f"{prefix}{secrets.token_hex(8)}{suffix}")
        try:
            return os.open(path, _FLAGS, 0o666), path
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temp file name in {d} after {_MAX_TRIES} tries")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temp file in the same folder + fsync + rename.

    Readers see the old file or the new one, never a partial one; the final file has the normal
    ``open()`` permissions (see :func:`create_temp`). Returns ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = create_temp(path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # last step: nothing is visible under ``path`` until the data is durable
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
