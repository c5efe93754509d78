"""Add: the sum of two tensors of the same shape; the parser uses it for `res[...]`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
else:
    from .._numpy import np

from ..errors import ShapeError, UnsupportedOpError
from ._pointwise import _Pointwise
from .base import Example, Forward, Op, Shape


def shape_text(shape: Shape) -> str:
    """HxWxC as users write it, or a vector's length."""
    return f"{shape[1]}x{shape[2]}x{shape[0]}" if len(shape) == 3 else "x".join(str(d) for d in shape)


@dataclass(frozen=True)
class Add(_Pointwise):
    """Element-wise sum without broadcasting; one add per output element."""

    spec_names = ("Add",)
    spec_join = "res"
    n_inputs = 2
    flops_per_element = 1

    @classmethod
    def from_onnx(cls, attrs: dict[str, Any], in_shapes: list[Shape], weight_shapes: list[Shape]) -> Op:
        """ONNX's Add broadcasts (x + GAP(x) is a valid file); cnncalc's adds equal shapes only, so a file's
        broadcast is an op it does not support (listed, skippable with --allow-unsupported), not a damaged file."""
        a, b = (tuple(shape) for shape in in_shapes)
        if a != b and len(a) == len(b) and all(x == y or 1 in (x, y) for x, y in zip(a, b, strict=True)):
            raise UnsupportedOpError(f"Add broadcasting {shape_text(a)} and {shape_text(b)} is not supported "
                                     "(cnncalc adds tensors of one shape)")
        return super().from_onnx(attrs, in_shapes, weight_shapes)

    def output_shape(self, in_shapes: list[Shape]) -> Shape:
        a, b = in_shapes
        if tuple(a) != tuple(b):
            raise ShapeError(
                f"cannot add tensors of shapes {shape_text(a)} and {shape_text(b)}",
                hint="give the shortcut a projection (res[main ; 1x1xCinxCout(s=2)|BN]) so the shapes match",
            )
        return tuple(a)

    def forward(self, inputs: list[np.ndarray], training: bool = False,
                rng: np.random.Generator | None = None) -> Forward:
        return Forward(inputs[0] + inputs[1])

    def backward(self, grad_out: np.ndarray, inputs: list[np.ndarray],
                 fwd: Forward) -> list[np.ndarray | None]:
        return [grad_out, grad_out]


Add.examples = (
    Example(Add(), ((3, 4, 5), (3, 4, 5)), "image"),
    Example(Add(), ((6,), (6,)), "vector"),
)
