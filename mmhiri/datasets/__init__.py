"""Deterministic synthetic datasets (no download) for the demo, tests and quick experiments.

Import the submodules directly (``from mmhiri.datasets import synthetic``); ``import mmhiri``
does not import this package.
"""
