"""Build ONNX models laid out the way PyTorch's exporter writes them, with onnx.helper only (no torch).

The layout follows torch.onnx.export (TorchScript exporter, opset 17) on torchvision-style modules:
node names are module scopes plus the op type ("/layer1/layer1.0/conv1/Conv", a reused module gets
"relu_1", "relu_2"), tensors are "<node>_output_0", the last tensor is renamed "output", the batch
axis is the symbolic "batch_size" (dynamic_axes) or fixed, ReLU6 is Clip with min/max as inputs,
Linear is Gemm with transB=1, torch.flatten is Flatten and x.view(x.size(0), -1) is the
Shape/Gather/Unsqueeze/Concat/Reshape chain.

Two layouts of BatchNormalization, as the exporter writes them:
- kept (`fold_bn=False`, as with do_constant_folding=False or training=TrainingMode.PRESERVE):
  Conv without bias, then BatchNormalization; initializers keep the parameter names
  ("layer1.0.conv1.weight", "layer1.0.bn1.running_mean").
- folded (`fold_bn=True`, the default eval-mode export): each BN is folded into the Conv before it,
  which gains a bias; initializers are renamed "onnx::Conv_<n>". Each folded BN's 2C trainable
  params (scale, shift) become C conv biases, and its 2C running statistics disappear.

Run `python tests/data/make_models.py` to (re)write the small example models next to this file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


class TorchLayout:
    """Appends nodes and initializers with the exporter's names; weights are zeros or small random values."""

    def __init__(self, *, fold_bn: bool, batch: int | str = "batch_size", random: bool = False, seed: int = 0,
                 clip_bounds: str = "constant", input_shape: tuple[int, ...] = (3, 224, 224)) -> None:
        self.fold_bn = fold_bn
        self.batch = batch
        self.rng = np.random.default_rng(seed) if random else None
        self.clip_bounds = clip_bounds  # "constant": Constant nodes; "initializer": onnx::Clip_<n> initializers
        self.input_shape = input_shape
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[TensorProto] = []
        self.names: dict[str, int] = {}
        self.calls: dict[str, int] = {}
        self.next_id = 300  # TorchScript numbers its anonymous values; any increasing counter looks alike
        self.input = "input"

    # ---- naming ------------------------------------------------------------------------------
    @staticmethod
    def scope(module: str) -> str:
        """Module qualname -> exporter scope: "layer1.0.conv1" -> "/layer1/layer1.0/conv1"."""
        levels: list[str] = []
        for part in module.split(".") if module else []:
            levels.append(f"{levels[-1]}.{part}" if part.isdigit() and levels else part)
        return "".join(f"/{level}" for level in levels)

    def call(self, module: str) -> str:
        """The scope of one call of a module; calling a module again (ResNet's relu) gives "relu_1", "relu_2"."""
        scope = self.scope(module)
        if not module:
            return scope
        count = self.calls.get(scope, 0)
        self.calls[scope] = count + 1
        return scope if count == 0 else f"{scope}_{count}"

    def node(self, op_type: str, scope: str, inputs: list[str], n_outputs: int = 1, **attrs: object) -> str:
        """Append a node named "<scope>/<OpType>" (with _1, _2 ... for more ops of one type in the scope)."""
        base = f"{scope}/{op_type}"
        count = self.names.get(base, 0)
        self.names[base] = count + 1
        name = base if count == 0 else f"{base}_{count}"
        outputs = [f"{name}_output_{i}" for i in range(n_outputs)]
        self.nodes.append(helper.make_node(op_type, inputs, outputs, name=name, **attrs))
        return outputs[0]

    def param(self, name: str | None, op_type: str, shape: tuple[int, ...], fill: float | None = None) -> str:
        """An initializer named `name`, or "onnx::<OpType>_<n>" when the exporter made it anonymous."""
        if name is None:
            self.next_id += 1
            name = f"onnx::{op_type}_{self.next_id}"
        if fill is not None:
            array = np.full(shape, fill, dtype=np.float32)
        elif self.rng is not None:
            array = (self.rng.standard_normal(shape) * 0.1).astype(np.float32)
        else:
            array = np.zeros(shape, dtype=np.float32)
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def constant(self, scope: str, value: np.ndarray) -> str:
        """A Constant node, as the exporter writes for literals in forward()."""
        return self.node("Constant", scope, [], value=numpy_helper.from_array(value))

    # ---- layers --------------------------------------------------------------------------------
    def conv(self, module: str, x: str, cin: int, cout: int, k: int, s: int = 1, p: int = 0, g: int = 1,
             bias: bool = False) -> str:
        w = self.param(f"{module}.weight", "Conv", (cout, cin // g, k, k))
        inputs = [x, w] + ([self.param(f"{module}.bias", "Conv", (cout,))] if bias else [])
        return self.node("Conv", self.call(module), inputs, dilations=[1, 1], group=g, kernel_shape=[k, k],
                         pads=[p, p, p, p], strides=[s, s])

    def conv_bn(self, conv: str, bn: str, x: str, cin: int, cout: int, k: int, s: int = 1, g: int = 1) -> str:
        """Conv (no bias) + BatchNormalization, or one Conv with a bias when BN is folded."""
        p = (k - 1) // 2
        if self.fold_bn:
            w = self.param(None, "Conv", (cout, cin // g, k, k))
            b = self.param(None, "Conv", (cout,))
            return self.node("Conv", self.call(conv), [x, w, b], dilations=[1, 1], group=g, kernel_shape=[k, k],
                             pads=[p, p, p, p], strides=[s, s])
        y = self.conv(conv, x, cin, cout, k, s, p, g)
        stats = [self.param(f"{bn}.weight", "BN", (cout,), 1.0), self.param(f"{bn}.bias", "BN", (cout,)),
                 self.param(f"{bn}.running_mean", "BN", (cout,), 0.0),
                 self.param(f"{bn}.running_var", "BN", (cout,), 1.0)]
        return self.node("BatchNormalization", self.call(bn), [y, *stats], epsilon=1e-5, momentum=0.9)

    def relu(self, module: str, x: str) -> str:
        return self.node("Relu", self.call(module), [x])

    def relu6(self, module: str, x: str) -> str:
        """ReLU6 is Clip(x, min, max) from opset 11, the bounds as Constant nodes or initializers."""
        scope = self.call(module)
        if self.clip_bounds == "constant":
            low = self.constant(scope, np.array(0.0, dtype=np.float32))
            high = self.constant(scope, np.array(6.0, dtype=np.float32))
        else:
            low = self.param(None, "Clip", (), 0.0)
            high = self.param(None, "Clip", (), 6.0)
        return self.node("Clip", scope, [x, low, high])

    def maxpool(self, module: str, x: str, k: int, s: int, p: int) -> str:
        return self.node("MaxPool", self.call(module), [x], ceil_mode=0, kernel_shape=[k, k], pads=[p, p, p, p],
                         strides=[s, s])

    def add(self, module: str, a: str, b: str) -> str:
        return self.node("Add", self.scope(module), [a, b])  # the "+" in the block's forward()

    def flatten(self, x: str) -> str:
        """torch.flatten(x, 1)."""
        return self.node("Flatten", "", [x], axis=1)

    def view_flatten(self, x: str) -> str:
        """x.view(x.size(0), -1): the shape is computed from the input's own shape at run time."""
        shape = self.node("Shape", "", [x])
        index = self.constant("", np.array(0, dtype=np.int64))
        batch = self.node("Gather", "", [shape, index], axis=0)
        axes = self.constant("", np.array([0], dtype=np.int64))
        batch_1d = self.node("Unsqueeze", "", [batch, axes])
        rest = self.constant("", np.array([-1], dtype=np.int64))
        target = self.node("Concat", "", [batch_1d, rest], axis=0)
        return self.node("Reshape", "", [x, target])

    def linear(self, module: str, x: str, fin: int, fout: int) -> str:
        """nn.Linear on a vector: Gemm with transB=1 and the weight stored (out, in)."""
        w = self.param(f"{module}.weight", "Gemm", (fout, fin))
        b = self.param(f"{module}.bias", "Gemm", (fout,))
        return self.node("Gemm", self.call(module), [x, w, b], alpha=1.0, beta=1.0, transB=1)

    def matmul_linear(self, module: str, x: str, fin: int, fout: int) -> str:
        """nn.Linear as the exporter writes it for inputs of rank != 2: MatMul by W^T, then Add the bias."""
        w = self.param(None, "MatMul", (fin, fout))
        scope = self.call(module)
        y = self.node("MatMul", scope, [x, w])
        return self.node("Add", scope, [self.param(f"{module}.bias", "Add", (fout,)), y])

    def dropout(self, module: str, x: str, ratio: float) -> str:
        """Dropout as kept with training=PRESERVE: the ratio a Constant input."""
        scope = self.call(module)
        return self.node("Dropout", scope, [x, self.constant(scope, np.array(ratio, dtype=np.float32))])

    # ---- the model -------------------------------------------------------------------------------
    def model(self, output: str, name: str = "main_graph") -> onnx.ModelProto:
        """The graph with its input and output declared; the last tensor is renamed "output"."""
        for node in self.nodes:
            for i, value in enumerate(node.output):
                if value == output:
                    node.output[i] = "output"
        out_shape = _output_shape(self)
        graph = helper.make_graph(
            self.nodes, name,
            [helper.make_tensor_value_info(self.input, TensorProto.FLOAT, [self.batch, *self.input_shape])],
            [helper.make_tensor_value_info("output", TensorProto.FLOAT, [self.batch, *out_shape])],
            self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                                  producer_name="pytorch", producer_version="2.1.0")
        model.ir_version = 8
        return model


def _output_shape(layout: TorchLayout) -> list[int]:
    """The model output's dims after the batch, from ONNX shape inference (as the exporter records them)."""
    graph = helper.make_graph(
        layout.nodes, "probe",
        [helper.make_tensor_value_info(layout.input, TensorProto.FLOAT, [layout.batch, *layout.input_shape])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, None)])
    # inference needs the initializer shapes only: declare them as inputs instead of copying their data
    graph.input.extend(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in layout.initializers)
    probe = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    probe.ir_version = 8
    inferred = onnx.shape_inference.infer_shapes(probe, data_prop=True)
    dims = inferred.graph.output[0].type.tensor_type.shape.dim
    return [d.dim_value for d in dims[1:]]


# ---- torchvision architectures ---------------------------------------------------------------------
def resnet50(*, fold_bn: bool, batch: int | str = "batch_size") -> onnx.ModelProto:
    """torchvision.models.resnet50 (v1.5: stride on the 3x3 conv), 224x224, 1000 classes."""
    t = TorchLayout(fold_bn=fold_bn, batch=batch)
    x = t.conv_bn("conv1", "bn1", t.input, 3, 64, 7, 2)
    x = t.relu("relu", x)
    x = t.maxpool("maxpool", x, 3, 2, 1)
    cin = 64
    for stage, (width, blocks, stride) in enumerate([(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)], 1):
        for i in range(blocks):
            q, s = f"layer{stage}.{i}", stride if i == 0 else 1
            y = t.relu(f"{q}.relu", t.conv_bn(f"{q}.conv1", f"{q}.bn1", x, cin, width, 1))
            y = t.relu(f"{q}.relu", t.conv_bn(f"{q}.conv2", f"{q}.bn2", y, width, width, 3, s))
            y = t.conv_bn(f"{q}.conv3", f"{q}.bn3", y, width, 4 * width, 1)
            shortcut = x
            if i == 0:
                shortcut = t.conv_bn(f"{q}.downsample.0", f"{q}.downsample.1", x, cin, 4 * width, 1, s)
            x = t.relu(f"{q}.relu", t.add(q, y, shortcut))
            cin = 4 * width
    x = t.flatten(t.node("GlobalAveragePool", t.call("avgpool"), [x]))
    return t.model(t.linear("fc", x, 2048, 1000))


def mobilenet_v2(*, fold_bn: bool, batch: int | str = "batch_size", view_flatten: bool = False,
                 dropout: bool = True) -> onnx.ModelProto:
    """torchvision.models.mobilenet_v2 (width 1.0), 224x224, 1000 classes."""
    t = TorchLayout(fold_bn=fold_bn, batch=batch, clip_bounds="initializer" if fold_bn else "constant")
    x = t.relu6("features.0.2", t.conv_bn("features.0.0", "features.0.1", t.input, 3, 32, 3, 2))
    cin, index = 32, 1
    for expand, cout, repeats, stride in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                                          (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]:
        for i in range(repeats):
            s, q = stride if i == 0 else 1, f"features.{index}.conv"
            hidden, layer, y = cin * expand, 0, x
            if expand != 1:
                y = t.relu6(f"{q}.0.2", t.conv_bn(f"{q}.0.0", f"{q}.0.1", y, cin, hidden, 1))
                layer = 1
            y = t.relu6(f"{q}.{layer}.2", t.conv_bn(f"{q}.{layer}.0", f"{q}.{layer}.1", y, hidden, hidden, 3, s,
                                                    g=hidden))
            y = t.conv_bn(f"{q}.{layer + 1}", f"{q}.{layer + 2}", y, hidden, cout, 1)
            x = t.add(f"features.{index}", x, y) if s == 1 and cin == cout else y
            cin, index = cout, index + 1
    x = t.relu6(f"features.{index}.2", t.conv_bn(f"features.{index}.0", f"features.{index}.1", x, cin, 1280, 1))
    x = t.node("GlobalAveragePool", "", [x])
    x = t.view_flatten(x) if view_flatten else t.flatten(x)
    if dropout:
        x = t.dropout("classifier.0", x, 0.2)
    return t.model(t.linear("classifier.1", x, 1280, 1000))


# ---- small examples (written to tests/data) --------------------------------------------------------
def tiny_cnn(*, fold_bn: bool = False, batch: int | str = "batch_size", width: int = 8,
             size: int = 16) -> onnx.ModelProto:
    """A small PyTorch-style CNN using every imported pattern; random weights so outputs can be compared."""
    t = TorchLayout(fold_bn=fold_bn, batch=batch, random=True, seed=1, input_shape=(3, size, size))
    x = t.relu("relu", t.conv_bn("conv1", "bn1", t.input, 3, width, 3))
    x = t.maxpool("pool", x, 2, 2, 0)
    y = t.relu("block.relu", t.conv_bn("block.conv1", "block.bn1", x, width, width, 3))
    y = t.conv_bn("block.conv2", "block.bn2", y, width, width, 3)
    x = t.relu("block.relu", t.add("block", y, x))
    x = t.relu6("dw.2", t.conv_bn("dw.0", "dw.1", x, width, width, 3, g=width))
    x = t.node("LeakyRelu", t.call("act"), [x], alpha=0.1)
    x = t.node("AveragePool", t.call("avg"), [x], ceil_mode=0, kernel_shape=[2, 2], pads=[0, 0, 0, 0], strides=[2, 2])
    x = t.node("Identity", "", [x])
    x = t.view_flatten(x)
    x = t.dropout("head.0", x, 0.3)
    features = width * (size // 4) ** 2  # two 2x2 poolings
    x = t.node("Sigmoid", "", [t.matmul_linear("head.1", x, features, 4 * width)])
    x = t.node("Tanh", "", [x])
    x = t.linear("head.2", x, 4 * width, 10)
    return t.model(t.node("Softmax", "", [x], axis=1), name="tiny_cnn")


def tiny_unsupported() -> onnx.ModelProto:
    """A small model with HardSwish written as x * HardSigmoid(x) (two ops cnncalc does not know) and a Pad."""
    t = TorchLayout(fold_bn=True, random=True, seed=2, input_shape=(3, 16, 16))
    x = t.conv_bn("conv1", "bn1", t.input, 3, 8, 3)
    act = t.call("act")
    x = t.node("Mul", act, [x, t.node("HardSigmoid", act, [x], alpha=1 / 6, beta=0.5)])
    pad = t.call("pad")
    x = t.node("Pad", pad, [x, t.constant(pad, np.array([0, 0, 1, 1, 0, 0, 1, 1], dtype=np.int64))])
    x = t.relu("relu", t.conv_bn("conv2", "bn2", x, 8, 16, 3))
    x = t.flatten(t.node("GlobalAveragePool", t.call("avgpool"), [x]))
    return t.model(t.linear("fc", x, 16, 10), name="tiny_unsupported")


EXAMPLES = {
    "torch_tiny_cnn.onnx": lambda: tiny_cnn(fold_bn=False),
    "torch_tiny_cnn_folded.onnx": lambda: tiny_cnn(fold_bn=True, batch=1),
    "torch_tiny_unsupported.onnx": tiny_unsupported,
}


def main() -> None:
    """Write the small example models next to this script."""
    folder = Path(__file__).parent
    for name, build in EXAMPLES.items():
        model = build()
        onnx.checker.check_model(model, full_check=True)
        onnx.save(model, folder / name)
        print(f"wrote {folder / name} ({(folder / name).stat().st_size} bytes)")


if __name__ == "__main__":
    main()
