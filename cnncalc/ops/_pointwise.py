"""What element-wise operators share: same shape out as in, a fixed FLOP count per output element."""

from __future__ import annotations

from typing import ClassVar

from .base import Op, Shape, numel


class _Pointwise(Op):
    """An op whose cost is `flops_per_element` for each output element; no window, no weights."""

    flops_per_element: ClassVar[int] = 1

    def flops(self, in_shapes: list[Shape], out_shape: Shape) -> int:
        # the documented count per element times the number of output elements
        return self.flops_per_element * numel(out_shape)
