"""Importing CompressAI without the parts the codec never runs: seconds off every command's start.

CompressAI's package ``__init__`` imports its datasets and point-cloud transforms, and its ``registry`` package
imports torch_geometric's and torchvision's transforms: about 3 s of every command's start on two cores, for
nothing that coding uses (and its entropy models scipy.stats, 0.8 s, for tables that shipped checkpoints carry
built: ``_on_first_use``). ``lean_compressai()`` puts two bare package objects in their place (``compressai`` and
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


def _bare_module(name: str) -> types.ModuleType:
    """A module object for ``name`` (its spec, file and search path) whose code is not run, in ``sys.modules``."""
    spec = importlib.util.find_spec(name)
    module = types.ModuleType(name)
    module.__spec__, module.__file__ = spec, spec.origin
    if spec.submodule_search_locations is not None:
        module.__path__ = list(spec.submodule_search_locations)
    sys.modules[name] = module
    return module


def _bare_package(name: str) -> types.ModuleType:
    """A package object for ``name`` whose ``__init__`` is not run; its submodules import as attributes on
    first use (``compressai.datasets`` works as after a full import, importing what it needs then)."""
    module = _bare_module(name)
    module.__getattr__ = lambda attr: _submodule(name, attr)
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


def _on_first_use(name: str) -> None:
    """``name`` imported when one of its attributes is first read: CompressAI's entropy models import
    scipy.stats (0.8 s) for one quantile, needed only when a model's tables are rebuilt, which a shipped
    checkpoint never asks for. A placeholder module (dunder attributes of its own, so that PyTorch's scans of
    ``sys.modules`` do not trigger it) forwards to the real module, which replaces it on first use."""
    if name in sys.modules:
        return
    placeholder = _bare_module(name)

    def real(attr: str):
        if attr.startswith("__"):
            raise AttributeError(attr)
        if sys.modules.get(name) is placeholder:
            del sys.modules[name]
        return getattr(importlib.import_module(name), attr)

    placeholder.__getattr__ = real


def lean_compressai() -> bool:
    """Import CompressAI's coding modules the lean way (see the module docstring); False if it fell back."""
    if "compressai" in sys.modules:
        return False
    try:
        _install()
        _on_first_use("scipy.stats")
        return True
    except Exception:
        for name in [n for n in sys.modules if n == "compressai" or n.startswith("compressai.")]:
            del sys.modules[name]
        return False
