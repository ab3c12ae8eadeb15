"""Leaf codec study: a learned image codec for plant-leaf photographs (see README).

Modules are named after the pipeline stage: data, model, codec, train, metrics, baselines, plots, export.
"""

__version__ = "0.1.0"
