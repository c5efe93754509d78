"""GlobalMaxPool: the largest value of each channel, HxWxC -> 1x1xC, written `GMP` in a spec."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
else:
    from .._numpy import np

from .base import Example, Forward, Op, Shape, Window, spatial


@dataclass(frozen=True)
class GlobalMaxPool(Op):
    """Max over the whole image per channel; its window is the whole input."""

    spec_names = ("GMP", "GlobalMaxPool")
    cost_class = "pool"

    def output_shape(self, in_shapes: list[Shape]) -> Shape:
        c, _, _ = spatial(in_shapes[0], "GMP")
        return (c, 1, 1)

    def flops(self, in_shapes: list[Shape], out_shape: Shape) -> int:
        # H * W - 1 comparisons per channel
        c, h, w = in_shapes[0]
        return c * (h * w - 1)

    def window(self, in_shapes: list[Shape]) -> Window | None:
        _, h, w = spatial(in_shapes[0], "GMP")
        return Window((h, w), (1, 1), (0, 0))

    def forward(self, inputs: list[np.ndarray], training: bool = False,
                rng: np.random.Generator | None = None) -> Forward:
        """Arg-max over the flattened image, kept so backward routes to one pixel per channel."""
        x = inputs[0]
        flat = x.reshape(x.shape[0], x.shape[1], -1)
        winner = flat.argmax(axis=-1)
        out = np.take_along_axis(flat, winner[..., None], axis=-1)
        return Forward(out.reshape(x.shape[0], x.shape[1], 1, 1), cache=winner)

    def backward(self, grad_out: np.ndarray, inputs: list[np.ndarray],
                 fwd: Forward) -> list[np.ndarray | None]:
        x = inputs[0]
        grad = np.zeros((x.shape[0], x.shape[1], x.shape[2] * x.shape[3]), dtype=grad_out.dtype)
        np.put_along_axis(grad, fwd.cache[..., None], grad_out.reshape(x.shape[0], x.shape[1], 1), axis=-1)
        return [grad.reshape(x.shape)]


GlobalMaxPool.examples = (
    Example(GlobalMaxPool(), ((3, 4, 5),), "non-square"),
)
