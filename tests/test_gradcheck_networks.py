"""Whole networks: the runtime's tape gradients against central finite differences in float64.

Two levels. Small residual, inception-style and fan-out blocks at 8x8 are checked element by
element (a sample of every tensor). Whole bundled networks are checked tensor by tensor along
random directions with `verify.gradient_check`: the inception block as it ships, ResNet-18 with
its input reduced to 64x64 (every node and weight as in the file; GAP before the FC makes the
network accept any input size). Training mode throughout: BN uses batch statistics, Dropout one
fixed mask.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest

from cnncalc.runtime import Runtime
from cnncalc.spec import parse
from cnncalc.specfile import load
from cnncalc.verify import gradient_check
from cnncalc.weights import init_weights

SPECS = os.path.join(os.path.dirname(__file__), "..", "specs")

BLOCKS = {
    # two basic blocks, the second with a strided 1x1 projection shortcut (ResNet)
    "resnet": "8x8x3|3x3x3x8(p=1,b=0)|BN|ReLU|res[3x3x8x8(p=1,b=0)|BN|ReLU|3x3x8x8(p=1,b=0)|BN]|ReLU|"
              "res[3x3x8x16(s=2,p=1,b=0)|BN|ReLU|3x3x16x16(p=1,b=0)|BN;1x1x8x16(s=2,b=0)|BN]|ReLU|GAP|FC(5)",
    # four branches on one input joined on channels, a pool branch among them (GoogLeNet)
    "inception": "8x8x4|cat[1x1x4x4|BN|ReLU;1x1x4x2|ReLU|3x3x2x4(p=1)|ReLU;1x1x4x2|ReLU|5x5x2x2(p=2);"
                 "MP(3,s=1,p=1)|1x1x4x2]|MP|FC(6)|LogSoftmax",
    # one tensor read by a residual and by three concat branches; pooling, dropout, softmax
    "fan-out": "8x8x2|3x3x2x4(p=1)|cat[res[3x3x4x4(p=1)|Tanh];Sigmoid;LReLU(a=0.1)]|AP(2)|DO(0.3)|FC(3)|Softmax",
    # inverted residual with a depthwise conv and ReLU6 (MobileNetV2), dilation, a grouped conv
    "mobile": "8x8x4|res[1x1x4x8|BN|ReLU6|3x3x8x8(dw,p=1)|BN|ReLU6|1x1x8x4|BN]|3x3x4x6(p=2,d=2,g=2)|LP(2)|GMP|FC(3)",
}


def elementwise_check(graph, seed=0, per_tensor=6, h=1e-6, rtol=1e-6):
    """Worst error over sampled elements of the input and of every trainable tensor, relative to
    |fd| + |backward| plus what rounding in L cannot resolve (a conv bias before BN has gradient 0)."""
    runtime = Runtime(graph, init_weights(graph, seed, np.float64), np.float64)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((3, *graph.input_shape))
    out = runtime.run(x, training=True, keep_tape=True, rng=np.random.default_rng(seed)).output
    projection = rng.standard_normal(out.shape)
    grads = runtime.backward(projection)  # L = sum(R * out), so dL/d out = R

    def loss():
        return float((projection * runtime.run(x, training=True, rng=np.random.default_rng(seed)).output).sum())

    # L is a sum of terms |R * out|; its rounding, over 2h, bounds what a difference can resolve
    floor = 10 * np.finfo(np.float64).eps * float(np.abs(projection * out).sum()) / h / rtol

    tensors = [("input", x, grads.input)]
    for node in graph.nodes:
        specs = node.op.weights([graph.shapes[name] for name in node.inputs])
        for spec, array, grad in zip(specs, runtime.weights[node.name], grads.weights[node.name], strict=True):
            if spec.trainable:
                tensors.append((f"{node.name}.{spec.name}", array, grad))
    worst, where = 0.0, ""
    for label, array, grad in tensors:
        flat, flat_grad = array.reshape(-1), np.asarray(grad).reshape(-1)
        for index in rng.choice(flat.size, size=min(per_tensor, flat.size), replace=False):
            keep = flat[index]
            flat[index] = keep + h
            plus = loss()
            flat[index] = keep - h
            minus = loss()
            flat[index] = keep
            fd = (plus - minus) / (2 * h)  # central difference, error O(h^2)
            error = abs(fd - flat_grad[index]) / (abs(fd) + abs(flat_grad[index]) + floor)
            if error > worst:
                worst, where = error, f"{label}[{index}]: fd {fd:.8g}, backward {flat_grad[index]:.8g}"
    return worst, where


@pytest.mark.parametrize("name", BLOCKS)
def test_small_blocks_element_by_element(name):
    worst, where = elementwise_check(parse(BLOCKS[name]))
    assert worst < 1e-6, where  # in units of |fd| + |backward|


def bundled(file: str, size: int | None = None):
    graph = load(os.path.join(SPECS, file)).networks[0]
    if size is not None:  # the same nodes and weights on a smaller image
        graph = dataclasses.replace(graph, input_shape=(graph.input_shape[0], size, size), shapes={})
    return graph


@pytest.mark.parametrize("file, size", [("inception_block.yaml", None), ("resnet18.yaml", 64)])
def test_whole_bundled_networks_tensor_by_tensor(file, size):
    graph = bundled(file, size)
    check = gradient_check(graph, init_weights(graph, 0), budget_s=float("inf"), rtol=1e-7)
    # every tensor on its own: the input and each trainable weight
    trainable = sum(spec.trainable for node in graph.nodes
                    for spec in node.op.weights([graph.shapes[n] for n in node.inputs]))
    assert check.groups == check.tensors == trainable + 1
    assert check.passed, check.failed
    assert check.worst_error < 1e-7


def test_a_wrong_backward_is_caught(monkeypatch):
    """The check can fail: scale one op's input gradient by 0.999 and it names that op's input tensors."""
    from cnncalc.ops.relu import Relu

    real = Relu.backward
    monkeypatch.setattr(Relu, "backward", lambda self, g, inputs, fwd: [r * 0.999 for r in real(self, g, inputs, fwd)])
    worst, _ = elementwise_check(parse(BLOCKS["resnet"]))
    assert worst > 1e-5
    graph = parse(BLOCKS["resnet"])
    check = gradient_check(graph, init_weights(graph, 0), budget_s=float("inf"))
    assert not check.passed and any(line.startswith("input") for line in check.failed)
