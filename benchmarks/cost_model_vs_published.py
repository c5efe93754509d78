"""The hardware cost model against published measurements: predicted vs measured, percent error.

Run:
    python benchmarks/cost_model_vs_published.py             # the fit set, with the built-in profiles
    python benchmarks/cost_model_vs_published.py --validate  # also networks and GPUs the fit never saw
    python benchmarks/cost_model_vs_published.py --fit       # refit the shared parameters, print them
    python benchmarks/cost_model_vs_published.py --cross-validate  # leave one network out of the fit
    python benchmarks/cost_model_vs_published.py --host      # calibrate this machine, check with NumPy runs

The fit set is benchmarks/published_measurements.yaml (a copy of the team's reference file):
Titan X (Maxwell, Pascal) forward and forward+backward at batch 16 fp32 (jcjohnson/cnn-benchmarks,
Torch7 + cuDNN 5.1) and Jetson Nano TensorRT fp16 latency at batch 1 (NVIDIA-AI-IOT/torch2trt).
The fit has 7 numbers shared by every network: three class efficiencies, the memory efficiency and
the kernel overhead of the defaults, and the efficiency scale of Titan X Pascal and Jetson Nano.
No network is treated specially. --validate adds pairs from the same two sources that are not in
the fit: other networks on the fitted devices, and two GPUs with spec-sheet figures only.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cnncalc.analysis import NetworkReport, analyze  # noqa: E402
from cnncalc.hardware import KERNEL_CLASSES, Profile, estimate_network, load_profiles  # noqa: E402
from cnncalc.ir import Graph  # noqa: E402
from cnncalc.spec import parse  # noqa: E402
from cnncalc.specfile import load  # noqa: E402

PUBLISHED = Path(__file__).with_name("published_measurements.yaml")


@dataclass(frozen=True)
class Case:
    """One published figure: a network on a device, forward or forward+backward, in ms."""

    group: str  # what the acceptance bounds are stated for
    profile: str
    network: str
    quantity: str  # "forward" | "forward_backward"
    batch: int
    dtype: str
    measured_ms: float


def published_cases(path: Path = PUBLISHED) -> list[Case]:
    """Every pair of the published file the cost model is fitted and judged on."""
    data = yaml.safe_load(path.read_text())
    cases = []
    for key, quantity, group in (("titan_x_forward_ms", "forward", "Titan X forward"),
                                 ("titan_x_forward_backward_ms", "forward_backward", "Titan X forward+backward")):
        batch = data["titan_x_forward_ms"]["batch"]
        for device in ("titan-x-maxwell", "titan-x-pascal"):
            for network, ms in data[key][device].items():
                cases.append(Case(group, device, network, quantity, batch, "float32", float(ms)))
    nano = data["jetson_nano_latency_ms"]
    for network, ms in nano["tensorrt_fp16"].items():
        cases.append(Case("Jetson Nano TensorRT fp16", "jetson-nano", network, "forward", nano["batch"],
                          "float16", float(ms)))
    return cases


# ---- held-out pairs (not used by the fit) ------------------------------------------
# jcjohnson/cnn-benchmarks README (cuDNN 5.1.05; GTX 1080 Ti 5.1.10), batch 16, forward / total ms
HELD_OUT_GPU = {
    "titan-x-maxwell": {"vgg19": (73.66, 225.14), "resnet34": (27.33, 80.23), "resnet101": (87.76, 247.49),
                        "resnet152": (124.04, 345.45)},
    "titan-x-pascal": {"vgg19": (48.09, 147.32), "resnet34": (17.01, 51.59), "resnet101": (53.38, 156.44),
                       "resnet152": (75.45, 217.91)},
    "gtx-1080": {"alexnet": (7.00, 20.74), "vgg16": (59.37, 182.79), "vgg19": (68.95, 210.39),
                 "resnet18": (14.62, 43.94), "resnet34": (24.50, 72.09), "resnet50": (50.64, 149.82),
                 "resnet101": (77.59, 225.80), "resnet152": (109.32, 314.30)},
    "gtx-1080-ti": {"alexnet": (4.31, 13.89), "vgg16": (41.23, 128.14), "vgg19": (48.15, 148.19),
                    "resnet18": (10.45, 32.78), "resnet34": (16.71, 51.31), "resnet50": (34.14, 101.21),
                    "resnet101": (52.18, 154.26), "resnet152": (73.52, 215.54)},
}
# NVIDIA-AI-IOT/torch2trt docs/benchmarks/jetson_nano.md, TensorRT fp16, batch 1, ms
HELD_OUT_NANO = {"squeezenet1_0": 7.6, "resnet34": 20.2, "resnet101": 51.1, "resnet152": 72.3,
                 "densenet121": 24.8, "densenet169": 31.2, "densenet201": 40.8, "densenet161": 65.8,
                 "vgg11": 55.1, "vgg13": 68.7, "vgg16_bn": 84.3}
# spec-sheet profiles for the GPUs outside the fit; they take the built-in defaults unchanged
EXTRA_PROFILES = """
profiles:
  gtx-1080:
    description: GeForce GTX 1080 (Pascal GP104)
    peak_tflops: {float32: 8.87}
    mem_gb_per_s: 320
    mem_gib: 8
    sources: {peak_tflops: "jcjohnson/cnn-benchmarks GPU table: 8.87 TFLOPS", mem_gb_per_s: "NVIDIA: 320 GB/s"}
  gtx-1080-ti:
    description: GeForce GTX 1080 Ti (Pascal GP102)
    peak_tflops: {float32: 11.34}
    mem_gb_per_s: 484
    mem_gib: 11
    sources: {peak_tflops: "3584 cores x 2 x 1582 MHz boost", mem_gb_per_s: "NVIDIA: 484 GB/s"}
"""


def held_out_cases() -> list[Case]:
    """Pairs from the same sources that the fit never saw."""
    cases = []
    for device, networks in HELD_OUT_GPU.items():
        group = "held out: other GPUs" if device.startswith("gtx") else "held out: other networks, Titan X"
        for network, (forward_ms, total_ms) in networks.items():
            cases.append(Case(group, device, network, "forward", 16, "float32", forward_ms))
            cases.append(Case(group, device, network, "forward_backward", 16, "float32", total_ms))
    for network, ms in HELD_OUT_NANO.items():
        cases.append(Case("held out: other networks, Jetson Nano", "jetson-nano", network, "forward", 1,
                          "float16", ms))
    return cases


def _resnet(kind: str, counts: list[int]) -> str:
    """torchvision ResNet as chain text: basic blocks (18/34) or bottlenecks (50+), stride on the 3x3."""
    items = ["224x224x3", "7x7x3x64(s=2,p=3,b=0)", "BN", "ReLU", "MP(3,s=2,p=1)"]
    channels = 64
    for stage, (width, count) in enumerate(zip((64, 128, 256, 512), counts, strict=True)):
        for block in range(count):
            stride = 2 if stage > 0 and block == 0 else 1
            out = width if kind == "basic" else 4 * width
            if kind == "basic":
                main = (f"3x3x{channels}x{width}(s={stride},p=1,b=0) | BN | ReLU | "
                        f"3x3x{width}x{width}(p=1,b=0) | BN")
            else:
                main = (f"1x1x{channels}x{width}(b=0) | BN | ReLU | 3x3x{width}x{width}(s={stride},p=1,b=0) | BN"
                        f" | ReLU | 1x1x{width}x{out}(b=0) | BN")
            shortcut = f" ; 1x1x{channels}x{out}(s={stride},b=0) | BN" if stride != 1 or channels != out else ""
            items.append(f"res[{main}{shortcut}] | ReLU")
            channels = out
    return " | ".join([*items, "GAP", "FC(1000)"])


def _vgg(counts: list[int], batch_norm: bool = False) -> str:
    """torchvision VGG configurations as chain text."""
    items, channels = ["224x224x3"], 3
    for width, count in zip((64, 128, 256, 512, 512), counts, strict=True):
        for _ in range(count):
            items += [f"3x3x{channels}x{width}(p=1)"] + (["BN"] if batch_norm else []) + ["ReLU"]
            channels = width
        items.append("MP")
    return " | ".join([*items, "FC(4096) | ReLU | DO(0.5) | FC(4096) | ReLU | DO(0.5) | FC(1000)"])


def _densenet(growth: int, counts: list[int], init: int) -> str:
    """torchvision DenseNet as chain text: each layer concatenates its 'growth' new channels to its input."""
    items = ["224x224x3", f"7x7x3x{init}(s=2,p=3,b=0)", "BN", "ReLU", "MP(3,s=2,p=1)"]
    channels = init
    for stage, count in enumerate(counts):
        for _ in range(count):
            items.append(f"cat[ID ; BN | ReLU | 1x1x{channels}x{4 * growth}(b=0) | BN | ReLU | "
                         f"3x3x{4 * growth}x{growth}(p=1,b=0)]")
            channels += growth
        if stage < len(counts) - 1:
            items += ["BN", "ReLU", f"1x1x{channels}x{channels // 2}(b=0)", "AP(2)"]
            channels //= 2
    return " | ".join([*items, "BN", "ReLU", "GAP", "FC(1000)"])


def _squeezenet10() -> str:
    """torchvision SqueezeNet 1.0 as chain text."""
    def fire(cin: int, squeeze: int, expand: int) -> str:
        return (f"1x1x{cin}x{squeeze} | ReLU | cat[1x1x{squeeze}x{expand} | ReLU ; "
                f"3x3x{squeeze}x{expand}(p=1) | ReLU]")
    pool = "MP(3,s=2,ceil=1)"
    return " | ".join(["224x224x3", "7x7x3x96(s=2)", "ReLU", pool, fire(96, 16, 64), fire(128, 16, 64),
                       fire(128, 32, 128), pool, fire(256, 32, 128), fire(256, 48, 192), fire(384, 48, 192),
                       fire(384, 64, 256), pool, fire(512, 64, 256), "DO(0.5)", "1x1x512x1000", "ReLU", "GAP"])


GENERATED: dict[str, Callable[[], str]] = {
    "resnet34": lambda: _resnet("basic", [3, 4, 6, 3]),
    "resnet101": lambda: _resnet("bottleneck", [3, 4, 23, 3]),
    "resnet152": lambda: _resnet("bottleneck", [3, 8, 36, 3]),
    "vgg11": lambda: _vgg([1, 1, 2, 2, 2]),
    "vgg13": lambda: _vgg([2, 2, 2, 2, 2]),
    "vgg19": lambda: _vgg([2, 2, 4, 4, 4]),
    "vgg16_bn": lambda: _vgg([2, 2, 3, 3, 3], batch_norm=True),
    "densenet121": lambda: _densenet(32, [6, 12, 24, 16], 64),
    "densenet169": lambda: _densenet(32, [6, 12, 32, 32], 64),
    "densenet201": lambda: _densenet(32, [6, 12, 48, 32], 64),
    "densenet161": lambda: _densenet(48, [6, 12, 36, 24], 96),
    "squeezenet1_0": _squeezenet10,
}


def network(name: str) -> Graph:
    """A bundled spec (specs/NAME.yaml) or a generated held-out network."""
    if name in GENERATED:
        return parse(GENERATED[name](), name=name)
    return load(str(ROOT / "specs" / f"{name}.yaml")).networks[0]


# ---- predicting ----------------------------------------------------------------------
class Predictor:
    """Analyses each (network, batch, dtype) once, then prices it on any profile."""

    def __init__(self, cases: list[Case]) -> None:
        graphs = {name: network(name) for name in dict.fromkeys(case.network for case in cases)}
        self.reports: dict[tuple[str, int, str], NetworkReport] = {
            (c.network, c.batch, c.dtype): analyze(graphs[c.network], batch=c.batch, dtype=c.dtype) for c in cases
        }

    def predict_ms(self, case: Case, profile: Profile) -> float:
        cost = estimate_network(self.reports[(case.network, case.batch, case.dtype)], profile)
        return (cost.latency_s if case.quantity == "forward" else cost.forward_backward_s) * 1e3


def errors_pct(cases: list[Case], predictor: Predictor, profiles: dict[str, Profile]) -> list[float]:
    """Signed percent error per case: 100 * (predicted - measured) / measured."""
    return [100 * (predictor.predict_ms(c, profiles[c.profile]) - c.measured_ms) / c.measured_ms for c in cases]


def print_table(cases: list[Case], predictor: Predictor, profiles: dict[str, Profile]) -> None:
    """One line per pair, then median and max absolute error per group."""
    errors = errors_pct(cases, predictor, profiles)
    print(f"{'device':17s} {'network':14s} {'quantity':17s} {'batch':>5s} {'dtype':8s} "
          f"{'measured ms':>11s} {'predicted ms':>12s} {'error':>8s}")
    for case, error in zip(cases, errors, strict=True):
        predicted = predictor.predict_ms(case, profiles[case.profile])
        print(f"{case.profile:17s} {case.network:14s} {case.quantity:17s} {case.batch:5d} {case.dtype:8s} "
              f"{case.measured_ms:11.2f} {predicted:12.2f} {error:+7.1f}%")
    print()
    groups = dict.fromkeys(case.group for case in cases)
    for group in groups:
        chosen = [abs(e) for c, e in zip(cases, errors, strict=True) if c.group == group]
        print(f"{group:40s} n={len(chosen):2d}  median |error| {statistics.median(chosen):5.1f}%  "
              f"max {max(chosen):5.1f}%")
    print(f"{'all':40s} n={len(errors):2d}  median |error| {statistics.median(map(abs, errors)):5.1f}%  "
          f"max {max(map(abs, errors)):5.1f}%")


# ---- fitting ---------------------------------------------------------------------------
FITTED_CLASSES = ("conv", "conv_winograd", "gemm")
SCALED = ("titan-x-pascal", "jetson-nano")  # titan-x-maxwell is the reference (scale 1)


def with_parameters(base: dict[str, Profile], theta: np.ndarray) -> dict[str, Profile]:
    """Profiles with the 7 fitted numbers (log-space vector) put in, as load_profiles would build them."""
    values = np.exp(theta)
    defaults = dict(zip(FITTED_CLASSES, values[:3], strict=True))
    mem_efficiency, overhead_s = min(1.0, values[3]), values[4] * 1e-6
    scales = {"titan-x-maxwell": 1.0, **dict(zip(SCALED, values[5:7], strict=True))}
    result = {}
    for name, profile in base.items():
        scale = scales.get(name, profile.efficiency_scale)
        efficiency = {cls: (defaults[cls] * scale if cls in defaults else profile.efficiency[cls])
                      for cls in KERNEL_CLASSES}
        result[name] = dataclasses.replace(profile, efficiency=efficiency, mem_efficiency=mem_efficiency,
                                           launch_overhead_s=overhead_s, efficiency_scale=scale)
    return result


def nelder_mead(loss: Callable[[np.ndarray], float], start: np.ndarray, steps: int = 4000,
                size: float = 0.3) -> np.ndarray:
    """Minimise `loss` with the Nelder-Mead simplex (reflect, expand, contract, shrink)."""
    simplex = [start] + [start + size * np.eye(len(start))[i] for i in range(len(start))]
    values = [loss(x) for x in simplex]
    for _ in range(steps):
        order = np.argsort(values)
        simplex, values = [simplex[i] for i in order], [values[i] for i in order]
        centre = np.mean(simplex[:-1], axis=0)
        reflected = centre + (centre - simplex[-1])
        r = loss(reflected)
        if r < values[0]:
            expanded = centre + 2 * (centre - simplex[-1])
            e = loss(expanded)
            simplex[-1], values[-1] = (expanded, e) if e < r else (reflected, r)
        elif r < values[-2]:
            simplex[-1], values[-1] = reflected, r
        else:
            contracted = centre + 0.5 * (simplex[-1] - centre)
            c = loss(contracted)
            if c < values[-1]:
                simplex[-1], values[-1] = contracted, c
            else:
                simplex = [simplex[0] + 0.5 * (x - simplex[0]) for x in simplex]
                values = [loss(x) for x in simplex]
        if max(values) - min(values) < 1e-12:
            break
    return simplex[int(np.argmin(values))]


def fit(cases: list[Case], predictor: Predictor, base: dict[str, Profile], quiet: bool = False) -> dict[str, Profile]:
    """Least squares on log(predicted / measured) over every published pair, restarted until it settles."""
    def loss(theta: np.ndarray) -> float:
        profiles = with_parameters(base, theta)
        return sum(math.log(predictor.predict_ms(c, profiles[c.profile]) / c.measured_ms) ** 2 for c in cases)

    theta = np.log([0.6, 1.2, 0.5, 0.7, 10.0, 1.0, 1.0])
    for _ in range(4):
        theta = nelder_mead(loss, theta)
    fitted = with_parameters(base, theta)
    if quiet:
        return fitted
    values = np.exp(theta)
    print("# fitted parameters (paste into cnncalc/data/profiles.yaml):")
    print("defaults:")
    print("  efficiency: {" + ", ".join(f"{c}: {v:.4g}" for c, v in zip(FITTED_CLASSES, values[:3], strict=True)) + "}")
    print(f"  mem_efficiency: {min(1.0, values[3]):.4g}")
    print(f"  launch_overhead_us: {values[4]:.4g}")
    for name, scale in zip(SCALED, values[5:7], strict=True):
        print(f"{name}: efficiency_scale: {scale:.4g}")
    print(f"# loss {loss(theta):.4f}\n")
    return fitted


def cross_validate(cases: list[Case], predictor: Predictor, base: dict[str, Profile]) -> None:
    """Leave one network out: fit on the other networks, predict the one left out."""
    held: list[Case] = []
    errors: list[float] = []
    for name in dict.fromkeys(case.network for case in cases):
        fitted = fit([c for c in cases if c.network != name], predictor, base, quiet=True)
        out = [c for c in cases if c.network == name]
        held += out
        errors += errors_pct(out, predictor, fitted)
    for case, error in zip(held, errors, strict=True):
        print(f"{case.profile:17s} {case.network:14s} {case.quantity:17s} {error:+7.1f}%")
    print(f"leave-one-network-out: median |error| {statistics.median(map(abs, errors)):.1f}%  "
          f"max {max(map(abs, errors)):.1f}%")


def host_check(repeats: int = 3) -> None:
    """Calibrate this machine, then compare the `host` prediction with timed runs of the NumPy runtime."""
    from cnncalc.hardware import calibrate_host
    from cnncalc.runtime import Runtime

    host = calibrate_host()
    print(f"{'network':16s} {'batch':>5s} {'measured ms':>11s} {'predicted ms':>12s} {'error':>8s}")
    errors = []
    for name, batch in (("lenet5", 64), ("alexnet", 4), ("resnet18", 2), ("squeezenet1_1", 4), ("mobilenet_v2", 2)):
        graph = network(name)
        runtime = Runtime.from_graph(graph)
        x = np.random.default_rng(0).standard_normal((batch, *graph.input_shape)).astype(np.float32)
        runtime.run(x)  # warm-up
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            runtime.run(x)
            best = min(best, time.perf_counter() - start)
        predicted = estimate_network(analyze(graph, batch=batch), host).latency_s
        errors.append(100 * (predicted - best) / best)
        print(f"{name:16s} {batch:5d} {best * 1e3:11.2f} {predicted * 1e3:12.2f} {errors[-1]:+7.1f}%")
    print(f"median |error| {statistics.median(map(abs, errors)):.1f}%  max {max(map(abs, errors)):.1f}%")


def benchmark_profiles() -> dict[str, Profile]:
    """The built-in profiles plus the two spec-sheet GPUs of the held-out set."""
    with tempfile.TemporaryDirectory() as folder:
        extra = Path(folder) / "gpus.yaml"
        extra.write_text(EXTRA_PROFILES)
        return load_profiles([extra])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fit", action="store_true", help="refit the shared parameters and print them")
    parser.add_argument("--validate", action="store_true", help="also show pairs the fit never saw")
    parser.add_argument("--cross-validate", action="store_true", help="refit without each network in turn")
    parser.add_argument("--host", action="store_true", help="calibrate this machine and check it with NumPy runs")
    args = parser.parse_args()
    if args.host:
        host_check()
        return
    cases = published_cases()
    profiles = benchmark_profiles()
    predictor = Predictor(cases + (held_out_cases() if args.validate else []))
    if args.cross_validate:
        cross_validate(cases, predictor, profiles)
        return
    if args.fit:
        profiles = fit(cases, predictor, profiles)
    print("== fit set: benchmarks/published_measurements.yaml ==")
    print_table(cases, predictor, profiles)
    if args.validate:
        print("\n== held out: same sources, not in the fit ==")
        print_table(held_out_cases(), predictor, profiles)


if __name__ == "__main__":
    main()
