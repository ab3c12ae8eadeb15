"""Every architecture a checkpoint can name, and ``build``. The model modules register into
``models.ARCHITECTURES`` when imported; this module imports them (CompressAI's ``models/__init__`` style) and
builds from the registry, standing above both, so no module imports one that imports it back.

* ``"leaf-hyperprior"``: codec v1/v2's shipped model (config ``N``, ``M``, ``lambdas``; also what a checkpoint
  that names no architecture holds).
* ``"composed"``: any other configuration of the same class (``GainHyperprior``): the bake-off's candidates and
  codec v3.
"""

from __future__ import annotations

from helpers.codec import gain_hyperprior  # noqa: F401 (registers its architectures)
from helpers.codec.models import ARCHITECTURES, CodingModel


def build(name: str, config: dict) -> CodingModel:
    """The model of architecture ``name`` with ``config`` (as ``config()`` returned it); untrained. KeyError if
    no module registered ``name``."""
    if name not in ARCHITECTURES:
        raise KeyError(f"unknown architecture {name!r}")
    return ARCHITECTURES[name](**config)
