"""Clip: min(max(x, min), max), written `ReLU6` (min 0, max 6) in a spec.

From ONNX opset 11, min and max are inputs, not attributes. cnncalc keeps them as fields of the op
and lists them in `weights()` as constant scalar operands (WeightSpec init="const:<value>"), so
the exported node carries them as initializers. `from_onnx` reads `min`/`max` from the attributes,
which is where old files keep them and where the importer puts the values of scalar constant inputs
(under the ONNX schema's input name). In a spec, `ReLU6` and `Clip` are Clip(0, 6);
`Clip(min=-1,max=1)` sets the bounds, min below max.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
else:
    from .._numpy import np

from ..errors import UnsupportedOpError
from ._pointwise import _Pointwise
from .base import Example, Forward, Op, Shape, SpecArgs, WeightSpec, number_text, onnx_float


@dataclass(frozen=True)
class Clip(_Pointwise):
    """Clamp to [min, max]; two comparisons per element."""

    min: float = 0.0
    max: float = 6.0

    spec_names = ("ReLU6", "Clip")
    flops_per_element = 2

    @classmethod
    def from_spec(cls, args: SpecArgs, in_shapes: list[Shape]) -> Op:
        low = args.real("min", "lo", default=0.0)
        high = args.real("max", "hi", default=6.0)
        args.finish("Clip", "min (default 0), max (default 6)")
        if low >= high:
            # min > max (or min == max) sends every value to max: a constant layer, surely not what was meant
            written_max = args.raw("max", "hi")
            written = written_max or args.raw("min", "lo")
            if math.inf in (low, -high):
                hint = "an infinite bound means no bound on that side: min=-inf or max=inf"
            elif written_max is None:
                hint = f"max is 6 unless given: write a max above {low:g} too, or a min below 6"
            else:
                hint = f"write a min below {high:g}, or a max above {low:g}"
            raise args.error(written[1] if written else None,
                             f"Clip min={low:g} must be below max={high:g}, else every output is {high:g}",
                             hint=hint)
        return cls(low, high)

    @classmethod
    def from_onnx(cls, attrs: dict[str, Any], in_shapes: list[Shape], weight_shapes: list[Shape]) -> Op:
        found = [key for key in ("min", "max") if attrs.get(key) is not None]
        if len(weight_shapes) > len(found):
            raise UnsupportedOpError("Clip bounds that are computed, not constant, are not supported",
                                     hint="cnncalc imports Clip with constant bounds, such as ReLU6 (0, 6)")
        # a bound left out means no bound, as in ONNX
        low, high = onnx_float(attrs.get("min", float("-inf"))), onnx_float(attrs.get("max", float("inf")))
        if low >= high:  # the spec refuses it too: its text must parse back
            raise UnsupportedOpError(f"Clip with min {low:g} not below max {high:g} outputs {high:g} everywhere",
                                     hint="cnncalc's Clip keeps min below max; check the exporter's bounds")
        return cls(low, high)

    def onnx_attributes(self) -> dict[str, Any]:
        return {}  # min and max are constant inputs from opset 11, see weights()

    def spec_name(self) -> str:
        return "ReLU6" if (self.min, self.max) == (0.0, 6.0) else "Clip"

    def describe(self) -> str:
        if (self.min, self.max) == (0.0, 6.0):
            return "ReLU6"
        return f"Clip(min={number_text(self.min)},max={number_text(self.max)})"

    def weights(self, in_shapes: list[Shape]) -> list[WeightSpec]:
        return [WeightSpec("min", (), trainable=False, init=f"const:{self.min!r}"),
                WeightSpec("max", (), trainable=False, init=f"const:{self.max!r}")]

    def forward(self, inputs: list[np.ndarray], training: bool = False,
                rng: np.random.Generator | None = None) -> Forward:
        x = inputs[0]
        return Forward(np.clip(x, x.dtype.type(self.min), x.dtype.type(self.max)))

    def backward(self, grad_out: np.ndarray, inputs: list[np.ndarray],
                 fwd: Forward) -> list[np.ndarray | None]:
        x = inputs[0]
        # gradient passes strictly inside the bounds; the bounds are constants
        return [grad_out * ((x > self.min) & (x < self.max)), None, None]


Clip.examples = (
    Example(Clip(), ((3, 4, 5),), "ReLU6"),
    Example(Clip(-1.0, 0.5), ((9,),), "custom bounds vector"),
)
