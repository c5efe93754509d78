"""Concat: tensors joined on channels (ONNX axis=1); the parser uses it for `cat[...]`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
else:
    from .._numpy import np

from ..errors import ShapeError, UnsupportedOpError
from .add import shape_text
from .base import Example, Forward, Op, Shape


@dataclass(frozen=True)
class Concat(Op):
    """Joins any number of inputs on the channel axis; their spatial sizes must agree. No arithmetic."""

    axis: int = 1

    spec_names = ("Concat",)
    spec_join = "cat"
    n_inputs = 0
    cost_class = "concat"

    @classmethod
    def from_onnx(cls, attrs: dict[str, Any], in_shapes: list[Shape], weight_shapes: list[Shape]) -> Op:
        rank = len(in_shapes[0]) + 1  # the batch axis comes first
        axis = int(attrs.get("axis", 1))
        if (axis + rank if axis < 0 else axis) != 1:
            raise UnsupportedOpError(f"Concat on axis {axis} of a rank-{rank} tensor is not supported",
                                     hint="cnncalc supports Concat on channels (axis=1)")
        return cls()

    def output_shape(self, in_shapes: list[Shape]) -> Shape:
        first = in_shapes[0]
        for other in in_shapes[1:]:
            if len(other) != len(first) or tuple(other[1:]) != tuple(first[1:]):
                raise ShapeError(
                    f"cannot concatenate {shape_text(first)} and {shape_text(other)} on channels: "
                    "the spatial sizes differ",
                    hint="give every branch the same stride and padding so their HxW agree",
                )
        return (sum(shape[0] for shape in in_shapes), *first[1:])

    def forward(self, inputs: list[np.ndarray], training: bool = False,
                rng: np.random.Generator | None = None) -> Forward:
        return Forward(np.concatenate(inputs, axis=1))

    def backward(self, grad_out: np.ndarray, inputs: list[np.ndarray],
                 fwd: Forward) -> list[np.ndarray | None]:
        # each input gets its own slice of channels back
        ends = np.cumsum([x.shape[1] for x in inputs])[:-1]
        return list(np.split(grad_out, ends, axis=1))


Concat.examples = (
    Example(Concat(), ((2, 4, 5), (3, 4, 5)), "two images"),
    Example(Concat(), ((2, 3, 3), (1, 3, 3), (4, 3, 3)), "three branches"),
    Example(Concat(), ((4,), (6,)), "vectors"),
)
