"""The NumPy backend: runs a Graph (or an ONNX file) with each op's own forward kernel.

The runtime is a plain loop over the nodes in topological order that fills a dict of
tensors and frees each one after its last reader, by the same rule as
`analysis.peak_activation_bytes`, so that what ran can be put beside what was predicted:
per node it records the executed shape, the MACs the kernel counted from its arrays, the
bytes it allocated and the time it took. With `keep_tape=True` it keeps every node's
inputs and forward cache; `backward` then walks that tape in reverse and *accumulates*
gradients, so a tensor read by two branches (a residual, a concat) gets their sum.

Arrays are NCHW (or (N, F) for vectors) in float32, or float64 on request, any batch size.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ._blas import blas_threads, cores_busy_elsewhere, limited_blas, single_threaded_blas
from .analysis import peak_activation_bytes
from .errors import CnnCalcError, RuntimeInputError, UnsupportedOpError
from .fileio import numpy_file_kind, numpy_load_problem
from .ir import Graph, Node, show_shape
from .ops.base import Forward, Op, Shape, execution, numel
from .weights import Weights, init_weights

#: dtypes the kernels run in, by name
DTYPES = {"float32": np.dtype(np.float32), "float64": np.dtype(np.float64)}


@dataclass(frozen=True)
class NodeRecord:
    """What one node's kernel did in one run, measured from its arrays."""

    name: str
    op_type: str
    shape: Shape  # per-sample output shape, as in the analysis (batch axis dropped)
    dtype: str
    macs: int  # multiply-accumulates the kernel performed, for the whole batch
    output_bytes: int  # the output tensor it allocated
    cache_bytes: int  # further arrays it allocated and kept for backward (im2col columns, masks ...)
    time_s: float

    @property
    def allocated_bytes(self) -> int:
        """Output plus kept cache."""
        return self.output_bytes + self.cache_bytes


@dataclass
class RunResult:
    """The output of one run and, with `record=True`, what each node did."""

    output: np.ndarray
    records: list[NodeRecord] = field(default_factory=list)
    peak_live_bytes: int = 0  # largest sum of live activation tensors (input included) during the run
    time_s: float = 0.0  # wall time of the node loop
    parts: int = 1  # threads the batch was split over (see Runtime.parallel_parts)
    blas_limited: bool = False  # fewer BLAS threads than usual: other programs ran on this process's cores

    @property
    def macs(self) -> int:
        """MACs executed over the whole run (needs `record=True`)."""
        return sum(record.macs for record in self.records)


@dataclass
class Gradients:
    """Gradients after `backward`: per node, aligned with its weights (None where not trainable), and the input's."""

    weights: dict[str, list[np.ndarray | None]]
    input: np.ndarray | None


@dataclass
class _Step:
    """One taped node: what its forward read and what it kept."""

    node: Node
    inputs: list[np.ndarray]
    fwd: Forward


class Runtime:
    """Executes a Graph with its weights on NumPy arrays; see the module docstring."""

    def __init__(self, graph: Graph, weights: Weights, dtype: Any = np.float32) -> None:
        self.graph = graph
        self.dtype = _runtime_dtype(dtype)
        _check_runnable(graph)
        self.weights: Weights = _checked_weights(graph, weights, self.dtype)
        last_use = graph.last_use()
        # per node, the tensors to free once it has run: inputs it reads last, and its output if nobody reads it
        self._freed_after = [tuple(name for name in dict.fromkeys((*node.inputs, node.name)) if last_use[name] == index)
                             for index, node in enumerate(graph.nodes)]
        self._tape: list[_Step] | None = None
        self._output_shape: tuple[int, ...] = ()
        self._needed_bytes: dict[tuple[int, bool], int] = {}  # (batch, keep_tape) -> activation bytes
        self._macs_per_sample: int | None = None  # worked out on the first run that may split
        self._busy_before: int | None = None  # cores other programs used at the previous run's start
        self._tape_blas_limit: int | None = None  # the taped run's BLAS thread limit, kept for its backward
        keep_freed_memory()

    def __repr__(self) -> str:
        """What the runtime takes and holds, in one line."""
        shape = ", ".join(str(d) for d in self.input_shape)
        return (f"<Runtime {self.graph.name!r}: input (N, {shape}) {self.dtype}, {len(self.graph.nodes)} nodes, "
                f"{self.weight_bytes:,} bytes of weights>")

    # ---- construction --------------------------------------------------------
    @classmethod
    def from_file(cls, path: str | Path, dtype: Any = np.float32) -> Runtime:
        """Load an ONNX model (cnncalc's exports or PyTorch-style models the importer reads)."""
        from .onnx_io import load_model

        model = load_model(path)
        return cls(model.graph, model.weights, dtype)

    @classmethod
    def from_graph(cls, graph: Graph, seed: int = 0, dtype: Any = np.float32) -> Runtime:
        """A graph with fresh weights (the same He initialization ONNX export uses for that seed)."""
        resolved = _runtime_dtype(dtype)
        return cls(graph, init_weights(graph, seed, resolved), resolved)

    @property
    def input_shape(self) -> Shape:
        """Per-sample NCHW input shape, without the batch axis."""
        return tuple(self.graph.input_shape)

    @property
    def weight_bytes(self) -> int:
        """Bytes of every weight array the runtime holds."""
        return sum(array.nbytes for arrays in self.weights.values() for array in arrays)

    # ---- checks before anything large is allocated ---------------------------
    def check_input(self, x: Any) -> np.ndarray:
        """The input as given, or a RuntimeInputError saying what is wrong and how to fix it."""
        expected = "N, " + ", ".join(str(d) for d in self.input_shape)
        layout = "NCHW" if len(self.input_shape) == 3 else "(N, features)"
        if x is None:
            raise RuntimeInputError(f"no input given; {self.graph.name} takes one array of shape ({expected})",
                                    hint="pass a NumPy array (or --input x.npy, or --seed for random input)")
        if not isinstance(x, np.ndarray):
            raise RuntimeInputError(f"the input is a {type(x).__name__}, not a NumPy array",
                                    hint="pass np.asarray(x, dtype=np.float32)")
        shape = tuple(x.shape)
        if len(shape) != len(self.input_shape) + 1 or shape[1:] != self.input_shape:
            raise RuntimeInputError(
                f"the input has shape {shape} but {self.graph.name} takes ({expected}) {layout}, "
                f"i.e. a batch of {show_shape(self.input_shape)} (HxWxC)",
                hint=_shape_hint(shape, self.input_shape),
            )
        if shape[0] < 1:
            raise RuntimeInputError("the input batch is empty", hint="give at least one sample")
        if x.dtype == np.float16 and self.graph.dtype == "float16" and self.dtype == np.float32:
            return x.astype(np.float32)  # a float16 model's own input type, computed in float32: no value changes
        if x.dtype != self.dtype:
            raise RuntimeInputError(
                f"the input is {x.dtype} but this runtime computes in {self.dtype}",
                hint=f"convert it with x.astype(np.{self.dtype})"
                + (", or run with dtype float64 (--dtype float64)" if x.dtype == np.float64 else ""),
            )
        return x

    def activation_bytes_needed(self, batch: int, keep_tape: bool = False) -> int:
        """Activation bytes a run will hold at its peak: the analysis' inference peak, or all of them when taped."""
        key = (batch, keep_tape)
        if key not in self._needed_bytes:  # worked out once per batch size: repeated runs skip the graph walk
            graph = replace(self.graph, batch=batch, dtype=self.dtype.name)
            if keep_tape:  # training keeps the input and every node output for backward
                per_sample = numel(graph.input_shape) + sum(numel(graph.shapes[node.name]) for node in graph.nodes)
                self._needed_bytes[key] = batch * per_sample * self.dtype.itemsize
            else:
                self._needed_bytes[key] = peak_activation_bytes(graph)
        return self._needed_bytes[key]

    def check_memory(self, batch: int, keep_tape: bool = False, extra_bytes: int = 0) -> None:
        """Refuse a run whose activations (plus `extra_bytes` still to allocate, such as a training run's
        gradients and optimizer state) cannot fit in the memory the machine has free right now."""
        activations = self.activation_bytes_needed(batch, keep_tape)
        needed = activations + extra_bytes
        available = _available_memory_for(needed)
        if available is None or needed <= available:
            return
        per_sample = max(1, activations // batch)
        fits = max(0, available - extra_bytes) // per_sample
        what = "activations kept for backward" if keep_tape else "peak live activations"
        extra = f", {_mib(extra_bytes)} of gradients and optimizer state" if extra_bytes else ""
        raise RuntimeInputError(
            f"running {self.graph.name} at batch {batch} needs about {_mib(activations)} for its {what}{extra} "
            f"(plus {_mib(self.weight_bytes)} of weights already loaded; predicted total "
            f"{_mib(needed + self.weight_bytes)}), but only {_mib(available)} is available",
            hint=f"use a batch of at most {fits}" if fits >= 1 else "this model does not fit in memory here",
        )

    # ---- execution -----------------------------------------------------------
    def run(self, x: np.ndarray, *, training: bool = False, record: bool = False, keep_tape: bool = False,
            rng: np.random.Generator | None = None) -> RunResult:
        """Forward over the batch; `training` switches BN to batch statistics and Dropout on (from `rng`).

        In inference a large batch is split over the cores (see `parallel_parts`); records, bytes and the
        live-bytes peak are then the sums over the parts, which equal a whole-batch run's.
        """
        self._tape = None  # free the previous run's activations before allocating new ones
        x = self.check_input(x)
        batch = x.shape[0]
        self.check_memory(batch, keep_tape)
        inference = not (training or keep_tape)
        threads = self._threads_for(batch) if inference else 1
        parts = min(batch, threads)  # as parallel_parts
        # work too small for two threads (see PARALLEL_MIN_MACS_PER_PART) runs all its matmuls on this thread
        small = inference and threads < 2
        beside_others = self._blas_threads_beside_others() if parts == 1 and not small else None
        limit = 1 if small else beside_others
        start = time.perf_counter()
        try:
            if parts > 1:
                output, records, peak = self._run_split(x, parts, record)
            else:
                with limited_blas(limit) if limit else contextlib.nullcontext():
                    output, records, peak, tape = self._run_nodes(x, training, record, keep_tape, rng)
        except MemoryError:
            raise RuntimeInputError(
                f"ran out of memory running {self.graph.name} at batch {batch}",
                hint="use a smaller batch; `cnncalc analyze` shows the memory a batch needs") from None
        total = time.perf_counter() - start
        if keep_tape:
            self._tape = tape
            self._tape_blas_limit = limit
            self._output_shape = tuple(output.shape)
            output = output.view()
            output.flags.writeable = False  # the tape holds this array: editing it would corrupt backward()
        elif np.may_share_memory(output, x):
            output = output.copy()  # an identity network's output is its input: the caller's array
        return RunResult(output, records, peak, total, parts, blas_limited=beside_others is not None)

    def parallel_parts(self, batch: int) -> int:
        """Into how many parts an inference batch is split, each run by its own thread with single-threaded BLAS.

        OpenBLAS splits each matmul between its threads, and cnncalc's own copies and element-wise
        passes run on one thread in between; every tensor is then written by one core and read by the
        other, which costs little where the cores share a cache but up to 15x per cache line where they
        do not (the development VM's two cores are at times on separate dies). A part per core keeps
        each part's tensors on its core and runs the copies on all cores: ResNet-18 at batch 8 ran 11%
        faster with shared caches and 30% without, MobileNetV2 38% (docs/runtime.md). Parts are as many
        as OpenBLAS's threads (so OPENBLAS_NUM_THREADS=1 turns splitting off), the cores this process
        may use and the samples allow, each with at least PARALLEL_MIN_MACS_PER_PART of work.
        """
        return min(batch, self._threads_for(batch))  # 1: not split

    def _threads_for(self, batch: int) -> int:
        """Threads worth using on this batch: at most OpenBLAS's and the usable cores', one per unit of work."""
        threads = blas_threads()
        if threads is None or threads < 2:
            return 1
        cores = _usable_cores()
        if self._macs_per_sample is None:
            shapes = self.graph.shapes
            self._macs_per_sample = sum(node.op.macs([shapes[name] for name in node.inputs], shapes[node.name])
                                        for node in self.graph.nodes)
        return max(1, min(threads, cores, self._macs_per_sample * batch // PARALLEL_MIN_MACS_PER_PART))

    def _blas_threads_beside_others(self) -> int | None:
        """Fewer BLAS threads for a run on one part when other programs run on this process's cores, else None.

        OpenBLAS's threads wait for each other after every matmul, so one that shares its core with another
        program holds up the rest (`_blas.cores_busy_elsewhere`): ResNet-18 at batch 1 beside one busy loop
        took 86 ms on two threads and 49 on one. Split parts need no such care: they meet once per run.
        The count is sampled at each run's start, and a core counts as busy only when it was at the
        previous start too, so that a short-lived process does not cost a run its threads.
        """
        threads = blas_threads()
        if threads is None or threads < 2:
            return None
        busy_now = cores_busy_elsewhere()
        busy = busy_now if self._busy_before is None else min(busy_now, self._busy_before)
        self._busy_before = busy_now
        free = _usable_cores() - busy
        return max(1, free) if busy and free < threads else None

    def _run_split(self, x: np.ndarray, parts: int, record: bool) -> tuple[np.ndarray, list[NodeRecord], int]:
        """Inference on `parts` contiguous slices of the batch at once; the output, merged records and peak."""
        bounds = [round(k * x.shape[0] / parts) for k in range(parts + 1)]
        slices = [x[first:last] for first, last in zip(bounds[:-1], bounds[1:], strict=True)]
        with single_threaded_blas():
            pool = _part_pool(parts - 1)
            futures = [pool.submit(self._run_part, part, parts, record) for part in slices[1:]]
            try:
                results = [self._run_part(slices[0], parts, record)]
            finally:
                wait(futures)  # the other parts finish before BLAS gets its threads back, also after an error
            results += [future.result() for future in futures]
        output = np.concatenate([result[0] for result in results])
        records = [_merged(node_records) for node_records in zip(*(result[1] for result in results), strict=True)]
        return output, records, sum(result[2] for result in results)

    def _run_part(self, x: np.ndarray, parts: int,
                  record: bool) -> tuple[np.ndarray, list[NodeRecord], int, list[_Step]]:
        """One part of a split batch, on the calling thread, with the kernels told how many parts run at once."""
        execution.parts = parts
        try:
            return self._run_nodes(x, False, record, False, None)
        finally:
            execution.parts = 1

    def _run_nodes(self, x: np.ndarray, training: bool, record: bool, keep_tape: bool,
                   rng: np.random.Generator | None) -> tuple[np.ndarray, list[NodeRecord], int, list[_Step]]:
        """The node loop on one batch: the contiguous output, the records, the live-bytes peak and the tape."""
        tape: list[_Step] = []
        records: list[NodeRecord] = []
        env: dict[str, np.ndarray] = {self.graph.input_name: x}
        live = x.nbytes  # the input is live from the start
        peak = live
        for node, freed in zip(self.graph.nodes, self._freed_after, strict=True):
            inputs = [env[name] for name in node.inputs] + self.weights[node.name]
            began = time.perf_counter()
            fwd = node.op.forward(inputs, training=training, rng=rng)
            if record:
                records.append(_record(node, inputs, fwd, time.perf_counter() - began))
            out = fwd.out
            env[node.name] = out
            live += out.nbytes  # the output is allocated while the inputs are still live
            peak = max(peak, live)
            if keep_tape:
                tape.append(_Step(node, inputs, fwd))
                continue
            for name in freed:  # inputs whose last reader this was, and an output nobody reads
                live -= env.pop(name).nbytes
            del inputs, fwd, out  # let this node's cache (im2col columns ...) go before the next node runs
        output = np.ascontiguousarray(env[self.graph.output])  # kernels may return channel-major views
        return output, records, peak, tape

    # ---- training support ------------------------------------------------------
    def backward(self, grad_output: np.ndarray) -> Gradients:
        """Reverse walk of the last taped run; gradients of tensors read twice are summed."""
        if self._tape is None:
            raise CnnCalcError("backward needs a forward pass with keep_tape=True first",
                               hint="call runtime.run(x, training=True, keep_tape=True) before backward")
        if tuple(np.shape(grad_output)) != self._output_shape:
            raise RuntimeInputError(f"the output gradient has shape {tuple(np.shape(grad_output))}, "
                                    f"the output has {self._output_shape}")
        grads: dict[str, np.ndarray] = {self.graph.output: np.asarray(grad_output, dtype=self.dtype)}
        weight_grads: dict[str, list[np.ndarray | None]] = {}
        # the taped run's BLAS threads (fewer where other programs use the cores, see _blas_threads_beside_others)
        with limited_blas(self._tape_blas_limit) if self._tape_blas_limit else contextlib.nullcontext():
            for step in reversed(self._tape):
                node = step.node
                n_act = len(node.inputs)
                grad_out = grads.pop(node.name, None)
                if grad_out is None:  # nothing downstream reads this output: no gradient flows through it
                    weight_grads[node.name] = self._zero_grads(node)
                    continue
                results = node.op.backward(grad_out, step.inputs, step.fwd)
                if len(results) != len(step.inputs):
                    raise CnnCalcError(f"{node.op.op_type}.backward returned {len(results)} gradients "
                                       f"for {len(step.inputs)} inputs at {node.name}")
                for name, grad in zip(node.inputs, results[:n_act], strict=True):
                    if grad is None:
                        continue
                    # accumulate: a tensor read by several nodes (or twice by one) gets the sum of its gradients
                    grads[name] = grads[name] + grad if name in grads else grad
                weight_grads[node.name] = list(results[n_act:])
        ordered = {node.name: weight_grads.get(node.name, []) for node in self.graph.nodes}
        return Gradients(ordered, grads.get(self.graph.input_name))

    def _zero_grads(self, node: Node) -> list[np.ndarray | None]:
        """Zero gradients for the trainable weights of a node that does not reach the output."""
        specs = node.op.weights([self.graph.shapes[name] for name in node.inputs])
        arrays = self.weights[node.name]
        return [np.zeros_like(w) if spec.trainable else None for spec, w in zip(specs, arrays, strict=True)]

    def update_state(self, momentum: float | None = None) -> None:
        """Write the non-trainable state a training forward changed (BN running statistics) into the weights."""
        if self._tape is None:
            raise CnnCalcError("update_state needs a forward pass with keep_tape=True first")
        for step in self._tape:
            n_act = len(step.node.inputs)
            for index, value in step.node.op.updated_state(step.inputs, step.fwd, momentum).items():
                target = self.weights[step.node.name][index - n_act]
                target[...] = value  # in place, so anyone holding the weights dict sees it

    def clear_tape(self) -> None:
        """Drop the kept activations of the last taped run."""
        self._tape = None


# ---- measuring runs (for `cnncalc run` and the benchmarks) --------------------------
@dataclass
class LayerTiming:
    """One node over repeated runs: its record and the median of its times."""

    name: str
    op_type: str
    shape: Shape
    macs: int
    output_bytes: int
    time_s: float  # median over the repeats


@dataclass
class RunSummary:
    """Repeated runs of one model on one batch: latency, throughput, per-layer times, memory, and an optional check."""

    model: str
    batch: int
    dtype: str
    repeat: int
    latency_s: float  # median wall time of the node loop
    latency_min_s: float
    macs: int
    peak_live_bytes: int
    predicted_peak_bytes: int  # analysis.peak_activation_bytes at this batch and dtype
    weight_bytes: int
    layers: list[LayerTiming]
    output: np.ndarray = field(repr=False)
    check: dict[str, Any] | None = None  # onnxruntime comparison: max_abs_diff, max_rel_diff, version
    parts: int = 1  # threads the batch was split over, each running its part through the whole network
    blas_limited_runs: int = 0  # timed runs on fewer BLAS threads: other programs ran on this process's cores

    @property
    def throughput_per_s(self) -> float:
        """Samples per second at the median latency."""
        return self.batch / self.latency_s if self.latency_s > 0 else float("inf")

    @property
    def achieved_flops_per_s(self) -> float:
        """2 FLOPs per executed MAC over the median latency."""
        return 2 * self.macs / self.latency_s if self.latency_s > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        """Everything but the output array, in units named by the keys."""
        return {
            "model": self.model, "batch": self.batch, "dtype": self.dtype, "repeat": self.repeat,
            "latency_ms": self.latency_s * 1e3, "latency_min_ms": self.latency_min_s * 1e3,
            "throughput_per_s": self.throughput_per_s, "macs": self.macs,
            "achieved_gflops_per_s": self.achieved_flops_per_s / 1e9,
            "peak_live_bytes": self.peak_live_bytes, "predicted_peak_bytes": self.predicted_peak_bytes,
            "weight_bytes": self.weight_bytes, "output_shape": list(self.output.shape), "parts": self.parts,
            "blas_limited_runs": self.blas_limited_runs,
            "layers": [{"name": t.name, "op_type": t.op_type, "shape": list(t.shape), "macs": t.macs,
                        "output_bytes": t.output_bytes, "time_ms": t.time_s * 1e3} for t in self.layers],
            "check": self.check,
        }

    def table_rows(self) -> tuple[list[str], list[list[str]]]:
        """Per-layer rows then a total row, as text cells."""
        header = ["layer", "op", "output", "MACs", "output MiB", "time ms", "share"]
        total = sum(t.time_s for t in self.layers) or 1.0
        rows = [[t.name, t.op_type, show_shape(t.shape), f"{t.macs:,}", f"{t.output_bytes / 2**20:.2f}",
                 f"{t.time_s * 1e3:.3f}", f"{100 * t.time_s / total:.1f}%"] for t in self.layers]
        rows.append(["total", "", show_shape(tuple(self.output.shape[1:])), f"{self.macs:,}",
                     f"peak {self.peak_live_bytes / 2**20:.2f}", f"{self.latency_s * 1e3:.3f}", ""])
        return header, rows


def measure(runtime: Runtime, x: np.ndarray, repeat: int = 1) -> RunSummary:
    """Run `repeat` times with records (after one uncounted warm-up run when repeat > 1) and summarize."""
    if repeat < 1:
        raise CnnCalcError(f"repeat must be at least 1, got {repeat}")
    if repeat > 1:
        runtime.run(x)
    results = [runtime.run(x, record=True) for _ in range(repeat)]
    first = results[0]
    layers = [
        LayerTiming(r.name, r.op_type, r.shape, r.macs, r.output_bytes,
                    float(np.median([result.records[i].time_s for result in results])))
        for i, r in enumerate(first.records)
    ]
    times = [result.time_s for result in results]
    batch = x.shape[0]
    graph = replace(runtime.graph, batch=batch, dtype=runtime.dtype.name)
    return RunSummary(
        model=runtime.graph.name, batch=batch, dtype=runtime.dtype.name, repeat=repeat,
        latency_s=float(np.median(times)), latency_min_s=min(times), macs=first.macs,
        peak_live_bytes=first.peak_live_bytes, predicted_peak_bytes=peak_activation_bytes(graph),
        weight_bytes=runtime.weight_bytes, layers=layers, output=first.output, parts=first.parts,
        blas_limited_runs=sum(result.blas_limited for result in results),
    )


def _usable_cores() -> int:
    """Cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def random_input(runtime: Runtime, batch: int, seed: int = 0) -> np.ndarray:
    """A standard-normal NCHW batch for the model, after checking that the run fits in memory."""
    if batch < 1:
        raise RuntimeInputError(f"batch must be at least 1, got {batch}")
    runtime.check_memory(batch)
    rng = np.random.default_rng(seed)
    return rng.standard_normal((batch, *runtime.input_shape), dtype=runtime.dtype)


def read_input(path: str | Path, runtime: Runtime) -> np.ndarray:
    """An input batch from a .npy file, or a .npz holding one array (np.savez('x.npz', x)); shape, dtype and
    memory are checked on the array's header before its data is read."""
    import zipfile

    from .fileio import npz_array_names, npz_array_stand_in

    where = Path(path)
    if not where.is_file():
        raise RuntimeInputError(f"input file {where} {'is a folder' if where.is_dir() else 'does not exist'}",
                                hint="give an existing .npy file, or leave out --input for a random batch")
    kind: str | None = None
    member = ""  # the one array of a .npz
    try:
        kind = numpy_file_kind(where)
        if kind is None:
            raise RuntimeInputError(f"{where} is not a .npy file: it does not start with NumPy's .npy header",
                                    hint="save the input with np.save('x.npy', x)")
        if kind == "npz":
            names = npz_array_names(where)
            if len(names) != 1:
                held = f"{len(names)} arrays ({', '.join(names)})" if names else "no arrays"
                raise RuntimeInputError(f"{where} holds {held}, not one input batch",
                                        hint="give a .npy file, or a .npz holding only the input: np.savez('x.npz', x)")
            member = names[0]
            mapped = npz_array_stand_in(where, member)  # the header only: nothing is decompressed yet
            if mapped.dtype.hasobject:  # np.load would refuse it only after decompressing
                raise ValueError("Object arrays cannot be loaded when allow_pickle=False")
        else:
            mapped = np.load(where, mmap_mode="r", allow_pickle=False)  # maps the file: nothing is read yet
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise _unreadable_input(where, kind, error) from None
    try:
        runtime.check_input(mapped)
        runtime.check_memory(mapped.shape[0])
    except RuntimeInputError as error:
        raise RuntimeInputError(f"{where}: {error.message}", hint=error.hint) from None
    if kind == "npz":
        try:
            with np.load(where, allow_pickle=False) as arrays:
                return np.array(arrays[member])
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:  # e.g. a damaged compressed member
            raise _unreadable_input(where, kind, error) from None
    return np.array(mapped)  # read into memory


def _unreadable_input(where: Path, kind: str | None, error: Exception) -> RuntimeInputError:
    """NumPy's or zipfile's reason, for the kind of file the first bytes promised."""
    if kind == "npz":
        return RuntimeInputError(f"cannot read {where} as a .npz archive: {numpy_load_problem(error)}",
                                 hint="save the input with np.savez('x.npz', x)")
    return RuntimeInputError(f"cannot read {where} as a .npy array: {numpy_load_problem(error)}",
                             hint="save the input with np.save('x.npy', x)")


class OnnxruntimeLacksKernel(CnnCalcError):
    """onnxruntime cannot run the model at all (e.g. Conv in float64): nothing to compare with."""


def _onnxruntime_failure(error: Exception) -> CnnCalcError:
    """onnxruntime's error on one line; a kernel it lacks (it resolves them when loading) as its own kind."""
    text = " ".join(str(error).split())
    if "NOT_IMPLEMENTED" in text:
        return OnnxruntimeLacksKernel(f"onnxruntime has no kernel for this model: {text}",
                                      hint="its CPU provider lacks some float64 ops; compare a float32 export instead")
    return CnnCalcError(f"onnxruntime could not run the model: {text}")


ORT_INPUT_TYPES = {"tensor(double)": np.float64, "tensor(float16)": np.float16}


def check_with_onnxruntime(model: Any, input_name: str, x: np.ndarray, output: np.ndarray,
                           threads: int | None = None) -> dict[str, Any]:
    """Run the same ONNX model (path or ModelProto) in onnxruntime and compare: max absolute and relative difference."""
    try:
        import onnxruntime
    except ImportError:
        raise CnnCalcError("--check needs onnxruntime, which is not installed",
                           hint="pip install onnxruntime, or run without --check") from None
    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    source = model if isinstance(model, (str, Path)) else model.SerializeToString()
    try:
        session = onnxruntime.InferenceSession(str(source) if isinstance(source, Path) else source, options,
                                               providers=["CPUExecutionProvider"])
        wanted = ORT_INPUT_TYPES.get(session.get_inputs()[0].type, np.float32)  # the file's own element type
        fixed = session.get_inputs()[0].shape[0]
    except Exception as error:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise _onnxruntime_failure(error) from None
    if isinstance(fixed, int) and fixed != x.shape[0]:
        raise RuntimeInputError(f"the model fixes its batch to {fixed} and onnxruntime runs no other; "
                                f"this input has {x.shape[0]}",
                                hint=f"run it at batch {fixed} (--batch {fixed}, or an --input of {fixed} samples)")
    try:
        expected = session.run(None, {input_name: x.astype(wanted, copy=False)})[0]
    except Exception as error:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise _onnxruntime_failure(error) from None
    if expected.shape != output.shape:
        raise CnnCalcError(f"onnxruntime's output has shape {expected.shape}, cnncalc's {output.shape}")
    ours_bad, theirs_bad = int((~np.isfinite(output)).sum()), int((~np.isfinite(expected)).sum())
    if ours_bad or theirs_bad:  # a difference of NaN compares as neither agreement nor disagreement
        raise RuntimeInputError(f"the outputs hold NaN or infinite values (cnncalc {ours_bad:,}, onnxruntime "
                                f"{theirs_bad:,} of {output.size:,}): no difference can be taken",
                                hint="check the input and the model's weights for NaN, infinite or huge values")
    difference = np.abs(expected.astype(np.float64) - output.astype(np.float64))
    scale = float(np.abs(expected).max()) or 1.0
    return {"max_abs_diff": float(difference.max()), "max_rel_diff": float(difference.max()) / scale,
            "onnxruntime": onnxruntime.__version__}


# ---- helpers -----------------------------------------------------------------
def _runtime_dtype(dtype: Any) -> np.dtype:
    """float32 or float64 as a NumPy dtype, or a clear error."""
    try:
        resolved = np.dtype(dtype) if dtype is not None else None  # np.dtype(None) is float64
    except TypeError:
        resolved = None
    if resolved is None or resolved.name not in DTYPES:
        raise CnnCalcError(f"the NumPy backend computes in float32 or float64, not {dtype}",
                           hint="use dtype=np.float32 (the default) or np.float64")
    return resolved


def _check_runnable(graph: Graph) -> None:
    """Refuse, before anything runs, a graph with nodes that have no NumPy kernel."""
    if graph.unsupported:
        raise UnsupportedOpError(
            f"cannot run {graph.name}: the import skipped ops cnncalc has no kernel for "
            f"({', '.join(graph.unsupported)})",
            hint="run the model with onnxruntime; cnncalc can still analyse it with --allow-unsupported")
    missing: dict[str, list[str]] = {}
    for node in graph.nodes:
        if type(node.op).forward is Op.forward:
            missing.setdefault(node.op.op_type, []).append(node.name)
    if missing:
        listed = "; ".join(f"{op} at {', '.join(names)}" for op, names in missing.items())
        raise UnsupportedOpError(f"cannot run {graph.name}: no NumPy kernel for {listed}", ops=missing)


def _checked_weights(graph: Graph, weights: Weights, dtype: np.dtype) -> Weights:
    """Every node's weights, checked against its WeightSpecs, cast to the runtime dtype, writeable (else no copy)."""
    checked: Weights = {}
    for node in graph.nodes:
        specs = node.op.weights([graph.shapes[name] for name in node.inputs])
        arrays = weights.get(node.name, [])
        if len(arrays) != len(specs):
            raise RuntimeInputError(
                f"layer {node.name} needs {len(specs)} weight arrays "
                f"({', '.join(spec.name for spec in specs) or 'none'}) but {len(arrays)} were given",
                hint="build the weights with cnncalc.weights.init_weights(graph) or load them from the ONNX file")
        cast = []
        for spec, array in zip(specs, arrays, strict=True):
            if tuple(np.shape(array)) != tuple(spec.shape):
                raise RuntimeInputError(f"weight {node.name}.{spec.name} has shape {list(np.shape(array))}, "
                                        f"the layer needs {list(spec.shape)}")
            converted = np.asarray(array, dtype=dtype)
            if not converted.flags.writeable:  # e.g. a view of the ONNX file's bytes: training updates in place
                converted = converted.copy()
            cast.append(converted)
        checked[node.name] = cast
    return checked


def _record(node: Node, inputs: list[np.ndarray], fwd: Forward, elapsed: float) -> NodeRecord:
    """The record of one executed node."""
    out = fwd.out
    return NodeRecord(
        name=node.name, op_type=node.op.op_type, shape=tuple(out.shape[1:]), dtype=out.dtype.name,
        macs=int(fwd.macs), output_bytes=out.nbytes, cache_bytes=_cache_bytes(fwd.cache, [*inputs, out]),
        time_s=elapsed,
    )


def _merged(parts: tuple[NodeRecord, ...]) -> NodeRecord:
    """One node's record over the parts of a split batch: MACs and bytes add up, the time is the slowest part's."""
    first = parts[0]
    return replace(first, macs=sum(part.macs for part in parts), output_bytes=sum(part.output_bytes for part in parts),
                   cache_bytes=sum(part.cache_bytes for part in parts), time_s=max(part.time_s for part in parts))


#: the least work (MACs) worth a thread of its own. Split in two against whole (medians of three
#: alternating processes each): LeNet-5 at batch 16 (6.7 million MACs) 0.88-1.08 -> 0.97-1.22 ms, at 32
#: (13 million) even, at 64 (27 million) 2.3 -> 1.8-2.2 ms; a two-conv CIFAR net at batch 32 (180 million)
#: 5.0-5.5 -> 4.4-4.8 ms; MobileNetV2 at batch 2 44-49 -> 28-30 ms
PARALLEL_MIN_MACS_PER_PART = 10_000_000
_PART_POOL: ThreadPoolExecutor | None = None
_PART_POOL_PID = 0  # the process that made the pool: a child forked after a split run has none of its threads


def _part_pool(workers: int) -> ThreadPoolExecutor:
    """The threads that run the parts of split batches beside the caller's (created once, grown on demand)."""
    global _PART_POOL, _PART_POOL_PID
    if _PART_POOL is None or _PART_POOL._max_workers < workers or _PART_POOL_PID != os.getpid():  # noqa: SLF001
        _PART_POOL = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cnncalc-part")
        _PART_POOL_PID = os.getpid()
    return _PART_POOL


def _owner(array: np.ndarray) -> np.ndarray:
    """The array that owns the memory a view looks at."""
    while isinstance(array.base, np.ndarray):
        array = array.base
    return array


def _cache_bytes(cache: Any, known: list[np.ndarray]) -> int:
    """Bytes of the arrays in a forward cache that are neither the inputs nor the output (nor views of them)."""
    seen = {id(_owner(array)) for array in known}
    total = 0
    stack = [cache]
    while stack:
        item = stack.pop()
        if isinstance(item, np.ndarray):
            owner = _owner(item)
            if id(owner) not in seen:
                seen.add(id(owner))
                total += owner.nbytes
        elif isinstance(item, (tuple, list)):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
    return total


def _shape_hint(shape: tuple[int, ...], expected: Shape) -> str:
    """The likely fix for an input of the wrong shape."""
    if shape == tuple(expected):
        return "add the batch axis: x[None]"
    if len(expected) == 3 and len(shape) == 4 and shape[1:] == (expected[1], expected[2], expected[0]):
        return "the input looks NHWC; the model takes NCHW: x.transpose(0, 3, 1, 2)"
    if len(expected) == 3 and len(shape) == 3 and shape == (expected[1], expected[2], expected[0]):
        return "the input looks like one HxWxC image; give x.transpose(2, 0, 1)[None]"
    return f"give an array of shape (N, {', '.join(str(d) for d in expected)})"


def _mib(nbytes: int) -> str:
    """Bytes as MiB (or GiB) for messages."""
    if nbytes >= 1 << 30:
        return f"{nbytes / (1 << 30):.2f} GiB"
    return f"{nbytes / (1 << 20):.1f} MiB"


#: A reading of the free memory is reused for this long when it was at least MEMORY_READING_MARGIN times
#: what a run needs: reading /proc/meminfo costs about 40 us, 15% of a LeNet-5 run at batch 1.
MEMORY_READING_TTL_S = 1.0
MEMORY_READING_MARGIN = 4
_last_memory_reading: tuple[float, int] | None = None  # (time.monotonic(), bytes available)


def _available_memory_for(needed: int) -> int | None:
    """The free memory to check a run against: a fresh reading, unless a recent one left ample room."""
    global _last_memory_reading
    now = time.monotonic()
    last = _last_memory_reading
    if last is not None and now - last[0] < MEMORY_READING_TTL_S and needed * MEMORY_READING_MARGIN <= last[1]:
        return last[1]
    available = available_memory_bytes()
    _last_memory_reading = None if available is None else (now, available)
    return available


def available_memory_bytes() -> int | None:
    """MemAvailable from /proc/meminfo (what can be allocated without swapping), or None when unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # the file counts kB
    except (OSError, ValueError, IndexError):
        return None
    return None


_MALLOC_TUNED = False
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameter numbers (malloc.h)


def keep_freed_memory() -> None:
    """Ask glibc to keep freed tensor memory for reuse instead of unmapping it (once per process).

    By default glibc serves every large array from a fresh mmap and unmaps it on free, so each
    node's output is page-faulted in again: on ResNet-50 that costs more time than ReLU, BN and
    Add themselves. Keeping freed blocks in the heap is what an arena allocator gives onnxruntime.
    Peak RSS is unchanged (the freed blocks are reused for the next tensors). Skipped off glibc and
    when CNNCALC_MALLOC=system is set.
    """
    global _MALLOC_TUNED
    if _MALLOC_TUNED or not sys.platform.startswith("linux") or os.environ.get("CNNCALC_MALLOC") == "system":
        return
    _MALLOC_TUNED = True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_MMAP_THRESHOLD, 1 << 30)  # arrays below 1 GiB come from the heap
    mallopt(_M_TRIM_THRESHOLD, 1 << 30)  # and up to 1 GiB of free heap top is kept for reuse
