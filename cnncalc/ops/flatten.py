"""Flatten: HxWxC -> a vector of H*W*C (ONNX axis=1), written `Flatten` in a spec."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
else:
    from .._numpy import np

from ..errors import UnsupportedOpError
from .base import Example, Forward, Op, Shape, Window, numel


@dataclass(frozen=True)
class Flatten(Op):
    """Keeps the batch axis, flattens the rest in NCHW order; no work, but its window is the whole image."""

    axis: int = 1

    spec_names = ("Flatten",)
    cost_class = "reshape"

    @classmethod
    def from_onnx(cls, attrs: dict[str, Any], in_shapes: list[Shape], weight_shapes: list[Shape]) -> Op:
        axis = int(attrs.get("axis", 1))
        if axis not in (1, -len(in_shapes[0])):
            raise UnsupportedOpError(f"Flatten with axis={axis} is not supported",
                                     hint="cnncalc supports Flatten that keeps the batch axis (axis=1)")
        return cls()

    def output_shape(self, in_shapes: list[Shape]) -> Shape:
        return (numel(in_shapes[0]),)

    def window(self, in_shapes: list[Shape]) -> Window | None:
        """Every output depends on the whole image: a window of the full H x W, like a global pool."""
        shape = in_shapes[0]
        if len(shape) != 3:
            return None
        return Window((shape[1], shape[2]), (1, 1), (0, 0))

    def forward(self, inputs: list[np.ndarray], training: bool = False,
                rng: np.random.Generator | None = None) -> Forward:
        x = inputs[0]
        return Forward(x.reshape(x.shape[0], -1))

    def backward(self, grad_out: np.ndarray, inputs: list[np.ndarray],
                 fwd: Forward) -> list[np.ndarray | None]:
        return [grad_out.reshape(inputs[0].shape)]


Flatten.examples = (
    Example(Flatten(), ((3, 4, 5),), "image"),
)
