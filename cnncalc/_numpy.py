"""NumPy, loaded on first use rather than on import.

Analysis never touches an array, and importing NumPy is about half of the start-up of
`cnncalc analyze`. Modules on the analysis path (the ops, weights, hardware) bind `np`
to this stand-in at run time; type checkers see the real module.
"""

from __future__ import annotations

import importlib
from typing import Any


class _LazyNumPy:
    """Forwards every attribute to the numpy module, importing it the first time."""

    def __getattr__(self, name: str) -> Any:
        module = importlib.import_module("numpy")
        return getattr(module, name)


np: Any = _LazyNumPy()
