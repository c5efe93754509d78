"""cnncalc's NumPy backend against onnxruntime (CPU) and onnx.reference.ReferenceEvaluator.

For each bundled spec (LeNet-5, ResNet-18, ResNet-50, MobileNetV2) at batch 1 and 8, the spec is
exported to ONNX with seeded weights and the same file is run by the three engines, interleaved
round by round so that a busy machine slows all of them alike, and each round goes through every
model and batch so that a slow period of the machine spreads over all of them: in each round each
engine gets a short pause (so that the previous engine's still-spinning worker threads do not slow
it), one untimed warm-up run, then the timed run. Prints median latencies, the
ratios, the GFLOP/s each reaches (2 FLOPs per MAC of the analysis), the host's matmul peak from
`cnncalc calibrate` as the physical limit, a memory-bandwidth probe and a cross-core probe per round
(to tell a disturbed run; cnncalc splits batches of 2 or more over the cores, batch 1 suffers when they do
not share a cache, so each goal is also given over the rounds whose cores shared one),
whether the speed goals of the backend's issue hold,
where cnncalc's time goes per op type, and the peak RSS of running ResNet-50 at batch 8 next to the
analysis' predicted inference memory.

Run:   python benchmarks/runtime_vs_onnxruntime.py            (all; several minutes on 2 cores)
       python benchmarks/runtime_vs_onnxruntime.py --quick    (LeNet-5 and ResNet-18 at batch 1)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from cnncalc.analysis import analyze  # noqa: E402
from cnncalc.hardware import calibrate_host  # noqa: E402
from cnncalc.onnx_io import to_onnx  # noqa: E402
from cnncalc.runtime import Runtime  # noqa: E402
from cnncalc.specfile import load  # noqa: E402
from cnncalc.weights import init_weights  # noqa: E402

MODELS = {"lenet5": "specs/lenet5.yaml", "resnet18": "specs/resnet18.yaml", "resnet50": "specs/resnet50.yaml",
          "mobilenet_v2": "specs/mobilenet_v2.yaml"}
MEMORY_MODEL, MEMORY_BATCH = "resnet50", 8
# idle time before each timed run: OpenBLAS and onnxruntime worker threads keep spinning for a while after
# a call, and on a 2-core machine they would steal a core from whichever engine runs next
PAUSE_S = 0.2


def blas_info() -> str:
    """Which BLAS NumPy uses and which kernels it picked for this CPU."""
    try:
        from threadpoolctl import threadpool_info

        for pool in threadpool_info():
            if pool.get("user_api") == "blas":
                return (f"{pool.get('internal_api')} {pool.get('version')}, core {pool.get('architecture')}, "
                        f"{pool.get('num_threads')} threads")
    except ImportError:
        pass
    return "unknown (install threadpoolctl to see the BLAS core type)"


def export(name: str, folder: Path) -> tuple[Path, int, str]:
    """The bundled spec exported to an ONNX file with seed-0 weights; its path, MACs per sample and input name."""
    graph = load(str(ROOT / MODELS[name])).networks[0]
    path = folder / f"{name}.onnx"
    path.write_bytes(to_onnx(graph, init_weights(graph, seed=0)).SerializeToString())
    return path, analyze(graph, batch=1).totals.macs, graph.input_name


def timed(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


class Bench:
    """The three engines on one exported model and batch, timed one round at a time."""

    def __init__(self, name: str, path: Path, input_name: str, batch: int, threads: int, macs: int,
                 with_reference: bool) -> None:
        import onnxruntime as ort
        from onnx.reference import ReferenceEvaluator

        self.name, self.batch, self.flops = name, batch, 2 * macs * batch
        x = np.random.default_rng(0).standard_normal((batch, *_input_shape(path))).astype(np.float32)
        self.x, self.ours = x, Runtime.from_file(path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.engines = {"cnncalc": lambda: self.ours.run(x), "onnxruntime": lambda: session.run(None, {input_name: x})}
        if with_reference:
            reference = ReferenceEvaluator(str(path))
            self.engines["reference"] = lambda: reference.run(None, {input_name: x})
        ort_out = session.run(None, {input_name: x})[0]
        self.rel_diff = float(np.abs(self.ours.run(x).output - ort_out).max() / np.abs(ort_out).max())
        self.times: dict[str, list[float]] = defaultdict(list)
        self.rounds: dict[str, list[int]] = defaultdict(list)  # the round of each time

    def round(self, index: int, with_reference: bool) -> None:
        for engine, run in self.engines.items():
            if engine == "reference" and not with_reference:
                continue
            time.sleep(PAUSE_S)
            if engine != "reference":  # wake the thread pool and the caches; a reference run takes long enough
                run()
            self.times[engine].append(timed(run))
            self.rounds[engine].append(index)

    def result(self, shared_cache_rounds: set[int] | None) -> dict:
        """Medians and minima per engine; with `shared_cache_rounds`, also the medians over those rounds alone."""
        by_op: dict[str, float] = defaultdict(float)
        time.sleep(PAUSE_S)
        self.ours.run(self.x)  # warm, like the timed runs
        for record in self.ours.run(self.x, record=True).records:
            by_op[record.op_type] += record.time_s
        shared = {}
        if shared_cache_rounds:
            for engine, times in self.times.items():
                kept = [t for t, index in zip(times, self.rounds[engine], strict=True) if index in shared_cache_rounds]
                shared[engine] = statistics.median(kept or times)
        return {"model": self.name, "batch": self.batch, "flops": self.flops,
                "median_s": {k: statistics.median(v) for k, v in self.times.items()}, "shared_median_s": shared,
                "min_s": {k: min(v) for k, v in self.times.items()}, "rel_diff": self.rel_diff, "by_op_s": dict(by_op)}


def _input_shape(path: Path) -> tuple[int, ...]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    return tuple(d.dim_value for d in dims[1:])


MEMORY_PROBE = r"""
import json, sys
sys.path.insert(0, {root!r})
import numpy as np, onnx
import cnncalc.runtime, cnncalc.onnx_io, cnncalc.analysis
from dataclasses import replace

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024

baseline = status("VmRSS:")
runtime = cnncalc.runtime.Runtime.from_file({path!r})
after_load = status("VmHWM:")
x = np.random.default_rng(0).standard_normal(({batch}, *runtime.input_shape)).astype(np.float32)
try:
    open("/proc/self/clear_refs", "w").write("5")  # reset the high-water mark: measure the run alone
    reset = True
except OSError:
    reset = False
resident_before_run = status("VmRSS:")
runtime.run(x)
report = cnncalc.analysis.analyze(runtime.graph, batch={batch})
print(json.dumps({{"baseline": baseline, "after_load_hwm": after_load, "before_run": resident_before_run,
                  "run_hwm": status("VmHWM:"), "reset": reset, "weights": report.totals.weight_bytes,
                  "peak_activations": report.totals.peak_activation_bytes, "x": int(x.nbytes)}}))
"""


def measure_memory(path: Path, batch: int) -> dict:
    """Peak RSS of a fresh process that loads the model and runs it once (baseline: after the imports)."""
    code = MEMORY_PROBE.format(root=str(ROOT), path=str(path), batch=batch)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True))
             for row in [header, ["-" * w for w in widths], *rows]]
    return "\n".join(lines)


def matmul_peak() -> float:
    """The host's float32 matmul FLOP/s, as `cnncalc calibrate` measures it (best of 3)."""
    return calibrate_host(matmul_n=2048, copy_mib=16, conv_size=8, repeats=3).peak_flops_per_s["float32"]


class BandwidthProbe:
    """A 16 MiB copy timed at the start of every round (best of 3, read + write). The VM this was developed on
    has slow periods in which memory-bound passes take 2-3x as long while matmuls barely change; the spread of
    this probe over the rounds tells whether a run was disturbed. Diagnostic only: every goal uses every round."""

    def __init__(self) -> None:
        self.src = np.ones(4 * 2**20, dtype=np.float32)
        self.dst = np.empty_like(self.src)
        self.bytes_per_s: list[float] = []

    def measure(self) -> None:
        best = min(timed(lambda: np.copyto(self.dst, self.src)) for _ in range(3))
        self.bytes_per_s.append(2 * self.src.nbytes / best)

    def summary(self) -> str:
        rates = sorted(rate / 1e9 for rate in self.bytes_per_s)
        return (f"memory copy bandwidth at the start of each round (16 MiB, GB/s): min {rates[0]:.0f}, "
                f"median {statistics.median(rates):.0f}, max {rates[-1]:.0f}; rounds under 2/3 of the max: "
                f"{sum(rate < 2 / 3 * rates[-1] for rate in rates)} of {len(rates)}")


class CrossCoreProbe:
    """Writing 4 MiB last written by another core, against writing one's own: cheap where the cores share a
    cache, about 15x dearer where they do not (the development VM's two cores are at times on separate dies;
    docs/runtime.md). Measured at the start of every round; skipped with fewer than two usable cores."""

    SPLIT_CACHE_RATIO = 4  # a remote write this many times the local one: the cores do not share a cache

    def __init__(self) -> None:
        cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        self.cores = cores[:2]
        self.shared, self.own = np.ones(2**20, dtype=np.float32), np.ones(2**20, dtype=np.float32)
        self.ratios: list[float] = []

    def measure(self) -> None:
        if len(self.cores) < 2:
            return
        import threading

        def write_on_other_core() -> None:
            os.sched_setaffinity(0, {self.cores[1]})
            self.shared.fill(2.0)

        everywhere = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {self.cores[0]})
        try:
            other = threading.Thread(target=write_on_other_core)
            other.start()
            other.join()
            remote = timed(lambda: self.shared.fill(3.0))
            self.own.fill(2.0)
            local = timed(lambda: self.own.fill(3.0))
        finally:
            os.sched_setaffinity(0, everywhere)
        self.ratios.append(remote / local)

    def shared_cache_rounds(self) -> set[int] | None:
        """The rounds whose cores shared a cache, when some did not (None: all did, or no probe)."""
        shared = {index for index, ratio in enumerate(self.ratios) if ratio < self.SPLIT_CACHE_RATIO}
        return shared if self.ratios and len(shared) < len(self.ratios) else None

    def summary(self) -> str:
        if not self.ratios:
            return "cross-core probe: skipped (fewer than two usable cores)"
        split = sum(ratio >= self.SPLIT_CACHE_RATIO for ratio in self.ratios)
        return (f"cores without a shared cache (a write to memory the other core wrote >= "
                f"{self.SPLIT_CACHE_RATIO}x a write to its own) at the start of {split} of {len(self.ratios)} rounds")


#: issue 5's speed goals: (model, batch, engine compared, "max" or "min", bound) on the ratio of medians
SPEED_GOALS = [("resnet18", 8, "onnxruntime", "max", 2.0), ("resnet50", 8, "onnxruntime", "max", 2.0),
               ("resnet18", 1, "reference", "min", 20.0)]


def print_speed_goals(results: list[dict]) -> None:
    """One line per speed goal whose model and batch were measured: the ratio of medians and whether it holds."""
    measured = {(r["model"], r["batch"]): r for r in results}
    lines = []
    for model, batch, other, kind, bound in SPEED_GOALS:
        r = measured.get((model, batch))
        if r is None or other not in r["median_s"]:
            continue
        if kind == "max":
            ratio, wanted = r["median_s"]["cnncalc"] / r["median_s"][other], f"cnncalc/{other} <= {bound:g}x"
            held = ratio <= bound
        else:
            ratio, wanted = r["median_s"][other] / r["median_s"]["cnncalc"], f"{other}/cnncalc >= {bound:g}x"
            held = ratio >= bound
        line = f"  {model} batch {batch}: {wanted}: {ratio:.2f}x, {'met' if held else 'NOT met'}"
        shared = r.get("shared_median_s") or {}
        if shared:
            alone = (shared["cnncalc"] / shared[other]) if kind == "max" else (shared[other] / shared["cnncalc"])
            line += f" (rounds whose cores shared a cache: {alone:.2f}x)"
        lines.append(line)
    if lines:
        print("\nspeed goals (medians; rerun when the matmul peaks above differ, see docs/runtime.md):")
        print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--batches", nargs="*", type=int, default=[1, 8])
    parser.add_argument("--repeat", type=int, default=10, help="timed runs of cnncalc and onnxruntime")
    parser.add_argument("--ref-repeat", type=int, default=2, help="timed runs of the ReferenceEvaluator (0: skip)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="onnxruntime intra-op threads")
    parser.add_argument("--quick", action="store_true", help="LeNet-5 and ResNet-18 at batch 1 only")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-RSS measurement")
    args = parser.parse_args()
    if args.quick:
        args.models, args.batches, args.repeat = ["lenet5", "resnet18"], [1], 5
    print(f"NumPy {np.__version__}; BLAS: {blas_info()}; onnxruntime threads: {args.threads}; "
          f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}; "
          f"load average {os.getloadavg()[0]:.2f} (other processes slow every engine; OpenBLAS most)")
    peak_before = matmul_peak()
    print(f"host matmul peak (cnncalc calibrate, 2048x2048 float32): {peak_before / 1e9:.0f} GFLOP/s\n")
    with tempfile.TemporaryDirectory() as folder:
        exported = {name: export(name, Path(folder)) for name in args.models}
        reference_runs = min(args.ref_repeat, args.repeat)
        benches = [Bench(name, exported[name][0], exported[name][2], batch, args.threads, exported[name][1],
                         with_reference=reference_runs > 0)
                   for name in args.models for batch in args.batches]
        # each round goes through every model and batch, and the reference's rounds are spread over the
        # run: a slow period of the machine (seconds to minutes) then touches a few rounds of every
        # configuration instead of all the rounds of one
        reference_rounds = {k * args.repeat // reference_runs for k in range(reference_runs)}
        probe, cross_core = BandwidthProbe(), CrossCoreProbe()
        for round_index in range(args.repeat):
            probe.measure()
            cross_core.measure()
            for bench in benches:
                bench.round(round_index, with_reference=round_index in reference_rounds)
            print(f"  round {round_index + 1} of {args.repeat}", file=sys.stderr)
        results = [bench.result(cross_core.shared_cache_rounds()) for bench in benches]
        memory = None
        if not args.no_memory and MEMORY_MODEL in exported:
            memory = measure_memory(exported[MEMORY_MODEL][0], MEMORY_BATCH)
    # the limit is the best the host reached: one measurement can fall into a slow period (107 vs 205 GFLOP/s)
    peak_after = matmul_peak()
    peak = max(peak_before, peak_after)
    print(f"host matmul peak measured again: {peak_after / 1e9:.0f} GFLOP/s; '% of peak' uses the higher, "
          f"{peak / 1e9:.0f} GFLOP/s")
    header = ["model", "batch", "cnncalc ms", "onnxruntime ms", "reference ms", "cnncalc/ort", "(best runs)",
              "ref/cnncalc", "(best runs)", "cnncalc GFLOP/s", "ort GFLOP/s", "% of peak", "rel diff"]
    rows = []
    for r in results:
        t, best = r["median_s"], r["min_s"]
        ref = t.get("reference")
        rows.append([r["model"], str(r["batch"]), f"{t['cnncalc'] * 1e3:.2f}", f"{t['onnxruntime'] * 1e3:.2f}",
                     f"{ref * 1e3:.1f}" if ref else "-", f"{t['cnncalc'] / t['onnxruntime']:.2f}x",
                     f"{best['cnncalc'] / best['onnxruntime']:.2f}x",
                     f"{ref / t['cnncalc']:.1f}x" if ref else "-",
                     f"{best['reference'] / best['cnncalc']:.1f}x" if ref else "-",
                     f"{r['flops'] / t['cnncalc'] / 1e9:.1f}",
                     f"{r['flops'] / t['onnxruntime'] / 1e9:.1f}", f"{100 * r['flops'] / t['cnncalc'] / peak:.0f}%",
                     f"{r['rel_diff']:.1e}"])
    print(f"medians of the interleaved rounds; '(best runs)' is the ratio of the two engines' fastest runs "
          f"(they differ from the medians when the machine has slow periods); "
          f"load average now {os.getloadavg()[0]:.2f}")
    print(table(header, rows))
    print(probe.summary())
    print(cross_core.summary())
    print_speed_goals(results)
    print("\nwhere cnncalc's time goes (one recorded run, ms per op type):")
    for r in results:
        total = sum(r["by_op_s"].values())
        parts = sorted(r["by_op_s"].items(), key=lambda item: -item[1])
        shown = ", ".join(f"{op} {s * 1e3:.1f} ({100 * s / total:.0f}%)" for op, s in parts if s / total >= 0.01)
        print(f"  {r['model']} b{r['batch']}: {shown}")
    if memory is not None:
        mib = 2**20
        predicted = memory["weights"] + memory["peak_activations"]
        grown = memory["run_hwm"] - memory["baseline"]
        print(f"\nmemory, {MEMORY_MODEL} batch {MEMORY_BATCH} in a fresh process (peak RSS):")
        print(f"  interpreter + imports baseline {memory['baseline'] / mib:.0f} MiB; predicted inference memory "
              f"(weights {memory['weights'] / mib:.0f} + peak activations {memory['peak_activations'] / mib:.0f}) "
              f"= {predicted / mib:.0f} MiB")
        print(f"  peak RSS while loading the ONNX file: {memory['after_load_hwm'] / mib:.0f} MiB")
        print(f"  peak RSS during the run: {memory['run_hwm'] / mib:.0f} MiB = baseline + {grown / mib:.0f} MiB "
              f"= baseline + {grown / predicted:.2f}x predicted (goal: within 1.5x)"
              + ("" if memory["reset"] else "  [high-water mark not reset: includes loading]"))


if __name__ == "__main__":
    main()
