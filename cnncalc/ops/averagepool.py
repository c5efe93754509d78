"""AveragePool: the mean of each window, written `AP`, `AP(3)`, `AP(k=3,s=2,p=1,cip=1)` in a spec."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
else:
    from .._numpy import np

from ._pooling import _Pool
from ._windows import crop_pads, pad_images, window_view
from .base import Example, Forward, Shape, SpecArgs


@dataclass(frozen=True)
class AveragePool(_Pool):
    """Average pooling; count_include_pad=0 (ONNX default) divides by the real pixels of each window only."""

    count_include_pad: int = 0

    spec_names = ("AP", "AvgPool", "AveragePool")
    extra_options = ", cip (count_include_pad, 0 or 1)"

    @classmethod
    def _extra_from_spec(cls, args: SpecArgs) -> dict[str, Any]:
        cip = args.switch("cip", "count_include_pad", default=False, meaning="count_include_pad")
        return {"count_include_pad": int(cip)}

    @classmethod
    def _extra_from_onnx(cls, attrs: dict[str, Any]) -> dict[str, Any]:
        return {"count_include_pad": int(attrs.get("count_include_pad", 0))}

    def onnx_attributes(self) -> dict[str, Any]:
        return {**super().onnx_attributes(), "count_include_pad": self.count_include_pad}

    def _pads_count(self) -> bool:
        return bool(self.count_include_pad)  # padded positions are in the divisor

    def _extra_describe(self) -> list[str]:
        return ["cip=1"] if self.count_include_pad else []

    def flops(self, in_shapes: list[Shape], out_shape: Shape) -> int:
        # kh * kw - 1 adds and one divide per output element
        return self._out_elements(out_shape) * self._window_size()

    # ---- NumPy ---------------------------------------------------------------
    def _divisors(self, in_hw: tuple[int, int], dtype: np.dtype) -> np.ndarray:
        """(1, 1, Ho, Wo) count of the positions each window averages over, worked out once per op, map size
        and dtype (read-only): building it took 60% of a LeNet-5 pool's forward at batch 1."""
        return _divisor_grid(self, in_hw, np.dtype(dtype).str)

    def _count_divisors(self, in_hw: tuple[int, int], dtype: np.dtype) -> np.ndarray:
        """The counts, from a window view of a mask of the real (and, with count_include_pad, padded) pixels."""
        _, ho, wo = self.output_shape([(1, *in_hw)])
        full = self._full_pads(in_hw, (ho, wo))
        top, left, bottom, right = self.pads
        if self.count_include_pad:
            # explicit pads count, the ceil_mode overhang past them does not
            mask = np.ones((1, 1, in_hw[0] + top + bottom, in_hw[1] + left + right), dtype=dtype)
            mask = pad_images(mask, (0, 0, full[2] - bottom, full[3] - right))
        else:
            mask = pad_images(np.ones((1, 1, *in_hw), dtype=dtype), full)
        return window_view(mask, self.kernel_shape, self.strides, (1, 1), (ho, wo)).sum(axis=(4, 5))

    def forward(self, inputs: list[np.ndarray], training: bool = False,
                rng: np.random.Generator | None = None) -> Forward:
        """Window sums over the kh * kw strided slices of the zero-padded batch, divided by each count."""
        x = inputs[0]
        xp, pads, out_hw = self._padded(x)
        total = np.zeros((*x.shape[:2], *out_hw), dtype=x.dtype)
        for rows, cols in self._slices(out_hw):
            total += xp[:, :, rows, cols]
        divisors = self._divisors((x.shape[2], x.shape[3]), x.dtype)
        return Forward(total / divisors, cache=(divisors, pads, xp.shape))

    def backward(self, grad_out: np.ndarray, inputs: list[np.ndarray],
                 fwd: Forward) -> list[np.ndarray | None]:
        divisors, pads, padded_shape = fwd.cache
        # every position of a window gets the window's gradient / count
        share = grad_out / divisors
        grad_xp = np.zeros(padded_shape, dtype=grad_out.dtype)
        for rows, cols in self._slices(grad_out.shape[2:]):
            grad_xp[:, :, rows, cols] += share
        return [crop_pads(grad_xp, pads)]


@functools.lru_cache(maxsize=128)
def _divisor_grid(op: AveragePool, in_hw: tuple[int, int], dtype: str) -> np.ndarray:
    grid = op._count_divisors(in_hw, np.dtype(dtype))
    grid.flags.writeable = False  # shared by every run of the op
    return grid


AveragePool.examples = (
    # ceil_mode: ceil((8 + 2 - 3) / 2) + 1 = 5 windows (floor gives 4); the last one overhangs the padding
    Example(AveragePool((3, 3), (2, 2), (1, 1, 1, 1), ceil_mode=1), ((2, 8, 8),),
            "k3 s2 p1 ceil exclude pad"),
    Example(AveragePool((3, 3), (2, 2), (1, 1, 1, 1), count_include_pad=1), ((2, 7, 6),),
            "count_include_pad"),
    Example(AveragePool((2, 3), (2, 2), (1, 1, 0, 0), ceil_mode=1, count_include_pad=1), ((2, 6, 7),),
            "non-square ceil_mode asym pads cip"),
)
