"""The project's one way to write a file: atomically, through an unpredictable temporary, never clobbering.

``atomic_write(path, content, force=False)`` publishes ``content`` (bytes, or a callback that writes to a binary
file object, e.g. ``lambda f: torch.save(obj, f)``) at ``path`` so that a reader sees either the old file or the
whole new one, never a part:

* The temporary is created exclusively by ``tempfile.mkstemp`` in the target's folder (same file system, so the
  rename is atomic) with a random part in its name: a symbolic link planted in advance cannot redirect it. Its
  name is recognisable, ``.<target name>.<random>.tmp`` (``TEMP_SUFFIX``), so that a leftover of a killed run
  can be found (``leftover_temporaries``); SIGINT and SIGTERM remove it before the process ends (SIGKILL cannot).
* The data are flushed and fsync'ed before publishing, and the folder is fsync'ed after, so a crash leaves the
  old file or the new one.
* Without ``force`` the target is published with ``os.link``, which fails if the target exists: two runs that
  write the same output cannot silently replace each other (the loser gets "exists; pass --force"). Where the
  file system has no hard links, an exclusive create claims the name first.
* ``force`` replaces a regular file only. A folder, symbolic link, device, FIFO or socket at ``path`` is
  refused whatever ``force`` says (replacing ``/dev/null`` with a regular file damages the system).
"""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import signal
import stat
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from helpers.codec.errors import DataError, shown

TEMP_SUFFIX = ".tmp"
_UMASK = os.umask(0o022)  # read once, at import (setting it back at once; os.umask is the only reader)
os.umask(_UMASK)
Content = bytes | Callable[[BinaryIO], object]


def check_output(path: str | Path, force: bool = False) -> Path:
    """Refuse ``path`` as an output before any work is done: an existing file without ``force``, anything that
    is not a regular file, a missing folder. ``atomic_write`` checks again when it publishes."""
    path = Path(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise DataError(f"cannot write {shown(path)}: {exc.strerror or exc}") from None
    if st is not None:
        if not stat.S_ISREG(st.st_mode):
            kind = _kind(st.st_mode)
            raise DataError(
                f"cannot write {shown(path)}: it is {kind}, not a regular file; refusing to replace it"
            )
        if not force:
            raise DataError(f"{shown(path)} exists; pass --force to overwrite it")
    if not path.parent.is_dir():
        raise DataError(f"output folder does not exist: {shown(path.parent)}")
    return path


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISLNK, "a symbolic link"), (stat.S_ISCHR, "a device"),
                       (stat.S_ISBLK, "a device"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket")):  # fmt: skip
        if test(mode):
            return name
    return "a special file"


def atomic_write(path: str | Path, content: Content, force: bool = False) -> Path:
    """Write ``content`` to ``path`` atomically (see the module docstring); errors are one-line DataErrors."""
    path = check_output(path, force)
    try:
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    except OSError as exc:
        raise DataError(f"cannot write {shown(path)}: {exc.strerror or exc}") from None
    tmp = Path(tmp_name)
    try:
        with _removed_on_signals(tmp):
            with os.fdopen(fd, "wb") as f:
                os.fchmod(f.fileno(), 0o666 & ~_UMASK)  # mkstemp's 0600 would make outputs private
                if isinstance(content, bytes | bytearray | memoryview):
                    f.write(content)
                else:
                    content(f)
                f.flush()
                os.fsync(f.fileno())
            _publish(tmp, path, force)
        _fsync_folder(path.parent)
    except OSError as exc:
        raise DataError(f"cannot write {shown(path)}: {exc.strerror or exc}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _publish(tmp: Path, path: Path, force: bool) -> None:
    if force:
        check_output(path, force=True)  # still a regular file (or absent) just before the rename
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)  # fails with EEXIST if another run published first
    except FileExistsError:
        raise DataError(f"{shown(path)} exists; pass --force to overwrite it") from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS):
            raise
        # No hard links here (some network and FAT file systems): claim the name exclusively, then replace it.
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        except FileExistsError:
            raise DataError(f"{shown(path)} exists; pass --force to overwrite it") from None
        os.replace(tmp, path)


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # not every platform can open a folder; the file itself is already on disk
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def _removed_on_signals(tmp: Path):
    """While ``tmp`` exists, SIGTERM ends the process through Python's unwinding (exit status 128 + 15), so the
    ``finally`` that removes ``tmp`` runs; SIGINT does so already (KeyboardInterrupt). Handlers can only be set
    from the main thread; elsewhere the temporary may be left behind, recognisable by its name."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum, frame):
        tmp.unlink(missing_ok=True)
        raise SystemExit(128 + signum)

    try:
        previous = signal.signal(signal.SIGTERM, terminate)
    except ValueError:  # not the main interpreter
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def leftover_temporaries(path: str | Path) -> list[Path]:
    """Temporaries of ``path`` left by a killed run (``.<name>.<random>.tmp`` in its folder)."""
    path = Path(path)
    try:
        return sorted(path.parent.glob(f".{glob.escape(path.name)}.*{TEMP_SUFFIX}"))
    except OSError:
        return []
