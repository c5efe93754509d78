"""Training speed of cnncalc's NumPy backend, against PyTorch on the CPU when PyTorch is installed.

    python benchmarks/train_vs_pytorch.py [--steps 10] [--no-digits]

Rows: one training step (taped forward, softmax cross-entropy, backward, BN running statistics,
SGD with momentum) of ResNet-18 at batch 8 on 112x112 images and of LeNet-5 at batch 64, as the
median of `--steps` timed steps after two warm-up steps; PyTorch runs the same architectures
(written out below, as torchvision and the specs define them) with the same loss and optimizer,
in training mode, on its default threads. Then the digits run of the acceptance criterion:
`specs/lenet_digits.yaml`, 10 epochs, samples/s and held-out accuracy. PyTorch is a benchmark
reference only, never a dependency of cnncalc: without it those columns read "not installed".
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from cnncalc.runtime import Runtime  # noqa: E402
from cnncalc.specfile import load  # noqa: E402
from cnncalc.train import (  # noqa: E402
    Momentum,
    TrainConfig,
    load_data,
    softmax_cross_entropy,
    train,
    train_step,
    trainable_arrays,
)
from cnncalc.weights import init_weights  # noqa: E402

SPECS = os.path.join(os.path.dirname(__file__), "..", "specs")


def cnncalc_step_s(spec: str, batch: int, size: int | None, steps: int) -> float:
    """Median seconds of one cnncalc training step."""
    graph = load(os.path.join(SPECS, spec)).networks[0]
    if size is not None:  # ResNet-18 ends in GAP, so the same nodes take a smaller image
        graph = dataclasses.replace(graph, input_shape=(graph.input_shape[0], size, size), shapes={})
    runtime = Runtime(graph, init_weights(graph, 0))
    params = trainable_arrays(runtime)
    optimizer = Momentum([array for _, _, array in params], momentum=0.9)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, *graph.input_shape)).astype(np.float32)
    y = rng.integers(0, graph.shapes[graph.output][0], batch)
    times = []
    for index in range(steps + 2):
        began = time.perf_counter()
        train_step(runtime, optimizer, params, softmax_cross_entropy, x, y, 0.01, rng)
        if index >= 2:
            times.append(time.perf_counter() - began)
    return statistics.median(times)


def torch_models(torch):  # type: ignore[no-untyped-def]
    """ResNet-18 (torchvision's layout) and LeNet-5 (as specs/lenet5.yaml) in PyTorch."""
    nn = torch.nn

    class Basic(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.b1 = nn.BatchNorm2d(cout)
            self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.b2 = nn.BatchNorm2d(cout)
            self.short = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                          if stride != 1 or cin != cout else nn.Identity())

        def forward(self, x):  # type: ignore[no-untyped-def]
            y = torch.relu(self.b1(self.c1(x)))
            return torch.relu(self.b2(self.c2(y)) + self.short(x))

    layers = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
    for cin, cout, stride in [(64, 64, 1), (64, 64, 1), (64, 128, 2), (128, 128, 1), (128, 256, 2),
                              (256, 256, 1), (256, 512, 2), (512, 512, 1)]:
        layers.append(Basic(cin, cout, stride))
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, 1000)]
    resnet18 = nn.Sequential(*layers)
    lenet5 = nn.Sequential(nn.Conv2d(1, 6, 5), nn.Tanh(), nn.AvgPool2d(2), nn.Conv2d(6, 16, 5), nn.Tanh(),
                           nn.AvgPool2d(2), nn.Flatten(), nn.Linear(400, 120), nn.Tanh(), nn.Linear(120, 84),
                           nn.Tanh(), nn.Linear(84, 10))
    return {"resnet18": resnet18, "lenet5": lenet5}


def torch_step_s(torch, model, shape: tuple[int, ...], classes: int, steps: int) -> float:  # type: ignore[no-untyped-def]
    """Median seconds of one PyTorch training step with the same loss and optimizer."""
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(*shape)
    y = torch.randint(0, classes, (shape[0],))
    times = []
    for index in range(steps + 2):
        began = time.perf_counter()
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        if index >= 2:
            times.append(time.perf_counter() - began)
    return statistics.median(times)


ROWS = [("ResNet-18 train step, batch 8, 112x112", "resnet18", 8, 112, (8, 3, 112, 112), 1000),
        ("LeNet-5 train step, batch 64, 32x32", "lenet5", 64, None, (64, 1, 32, 32), 10)]


def torch_times(steps: int) -> dict[str, float] | None:
    """PyTorch's step times, measured in a child process so that neither library's idle threads
    (OpenBLAS for NumPy, OpenMP for PyTorch) compete with the other's; None when it is not installed."""
    if importlib.util.find_spec("torch") is None:
        return None
    found = subprocess.run([sys.executable, __file__, "--torch-only", "--steps", str(steps)],
                           capture_output=True, text=True, check=True)
    return json.loads(found.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per row (median)")
    parser.add_argument("--no-digits", action="store_true", help="skip the 10-epoch digits run")
    parser.add_argument("--torch-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.torch_only:
        import torch

        models = torch_models(torch)
        times = {name: torch_step_s(torch, models[name], shape, classes, args.steps)
                 for _, name, _, _, shape, classes in ROWS}
        print(json.dumps(times | {"version": torch.__version__, "threads": torch.get_num_threads()}))
        return
    theirs = torch_times(args.steps)
    print(f"{'what':42} {'cnncalc':>10} {'PyTorch':>10} {'ratio':>7}")
    for label, name, batch, size, _, _ in ROWS:
        ours = cnncalc_step_s(f"{name}.yaml", batch, size, args.steps)
        if theirs is None:
            print(f"{label:42} {ours * 1e3:8.1f}ms {'not installed':>10}")
            continue
        print(f"{label:42} {ours * 1e3:8.1f}ms {theirs[name] * 1e3:8.1f}ms {ours / theirs[name]:6.2f}x")
    if theirs is not None:
        print(f"PyTorch {theirs['version']}, {theirs['threads']} threads; NumPy {np.__version__}")
    if not args.no_digits:
        graph = load(os.path.join(SPECS, "lenet_digits.yaml")).networks[0]
        data = load_data("digits", graph, seed=0)
        began = time.perf_counter()
        result = train(graph, init_weights(graph, 0), data, TrainConfig(epochs=10))
        wall = time.perf_counter() - began
        print(f"digits, lenet_digits.yaml, 10 epochs: {result.samples / result.time_s:,.0f} samples/s, "
              f"{wall:.1f} s in all, held-out accuracy {100 * result.final.val_accuracy:.1f}%")


if __name__ == "__main__":
    main()
