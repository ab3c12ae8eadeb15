"""Importing CompressAI without the parts the codec never runs: seconds off every command's start.

CompressAI's package ``__init__`` imports its datasets and point-cloud transforms, and its ``registry`` package
imports torch_geometric's and torchvision's transforms: about 3 s of every command's start on two cores, for
nothing that coding uses. ``lean_compressai()`` puts two bare package objects in their place (``compressai`` and
``compressai.registry``, with their real search paths, so that every submodule still loads from its own file)
holding the few names the coding modules read from them, and importing the rest of CompressAI on first use. It
imports nothing itself (``info`` runs without PyTorch); a failure undoes it, and a process that imported CompressAI
before keeps it as it was.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types


def _bare_package(name: str) -> types.ModuleType:
    """A package object for ``name`` whose ``__init__`` is not run; its submodules import as attributes on
    first use (``compressai.datasets`` works as after a full import, importing what it needs then)."""
    spec = importlib.util.find_spec(name)
    module = types.ModuleType(name)
    module.__path__, module.__spec__, module.__file__ = (
        list(spec.submodule_search_locations),
        spec,
        spec.origin,
    )
    module.__getattr__ = lambda attr: _submodule(name, attr)
    sys.modules[name] = module
    return module


def _submodule(package: str, attr: str):
    if attr.startswith("__"):
        raise AttributeError(attr)
    try:
        return importlib.import_module(f"{package}.{attr}")
    except ModuleNotFoundError:
        raise AttributeError(f"module {package!r} has no attribute {attr!r}") from None


def _install() -> None:
    package = _bare_package("compressai")
    # compressai/__init__.py's entropy-coder choice, as it is without the optional range_coder package.
    package.available_entropy_coders = lambda: ["ans"]
    package.get_entropy_coder = lambda: "ans"
    package.__version__ = importlib.import_module("compressai.version").__version__
    # The registry's decorators, from its torch half (its other half, transforms, is what imports
    # torch_geometric); looked up on first use, so that nothing here imports torch.
    registry = _bare_package("compressai.registry")
    registry.__getattr__ = lambda attr: (
        getattr(importlib.import_module("compressai.registry.torch"), attr)
        if attr.isupper() or attr.startswith("register_")
        else _submodule("compressai.registry", attr)
    )


def lean_compressai() -> bool:
    """Import CompressAI's coding modules the lean way (see the module docstring); False if it fell back."""
    if "compressai" in sys.modules:
        return False
    try:
        _install()
        return True
    except Exception:
        for name in [n for n in sys.modules if n == "compressai" or n.startswith("compressai.")]:
            del sys.modules[name]
        return False
