"""The one atomic writer (helpers/codec/fileio.py) and the output-path cases of issue 13: symlinks planted at the
temporary's name, two runs racing for one output, --force on devices and FIFOs, temporaries of killed runs."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
import time

import pytest
from codec_samples import ROOT, run_cli, synthetic_leaf, tmp_leftovers
from PIL import Image

from helpers.codec import fileio
from helpers.codec.errors import DataError
from helpers.codec.fileio import atomic_write, leftover_temporaries


def test_writes_bytes_and_streams_and_refuses_to_overwrite(tmp_path):
    out = tmp_path / "a.bin"
    assert atomic_write(out, b"one") == out and out.read_bytes() == b"one"
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~fileio._UMASK  # not mkstemp's private 0600
    with pytest.raises(DataError, match="exists; pass --force"):
        atomic_write(out, b"two")
    atomic_write(out, lambda f: f.write(b"streamed"), force=True)
    assert out.read_bytes() == b"streamed" and not tmp_leftovers(tmp_path)


def test_a_symlink_planted_at_the_temporary_name_is_not_followed(tmp_path, monkeypatch):
    """The old writer opened a predictable ``.NAME.PID.tmp`` following symlinks: an attacker who planted links
    for the next PIDs had a victim file overwritten. The temporary is now created exclusively, so a planted
    name is skipped, never written through."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    planted = ["planted", "fresh"]
    (tmp_path / f".out.leaf.{planted[0]}.tmp").symlink_to(victim)
    monkeypatch.setattr(fileio.tempfile, "_get_candidate_names", lambda: iter(planted))
    atomic_write(tmp_path / "out.leaf", b"leaf bytes")
    assert victim.read_text() == "precious"
    assert (tmp_path / "out.leaf").read_bytes() == b"leaf bytes"
    assert (tmp_path / f".out.leaf.{planted[0]}.tmp").is_symlink()  # untouched
    assert not (tmp_path / f".out.leaf.{planted[1]}.tmp").exists()


def test_two_writers_without_force_never_replace_each_other(tmp_path):
    """Another run publishes while we are still writing: our publish fails, theirs stays."""
    out = tmp_path / "out.leaf"

    def slow_content(f):
        f.write(b"ours")
        out.write_bytes(b"theirs")  # the other run wins the race

    with pytest.raises(DataError, match="exists; pass --force"):
        atomic_write(out, slow_content)
    assert out.read_bytes() == b"theirs" and not tmp_leftovers(tmp_path)


def test_publishing_without_hard_links_still_refuses_an_existing_file(tmp_path, monkeypatch):
    def no_links(src, dst):
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(fileio.os, "link", no_links)
    atomic_write(tmp_path / "a", b"first")
    with pytest.raises(DataError, match="exists"):
        atomic_write(tmp_path / "b", lambda f: (f.write(b"x"), (tmp_path / "b").write_bytes(b"other")))
    assert (tmp_path / "a").read_bytes() == b"first" and (tmp_path / "b").read_bytes() == b"other"
    assert not tmp_leftovers(tmp_path)


@pytest.mark.parametrize("kind", ["fifo", "folder", "symlink", "device"])
def test_force_never_replaces_what_is_not_a_regular_file(tmp_path, kind):
    target = tmp_path / "out.png"
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "folder":
        target.mkdir()
    elif kind == "symlink":
        (tmp_path / "real.png").write_bytes(b"real")
        target.symlink_to(tmp_path / "real.png")
    else:
        target = "/dev/null"  # as root the old writer turned it into a regular file
    mode = os.lstat(target).st_mode
    with pytest.raises(DataError, match="not a regular file; refusing to replace it"):
        atomic_write(target, b"data", force=True)
    assert os.lstat(target).st_mode == mode
    assert kind != "symlink" or (tmp_path / "real.png").read_bytes() == b"real"
    assert not tmp_leftovers(tmp_path)


def test_cli_refuses_a_fifo_output_even_with_force(tmp_path):
    Image.fromarray(synthetic_leaf(0, 64)).save(tmp_path / "a.png")
    os.mkfifo(tmp_path / "out.leaf")
    proc = run_cli("compress", tmp_path / "a.png", "-o", tmp_path / "out.leaf", "--force")
    assert proc.returncode == 2 and "it is a FIFO, not a regular file" in proc.stderr
    assert stat.S_ISFIFO(os.lstat(tmp_path / "out.leaf").st_mode)


_KILL_SCRIPT = textwrap.dedent("""
    import signal, sys, time
    from pathlib import Path
    from helpers.codec.fileio import atomic_write

    # Ctrl-C as in a foreground process, even when the tests were started in the background, whose children
    # inherit an ignored SIGINT (POSIX shells without job control).
    signal.signal(signal.SIGINT, signal.default_int_handler)

    def content(f):
        f.write(b"x" * 1000)
        f.flush()
        print("writing", flush=True)
        time.sleep(60)

    atomic_write(Path(sys.argv[1]), content)
""")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_killed_write_removes_its_temporary(tmp_path, sig):
    """Killed between write and rename (SIGTERM from a job manager, Ctrl-C): no temporary is left behind."""
    out = tmp_path / "out.leaf"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", _KILL_SCRIPT, str(out)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout.readline().strip() == "writing"
    assert len(leftover_temporaries(out)) == 1  # the write is in progress
    proc.send_signal(sig)
    proc.wait(timeout=30)
    assert proc.returncode != 0 and not out.exists()
    assert not leftover_temporaries(out), os.listdir(tmp_path)


def test_a_temporary_left_by_sigkill_is_reported_by_the_next_run(tmp_path):
    """SIGKILL cannot be caught: the temporary stays, named so that the next run can point at it."""
    out = tmp_path / "out.leaf"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", _KILL_SCRIPT, str(out)], env=env, stdout=subprocess.PIPE,
                            text=True)  # fmt: skip
    assert proc.stdout.readline().strip() == "writing"
    proc.kill()
    proc.wait(timeout=30)
    (left,) = leftover_temporaries(out)
    assert left.name.startswith(".out.leaf.") and left.name.endswith(".tmp")
    Image.fromarray(synthetic_leaf(0, 64)).save(tmp_path / "out.png")
    t0 = time.time()
    proc = run_cli("compress", tmp_path / "out.png", "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert f"note: {left} was left by an interrupted run; delete it" in proc.stderr
    assert out.stat().st_mtime >= t0 - 1
