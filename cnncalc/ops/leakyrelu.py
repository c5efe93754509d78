"""LeakyRelu: x for x > 0 else alpha * x, written `LReLU`, `LReLU(a=0.1)` in a spec."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
else:
    from .._numpy import np

from ._pointwise import _Pointwise
from .base import Example, Forward, Op, Shape, SpecArgs, number_text, onnx_float


@dataclass(frozen=True)
class LeakyRelu(_Pointwise):
    """Leaky ReLU with the ONNX default slope 0.01; a comparison and a multiply per element."""

    alpha: float = 0.01

    spec_names = ("LReLU", "LeakyReLU")
    flops_per_element = 2

    @classmethod
    def from_spec(cls, args: SpecArgs, in_shapes: list[Shape]) -> Op:
        alpha = args.real("a", "alpha", default=0.01, positional=0, low=0.0, finite=True)
        args.finish("LReLU", "a (the negative slope, default 0.01)")
        return cls(alpha)

    @classmethod
    def from_onnx(cls, attrs: dict[str, Any], in_shapes: list[Shape], weight_shapes: list[Shape]) -> Op:
        return cls(onnx_float(attrs.get("alpha", 0.01)))

    def describe(self) -> str:
        return "LReLU" if self.alpha == 0.01 else f"LReLU(a={number_text(self.alpha)})"

    def forward(self, inputs: list[np.ndarray], training: bool = False,
                rng: np.random.Generator | None = None) -> Forward:
        x = inputs[0]
        return Forward(np.where(x > 0, x, x * x.dtype.type(self.alpha)))

    def backward(self, grad_out: np.ndarray, inputs: list[np.ndarray],
                 fwd: Forward) -> list[np.ndarray | None]:
        x = inputs[0]
        # slope 1 on the positive side, alpha on the other
        return [np.where(x > 0, grad_out, grad_out * grad_out.dtype.type(self.alpha))]


LeakyRelu.examples = (
    Example(LeakyRelu(), ((3, 4, 5),), "default slope"),
    Example(LeakyRelu(0.2), ((6,),), "alpha 0.2 vector"),
)
