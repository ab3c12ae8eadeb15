"""The house has floors. Every package under helpers/ stands on one, and a module imports only from its own package
or from a package on a lower floor: never one beside it, never one above. So no import climbs, and no two packages
import each other (a circle needs one import that climbs or goes sideways). ``FLOORS`` is the one definition; the
README's "Where the code lives" draws it.

The product stands on the lowest floors: ``helpers.codec`` imports only itself and ``helpers.paths``, so the codec
ships without training, the study or the data pipeline (``pip install .``)."""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

from codec_samples import ROOT

# From the bottom. Packages on one floor are side by side: neither imports the other.
FLOORS = (
    (
        "helpers",
        "helpers.paths",
    ),  # the package itself (its version) and where things live; ship with the codec
    ("helpers.codec",),  # the product: bytes <-> pixels, its file format, its command line
    ("helpers.data",),  # PlantVillage, the split, loading, the photo sets
    ("helpers.measures",),  # metrics and the LPIPS assets, for training and the study alike
    ("helpers.training", "helpers.study"),  # training runs; evaluation, baselines, tables, figures
    ("helpers.experiments",),  # train, then measure: bake-off, campaign, perceptual tuning, model cards
    ("helpers.commands",),  # the front door: python -m helpers
    ("helpers.__main__",),
)


def _imported(path: Path, package: str) -> list[str]:
    """Every module a file imports, at any depth (function-level imports too), relative ones resolved."""
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            names += [f"{base}.{a.name}" for a in node.names]
    return names


def _unit(module: str) -> tuple[str, int] | None:
    """The floor's package ``module`` belongs to (the longest that contains it) and its floor; None: on none.
    ``helpers`` itself holds only its own ``__init__``: a module it does not list is on no floor."""
    found = [(unit, floor) for floor, units in enumerate(FLOORS) for unit in units
             if module == unit or (unit != "helpers" and module.startswith(unit + "."))]  # fmt: skip
    return max(found, key=lambda f: len(f[0])) if found else None


def _module(path: Path, helpers_dir: Path) -> tuple[str, str]:
    """``(module, package)`` of a file under ``helpers_dir``, as ``helpers.…`` names."""
    parts = ["helpers", *path.relative_to(helpers_dir).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
        return ".".join(parts), ".".join(parts)
    return ".".join(parts), ".".join(parts[:-1])


def floor_violations(helpers_dir: Path) -> list[str]:
    """``file: imported module (why)`` for every import of a helpers module that climbs a floor or goes sideways,
    and every file or imported module on no floor."""
    bad = []
    for path in sorted(helpers_dir.rglob("*.py")):
        module, package = _module(path, helpers_dir)
        rel = path.relative_to(helpers_dir).as_posix()
        home = _unit(module)
        if home is None:
            bad.append(f"{rel}: on no floor")
            continue
        for name in _imported(path, package):
            if name != "helpers" and not name.startswith("helpers."):
                continue
            there = _unit(name)
            if there is None:
                bad.append(f"{rel}: {name} (on no floor)")
            elif there[0] != home[0] and there[1] >= home[1]:
                bad.append(f"{rel}: {name} ({'climbs' if there[1] > home[1] else 'sideways'})")
    return bad


def test_no_import_climbs_a_floor_or_goes_sideways():
    assert floor_violations(ROOT / "helpers") == []


def test_every_package_is_on_a_floor_and_the_readme_draws_them():
    packages = {f"helpers.{p.parent.name}" for p in (ROOT / "helpers").glob("*/__init__.py")}
    on_floors = {unit for units in FLOORS for unit in units}
    assert packages <= on_floors, packages - on_floors
    diagram = (ROOT / "README.md").read_text().split("## Where the code lives")[1].split("```")[1]
    undrawn = {
        unit for unit in on_floors - {"helpers", "helpers.__main__"} if unit[len("helpers.") :] not in diagram
    }
    assert not undrawn, undrawn


def _python_files_only(folder, names):
    return [n for n in names if n == "__pycache__" or (Path(folder, n).is_file() and not n.endswith(".py"))]


def test_the_rule_catches_climbing_sideways_and_unplaced_imports(tmp_path):
    helpers = shutil.copytree(ROOT / "helpers", tmp_path / "helpers", ignore=_python_files_only)

    def add(rel: str, code: str) -> None:
        path = helpers / rel
        path.write_text((path.read_text() if path.exists() else "") + code)

    add("codec/injected.py", "from helpers.training import loop\n")  # the product reaching up
    add("codec/__init__.py", "\ndef f():\n    from ..study import evaluate\n")  # relative, inside a function
    add("codec/more.py", "import helpers.data.dataset\n")
    add("data/__init__.py", "from helpers.measures import metrics\n")
    add("training/injected.py", "from helpers.study import evaluate\n")  # a circle: the study imports...
    add("study/injected.py", "from helpers.training import loop\n")  # ...training, and training the study
    add("study/climbs.py", "from helpers.experiments import bakeoff\n")
    add("measures/reads.py", "from helpers import commands\n")
    (helpers / "attic").mkdir()
    add("attic/__init__.py", "")
    add("experiments/unknown.py", "from helpers.attic import thing\n")
    assert floor_violations(helpers) == [
        "attic/__init__.py: on no floor",
        "codec/__init__.py: helpers.study.evaluate (climbs)",
        "codec/injected.py: helpers.training.loop (climbs)",
        "codec/more.py: helpers.data.dataset (climbs)",
        "data/__init__.py: helpers.measures.metrics (climbs)",
        "experiments/unknown.py: helpers.attic.thing (on no floor)",
        "measures/reads.py: helpers.commands (climbs)",
        "study/climbs.py: helpers.experiments.bakeoff (climbs)",
        "study/injected.py: helpers.training.loop (sideways)",
        "training/injected.py: helpers.study.evaluate (sideways)",
    ]


_PRODUCT_ONLY = """
import sys
import numpy as np
from PIL import Image
from helpers.codec.cli import main
src, leaf, png = sys.argv[1:]
Image.fromarray(np.full((40, 56, 3), 90, np.uint8)).save(src)
assert main(["compress", src, "-o", leaf]) == 0 and main(["decompress", leaf, "-o", png]) == 0
print("loaded:", *(m for m in sys.modules
                   if m.startswith("helpers.") and not m.startswith(("helpers.codec", "helpers.paths"))))
"""


def test_compressing_and_decompressing_load_nothing_but_the_codec(tmp_path):
    """At run time too: a compress and a decompress through the product's own command line leave no module of
    training, the study, the measures, the experiments or the data pipeline loaded."""
    args = [tmp_path / "a.png", tmp_path / "a.leaf", tmp_path / "b.png"]
    proc = subprocess.run([sys.executable, "-c", _PRODUCT_ONLY, *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "b.png").is_file() and proc.stdout.splitlines()[-1] == "loaded:"
