"""Gemm: a fully connected layer, written `FC(n)`, `FC(n, b=0)` (aliases Dense, Linear) in a spec."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
else:
    from .._numpy import np

from ..errors import ShapeError, UnsupportedOpError
from .base import Example, Forward, Op, Shape, SpecArgs, WeightSpec, numel


@dataclass(frozen=True)
class Gemm(Op):
    """y = x W^T + B on a flat vector; transB=1 stores W as (n, F) as PyTorch and ONNX exporters do."""

    in_features: int
    out_features: int
    bias: bool = True
    transB: int = 1  # 0: W is stored (F, n), as some ONNX files have it

    spec_names = ("FC", "Dense", "Linear")
    cost_class = "gemm"

    # ---- construction --------------------------------------------------------
    @classmethod
    def from_spec(cls, args: SpecArgs, in_shapes: list[Shape]) -> Op:
        if args.raw("n", "units", "out", positional=0) is None:
            raise args.error(None, "FC needs its number of outputs", hint="write FC(10)")
        n = args.integer("n", "units", "out", default=1, positional=0, minimum=1)
        bias = args.switch("b", "bias", default=True, meaning="bias")
        if "bias" in args.defaults and args.raw("b", "bias") is None:
            bias = bool(args.defaults["bias"])
        args.finish("FC", "n (outputs, first), b (0 or 1)")
        # an image input is flattened first (the parser inserts the Flatten), so F counts every element
        return cls(numel(in_shapes[0]), n, bias)

    @classmethod
    def from_onnx(cls, attrs: dict[str, Any], in_shapes: list[Shape], weight_shapes: list[Shape]) -> Op:
        alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
        trans_a, trans_b = int(attrs.get("transA", 0)), int(attrs.get("transB", 0))
        if alpha != 1.0 or beta != 1.0 or trans_a != 0:
            raise UnsupportedOpError(
                f"Gemm with alpha={alpha}, beta={beta}, transA={trans_a} is not supported",
                hint="cnncalc imports Gemm as a fully connected layer: alpha=1, beta=1, transA=0",
            )
        if len(weight_shapes) < 1 or len(weight_shapes[0]) != 2:
            raise UnsupportedOpError("Gemm needs a 2-D weight initializer as its second input",
                                     hint="cnncalc imports Gemm as a fully connected layer with constant W")
        w = weight_shapes[0]
        in_features, out_features = (w[1], w[0]) if trans_b else (w[0], w[1])
        return cls(in_features, out_features, len(weight_shapes) > 1, trans_b)

    def onnx_attributes(self) -> dict[str, Any]:
        return {"transB": self.transB}

    def describe(self) -> str:
        return f"FC({self.out_features})" if self.bias else f"FC({self.out_features},b=0)"

    # ---- analysis ------------------------------------------------------------
    def output_shape(self, in_shapes: list[Shape]) -> Shape:
        shape = in_shapes[0]
        if len(shape) != 1:
            shown = "x".join(str(d) for d in (*shape[1:], shape[0])) if len(shape) == 3 else str(shape)
            raise ShapeError(
                f"{self.describe()} needs a flat vector input but gets the image {shown}",
                hint="put Flatten (or GAP) before it; spec chains insert Flatten before FC by themselves",
            )
        if shape[0] != self.in_features:
            raise ShapeError(
                f"{self.describe()} was built for {self.in_features} inputs but gets {shape[0]}",
                hint="the layers before it changed; rebuild the FC for the new input size",
            )
        return (self.out_features,)

    def weights(self, in_shapes: list[Shape]) -> list[WeightSpec]:
        n, f = self.out_features, self.in_features
        w_shape = (n, f) if self.transB else (f, n)
        # He init takes fan_in from shape[1:] = F in the transB=1 layout that specs build; transB=0 only
        # comes from ONNX files, whose weights are read from the file
        specs = [WeightSpec("W", w_shape, init="he")]
        if self.bias:
            specs.append(WeightSpec("B", (self.out_features,), broadcast=True))
        return specs

    def macs(self, in_shapes: list[Shape], out_shape: Shape) -> int:
        # n outputs, each F multiply-accumulates
        return self.in_features * self.out_features

    def flops(self, in_shapes: list[Shape], out_shape: Shape) -> int:
        # 2 per MAC, plus one add per output for the bias
        return 2 * self.macs(in_shapes, out_shape) + (self.out_features if self.bias else 0)

    # ---- NumPy ---------------------------------------------------------------
    def forward(self, inputs: list[np.ndarray], training: bool = False,
                rng: np.random.Generator | None = None) -> Forward:
        """One BLAS matmul over the batch."""
        x, w = inputs[0], inputs[1]
        w_fn = w.T if self.transB else w  # (F, n)
        y = x @ w_fn
        macs = x.shape[0] * w_fn.shape[0] * w_fn.shape[1]
        if self.bias:
            y = y + inputs[2]
        return Forward(y, macs=macs)

    def backward(self, grad_out: np.ndarray, inputs: list[np.ndarray],
                 fwd: Forward) -> list[np.ndarray | None]:
        x, w = inputs[0], inputs[1]
        w_fn = w.T if self.transB else w  # (F, n)
        grad_w_fn = x.T @ grad_out  # (F, n)
        result: list[np.ndarray | None] = [grad_out @ w_fn.T, grad_w_fn.T if self.transB else grad_w_fn]
        if self.bias:
            result.append(grad_out.sum(axis=0))
        return result


Gemm.examples = (
    Example(Gemm(12, 5), ((12,),), "with bias"),
    Example(Gemm(7, 3, bias=False, transB=0), ((7,),), "no bias transB=0"),
)
