"""The Colab set-up (issue 20): installs only what Colab lacks, never replaces Colab's core packages, and the
offline check (``python -m helpers colab-check``) passes for it on Colab's Python 3.12 and 3.13 runtimes and
fails for requirements.txt. No network: Colab's published package lists come from ``../shared/colab`` beside
the repository, PyPI's files from the committed ``data/colab_wheels.json``."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from helpers.codec.errors import LeafCodecError
from helpers.study import colab, colab_check
from helpers.study.colab_check import Runtime, check, read_requirements

ROOT = Path(__file__).resolve().parent.parent
SHARED_COLAB = ROOT.parent / "shared" / "colab"
needs_colab_lists = pytest.mark.skipif(
    not colab_check.runtimes(SHARED_COLAB),
    reason=f"Colab's package lists are not at {SHARED_COLAB} (../shared/colab beside the repository)",
)


@needs_colab_lists
def test_the_colab_plan_passes_on_both_runtimes(capsys):
    assert colab_check.runtimes(SHARED_COLAB) == ["py312", "py313"]
    assert colab_check.check_plan(colab_dir=SHARED_COLAB)
    out = capsys.readouterr().out
    assert "py312: PASS" in out and "py313: PASS" in out and "FAIL" not in out
    py312, py313 = out.split("Colab GPU runtime py313")
    assert "compressai==1.2.8: installs wheel cp312-cp312-manylinux_2_34_x86_64, --no-deps" in py312
    assert (
        "compressai==1.2.8: builds its sdist (with setuptools 75.2.0, wheel 0.48.0, pybind11 3.1.0)" in py313
    )
    assert "ignores numpy<2.0,>=1.21.0 (--no-deps): Colab has 2.1.3" in py313


@needs_colab_lists
@pytest.mark.parametrize("runtime, numpy", [("py312", "2.0.2"), ("py313", "2.1.3")])
def test_todays_requirements_fail_on_colab(capsys, runtime, numpy):
    assert not colab_check.check_plan(ROOT / "requirements.txt", None, SHARED_COLAB, names=[runtime])
    out = capsys.readouterr().out
    assert f"{runtime}: FAIL" in out
    assert f"numpy==1.26.4: would replace Colab's core package numpy {numpy}" in out
    assert "torch==2.14.1: would replace Colab's core package torch 2.11.0+cu128" in out
    assert f"compressai requires numpy<2.0,>=1.21.0: would replace Colab's core package numpy {numpy}" in out
    assert "onnx requires protobuf>=6.31.1: would replace Colab's protobuf 5.29.6" in out
    if runtime == "py313":
        assert "compressai==1.2.8: no wheel for cp313 manylinux x86_64 (sdist only" in out


def test_the_colab_requirements_leave_colabs_packages_alone_and_are_indexed():
    index = json.loads(colab_check.INDEX.read_text())["packages"]
    core = {c.lower() for c in colab.CORE}
    for path in colab_check.PLAN:
        for req in read_requirements(path):
            assert req.name.lower() not in core, f"{path.name} lists Colab's {req.name}"
            version = colab_check.pinned(req)
            assert not version or version in index.get(req.name.lower(), {}), f"{req} is not in the index"
    assert [r.name for r in read_requirements(colab_check.PLAN[1])] == ["compressai"]


def _runtime(**packages) -> Runtime:
    base = {"numpy": "2.1.3", "torch": "2.11.0+cu128", "setuptools": "75.2.0", "wheel": "0.48.0"}
    return Runtime("py313", Version("3.13.15"), "22.04", {**base, **packages})


def _entry(wheels=("py3-none-any",), sdist=True, requires=(), build=None, python=">=3.10"):
    entry = {
        "wheels": list(wheels),
        "sdist": sdist,
        "requires_python": python,
        "requires_dist": list(requires),
    }
    return entry | ({"build_requires": build} if build is not None else {})


def _check(rt, index, lines, no_deps=()):
    reqs = [Requirement(x) for x in lines]
    return check(rt, index, reqs, [Requirement(x) for x in no_deps])


def test_wheel_tags_follow_the_runtimes_python_and_glibc():
    tags = _runtime().tags  # CPython 3.13, glibc 2.35
    for ok in ("cp313-cp313-manylinux_2_28_x86_64", "cp312-abi3-manylinux_2_27_x86_64",
               "cp313-cp313-manylinux_2_35_x86_64", "py3-none-manylinux2014_x86_64", "py3-none-any"):  # fmt: skip
        assert ok in tags
    for no in ("cp312-cp312-manylinux_2_34_x86_64", "cp313-cp313-manylinux_2_36_x86_64",
               "cp313-cp313t-manylinux_2_28_x86_64", "cp313-cp313-macosx_11_0_arm64"):  # fmt: skip
        assert no not in tags


def test_a_dependency_on_an_older_core_package_fails_unless_installed_without_dependencies(capsys):
    index = {"old": {"1.0": _entry(requires=["numpy<2", 'pytest; extra == "test"'])}}
    assert not _check(_runtime(), index, ["old==1.0"])
    assert "old requires numpy<2: would replace Colab's core package numpy 2.1.3" in capsys.readouterr().out
    assert _check(_runtime(), index, [], no_deps=["old==1.0"])
    assert "ignores numpy<2 (--no-deps): Colab has 2.1.3" in capsys.readouterr().out


def test_a_sdist_is_built_only_without_dependencies_and_with_its_build_requirements_there(capsys):
    index = {"ext": {"1.0": _entry(wheels=["cp312-cp312-manylinux_2_34_x86_64"], build=["pybind11>=2.6"])},
             "pybind11": {"3.1.0": _entry()}}  # fmt: skip
    assert not _check(_runtime(), index, ["ext==1.0"])
    assert "ext==1.0: no wheel for cp313 manylinux x86_64 (sdist only" in capsys.readouterr().out
    assert not _check(_runtime(), index, [], no_deps=["ext==1.0"])
    assert (
        "ext's build requires pybind11>=2.6, which neither Colab nor the plan has" in capsys.readouterr().out
    )
    assert _check(_runtime(), index, ["pybind11==3.1.0"], no_deps=["ext==1.0"])
    assert "ext==1.0: builds its sdist (with pybind11 3.1.0), --no-deps" in capsys.readouterr().out


def test_replacing_colabs_packages_or_leaving_gaps_fails(capsys):
    index = {"new": {"2.0": _entry(requires=["left-out"])}}
    rt = _runtime(tqdm="4.67.3")
    assert (
        _check(rt, index, ["torch>=2", "tqdm"])
        and "torch>=2: Colab has 2.11.0+cu128" in capsys.readouterr().out
    )
    for line, why in [("tqdm==4.70.1", "would replace Colab's tqdm 4.67.3"),
                      ("numpy==1.26.4", "would replace Colab's core package numpy 2.1.3"),
                      ("unpinned", "Colab lacks it: pin one version (==)"),
                      ("elsewhere==1.0", "not in colab_wheels.json"),
                      ("new==2.0", "new requires left-out, which neither Colab nor the plan has (pin it)")]:  # fmt: skip
        assert not _check(rt, index, [line]) and f"{line}: {why}" in capsys.readouterr().out


def test_set_up_clones_installs_with_colabs_core_packages_held_and_imports(monkeypatch, tmp_path):
    ran, clone = [], tmp_path / "clone"
    monkeypatch.setattr(colab, "CLONE", clone)
    held = []

    def sh(*cmd):
        ran.append(cmd)
        if "--constraint" in cmd:
            held.append(Path(cmd[cmd.index("--constraint") + 1]).read_text())

    monkeypatch.setattr(colab, "_sh", sh)
    monkeypatch.setattr(colab, "check_imports", lambda core: ran.append(("check_imports", dict(core))))
    monkeypatch.setenv("LEAF_CODEC_REPO", "https://example.org/fork.git")
    assert colab.ensure_checkout(tmp_path / "not-a-checkout") == clone
    assert ran.pop() == ("git", "clone", "-q", "--depth=1", "https://example.org/fork.git", str(clone))
    assert colab.ensure_checkout(ROOT) == ROOT and not ran
    colab.install(ROOT)
    with_deps, no_deps, (_, core) = ran
    assert (
        core["numpy"]
        and f"numpy=={core['numpy']}\n" in held[0]
        and "torch==" in held[0]
        and held[0] == held[1]
    )
    assert with_deps[-2:] == ("--requirement", str(ROOT / "requirements-colab.txt"))
    assert {"--no-deps", "--no-build-isolation"} <= set(no_deps) and no_deps[-1].endswith("nodeps.txt")
    assert not any("requirements.txt" in arg for cmd in ran[:2] for arg in cmd)


def test_check_imports_asks_for_a_restart_when_a_core_package_changed(monkeypatch):
    monkeypatch.setattr(colab, "installed_versions", lambda names=colab.CORE: {"numpy": "1.26.4"})
    with pytest.raises(LeafCodecError, match="pip replaced numpy 2.1.3 -> 1.26.4: Runtime > Restart session"):
        colab.check_imports({"numpy": "2.1.3"})


def test_the_notebooks_clone_the_set_ups_repository():
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        first = nbformat.read(path, as_version=4).cells[0].source
        assert f'"${{LEAF_CODEC_REPO:-{colab.DEFAULT_REPO}}}" {colab.CLONE}' in first, path.name
        assert f"test -d {colab.CLONE} ||" in first, f"{path.name}: running the cell again would clone again"


def test_colab_check_command_line_reports_errors_in_one_line(capsys, tmp_path):
    assert colab_check.main(["--colab-dir", str(tmp_path)]) == 2
    assert "no Colab package lists" in capsys.readouterr().err
