"""Relu: max(x, 0), written `ReLU` in a spec."""

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
class Relu(_Pointwise):
    """Rectified linear unit; one comparison per element."""

    spec_names = ("ReLU",)
    flops_per_element = 1

    def forward(self, inputs: list[np.ndarray], training: bool = False,
                rng: np.random.Generator | None = None) -> Forward:
        # np.clip runs NumPy's SIMD loop; np.maximum with a scalar 0 takes a loop about 3x slower (NumPy 2.4).
        # Same values, NaN included; only -0.0 stays -0.0 instead of becoming +0.0.
        return Forward(np.clip(inputs[0], 0, np.inf))

    def backward(self, grad_out: np.ndarray, inputs: list[np.ndarray],
                 fwd: Forward) -> list[np.ndarray | None]:
        # gradient passes where the input was positive
        return [grad_out * (inputs[0] > 0)]


Relu.examples = (
    Example(Relu(), ((3, 4, 5),), "image"),
    Example(Relu(), ((7,),), "vector"),
)
