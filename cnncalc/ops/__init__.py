"""Operators: one module per operator; importing this package registers them all."""

from __future__ import annotations

import importlib
import pkgutil

from .base import OPS, SPEC_NAMES, Example, Forward, Op, Shape, SpecArgs, WeightSpec, Window

for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_") and _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["OPS", "SPEC_NAMES", "Example", "Forward", "Op", "Shape", "SpecArgs", "WeightSpec", "Window"]
