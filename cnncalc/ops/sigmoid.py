"""Sigmoid: 1 / (1 + exp(-x)), written `Sigmoid` in a spec."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
else:
    from .._numpy import np

from ._pointwise import _Pointwise
from .base import Example, Forward


@dataclass(frozen=True)
class Sigmoid(_Pointwise):
    """Logistic function; counted as 4 FLOPs per element (negate, exp, add, divide)."""

    spec_names = ("Sigmoid",)
    flops_per_element = 4

    def forward(self, inputs: list[np.ndarray], training: bool = False,
                rng: np.random.Generator | None = None) -> Forward:
        """exp(-|x|) never overflows; the two branches are the same function."""
        x = inputs[0]
        e = np.exp(-np.abs(x))
        return Forward(np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False))

    def backward(self, grad_out: np.ndarray, inputs: list[np.ndarray],
                 fwd: Forward) -> list[np.ndarray | None]:
        y = fwd.out
        # d sigmoid = y (1 - y)
        return [grad_out * y * (1 - y)]


Sigmoid.examples = (
    Example(Sigmoid(), ((3, 4, 5),), "image"),
)
