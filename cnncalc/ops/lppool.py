"""LpPool: the L2 norm of each window (p=2), written `LP`, `LP(3)`, `LP(k=3,s=2,p=1)` in a spec."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
else:
    from .._numpy import np

from ..errors import UnsupportedOpError
from ._pooling import _Pool
from ._windows import crop_pads
from .base import Example, Forward, Shape


@dataclass(frozen=True)
class LpPool(_Pool):
    """L2-norm pooling: sqrt of the sum of squares of each window; zero padding adds nothing."""

    p: int = 2

    spec_names = ("LP", "LpPool")

    @classmethod
    def _extra_from_onnx(cls, attrs: dict[str, Any]) -> dict[str, Any]:
        p = int(attrs.get("p", 2))
        if p != 2:
            raise UnsupportedOpError(f"LpPool with p={p} is not supported",
                                     hint="cnncalc supports p=2 (L2 pooling)")
        return {"p": p}

    def onnx_attributes(self) -> dict[str, Any]:
        attributes = {**super().onnx_attributes(), "p": self.p}
        if not self.ceil_mode:
            del attributes["ceil_mode"]  # LpPool has ceil_mode only from opset 18
        return attributes

    def min_opset(self) -> int:
        return 18 if self.ceil_mode else 0  # the ONNX spec adds LpPool's ceil_mode in opset 18

    def flops(self, in_shapes: list[Shape], out_shape: Shape) -> int:
        # kh * kw squares and kh * kw adds (the last one standing for the square root) per output element
        return self._out_elements(out_shape) * 2 * self._window_size()

    # ---- NumPy ---------------------------------------------------------------
    def forward(self, inputs: list[np.ndarray], training: bool = False,
                rng: np.random.Generator | None = None) -> Forward:
        """sqrt(sum x^2) over the kh * kw strided slices of the zero-padded batch."""
        x = inputs[0]
        xp, pads, out_hw = self._padded(x)
        squares = np.zeros((*x.shape[:2], *out_hw), dtype=x.dtype)
        for rows, cols in self._slices(out_hw):
            squares += np.square(xp[:, :, rows, cols])
        return Forward(np.sqrt(squares), cache=(xp, pads))

    def backward(self, grad_out: np.ndarray, inputs: list[np.ndarray],
                 fwd: Forward) -> list[np.ndarray | None]:
        xp, pads = fwd.cache
        # d sqrt(sum x^2) / dx = x / norm; a window of zeros passes no gradient
        norm = fwd.out
        scale = np.divide(grad_out, norm, out=np.zeros_like(grad_out), where=norm > 0)
        grad_xp = np.zeros(xp.shape, dtype=grad_out.dtype)
        for rows, cols in self._slices(grad_out.shape[2:]):
            grad_xp[:, :, rows, cols] += xp[:, :, rows, cols] * scale
        return [crop_pads(grad_xp, pads)]

LpPool.examples = (
    Example(LpPool(), ((3, 6, 6),), "default 2x2"),
    Example(LpPool((3, 2), (2, 1), (1, 1, 1, 1)), ((2, 7, 6),), "non-square k s p1"),
    Example(LpPool((3, 3), (2, 2), (0, 0, 0, 0), ceil_mode=1), ((2, 8, 8),), "ceil k3 s2 (opset 18)"),
)
