"""Leaf codec study: a learned image codec for plant-leaf photographs (see README).

Four packages by stage: ``codec`` (the product, which imports nothing from the others), ``data``, ``training``
and ``study``; ``commands`` is the one front door (``python -m helpers --help``).
"""

__version__ = "0.1.0"
