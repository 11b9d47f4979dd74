"""Calibration / evaluation data loaders, resolved from spec strings by :func:`edgec.data.open_dataset`.

Each loader returns an :class:`edgec.data.Dataset`. This package imports the core only.
"""
