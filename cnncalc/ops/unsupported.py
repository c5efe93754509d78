"""Unsupported: a placeholder for an imported ONNX node that cnncalc has no operator for.

`cnncalc analyze model.onnx --allow-unsupported` keeps such a node in the graph so the layers after it
still get their shapes: it carries the node's ONNX op type and the output shape that ONNX shape
inference found, and counts nothing (no params, MACs or FLOPs), which is why the graph's totals are
then reported as lower bounds. It is not an ONNX op type, so it is removed from the registry: it is
never imported or exported by name, and the contract tests do not run it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
else:
    from .._numpy import np

from ..errors import UnsupportedOpError
from .base import OPS, Forward, Op, Shape


@dataclass(frozen=True)
class Unsupported(Op):
    """An opaque node: the shape ONNX inferred for its output, zero cost, and no way to run it."""

    onnx_op_type: str
    out_shape: Shape
    node_name: str = ""

    spec_names = ()
    n_inputs = 0
    cost_class = "reshape"  # costs nothing in the hardware model either

    def spec_name(self) -> str:
        return f"{self.onnx_op_type}?"

    def describe(self) -> str:
        return f"{self.onnx_op_type}? (not counted)"

    def output_shape(self, in_shapes: list[Shape]) -> Shape:
        return tuple(self.out_shape)

    def forward(self, inputs: list[np.ndarray], training: bool = False,
                rng: np.random.Generator | None = None) -> Forward:
        raise UnsupportedOpError(
            f"cannot run {self.onnx_op_type} at {self.node_name or 'an imported node'}: cnncalc has no kernel for it",
            hint="analyse the model with --allow-unsupported, but run it with onnxruntime",
        )


OPS.pop(Unsupported.op_type, None)  # a placeholder, not an ONNX op type
