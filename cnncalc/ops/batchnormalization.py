"""BatchNormalization over channels, written `BN` (alias BatchNorm) in a spec; works on images and vectors."""

from __future__ import annotations

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
class BatchNormalization(_Pointwise):
    """y = scale * (x - mean) / sqrt(var + epsilon) + B per channel; folded to 2 FLOPs per element.

    momentum has the ONNX meaning: running = momentum * running + (1 - momentum) * batch statistic.
    """

    epsilon: float = 1e-5
    momentum: float = 0.9

    spec_names = ("BN", "BatchNorm", "BatchNormalization")
    batch_statistics = True
    flops_per_element = 2

    @classmethod
    def from_spec(cls, args: SpecArgs, in_shapes: list[Shape]) -> Op:
        epsilon = args.real("eps", "epsilon", default=1e-5, low=0.0, finite=True)
        momentum = args.real("m", "momentum", default=0.9, low=0.0, high=1.0)
        args.finish("BN", "eps (default 1e-5), m (momentum, ONNX meaning, default 0.9)")
        return cls(epsilon, momentum)

    @classmethod
    def from_onnx(cls, attrs: dict[str, Any], in_shapes: list[Shape], weight_shapes: list[Shape]) -> Op:
        if int(attrs.get("training_mode", 0)):
            raise UnsupportedOpError("BatchNormalization with training_mode=1 is not supported",
                                     hint="export the model in inference mode (model.eval())")
        return cls(onnx_float(attrs.get("epsilon", 1e-5)), onnx_float(attrs.get("momentum", 0.9)))

    def onnx_attributes(self) -> dict[str, Any]:
        return {"epsilon": self.epsilon, "momentum": self.momentum}

    def describe(self) -> str:
        options = []
        if self.epsilon != 1e-5:
            options.append(f"eps={number_text(self.epsilon)}")
        if self.momentum != 0.9:
            options.append(f"m={number_text(self.momentum)}")
        return f"BN({','.join(options)})" if options else "BN"

    def weights(self, in_shapes: list[Shape]) -> list[WeightSpec]:
        c = in_shapes[0][0]
        return [WeightSpec("scale", (c,), init="ones"), WeightSpec("B", (c,), init="zeros"),
                WeightSpec("input_mean", (c,), trainable=False, init="zeros"),
                WeightSpec("input_var", (c,), trainable=False, init="ones")]

    # ---- NumPy ---------------------------------------------------------------
    def forward(self, inputs: list[np.ndarray], training: bool = False,
                rng: np.random.Generator | None = None) -> Forward:
        """Running statistics in inference; the batch's own (population) statistics in training."""
        x, scale, bias, mean, var = inputs
        axes = (0, *range(2, x.ndim))  # every axis but the channels
        per_channel = (1, x.shape[1]) + (1,) * (x.ndim - 2)
        if training:
            mean = x.mean(axis=axes)
            var = x.var(axis=axes)
        inv_std = 1 / np.sqrt(var + x.dtype.type(self.epsilon))
        if not training:
            # the affine map folded per channel: y = x * gain + (B - mean * gain), gain = scale / std;
            # two passes over x instead of four; backward recomputes x_hat if it is ever needed
            gain = scale * inv_std
            out = x * gain.reshape(per_channel)
            out += (bias - mean * gain).reshape(per_channel)
            return Forward(out, cache=(None, inv_std, training, mean, var))
        x_hat = (x - mean.reshape(per_channel)) * inv_std.reshape(per_channel)
        out = x_hat * scale.reshape(per_channel) + bias.reshape(per_channel)
        return Forward(out, cache=(x_hat, inv_std, training, mean, var))

    def backward(self, grad_out: np.ndarray, inputs: list[np.ndarray],
                 fwd: Forward) -> list[np.ndarray | None]:
        x, scale = inputs[0], inputs[1]
        x_hat, inv_std, training, mean, _ = fwd.cache
        axes = (0, *range(2, x.ndim))
        per_channel = (1, x.shape[1]) + (1,) * (x.ndim - 2)
        if x_hat is None:  # the inference forward does not keep it
            x_hat = (x - mean.reshape(per_channel)) * inv_std.reshape(per_channel)
        grad_scale = (grad_out * x_hat).sum(axis=axes)
        grad_bias = grad_out.sum(axis=axes)
        grad_x_hat = grad_out * scale.reshape(per_channel)
        if training:
            # the batch mean and variance depend on x: dx = inv_std * (g - mean(g) - x_hat * mean(g * x_hat))
            count = x.size // x.shape[1]
            grad_x = inv_std.reshape(per_channel) * (
                grad_x_hat
                - (grad_x_hat.sum(axis=axes) / count).reshape(per_channel)
                - x_hat * ((grad_x_hat * x_hat).sum(axis=axes) / count).reshape(per_channel)
            )
        else:
            grad_x = grad_x_hat * inv_std.reshape(per_channel)
        return [grad_x, grad_scale, grad_bias, None, None]

    def updated_state(self, inputs: list[np.ndarray], fwd: Forward,
                      momentum: float | None = None) -> dict[int, np.ndarray]:
        """New running mean and variance (inputs 3 and 4) after a training forward; ONNX momentum meaning."""
        _, _, training, batch_mean, batch_var = fwd.cache
        if not training:
            return {}
        if momentum is None:
            momentum = self.momentum
        # running = momentum * running + (1 - momentum) * batch statistic
        return {3: momentum * inputs[3] + (1 - momentum) * batch_mean,
                4: momentum * inputs[4] + (1 - momentum) * batch_var}


BatchNormalization.examples = (
    Example(BatchNormalization(), ((3, 4, 5),), "image"),
    Example(BatchNormalization(epsilon=1e-3, momentum=0.99), ((6,),), "vector eps momentum"),
)
