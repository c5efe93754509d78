"""MaxPool: the largest value of each window, written `MP`, `MP(3)`, `MP(k=3,s=2,p=1)` in a spec."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
else:
    from .._numpy import np

from ._pooling import _Pool
from ._windows import crop_pads, window_max
from .base import Example, Forward, Shape


@dataclass(frozen=True)
class MaxPool(_Pool):
    """Max pooling; padded positions hold -inf so they never win."""

    spec_names = ("MP", "MaxPool")
    pad_value = float("-inf")

    def flops(self, in_shapes: list[Shape], out_shape: Shape) -> int:
        # kh * kw - 1 comparisons per output element
        return self._out_elements(out_shape) * (self._window_size() - 1)

    # ---- NumPy ---------------------------------------------------------------
    def forward(self, inputs: list[np.ndarray], training: bool = False,
                rng: np.random.Generator | None = None) -> Forward:
        """Maximum of each window of the padded batch, separably in contiguous passes (see `window_max`)."""
        pads, out_hw = self._geometry(inputs[0])
        return Forward(window_max(inputs[0], self.kernel_shape, self.strides, pads, out_hw))

    def backward(self, grad_out: np.ndarray, inputs: list[np.ndarray],
                 fwd: Forward) -> list[np.ndarray | None]:
        """Each window's gradient goes to its first maximum, as onnxruntime and PyTorch route it."""
        xp, pads, _ = self._padded(inputs[0])  # the forward reads the batch unpadded; backward pads it once
        grad_xp = np.zeros(xp.shape, dtype=grad_out.dtype)
        routed = np.zeros(grad_out.shape, dtype=bool)  # windows whose maximum was already found
        for rows, cols in self._slices(grad_out.shape[2:]):
            first = (xp[:, :, rows, cols] == fwd.out) & ~routed
            routed |= first
            grad_xp[:, :, rows, cols] += grad_out * first
        return [crop_pads(grad_xp, pads)]

MaxPool.examples = (
    Example(MaxPool(), ((3, 6, 6),), "default 2x2"),
    Example(MaxPool((3, 3), (2, 2), (1, 1, 1, 1)), ((2, 7, 8),), "k3 s2 p1"),
    # ceil_mode adds a row (floor 2, ceil 3) and a column (floor 3, ceil 4) that overhang the input
    Example(MaxPool((3, 2), (2, 2), (0, 1, 0, 0), ceil_mode=1), ((2, 6, 6),),
            "non-square ceil_mode asym pad"),
)
