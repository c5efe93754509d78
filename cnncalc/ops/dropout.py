"""Dropout: identity in inference, inverted dropout in training, written `DO(0.5)` (alias Dropout) in a spec.

From ONNX opset 12, the drop ratio is an optional input, not an attribute. cnncalc keeps it as a field
and lists it in `weights()` as a constant scalar operand (WeightSpec init="const:<ratio>"), so
the exported node keeps DO(0.3) as 0.3; the training_mode input is left out (inference).
`from_onnx` reads `ratio` from the attributes, where old files keep it and where the importer puts
the value of a constant ratio input; without one, ONNX's default 0.5 applies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
else:
    from .._numpy import np

from ..errors import UnsupportedOpError
from .base import Example, Forward, Op, Shape, SpecArgs, WeightSpec, number_text, onnx_float


@dataclass(frozen=True)
class Dropout(Op):
    """Zeroes each element with probability `ratio` in training and scales the rest by 1 / (1 - ratio)."""

    ratio: float = 0.5

    spec_names = ("DO", "Dropout")
    cost_class = "reshape"

    @classmethod
    def from_spec(cls, args: SpecArgs, in_shapes: list[Shape]) -> Op:
        ratio = args.real("p", "ratio", default=0.5, positional=0, low=0.0, high=0.999)
        args.finish("DO", "p (drop probability, first; default 0.5)")
        return cls(ratio)

    @classmethod
    def from_onnx(cls, attrs: dict[str, Any], in_shapes: list[Shape], weight_shapes: list[Shape]) -> Op:
        if bool(attrs.get("training_mode", False)):  # a constant input the importer read as an attribute
            raise UnsupportedOpError("Dropout with training_mode=true drops values at random in inference",
                                     hint="export the model in inference mode (model.eval() before torch.onnx.export)")
        ratio = onnx_float(attrs.get("ratio", 0.5))
        if not 0.0 <= ratio < 1.0:
            raise UnsupportedOpError(f"Dropout ratio {ratio} is outside [0, 1)", hint="use a ratio below 1")
        return cls(ratio)

    def onnx_attributes(self) -> dict[str, Any]:
        return {}  # the ratio is a constant input from opset 12, see weights()

    def describe(self) -> str:
        return f"DO({number_text(self.ratio)})"

    def weights(self, in_shapes: list[Shape]) -> list[WeightSpec]:
        return [WeightSpec("ratio", (), trainable=False, init=f"const:{self.ratio!r}")]

    def forward(self, inputs: list[np.ndarray], training: bool = False,
                rng: np.random.Generator | None = None) -> Forward:
        """In training, keep each element with probability 1 - ratio, drawn from `rng`."""
        x = inputs[0]
        if not training or self.ratio == 0.0:
            return Forward(x)
        if rng is None:
            rng = np.random.default_rng()
        # inverted dropout: kept elements are scaled by 1 / (1 - ratio) so the expectation is unchanged
        mask = (rng.random(x.shape) >= self.ratio) * x.dtype.type(1 / (1 - self.ratio))
        return Forward(x * mask, cache=mask)

    def backward(self, grad_out: np.ndarray, inputs: list[np.ndarray],
                 fwd: Forward) -> list[np.ndarray | None]:
        grad_x = grad_out if fwd.cache is None else grad_out * fwd.cache
        return [grad_x, None]


Dropout.examples = (
    Example(Dropout(), ((3, 4, 5),), "default 0.5"),
    Example(Dropout(0.2), ((8,),), "ratio 0.2 vector"),
)
