"""Softmax over channels (ONNX axis=1, opset 13 semantics), written `Softmax` in a spec."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
else:
    from .._numpy import np

from ..errors import UnsupportedOpError
from ._pointwise import _Pointwise
from .base import Example, Forward, Op, Shape


def channel_axis(op_type: str, attrs: dict[str, Any], in_shapes: list[Shape]) -> int:
    """The `axis` attribute, which cnncalc supports only when it names the channel axis (1 in NCHW)."""
    rank = len(in_shapes[0]) + 1  # the batch axis comes first
    axis = int(attrs.get("axis", -1))
    if (axis + rank if axis < 0 else axis) != 1:
        raise UnsupportedOpError(f"{op_type} over axis {axis} of a rank-{rank} tensor is not supported",
                                 hint=f"cnncalc supports {op_type} over channels (axis=1)")
    return 1


@dataclass(frozen=True)
class Softmax(_Pointwise):
    """exp(x) / sum over channels; counted as 3 FLOPs per element (exp, add, divide)."""

    axis: int = 1

    spec_names = ("Softmax",)
    flops_per_element = 3

    @classmethod
    def from_onnx(cls, attrs: dict[str, Any], in_shapes: list[Shape], weight_shapes: list[Shape]) -> Op:
        return cls(channel_axis("Softmax", attrs, in_shapes))

    def forward(self, inputs: list[np.ndarray], training: bool = False,
                rng: np.random.Generator | None = None) -> Forward:
        """Shifted by the channel max so exp never overflows."""
        x = inputs[0]
        e = np.exp(x - x.max(axis=1, keepdims=True))
        return Forward(e / e.sum(axis=1, keepdims=True))

    def backward(self, grad_out: np.ndarray, inputs: list[np.ndarray],
                 fwd: Forward) -> list[np.ndarray | None]:
        y = fwd.out
        # dx = y * (g - sum_c g y)
        return [y * (grad_out - (grad_out * y).sum(axis=1, keepdims=True))]


Softmax.examples = (
    Example(Softmax(), ((10,),), "vector"),
    Example(Softmax(), ((4, 3, 2),), "image over channels"),
)
