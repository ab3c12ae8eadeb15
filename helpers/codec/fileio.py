"""The project's one way to write a file: atomically, through an unpredictable temporary, never clobbering.

``atomic_write(path, content, force=False)`` publishes ``content`` (bytes, or a callback that writes to a binary
file object, e.g. ``lambda f: torch.save(obj, f)``) at ``path`` so that a reader sees either the old file or the
whole new one, never a part:

* The temporary is created exclusively by ``tempfile.mkstemp`` in the target's folder (same file system, so the
  rename is atomic) with a random part in its name: a symbolic link planted in advance cannot redirect it. Its
  name is recognisable, ``.<target name>.<random>.tmp`` (``TEMP_SUFFIX``), so that a leftover of a killed run
  can be found (``leftover_temporaries``); SIGINT and SIGTERM remove it before the process ends (SIGKILL cannot).
  Where that name would exceed the file system's name limit (a target name of over ~240 bytes), the target name
  in it is cut short and followed by a hash of the whole name (``_temp_prefix``).
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
import hashlib
import os
import signal
import stat
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from helpers.codec.errors import DataError, shown
from helpers.codec.stage_timer import stage

TEMP_SUFFIX = ".tmp"
_UMASK = os.umask(0o022)  # read once, at import (setting it back at once; os.umask is the only reader)
os.umask(_UMASK)
Content = bytes | Callable[[BinaryIO], object]
_RANDOM_PART = 8  # tempfile's random names
_NAME_MAX = 255  # bytes in a file name on every common file system, where pathconf cannot tell


def open_input(path: str | Path, noun: str) -> BinaryIO:
    """``path`` opened for reading if it is a regular file (or a link to one); a one-line DataError for a folder,
    FIFO, device or socket, which are refused before they are opened for reading (a FIFO would block forever, a
    device such as /dev/zero never ends). ``noun`` names what was expected ("an image"). FileNotFoundError and
    other OSErrors are the caller's to word."""
    _refuse_special(os.stat(path), path, noun)
    # O_NONBLOCK: if a FIFO was put in its place since the stat, opening it does not wait for a writer.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        _refuse_special(os.fstat(fd), path, noun)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _refuse_special(st: os.stat_result, path, noun: str) -> None:
    if stat.S_ISDIR(st.st_mode):
        raise DataError(f"{shown(path)} is a folder, not {noun}")
    if not stat.S_ISREG(st.st_mode):
        raise DataError(f"cannot read {shown(path)}: it is {_kind(st.st_mode)}, not a regular file")


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


@stage("write file")
def atomic_write(path: str | Path, content: Content, force: bool = False) -> Path:
    """Write ``content`` to ``path`` atomically (see the module docstring); errors are one-line DataErrors."""
    path = check_output(path, force)
    try:
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(path), suffix=TEMP_SUFFIX)
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


def _temp_prefix(path: Path) -> str:
    """``.<name>.``, or where the temporary's name would not fit the file system's limit, ``.<name cut>~<hash>.``
    (the hash of the whole name keeps two long names apart)."""
    try:
        limit = os.pathconf(path.parent, "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = _NAME_MAX
    limit = min(limit, _NAME_MAX) if limit > 0 else _NAME_MAX
    prefix = f".{path.name}."
    room = limit - _RANDOM_PART - len(TEMP_SUFFIX)
    if len(os.fsencode(prefix)) <= room:
        return prefix
    digest = hashlib.sha256(os.fsencode(path.name)).hexdigest()[:12]
    cut = path.name
    while len(os.fsencode(f".{cut}~{digest}.")) > room:
        cut = cut[:-1]
    return f".{cut}~{digest}."


def leftover_temporaries(path: str | Path) -> list[Path]:
    """Temporaries of ``path`` left by a killed run (``.<name>.<random>.tmp`` in its folder)."""
    path = Path(path)
    try:
        return sorted(path.parent.glob(f"{glob.escape(_temp_prefix(path))}*{TEMP_SUFFIX}"))
    except OSError:
        return []
