"""Tanh: the hyperbolic tangent, written `Tanh` in a spec."""

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
class Tanh(_Pointwise):
    """Hyperbolic tangent; counted as 4 FLOPs per element like Sigmoid."""

    spec_names = ("Tanh",)
    flops_per_element = 4

    def forward(self, inputs: list[np.ndarray], training: bool = False,
                rng: np.random.Generator | None = None) -> Forward:
        return Forward(np.tanh(inputs[0]))

    def backward(self, grad_out: np.ndarray, inputs: list[np.ndarray],
                 fwd: Forward) -> list[np.ndarray | None]:
        # d tanh = 1 - y^2
        return [grad_out * (1 - fwd.out * fwd.out)]


Tanh.examples = (
    Example(Tanh(), ((3, 4, 5),), "image"),
)
