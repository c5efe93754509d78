"""GlobalAveragePool: the mean of each channel, HxWxC -> 1x1xC, written `GAP` in a spec."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
else:
    from .._numpy import np

from .base import Example, Forward, Op, Shape, Window, spatial


@dataclass(frozen=True)
class GlobalAveragePool(Op):
    """Average over the whole image per channel; its window is the whole input."""

    spec_names = ("GAP", "GlobalAveragePool")
    cost_class = "pool"

    def output_shape(self, in_shapes: list[Shape]) -> Shape:
        c, _, _ = spatial(in_shapes[0], "GAP")
        return (c, 1, 1)

    def flops(self, in_shapes: list[Shape], out_shape: Shape) -> int:
        # H * W - 1 adds and one divide per channel
        c, h, w = in_shapes[0]
        return c * h * w

    def window(self, in_shapes: list[Shape]) -> Window | None:
        _, h, w = spatial(in_shapes[0], "GAP")
        return Window((h, w), (1, 1), (0, 0))

    def forward(self, inputs: list[np.ndarray], training: bool = False,
                rng: np.random.Generator | None = None) -> Forward:
        return Forward(inputs[0].mean(axis=(2, 3), keepdims=True))

    def backward(self, grad_out: np.ndarray, inputs: list[np.ndarray],
                 fwd: Forward) -> list[np.ndarray | None]:
        x = inputs[0]
        # each of the H * W pixels gets 1 / (H * W) of its channel's gradient
        return [np.broadcast_to(grad_out / (x.shape[2] * x.shape[3]), x.shape).copy()]


GlobalAveragePool.examples = (
    Example(GlobalAveragePool(), ((3, 4, 5),), "non-square"),
)
