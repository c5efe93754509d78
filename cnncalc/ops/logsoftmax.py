"""LogSoftmax over channels (ONNX axis=1, opset 13 semantics), written `LogSoftmax` in a spec."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
else:
    from .._numpy import np

from ._pointwise import _Pointwise
from .base import Example, Forward, Op, Shape
from .softmax import channel_axis


@dataclass(frozen=True)
class LogSoftmax(_Pointwise):
    """x - log(sum exp(x)) over channels; counted as 3 FLOPs per element like Softmax."""

    axis: int = 1

    spec_names = ("LogSoftmax",)
    flops_per_element = 3

    @classmethod
    def from_onnx(cls, attrs: dict[str, Any], in_shapes: list[Shape], weight_shapes: list[Shape]) -> Op:
        return cls(channel_axis("LogSoftmax", attrs, in_shapes))

    def forward(self, inputs: list[np.ndarray], training: bool = False,
                rng: np.random.Generator | None = None) -> Forward:
        """Shifted by the channel max so exp never overflows."""
        x = inputs[0]
        shifted = x - x.max(axis=1, keepdims=True)
        return Forward(shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True)))

    def backward(self, grad_out: np.ndarray, inputs: list[np.ndarray],
                 fwd: Forward) -> list[np.ndarray | None]:
        # dx = g - softmax(x) * sum_c g
        return [grad_out - np.exp(fwd.out) * grad_out.sum(axis=1, keepdims=True)]


LogSoftmax.examples = (
    Example(LogSoftmax(), ((10,),), "vector"),
    Example(LogSoftmax(), ((4, 3, 2),), "image over channels"),
)
