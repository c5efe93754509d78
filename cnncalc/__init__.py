"""cnncalc: what a convolutional network costs before you train it.

The public API: `parse` (spec text -> Graph), `load` (text, YAML or ONNX -> SpecFile),
`analyze` (Graph -> NetworkReport), and, imported on first use because they pull in
onnx, `to_onnx`, `save_model` and `load_model`.
"""

from __future__ import annotations

from typing import Any

from .analysis import analyze
from .errors import CnnCalcError, ShapeError, SpecError
from .spec import parse
from .specfile import load

__version__ = "0.1.0"

_LAZY = {"to_onnx": "onnx_io", "save_model": "onnx_io", "load_model": "onnx_io", "Runtime": "runtime"}


def __getattr__(name: str) -> Any:
    """Import the ONNX and runtime entry points only when they are asked for (keeps start-up fast)."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'cnncalc' has no attribute {name!r}")


__all__ = ["CnnCalcError", "ShapeError", "SpecError", "analyze", "load", "parse", "to_onnx", "save_model",
           "load_model", "Runtime"]
