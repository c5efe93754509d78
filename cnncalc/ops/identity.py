"""Identity: the input unchanged, written `ID` (alias Identity) in a spec."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
else:
    from .._numpy import np

from .base import Example, Forward, Op


@dataclass(frozen=True)
class Identity(Op):
    """Passes its input through; no work."""

    spec_names = ("ID", "Identity")
    cost_class = "reshape"

    def forward(self, inputs: list[np.ndarray], training: bool = False,
                rng: np.random.Generator | None = None) -> Forward:
        return Forward(inputs[0])

    def backward(self, grad_out: np.ndarray, inputs: list[np.ndarray],
                 fwd: Forward) -> list[np.ndarray | None]:
        return [grad_out]


Identity.examples = (
    Example(Identity(), ((3, 4, 5),), "image"),
)
