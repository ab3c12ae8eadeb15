"""Leaf codec study: a learned image codec for plant-leaf photographs (see README).

Packages on floors, each importing only from its own and lower ones (tests/test_layout.py): ``codec`` (the product,
with ``paths``), ``data``, ``measures``, ``training`` and ``study`` side by side, ``experiments``, and
``commands``, the one front door (``python -m helpers --help``).
"""

__version__ = "0.1.0"
