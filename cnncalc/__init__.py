"""cnncalc: what a convolutional network costs before you train it."""

from __future__ import annotations

__version__ = "0.1.0"
