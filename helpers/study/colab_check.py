"""Offline check of the Colab set-up (``helpers/study/colab.py``): ``python -m helpers colab-check``.

For each Colab GPU runtime whose package list Google publishes (``pip-freeze.gpu.py3XX.txt`` and
``os-info-gpu.py3XX.txt`` in ``../shared/colab`` beside the repository), every requirement the set-up installs
is either already satisfied by Colab (skipped), or must be installed: then it needs a wheel for that Python
(from ``data/colab_wheels.json``, a small committed index of PyPI's files; a ``--no-deps`` requirement may be
built from its sdist instead, with build dependencies already there), and what it declares (Requires-Dist)
must be met by Colab's packages and the plan's pins. Replacing a package Colab ships, a core one (torch, numpy,
...) above all, fails: a running kernel would need a restart. ``-r requirements.txt`` checks another file.

``--refresh-index`` (network) rewrites the index from PyPI's JSON API for the pins of the Colab files and of
``requirements.txt`` that Colab lacks."""

from __future__ import annotations

import argparse
import io
import json
import re
import sys
import tarfile
import urllib.request
import zipfile
from dataclasses import dataclass
from email.parser import HeaderParser
from functools import cached_property
from pathlib import Path
from urllib.parse import urljoin

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.tags import compatible_tags, cpython_tags
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

from helpers import paths
from helpers.codec.errors import LeafCodecError
from helpers.study import colab

COLAB_DIR = paths.ROOT.parent / "shared" / "colab"
INDEX = paths.DATA / "colab_wheels.json"
PLAN = (paths.ROOT / colab.REQUIREMENTS, paths.ROOT / colab.NO_DEPS)  # (with dependencies, --no-deps)
CORE = {canonicalize_name(n) for n in colab.CORE}
GLIBC = {"20.04": (2, 31), "22.04": (2, 35), "24.04": (2, 39)}  # Ubuntu release -> glibc
UNKNOWN = "(version unknown)"  # a Colab package installed from a direct URL


@dataclass
class Runtime:
    name: str  # "py313"
    python: Version
    ubuntu: str
    packages: dict[str, str]  # canonical name -> version

    @cached_property
    def tags(self) -> set[str]:
        """Wheel tags pip accepts here (CPython, manylinux x86_64 up to the runtime's glibc)."""
        major, minor = GLIBC[self.ubuntu]
        plats = [f"manylinux_{major}_{m}_x86_64" for m in range(minor, 4, -1)]
        plats += ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64", "linux_x86_64"]
        py = (self.python.major, self.python.minor)
        interpreter = f"cp{py[0]}{py[1]}"
        tags = [*cpython_tags(py, [interpreter], plats), *compatible_tags(py, interpreter, plats)]
        return {str(t) for t in tags}

    def markers(self, extra: str = "") -> dict[str, str]:
        return {"python_version": f"{self.python.major}.{self.python.minor}",
                "python_full_version": str(self.python), "implementation_name": "cpython",
                "platform_python_implementation": "CPython", "sys_platform": "linux", "os_name": "posix",
                "platform_system": "Linux", "platform_machine": "x86_64", "extra": extra}  # fmt: skip


def runtimes(colab_dir: Path = COLAB_DIR) -> list[str]:
    """Names of the runtimes published in ``colab_dir`` ("py312", "py313")."""
    return sorted(p.name.split(".")[-2] for p in Path(colab_dir).glob("pip-freeze.gpu.py*.txt"))


def load_runtime(name: str, colab_dir: Path = COLAB_DIR) -> Runtime:
    colab_dir = Path(colab_dir)
    if not (colab_dir / f"pip-freeze.gpu.{name}.txt").is_file():
        raise LeafCodecError(
            f"no Colab runtime {name!r} in {colab_dir} (there: {', '.join(runtimes(colab_dir))})"
        )
    info = (colab_dir / f"os-info-gpu.{name}.txt").read_text()
    python = re.search(r"^Python (\S+)", info, re.M)
    ubuntu = re.search(r"^Ubuntu (\d+\.\d+)", info, re.M)
    if not python or not ubuntu or ubuntu[1] not in GLIBC:
        raise LeafCodecError(f"{colab_dir}/os-info-gpu.{name}.txt: no Python version or known Ubuntu release")
    packages = {}
    for line in (colab_dir / f"pip-freeze.gpu.{name}.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            pkg, _, version = line.partition("==")
            packages[canonicalize_name(pkg)] = version.strip() or UNKNOWN
    return Runtime(name, Version(python[1]), ubuntu[1], packages)


def read_requirements(path: Path) -> list[Requirement]:
    reqs = []
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        line = line.split(" #")[0].strip()
        if line and not line.startswith("#"):
            if line.startswith("-"):
                raise LeafCodecError(f"{path}:{n}: pip options are not supported here: {line}")
            reqs.append(Requirement(line))
    return reqs


def pinned(req: Requirement) -> str | None:
    """The version ``req`` pins with ``==`` (no wildcard), else None."""
    pins = [s.version for s in req.specifier if s.operator in ("==", "===") and "*" not in s.version]
    return pins[0] if len(pins) == 1 else None


def _meets(spec: SpecifierSet, version: str) -> bool:
    if version == UNKNOWN:
        return not spec
    return spec.contains(Version(version), prereleases=True)


def _colab_has(rt: Runtime, name: str) -> str:
    return f"Colab's {'core package ' if name in CORE else ''}{name} {rt.packages[name]}"


def _declared(rt: Runtime, reqs: list[str], extras=()) -> list[Requirement]:
    """The requirements among ``reqs`` (Requires-Dist strings) whose markers hold on ``rt``."""
    out = [Requirement(r) for r in reqs]
    return [r for r in out if not r.marker or any(r.marker.evaluate(rt.markers(e)) for e in ("", *extras))]


def _dependency_problem(rt: Runtime, after: dict, owner: str, dep: Requirement) -> str | None:
    """Why ``dep`` (declared by ``owner``) is not met once the plan is installed, or None."""
    name = canonicalize_name(dep.name)
    if name not in after:
        return f"{owner} requires {dep}, which neither Colab nor the plan has (pin it)"
    version, source = after[name]
    if _meets(dep.specifier, version):
        return None
    if source == "Colab":
        return f"{owner} requires {dep}: would replace {_colab_has(rt, name)}"
    return f"{owner} requires {dep}, but the plan pins {name}=={version}"


def _install(rt: Runtime, index: dict, req: Requirement, no_deps: bool, after: dict):
    """What installing ``req``, which Colab lacks, takes on ``rt``: (how or None, problems, notes)."""
    name, version = canonicalize_name(req.name), pinned(req)
    if not version:
        return None, ["Colab lacks it: pin one version (==) to install"], []
    entry = index.get(name, {}).get(version)
    if entry is None:
        return None, [f"not in {INDEX.name} (python -m helpers colab-check --refresh-index)"], []
    if not _meets(SpecifierSet(entry["requires_python"] or ""), str(rt.python)):
        return None, [f"requires Python {entry['requires_python']}"], []
    wheel = next((t for t in entry["wheels"] if t in rt.tags), None)
    how, problems, notes = f"installs wheel {wheel}" if wheel else None, [], []
    if not wheel and no_deps and entry["sdist"]:
        build = _declared(rt, entry.get("build_requires", []))
        problems += [_dependency_problem(rt, after, f"{name}'s build", dep) for dep in build]
        using = [f"{n} {after[n][0]}" for n in (canonicalize_name(d.name) for d in build) if n in after]
        how = f"builds its sdist (with {', '.join(using)})"
    elif not wheel:
        only = " (sdist only: pip would compile it)" if entry["sdist"] else ""
        problems.append(f"no wheel for cp{rt.python.major}{rt.python.minor} manylinux x86_64{only}")
    for dep in _declared(rt, entry["requires_dist"], req.extras):
        problem = _dependency_problem(rt, after, name, dep)
        if problem and no_deps:
            dep_name = canonicalize_name(dep.name)
            version, source = after.get(dep_name, (None, None))
            notes.append(
                f"ignores {dep} (--no-deps): " + (f"{source} has {version}" if source else "not installed")
            )
        elif problem:
            problems.append(problem)
    return how, [p for p in problems if p], notes


def _verdict(rt: Runtime, index: dict, req: Requirement, no_deps: bool, after: dict) -> list[tuple[str, str]]:
    """(status, message) lines for one requirement: ok / FAIL / note."""
    name = canonicalize_name(req.name)
    if name in rt.packages:
        if _meets(req.specifier, rt.packages[name]):
            return [("ok", f"Colab has {rt.packages[name]}")]
        return [("FAIL", f"would replace {_colab_has(rt, name)}")]
    how, problems, notes = _install(rt, index, req, no_deps, after)
    lines = [("FAIL" if problems else "ok", how + (", --no-deps" if no_deps else ""))] if how else []
    return lines + [("FAIL", p) for p in problems] + [("note", n) for n in notes]


def check(rt: Runtime, index: dict, requirements: list[Requirement], no_deps: list[Requirement] = ()) -> bool:
    """Print the plan for ``rt`` line by line; True if it installs without touching a package Colab ships."""
    print(
        f"Colab GPU runtime {rt.name}: Python {rt.python}, Ubuntu {rt.ubuntu} (glibc {'.'.join(map(str, GLIBC[rt.ubuntu]))})"
    )
    plan = [(r, False) for r in requirements] + [(r, True) for r in no_deps]
    # name -> (version, where it comes from) once the plan is installed
    after = {name: (v, "Colab") for name, v in rt.packages.items()}
    for req, _ in plan:
        if canonicalize_name(req.name) not in rt.packages and pinned(req):
            after[canonicalize_name(req.name)] = (pinned(req), "the plan")
    failed = 0
    for req, nd in plan:
        lines = _verdict(rt, index, req, nd, after)
        failed += any(status == "FAIL" for status, _ in lines)
        for status, message in lines:
            print(f"  {status:<4}  {req}: {message}")
    there = sum(canonicalize_name(r.name) in rt.packages for r, _ in plan)
    summary = f"{len(plan) - there} to install, {there} on Colab already or to replace"
    print(
        f"{rt.name}: "
        + (f"FAIL ({failed} of {len(plan)} requirements fail; {summary})" if failed else f"PASS ({summary})")
    )
    return not failed


def check_plan(requirements=PLAN[0], no_deps=PLAN[1], colab_dir: Path = COLAB_DIR, index: Path = INDEX,
               names=None) -> bool:  # fmt: skip
    """``check`` on every published runtime (or ``names``); True if the plan passes on all of them."""
    if not runtimes(colab_dir):
        raise LeafCodecError(
            f"no Colab package lists (pip-freeze.gpu.py3XX.txt) in {colab_dir}; give --colab-dir"
        )
    packages = json.loads(Path(index).read_text())["packages"]
    reqs, nd = read_requirements(requirements), read_requirements(no_deps) if no_deps else []
    results = [check(load_runtime(n, colab_dir), packages, reqs, nd) for n in names or runtimes(colab_dir)]
    return bool(results) and all(results)


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=120) as r:
        return r.read()


def _member(archive: bytes, suffix: str) -> bytes:
    """A top-level file of a wheel (``.dist-info/METADATA``) or sdist (``/PKG-INFO``, ``/pyproject.toml``)."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(archive))
        return zf.read(next(n for n in zf.namelist() if n.endswith(suffix) and n.count("/") == 1))
    except zipfile.BadZipFile:
        with tarfile.open(fileobj=io.BytesIO(archive)) as tf:
            return tf.extractfile(
                next(m for m in tf if m.name.endswith(suffix) and m.name.count("/") == 1)
            ).read()


def _entry(name: str, version: str, with_build: bool) -> dict:
    """Index entry of one release: its Linux x86_64 and pure wheel tags, whether it has an sdist, and its
    metadata (read from its smallest such wheel, else its sdist; ``with_build``: the sdist's build requires)."""
    url = f"https://pypi.org/pypi/{name}/json"
    files = [{**f, "url": urljoin(url, f["url"])} for f in json.loads(_get(url))["releases"][version]
             if not f["yanked"]]  # fmt: skip
    tags = {f["filename"]: [str(t) for t in parse_wheel_filename(f["filename"])[3]
                            if re.search(r"-any$|linux.*_x86_64$", str(t))]
            for f in files if f["filename"].endswith(".whl")}  # fmt: skip
    sdist = next((f for f in files if f["packagetype"] == "sdist"), None)
    source = min([f for f in files if tags.get(f["filename"])] or [sdist], key=lambda f: f["size"])
    suffix = ".dist-info/METADATA" if source is not sdist else "/PKG-INFO"
    meta = HeaderParser().parsestr(_member(_get(source["url"]), suffix).decode())
    entry = {"wheels": sorted({t for ts in tags.values() for t in ts}), "sdist": sdist is not None,
             "requires_python": meta.get("Requires-Python"), "requires_dist": meta.get_all("Requires-Dist") or []}  # fmt: skip
    if with_build and sdist:
        import tomllib  # Python 3.11+

        pyproject = tomllib.loads(_member(_get(sdist["url"]), "/pyproject.toml").decode())
        entry["build_requires"] = pyproject["build-system"]["requires"]
    return entry


def refresh_index(colab_dir: Path = COLAB_DIR, out: Path = INDEX) -> Path:
    """Rewrite ``out`` for every pin of the Colab plan and of requirements.txt that some runtime lacks."""
    rts = [load_runtime(n, colab_dir) for n in runtimes(colab_dir)]
    no_deps = {canonicalize_name(r.name) for r in read_requirements(PLAN[1])}
    packages: dict[str, dict] = {}
    for path in (*PLAN, paths.ROOT / "requirements.txt"):
        for req in read_requirements(path):
            name, version = canonicalize_name(req.name), pinned(req)
            if (
                version
                and version not in packages.get(name, {})
                and any(name not in rt.packages for rt in rts)
            ):
                print(f"{name}=={version}", flush=True)
                packages.setdefault(name, {})[version] = _entry(name, version, name in no_deps)
    note = ("Wheel tags (linux x86_64 and pure), sdist, Requires-Python, Requires-Dist (and build-system requires "
            "of --no-deps sdists) of the pins Colab lacks, from PyPI. Regenerate (network): "
            "python -m helpers colab-check --refresh-index")  # fmt: skip
    doc = {"note": note, "packages": {k: dict(sorted(v.items())) for k, v in sorted(packages.items())}}
    Path(out).write_text(json.dumps(doc, indent=1) + "\n")
    return Path(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m helpers colab-check", description=__doc__.split("\n\n")[0])
    ap.add_argument("-r", "--requirements", default=PLAN[0], help="installed with dependencies")
    ap.add_argument(
        "--no-deps", default=None, help=f"installed with --no-deps (default with no -r: {PLAN[1].name})"
    )
    ap.add_argument("--runtime", action="append", help="py312, py313 (default: every published one)")
    ap.add_argument("--colab-dir", default=COLAB_DIR, help="Colab's package lists (default: %(default)s)")
    ap.add_argument("--refresh-index", action="store_true", help=f"rewrite {INDEX.name} from PyPI (network)")
    args = ap.parse_args(argv)
    try:
        if args.refresh_index:
            print(f"wrote {refresh_index(args.colab_dir)}")
            return 0
        no_deps = args.no_deps or (PLAN[1] if Path(args.requirements).resolve() == PLAN[0] else None)
        return 0 if check_plan(args.requirements, no_deps, args.colab_dir, names=args.runtime) else 1
    except LeafCodecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
