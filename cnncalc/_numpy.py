"""NumPy, loaded on first use rather than on import.

Analysis never touches an array, and importing NumPy is about half of the start-up of
`cnncalc analyze`. Modules on the analysis path (the ops, weights, hardware) bind `np`
to this stand-in at run time; type checkers see the real module.
"""

from __future__ import annotations

import importlib
from typing import Any


class _LazyNumPy:
    """Forwards every attribute to the numpy module, importing it the first time, and caches it."""

    def __getattr__(self, name: str) -> Any:
        # only called for names not yet cached: after the first look-up, `np.matmul` is a plain
        # instance attribute (a kernel calls np.* dozens of times per run; the import machinery costs
        # about 5 us each time)
        value = getattr(importlib.import_module("numpy"), name)
        setattr(self, name, value)
        return value


np: Any = _LazyNumPy()
