"""The NumPy runtime against onnxruntime, against the analysis, and its backward against finite differences."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from cnncalc import _blas as blas
from cnncalc import runtime as runtime_module
from cnncalc.analysis import analyze
from cnncalc.errors import CnnCalcError, RuntimeInputError, UnsupportedOpError
from cnncalc.ir import Graph, Node
from cnncalc.onnx_io import to_onnx
from cnncalc.ops.add import Add
from cnncalc.ops.base import execution
from cnncalc.ops.batchnormalization import BatchNormalization
from cnncalc.ops.clip import Clip
from cnncalc.ops.concat import Concat
from cnncalc.ops.conv import Conv
from cnncalc.ops.flatten import Flatten
from cnncalc.ops.gemm import Gemm
from cnncalc.ops.globalaveragepool import GlobalAveragePool
from cnncalc.ops.maxpool import MaxPool
from cnncalc.ops.relu import Relu
from cnncalc.runtime import Runtime
from cnncalc.spec import parse
from cnncalc.specfile import load
from cnncalc.weights import init_weights

SPECS = sorted(Path(__file__).resolve().parent.parent.glob("specs/*.yaml"))
RTOL = 1e-4  # the acceptance bound: max |ours - onnxruntime| / max |onnxruntime| in float32


# ---- graphs --------------------------------------------------------------------
def residual_graph() -> Graph:
    """A projection residual block: the input feeds both branches (fan-out), then pool, FC."""
    p1 = (1, 1, 1, 1)
    nodes = (
        Node("c1", Conv((3, 3), 3, 4, pads=p1, bias=False), ("input",)),
        Node("bn1", BatchNormalization(), ("c1",)),
        Node("r1", Relu(), ("bn1",)),
        Node("c2", Conv((3, 3), 4, 4, strides=(2, 2), pads=p1), ("r1",)),
        Node("short", Conv((1, 1), 3, 4, strides=(2, 2)), ("input",)),
        Node("sum", Add(), ("c2", "short")),
        Node("r2", Relu(), ("sum",)),
        Node("mp", MaxPool((3, 3), (1, 1), p1), ("r2",)),
        Node("gap", GlobalAveragePool(), ("mp",)),
        Node("flat", Flatten(), ("gap",)),
        Node("fc", Gemm(4, 5), ("flat",)),
    )
    return Graph("residual", (3, 8, 8), nodes, "fc")


def branchy_graph() -> Graph:
    """Depthwise conv, concats of branches, a tensor added to itself, an output nobody reads, an unpadded pool."""
    nodes = (
        Node("dw", Conv((3, 3), 4, 8, pads=(1, 1, 1, 1), group=4), ("input",)),  # depth multiplier 2
        Node("r6", Clip(0.0, 6.0), ("dw",)),
        Node("a", Conv((1, 1), 8, 3), ("r6",)),
        Node("b", Conv((3, 3), 8, 5, pads=(1, 1, 1, 1), dilations=(1, 1)), ("r6",)),
        Node("cat", Concat(), ("a", "b")),
        Node("dead", Relu(), ("cat",)),  # read by no one: dropped at once
        Node("twice", Add(), ("cat", "cat")),  # reads one tensor twice: its gradient is doubled
        Node("gap", GlobalAveragePool(), ("twice",)),
        Node("mp0", MaxPool((2, 2), (2, 2)), ("input",)),  # unpadded: pools straight from the input array
        Node("gap0", GlobalAveragePool(), ("mp0",)),
        Node("out", Concat(), ("gap", "gap0")),
    )
    return Graph("branchy", (4, 6, 7), nodes, "out")


def onnxruntime_output(graph: Graph, weights: dict, x: np.ndarray) -> np.ndarray:
    """The same graph and weights through onnxruntime."""
    model = to_onnx(graph, weights)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {graph.input_name: x})[0]


def relative_error(ours: np.ndarray, reference: np.ndarray) -> float:
    return float(np.abs(ours - reference).max() / max(np.abs(reference).max(), 1e-30))


def check_against_analysis(graph: Graph, result: runtime_module.RunResult, batch: int, dtype: str) -> None:
    """Shapes, MACs, dtype per node and the peak of live bytes equal what the analysis predicts."""
    report = analyze(graph, batch=batch, dtype=dtype)
    assert [r.name for r in result.records] == [layer.name for layer in report.layers]
    for record, layer in zip(result.records, report.layers, strict=True):
        assert record.shape == layer.shape, record.name
        assert record.macs == layer.macs, record.name
        assert record.output_bytes == layer.activation_bytes, record.name
        assert record.dtype == dtype, record.name
    assert result.peak_live_bytes == report.totals.peak_activation_bytes


# ---- forward: values, shapes, MACs, memory ----------------------------------------
@pytest.mark.parametrize("make", [residual_graph, branchy_graph])
def test_small_graphs_match_onnxruntime_and_analysis(make) -> None:
    graph = make()
    weights = init_weights(graph, seed=3)
    # BN statistics that are not the identity, so the running-statistics path is exercised
    for name in [n.name for n in graph.nodes if isinstance(n.op, BatchNormalization)]:
        rng = np.random.default_rng(7)
        weights[name] = [rng.uniform(0.5, 1.5, a.shape).astype(np.float32) for a in weights[name]]
    x = np.random.default_rng(0).standard_normal((3, *graph.input_shape)).astype(np.float32)
    given = x.copy()
    result = Runtime(graph, weights).run(x, record=True)
    assert np.array_equal(x, given)  # no kernel writes into its input
    assert relative_error(result.output, onnxruntime_output(graph, weights, x)) < RTOL
    check_against_analysis(graph, result, batch=3, dtype="float32")


@pytest.mark.parametrize("make", [residual_graph, branchy_graph])
def test_convs_in_sample_chunks_still_match_onnxruntime_and_analysis(make, monkeypatch) -> None:
    # force every conv with columns onto the chunked path (one sample per chunk), as ResNet's big layers at batch 8
    from cnncalc.ops import conv as conv_module

    graph = make()
    weights = init_weights(graph, seed=3)
    x = np.random.default_rng(0).standard_normal((3, *graph.input_shape)).astype(np.float32)
    whole = Runtime(graph, weights).run(x, record=True)
    monkeypatch.setattr(conv_module, "COLUMNS_CHUNKED_ABOVE", 0)
    monkeypatch.setattr(conv_module, "COLUMN_CHUNK_BYTES", 1)
    result = Runtime(graph, weights).run(x, record=True)
    assert relative_error(result.output, onnxruntime_output(graph, weights, x)) < RTOL
    check_against_analysis(graph, result, batch=3, dtype="float32")
    # the chunked convs kept no columns: proof that the chunked path ran
    kept = {r.name: r.cache_bytes for r in whole.records if r.op_type == "Conv"}
    assert any(kept[r.name] > 0 and r.cache_bytes == 0 for r in result.records if r.op_type == "Conv")


def test_peak_by_hand_for_the_residual_graph() -> None:
    # batch 2, float32 (4 bytes). Sizes per sample: input 3*8*8 = 192, c1/bn1/r1 4*8*8 = 256,
    # c2/short/sum/r2/mp 4*4*4 = 64, gap 4, flat 4, fc 5.
    # The input lives until `short` reads it, so while r1 (256) is computed: input 192 + bn1 256 + r1 256
    # = 704 elements live, the largest sum -> 704 * 2 samples * 4 bytes = 5632 bytes.
    graph = residual_graph()
    x = np.zeros((2, 3, 8, 8), dtype=np.float32)
    assert Runtime.from_graph(graph).run(x).peak_live_bytes == 704 * 2 * 4


def test_float64_peak_and_values() -> None:
    graph = residual_graph()
    weights = init_weights(graph, seed=1, dtype=np.float64)
    x = np.random.default_rng(1).standard_normal((2, 3, 8, 8))
    result = Runtime(graph, weights, dtype=np.float64).run(x, record=True)
    check_against_analysis(graph, result, batch=2, dtype="float64")
    assert result.output.dtype == np.float64
    low = Runtime(graph, weights).run(x.astype(np.float32)).output  # same weights, cast down
    assert relative_error(low, result.output) < 1e-5


def test_taped_run_keeps_every_activation() -> None:
    # with the tape nothing is freed: the peak is the input plus every node output, the analysis'
    # training figure for kept activations
    graph = branchy_graph()
    x = np.ones((2, *graph.input_shape), dtype=np.float32)
    result = Runtime.from_graph(graph).run(x, keep_tape=True)
    totals = analyze(graph, batch=2).totals
    assert result.peak_live_bytes == totals.input_bytes + totals.activation_bytes


def test_records_time_and_cache() -> None:
    graph = residual_graph()
    x = np.ones((2, 3, 8, 8), dtype=np.float32)
    records = {r.name: r for r in Runtime.from_graph(graph).run(x, record=True).records}
    # c1's im2col columns: (Cin*kh*kw, N*Ho*Wo) = 27 * 2 * 64 floats
    assert records["c1"].cache_bytes == 27 * 2 * 64 * 4
    assert records["c2"].cache_bytes == 36 * 2 * 4 * 4 * 4  # 4*3*3 rows of N*Ho*Wo = 2*4*4
    assert records["short"].cache_bytes == 2 * 3 * 16 * 4  # 1x1 stride 2: every other pixel copied
    assert all(r.time_s >= 0 for r in records.values())


# ---- inference batches split over threads ---------------------------------------------
def allow_split(monkeypatch, threads: int) -> None:
    """Pretend OpenBLAS has `threads` threads and the process as many cores, and make any work worth a part."""
    monkeypatch.setattr(runtime_module, "blas_threads", lambda: threads)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(threads)), raising=False)
    monkeypatch.setattr(runtime_module, "PARALLEL_MIN_MACS_PER_PART", 1)


def spy_on_parts(monkeypatch) -> list[tuple[bool, int]]:
    """Per part run: whether it ran on the main thread, and its samples."""
    calls: list[tuple[bool, int]] = []
    original = Runtime._run_part

    def spy(self, x, parts, record):
        calls.append((threading.current_thread() is threading.main_thread(), x.shape[0]))
        return original(self, x, parts, record)

    monkeypatch.setattr(Runtime, "_run_part", spy)
    return calls


@pytest.mark.parametrize("make", [residual_graph, branchy_graph])
def test_split_batch_matches_the_whole_batch_onnxruntime_and_analysis(make, monkeypatch) -> None:
    graph = make()
    weights = init_weights(graph, seed=3)
    x = np.random.default_rng(0).standard_normal((5, *graph.input_shape)).astype(np.float32)
    given = x.copy()
    whole = Runtime(graph, weights).run(x, record=True)
    allow_split(monkeypatch, threads=3)
    calls = spy_on_parts(monkeypatch)
    runtime = Runtime(graph, weights)
    assert runtime.parallel_parts(5) == 3
    split = runtime.run(x, record=True)
    # 5 samples in 3 parts cut at round(5k/3) = 0, 2, 3, 5: the first part on the caller's thread
    assert sorted(calls) == [(False, 1), (False, 2), (True, 2)]
    assert (whole.parts, split.parts) == (1, 3)
    assert np.array_equal(x, given)
    assert relative_error(split.output, whole.output) < 1e-6  # the same kernels on fewer samples
    assert relative_error(split.output, onnxruntime_output(graph, weights, x)) < RTOL
    # the parts' MACs, bytes and live-bytes peaks add up to the whole batch's analysis
    check_against_analysis(graph, split, batch=5, dtype="float32")


def test_only_large_inference_batches_are_split(monkeypatch) -> None:
    graph = residual_graph()
    runtime = Runtime.from_graph(graph)
    allow_split(monkeypatch, threads=2)
    macs = analyze(graph, batch=1).totals.macs
    monkeypatch.setattr(runtime_module, "PARALLEL_MIN_MACS_PER_PART", 2 * macs)  # a part needs two samples' work
    assert runtime.parallel_parts(1) == 1
    assert runtime.parallel_parts(3) == 1  # 3 samples' work makes one part of two samples' work
    assert runtime.parallel_parts(4) == 2
    assert runtime.parallel_parts(40) == 2  # no more parts than BLAS threads and cores
    monkeypatch.setattr(runtime_module, "blas_threads", lambda: 1)  # OPENBLAS_NUM_THREADS=1
    assert runtime.parallel_parts(40) == 1
    monkeypatch.setattr(runtime_module, "blas_threads", lambda: None)  # NumPy not on OpenBLAS
    assert runtime.parallel_parts(40) == 1
    monkeypatch.setattr(runtime_module, "blas_threads", lambda: 8)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)  # taskset to one core
    assert runtime.parallel_parts(40) == 1
    # training (BN's batch statistics) and taped runs always see the whole batch
    allow_split(monkeypatch, threads=2)
    calls = spy_on_parts(monkeypatch)
    x = np.ones((4, *graph.input_shape), np.float32)
    runtime.run(x, training=True)
    runtime.run(x, keep_tape=True)
    assert calls == []
    runtime.run(x)
    assert len(calls) == 2


def test_cli_run_says_how_the_batch_was_split(monkeypatch) -> None:
    allow_split(monkeypatch, threads=2)
    text = cli(CHAIN, "--batch", "4")
    assert text.exit_code == 0, text.output
    assert "split over 2 threads" in text.stdout
    data = json.loads(cli(CHAIN, "--batch", "4", "--format", "json").stdout)
    assert data["parts"] == 2
    assert data["peak_live_bytes"] == data["predicted_peak_bytes"]


def record_blas_limits(monkeypatch) -> list[int]:
    """The thread limit of every run that set one (runtime.limited_blas), in order; BLAS itself is left alone."""
    import contextlib

    limits: list[int] = []

    @contextlib.contextmanager
    def recording(threads: int):
        limits.append(threads)
        yield

    monkeypatch.setattr(runtime_module, "limited_blas", recording)
    return limits


def test_small_work_runs_its_matmuls_on_one_thread(monkeypatch) -> None:
    entered = record_blas_limits(monkeypatch)
    monkeypatch.setattr(runtime_module, "cores_busy_elsewhere", lambda: 0)  # an idle machine
    graph = residual_graph()
    runtime = Runtime.from_graph(graph)
    x = np.ones((1, *graph.input_shape), np.float32)
    allow_split(monkeypatch, threads=2)
    macs = analyze(graph, batch=1).totals.macs
    monkeypatch.setattr(runtime_module, "PARALLEL_MIN_MACS_PER_PART", macs + 1)  # one sample: less than a part
    runtime.run(x)
    assert entered == [1]  # one thread
    runtime.run(x, training=True)  # training keeps OpenBLAS as it is
    assert len(entered) == 1
    monkeypatch.setattr(runtime_module, "PARALLEL_MIN_MACS_PER_PART", macs // 2)  # worth two threads
    runtime.run(x)  # batch 1 does not split, so OpenBLAS keeps its threads
    assert len(entered) == 1


def test_batch_1_takes_fewer_blas_threads_while_other_programs_use_the_cores(monkeypatch) -> None:
    limits = record_blas_limits(monkeypatch)
    graph = residual_graph()
    runtime = Runtime.from_graph(graph)
    x = np.ones((1, *graph.input_shape), np.float32)
    allow_split(monkeypatch, threads=2)  # two cores, two BLAS threads, any work worth both
    busy = iter([1, 1, 0, 1, 1])  # cores other programs run on, at each run's start
    monkeypatch.setattr(runtime_module, "cores_busy_elsewhere", lambda: next(busy))
    flags = [runtime.run(x).blas_limited for _ in range(5)]
    # run 1: busy, nothing known before -> one thread; run 2: busy twice -> one thread; run 3: free;
    # run 4: busy now but free before (a short-lived process) -> both threads; run 5: busy twice -> one
    assert flags == [True, True, False, False, True] and limits == [1, 1, 1]
    x8 = np.ones((8, *graph.input_shape), np.float32)
    monkeypatch.setattr(runtime_module, "cores_busy_elsewhere", lambda: 1)
    assert runtime.run(x8).parts == 2 and len(limits) == 3  # split parts meet once a run: left as they are
    # training: the taped forward and its backward both take the limit
    runtime.run(x, training=True, keep_tape=True)
    assert limits[3:] == [1]
    runtime.backward(np.ones((1, *graph.shapes[graph.output]), np.float32))
    assert limits[3:] == [1, 1]


def test_cores_busy_elsewhere_reads_the_kernels_counts() -> None:
    assert blas.running_threads("0.52 0.58 0.59 3/467 12345\n") == 3  # /proc/loadavg: running/total threads
    # two others running on a 2-core machine that this process may use whole: both cores are shared
    assert blas.busy_on_our_cores(running_elsewhere=2, host_cores=2, our_cores=2) == 2
    # one other on a 64-core host, this process pinned to 2 cores: it runs on one of the other 62
    assert blas.busy_on_our_cores(running_elsewhere=1, host_cores=64, our_cores=2) == 0
    # 63 others on that host: 62 fill the other cores, the 63rd shares one of ours
    assert blas.busy_on_our_cores(running_elsewhere=63, host_cores=64, our_cores=2) == 1
    assert blas.busy_on_our_cores(running_elsewhere=500, host_cores=64, our_cores=2) == 2  # at most ours
    assert 0 <= blas.cores_busy_elsewhere() <= len(os.sched_getaffinity(0))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_process_forked_after_a_split_run_can_split_again(monkeypatch) -> None:
    # a forked child inherits the pool object but none of its threads; a part handed to it would never run
    graph = residual_graph()
    runtime = Runtime.from_graph(graph)
    allow_split(monkeypatch, threads=2)
    x = np.ones((4, *graph.input_shape), np.float32)
    expected = runtime.run(x).output
    pid = os.fork()
    if pid == 0:  # the child: exit code 0 only if the split run finishes with the same output
        try:
            os._exit(0 if np.array_equal(runtime.run(x).output, expected) else 1)
        finally:
            os._exit(2)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            return
        time.sleep(0.05)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    pytest.fail("the forked child's split run did not finish")


def test_single_threaded_blas_restores_the_thread_count() -> None:
    before = blas.blas_threads()
    if before is None:
        pytest.skip("NumPy does not use OpenBLAS here")
    with blas.single_threaded_blas():
        assert blas.blas_threads() == 1
        with blas.single_threaded_blas():
            assert blas.blas_threads() == 1
        assert blas.blas_threads() == 1  # the inner block does not restore early
    assert blas.blas_threads() == before
    with pytest.raises(ValueError), blas.single_threaded_blas():
        raise ValueError
    assert blas.blas_threads() == before


def test_a_failing_part_is_a_clear_error_and_blas_gets_its_threads_back(monkeypatch) -> None:
    before = blas.blas_threads()
    runtime = Runtime.from_graph(residual_graph())
    allow_split(monkeypatch, threads=2)
    original = Runtime._run_nodes

    def out_of_memory_off_the_main_thread(self, *args):
        if threading.current_thread() is not threading.main_thread():
            raise MemoryError
        return original(self, *args)

    monkeypatch.setattr(Runtime, "_run_nodes", out_of_memory_off_the_main_thread)
    with pytest.raises(RuntimeInputError, match="ran out of memory"):
        runtime.run(np.ones((4, 3, 8, 8), np.float32))
    assert blas.blas_threads() == before


def test_parts_running_at_once_share_the_column_budget(monkeypatch) -> None:
    from cnncalc.ops import conv as conv_module

    conv = Conv((3, 3), 3, 4, pads=(1, 1, 1, 1))
    rng = np.random.default_rng(0)
    x, w, b = (rng.standard_normal(shape).astype(np.float32) for shape in [(2, 3, 8, 8), (4, 3, 3, 3), (4,)])
    # the batch's columns: 27 rows (3 channels x 3x3) of 2 x 64 pixels, 4 bytes each = 13,824 bytes (6,912 a sample)
    monkeypatch.setattr(conv_module, "COLUMNS_CHUNKED_ABOVE", 20_000)
    monkeypatch.setattr(conv_module, "COLUMN_CHUNK_BYTES", 8_000)
    whole = conv.forward([x, w, b])
    assert whole.cache[0].nbytes == 13_824  # one chunk, kept
    # two parts at once: chunked above 10,000 bytes, in chunks of 4,000 bytes, i.e. one sample at a time
    monkeypatch.setattr(execution, "parts", 2)
    shared = conv.forward([x, w, b])
    assert shared.cache is None  # chunked: backward would rebuild the columns
    assert relative_error(shared.out, whole.out) < 1e-6


# ---- backward ------------------------------------------------------------------------
def numeric_gradient(loss, array: np.ndarray, positions: list[tuple[int, ...]], eps: float = 1e-6) -> np.ndarray:
    grads = []
    for pos in positions:
        original = array[pos]
        array[pos] = original + eps
        up = loss()
        array[pos] = original - eps
        down = loss()
        array[pos] = original
        grads.append((up - down) / (2 * eps))
    return np.array(grads)


@pytest.mark.parametrize("make", [residual_graph, branchy_graph])
@pytest.mark.parametrize("training", [False, True])
def test_backward_matches_finite_differences(make, training: bool) -> None:
    graph = make()
    rt = Runtime.from_graph(graph, seed=5, dtype=np.float64)
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, *graph.input_shape))
    probe = rng.standard_normal((2, *graph.shapes[graph.output]))

    def loss() -> float:
        return float((rt.run(x, training=training).output * probe).sum())

    rt.run(x, training=training, keep_tape=True)
    grads = rt.backward(probe)  # d loss / d output = probe
    positions = list(np.ndindex(x.shape))  # every input element: a missed branch cannot hide
    expected = numeric_gradient(loss, x, positions)
    assert np.allclose([grads.input[p] for p in positions], expected, rtol=1e-5, atol=1e-7)
    for node in graph.nodes:
        for k, weight in enumerate(rt.weights[node.name]):
            grad = grads.weights[node.name][k]
            if grad is None:
                continue
            assert grad.shape == weight.shape
            spots = [tuple(int(rng.integers(0, d)) for d in weight.shape) for _ in range(2)]
            numeric = numeric_gradient(loss, weight, spots)
            assert np.allclose([grad[s] for s in spots], numeric, rtol=1e-5, atol=1e-7), (node.name, k)


def test_backward_accumulates_over_fan_out() -> None:
    # y = x + x  ->  dy/dx = 2 everywhere; assigning instead of adding would give 1
    graph = Graph("double", (2, 3, 3), (Node("twice", Add(), ("input", "input")),), "twice")
    rt = Runtime(graph, {"twice": []}, dtype=np.float64)
    rt.run(np.ones((1, 2, 3, 3)), keep_tape=True)
    grads = rt.backward(np.ones((1, 2, 3, 3)))
    assert np.array_equal(grads.input, np.full((1, 2, 3, 3), 2.0))


def test_dead_branch_gets_zero_weight_gradients() -> None:
    graph = parse("4x4x2|1x1x2x3|ReLU")
    dead = Node("unused", Conv((1, 1), 2, 2), (graph.input_name,))
    graph = Graph("dead", graph.input_shape, (*graph.nodes, dead), graph.output)
    rt = Runtime.from_graph(graph, dtype=np.float64)
    rt.run(np.ones((1, 2, 4, 4)), keep_tape=True)
    grads = rt.backward(np.ones((1, 3, 4, 4)))
    assert all(np.array_equal(g, np.zeros_like(g)) for g in grads.weights["unused"])


def test_update_state_writes_running_statistics() -> None:
    graph = parse("2x2x1|BN(m=0.5)")
    rt = Runtime.from_graph(graph, dtype=np.float64)
    x = np.array([1.0, 3.0, 5.0, 7.0]).reshape(1, 1, 2, 2)
    rt.run(x, training=True, keep_tape=True)
    rt.update_state(momentum=0.5)
    # batch mean 4, population variance (9+1+1+9)/4 = 5; running = 0.5 * old + 0.5 * batch:
    # mean 0.5 * 0 + 0.5 * 4 = 2, var 0.5 * 1 + 0.5 * 5 = 3
    mean, var = rt.weights[graph.nodes[0].name][2:]
    assert mean[0] == pytest.approx(2.0) and var[0] == pytest.approx(3.0)


def test_update_state_defaults_to_each_bn_own_momentum() -> None:
    graph = parse("2x2x1|BN(m=0.25)")
    rt = Runtime.from_graph(graph, dtype=np.float64)
    rt.run(np.array([1.0, 3.0, 5.0, 7.0]).reshape(1, 1, 2, 2), training=True, keep_tape=True)
    rt.update_state()
    # batch mean 4, variance 5 (as above); m = 0.25: mean 0.25 * 0 + 0.75 * 4 = 3, var 0.25 * 1 + 0.75 * 5 = 4
    mean, var = rt.weights[graph.nodes[0].name][2:]
    assert mean[0] == pytest.approx(3.0) and var[0] == pytest.approx(4.0)


def test_backward_without_tape_is_an_error() -> None:
    rt = Runtime.from_graph(parse("2x2x1|ReLU"))
    rt.run(np.ones((1, 1, 2, 2), dtype=np.float32))
    with pytest.raises(CnnCalcError, match="keep_tape"):
        rt.backward(np.ones((1, 1, 2, 2), dtype=np.float32))


# ---- bad input -----------------------------------------------------------------------
@pytest.mark.parametrize(("x", "message", "hint"), [
    (np.zeros((1, 8, 8, 3), np.float32), r"shape \(1, 8, 8, 3\)", "NHWC"),
    (np.zeros((3, 8, 8), np.float32), r"shape \(3, 8, 8\)", r"x\[None\]"),
    (np.zeros((1, 3, 8, 9), np.float32), "takes", "N, 3, 8, 8"),
    (np.zeros((1, 3, 8, 8), np.float64), "float64", "astype"),
    (np.zeros((1, 3, 8, 8), np.uint8), "uint8", "astype"),
    (np.zeros((0, 3, 8, 8), np.float32), "empty", "at least one"),
    (None, "no input", "NumPy array"),
    ([[1.0]], "list", "np.asarray"),
])
def test_bad_inputs_are_clear_errors(x, message: str, hint: str) -> None:
    rt = Runtime.from_graph(residual_graph())
    with pytest.raises(RuntimeInputError, match=message) as error:
        rt.run(x)
    assert error.value.hint is not None and __import__("re").search(hint, error.value.hint)


def test_refuses_a_run_larger_than_free_memory(monkeypatch) -> None:
    rt = Runtime.from_graph(residual_graph())
    monkeypatch.setattr(runtime_module, "available_memory_bytes", lambda: 4096)
    monkeypatch.setattr(runtime_module, "_last_memory_reading", None)  # an earlier test's reading is not this one
    # peak at batch 2 is 5632 bytes (see test_peak_by_hand...): more than the 4096 "available"
    with pytest.raises(RuntimeInputError, match="batch 2 needs about") as error:
        rt.run(np.zeros((2, 3, 8, 8), np.float32))
    assert "at most 1" in error.value.hint  # one sample needs 2816 bytes
    rt.run(np.zeros((1, 3, 8, 8), np.float32))


def test_free_memory_is_read_again_unless_a_recent_reading_left_ample_room(monkeypatch) -> None:
    rt = Runtime.from_graph(residual_graph())
    readings = []

    def reading() -> int:
        readings.append(1)
        return 40_000

    monkeypatch.setattr(runtime_module, "available_memory_bytes", reading)
    monkeypatch.setattr(runtime_module, "_last_memory_reading", None)
    small = np.zeros((1, 3, 8, 8), np.float32)  # peak 2816 bytes: 4x that fits in 40,000
    rt.run(small)
    rt.run(small)
    assert len(readings) == 1
    rt.run(np.zeros((4, 3, 8, 8), np.float32))  # 11,264 bytes: 4x that does not, so it reads again
    assert len(readings) == 2
    monkeypatch.setattr(runtime_module, "_last_memory_reading", (time.monotonic() - 2.0, 40_000))  # too old
    rt.run(small)
    assert len(readings) == 3


def test_wrong_weights_are_clear_errors() -> None:
    graph = residual_graph()
    weights = init_weights(graph)
    with pytest.raises(RuntimeInputError, match="layer c2 needs 2 weight arrays"):
        Runtime(graph, {**weights, "c2": weights["c2"][:1]})
    with pytest.raises(RuntimeInputError, match=r"c1.W has shape \[4, 3, 3, 1\]"):
        Runtime(graph, {**weights, "c1": [np.zeros((4, 3, 3, 1), np.float32)]})
    with pytest.raises(CnnCalcError, match="float32 or float64"):
        Runtime(graph, weights, dtype=np.float16)


def test_a_model_with_unknown_ops_is_refused_before_running() -> None:
    graph = residual_graph()
    marked = Graph(graph.name, graph.input_shape, graph.nodes, graph.output, unsupported=("Resize at up",))
    with pytest.raises(UnsupportedOpError, match="Resize at up"):
        Runtime.from_graph(marked)


# ---- ONNX files: cnncalc's exports and PyTorch-style models ---------------------------
def pytorch_style_model() -> onnx.ModelProto:
    """Laid out as torch.onnx.export writes a small ResNet-like net in eval mode: BN folded into the first
    conv (initializers named onnx::Conv_*), a BN kept in the second, Clip with constant bounds, a dynamic
    batch named batch_size, node names like /layer1/conv1/Conv, Flatten then Gemm(transB=1)."""
    rng = np.random.default_rng(0)

    def tensor(name: str, *shape: int, low: float | None = None) -> onnx.TensorProto:
        values = rng.uniform(low, 1.5, shape) if low is not None else rng.standard_normal(shape) * 0.3
        return numpy_helper.from_array(values.astype(np.float32), name)

    inits = [
        tensor("onnx::Conv_101", 8, 3, 3, 3), tensor("onnx::Conv_102", 8),
        tensor("layer1.0.conv1.weight", 8, 8, 3, 3),
        tensor("layer1.0.bn1.weight", 8), tensor("layer1.0.bn1.bias", 8),
        tensor("layer1.0.bn1.running_mean", 8), tensor("layer1.0.bn1.running_var", 8, low=0.5),
        tensor("dw.weight", 8, 1, 3, 3), numpy_helper.from_array(np.array(0.0, np.float32), "clip_min"),
        numpy_helper.from_array(np.array(6.0, np.float32), "clip_max"),
        tensor("fc.weight", 10, 8), tensor("fc.bias", 10),
    ]
    nodes = [
        helper.make_node("Conv", ["input.1", "onnx::Conv_101", "onnx::Conv_102"], ["/conv1/Conv_output_0"],
                         name="/conv1/Conv", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                         dilations=[1, 1], group=1),
        helper.make_node("Relu", ["/conv1/Conv_output_0"], ["/relu/Relu_output_0"], name="/relu/Relu"),
        helper.make_node("MaxPool", ["/relu/Relu_output_0"], ["/maxpool/MaxPool_output_0"], name="/maxpool/MaxPool",
                         kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=0),
        helper.make_node("Conv", ["/maxpool/MaxPool_output_0", "layer1.0.conv1.weight"],
                         ["/layer1/conv1/Conv_output_0"], name="/layer1/conv1/Conv", kernel_shape=[3, 3],
                         pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["/layer1/conv1/Conv_output_0", "layer1.0.bn1.weight",
                                                "layer1.0.bn1.bias", "layer1.0.bn1.running_mean",
                                                "layer1.0.bn1.running_var"],
                         ["/layer1/bn1/BatchNormalization_output_0"], name="/layer1/bn1/BatchNormalization",
                         epsilon=1e-5, momentum=0.9),
        helper.make_node("Add", ["/layer1/bn1/BatchNormalization_output_0", "/maxpool/MaxPool_output_0"],
                         ["/layer1/Add_output_0"], name="/layer1/Add"),
        helper.make_node("Conv", ["/layer1/Add_output_0", "dw.weight"], ["/dw/Conv_output_0"], name="/dw/Conv",
                         kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=8),
        helper.make_node("Clip", ["/dw/Conv_output_0", "clip_min", "clip_max"], ["/act/Clip_output_0"],
                         name="/act/Clip"),
        helper.make_node("GlobalAveragePool", ["/act/Clip_output_0"], ["/avgpool/GlobalAveragePool_output_0"],
                         name="/avgpool/GlobalAveragePool"),
        helper.make_node("Flatten", ["/avgpool/GlobalAveragePool_output_0"], ["/Flatten_output_0"],
                         name="/Flatten", axis=1),
        helper.make_node("Gemm", ["/Flatten_output_0", "fc.weight", "fc.bias"], ["191"], name="/fc/Gemm",
                         alpha=1.0, beta=1.0, transB=1),
    ]
    graph = helper.make_graph(
        nodes, "main_graph",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, ["batch_size", 3, 32, 32])],
        [helper.make_tensor_value_info("191", TensorProto.FLOAT, ["batch_size", 10])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="pytorch")


def test_pytorch_style_file_matches_onnxruntime(tmp_path: Path) -> None:
    path = tmp_path / "torch_style.onnx"
    onnx.save(pytorch_style_model(), path)
    rt = Runtime.from_file(path)
    x = np.random.default_rng(2).standard_normal((4, 3, 32, 32)).astype(np.float32)
    result = rt.run(x, record=True)
    expected = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input.1": x})[0]
    assert result.output.shape == (4, 10)
    assert relative_error(result.output, expected) < RTOL
    check_against_analysis(rt.graph, result, batch=4, dtype="float32")


def test_own_export_round_trips_through_a_file(tmp_path: Path) -> None:
    graph = branchy_graph()
    weights = init_weights(graph, seed=9)
    path = tmp_path / "branchy.onnx"
    onnx.save(to_onnx(graph, weights), path)
    x = np.random.default_rng(3).standard_normal((2, *graph.input_shape)).astype(np.float32)
    from_file = Runtime.from_file(path).run(x).output
    assert np.array_equal(from_file, Runtime(graph, weights).run(x).output)


# ---- every bundled spec at batch 1 ----------------------------------------------------
@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_bundled_specs_match_onnxruntime(path: Path) -> None:
    for graph in load(str(path)).networks:
        weights = init_weights(graph, seed=0)
        x = np.random.default_rng(0).standard_normal((1, *graph.input_shape)).astype(np.float32)
        result = Runtime(graph, weights).run(x, record=True)
        error = relative_error(result.output, onnxruntime_output(graph, weights, x))
        assert error < RTOL, f"{path.stem}/{graph.name}: relative error {error:.2e}"
        check_against_analysis(graph, result, batch=1, dtype="float32")


# ---- the `cnncalc run` command ---------------------------------------------------------
CHAIN = "8x8x3|3x3x3x4(p=1)|BN|ReLU|MP|FC(5)"


def cli(*args: str):
    from typer.testing import CliRunner

    from cnncalc.cli import app

    return CliRunner().invoke(app, ["run", *args])


def test_cli_run_json_with_check() -> None:
    result = cli(CHAIN, "--batch", "3", "--repeat", "2", "--format", "json", "--check")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    # conv 4*8*8 outputs x 27 MACs each = 6912 per sample; FC 4*4*4 = 64 inputs x 5 = 320; batch 3
    assert data["macs"] == 3 * (6912 + 320)
    assert data["output_shape"] == [3, 5] and data["repeat"] == 2
    assert data["peak_live_bytes"] == data["predicted_peak_bytes"]
    assert data["check"]["max_rel_diff"] < RTOL
    assert [layer["op_type"] for layer in data["layers"]] == ["Conv", "BatchNormalization", "Relu", "MaxPool",
                                                              "Flatten", "Gemm"]


def test_cli_run_check_without_onnxruntime_is_refused_before_the_timed_runs(monkeypatch) -> None:
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "onnxruntime" else real_find_spec(name, *args))
    ran: list[int] = []
    monkeypatch.setattr(runtime_module, "measure", lambda *args: ran.append(1))
    result = cli(CHAIN, "--repeat", "100", "--check")
    # the error came after all 100 timed runs
    assert result.exit_code == 1 and "--check needs onnxruntime" in result.output and ran == []


def test_cli_run_check_of_a_float64_spec_computed_in_float32(tmp_path: Path) -> None:
    # --check exported the spec as float64 (its dtype) although the run was float32: onnxruntime has no float64
    # Conv, and the error's hint ("compare a float32 export instead") was what --dtype float32 had asked for
    spec = tmp_path / "f64.yaml"
    spec.write_text("name: f64\ninput: 8x8x1\ndtype: float64\nnetwork:\n  - 3x3x1x4(p=1) | ReLU\n  - FC(3)\n")
    result = cli(str(spec), "--dtype", "float32", "--check", "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["dtype"] == "float32" and data["check"]["max_rel_diff"] < RTOL


def test_cli_run_of_a_fixed_batch_model_runs_its_batch_and_check_refuses_another(tmp_path: Path) -> None:
    model = tmp_path / "b4.onnx"
    onnx.save(to_onnx(parse(CHAIN), batch=4), model)
    result = cli(str(model), "--format", "json", "--check")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["batch"] == 4  # the file's batch, not 1
    out = tmp_path / "y.npy"
    result = cli(str(model), "--batch", "2", "--check", "-o", str(out))
    assert result.exit_code == 1
    assert "fixes its batch to 4" in result.output and "--batch 4" in result.output
    assert "Traceback" not in result.output and not out.exists()


def test_cli_run_uses_the_batch_of_a_spec_file(tmp_path: Path) -> None:
    spec = tmp_path / "net.yaml"
    spec.write_text(f"name: net\nbatch: 3\nnetwork: \"{CHAIN}\"\n")
    result = cli(str(spec), "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["batch"] == 3


def test_cli_run_input_and_output_files(tmp_path: Path) -> None:
    x = np.random.default_rng(4).standard_normal((2, 3, 8, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "y.npy"
    result = cli(CHAIN, "--input", str(tmp_path / "x.npy"), "--output", str(out), "--seed", "7")
    assert result.exit_code == 0, result.output
    assert "latency" in result.stdout and "total" in result.stdout
    expected = Runtime.from_graph(parse(CHAIN), seed=7).run(x).output
    assert np.array_equal(np.load(out), expected)
    assert cli(CHAIN, "--output", str(out)).exit_code == 1  # exists: needs --force
    assert cli(CHAIN, "--output", str(out), "--force").exit_code == 0


def test_cli_run_onnx_file_with_check(tmp_path: Path) -> None:
    path = tmp_path / "torch_style.onnx"
    onnx.save(pytorch_style_model(), path)
    result = cli(str(path), "--batch", "2", "--check", "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["check"]["max_rel_diff"] < RTOL


@pytest.mark.parametrize(("array", "message"), [
    (np.zeros((1, 8, 8, 3), np.float32), "looks NHWC"),
    (np.zeros((1, 3, 8, 8), np.float64), "float64"),
])
def test_cli_run_bad_input_file(tmp_path: Path, array: np.ndarray, message: str) -> None:
    np.save(tmp_path / "x.npy", array)
    result = cli(CHAIN, "--input", str(tmp_path / "x.npy"))
    assert result.exit_code == 1
    assert message in result.output and "x.npy" in result.output and "Traceback" not in result.output


def test_cli_run_missing_and_unreadable_input(tmp_path: Path) -> None:
    missing = cli(CHAIN, "--input", str(tmp_path / "nope.npy"))
    assert missing.exit_code == 1 and "does not exist" in missing.output
    (tmp_path / "bad.npy").write_text("not an array")
    unreadable = cli(CHAIN, "--input", str(tmp_path / "bad.npy"))
    assert unreadable.exit_code == 1 and "not a .npy file" in unreadable.output
    assert "pickled" not in unreadable.output  # NumPy's own message blames pickling for any odd bytes


def test_unreadable_input_says_why(tmp_path: Path, monkeypatch) -> None:
    # a file that cannot be opened is "cannot read ...: Permission denied", not "not a .npy file"
    path = tmp_path / "x.npy"
    np.save(path, np.zeros((1, 3, 8, 8), np.float32))
    real_open = open

    def refuse(file, *args, **kwargs):
        if str(file) == str(path):
            raise PermissionError(13, "Permission denied")
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", refuse)
    with pytest.raises(RuntimeInputError) as info:
        runtime_module.read_input(path, Runtime.from_graph(parse("8x8x3|ReLU")))
    assert "cannot read" in info.value.message and "Permission denied" in info.value.message


def _object_array(handle) -> None:
    np.save(handle, np.array([{"a": 1}], dtype=object), allow_pickle=True)


def _npz_archive(handle) -> None:
    np.savez(handle, x=np.zeros((1, 3, 8, 8), np.float32), y=np.zeros(1))  # one array alone is accepted


def _cut_off_header(handle) -> None:
    handle.write(b"\x93NUMPY\x01\x00" + b"{'descr'")  # the magic, then a header that stops short


@pytest.mark.parametrize(("write", "message"), [
    (_object_array, "Python objects"),
    (_npz_archive, "holds 2 arrays (x, y), not one input batch"),
    (_cut_off_header, "cannot read"),
])
def test_cli_run_input_that_is_not_a_plain_array(tmp_path: Path, write, message: str) -> None:
    path = tmp_path / "x.npy"
    with open(path, "wb") as handle:  # through a handle: np.savez would add .npz to a path
        write(handle)
    result = cli(CHAIN, "--input", str(path))
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output


def test_single_window_pool_leaves_its_input_alone() -> None:
    # one channel, one 2x2 window: the pooled rows are a contiguous slice of the input itself, which a
    # kernel computing the max in place would overwrite
    graph = parse("2x2x1|MP|ReLU")
    x = np.array([[[[1.0, 2.0], [3.0, 4.0]]]], dtype=np.float32)
    assert Runtime.from_graph(graph).run(x).output.item() == 4.0
    assert np.array_equal(x, [[[[1.0, 2.0], [3.0, 4.0]]]])


def test_the_output_never_aliases_the_input_or_the_tape() -> None:
    # an identity network returned the caller's own array; a taped output edited in place corrupted backward
    x = np.ones((2, 4, 3, 3), np.float32)
    out = Runtime.from_graph(parse("3x3x4|ID")).run(x).output
    assert out is not x and not np.shares_memory(out, x)
    taped = Runtime.from_graph(parse("3x3x4|FC(2)|Softmax")).run(x, training=True, keep_tape=True).output
    with pytest.raises(ValueError, match="read-only"):
        taped *= 0


def test_check_refuses_to_compare_outputs_that_hold_nan(tmp_path: Path) -> None:
    # max abs diff nan printed as if it were a result, exit 0
    x = np.full((1, 3, 8, 8), np.nan, np.float32)
    path = tmp_path / "x.npy"
    np.save(path, x)
    result = cli(CHAIN, "--input", str(path), "--check")
    assert result.exit_code == 1 and "NaN or infinite values" in result.output


def test_cli_run_takes_a_models_own_dtype(tmp_path: Path) -> None:
    # a float64 model refused a float64 input unless --dtype float64 was given; a float16 one refused float16
    for dtype in ("float64", "float16"):
        spec = tmp_path / f"{dtype}.yaml"
        spec.write_text(f"name: n\ndtype: {dtype}\nnetwork: \"{CHAIN}\"\n")
        model = tmp_path / f"{dtype}.onnx"
        onnx.save(to_onnx(load(str(spec)).networks[0]), model)
        x = tmp_path / f"x{dtype}.npy"
        np.save(x, np.ones((1, 3, 8, 8), dtype))
        result = cli(str(model), "--input", str(x), "--format", "json")
        assert result.exit_code == 0, (dtype, result.output)
        assert json.loads(result.stdout)["dtype"] == ("float64" if dtype == "float64" else "float32")


def test_cli_run_input_and_a_different_batch_or_a_folder_are_clear_errors(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.ones((2, 3, 8, 8), np.float32))
    result = cli(CHAIN, "--input", str(tmp_path / "x.npy"), "--batch", "5")  # --batch was ignored silently
    assert result.exit_code == 1 and "holds 2 samples" in result.output
    assert cli(CHAIN, "--input", str(tmp_path / "x.npy"), "--batch", "2").exit_code == 0
    result = cli(CHAIN, "--input", str(tmp_path))
    assert result.exit_code == 1 and "is a folder" in result.output
