"""Cross-checks of the whole chain: spec -> analysis -> ONNX export -> execution -> gradients -> training.

Each check compares two things that were computed independently of each other (the analysis'
formulas against ONNX's own shape inference, the file's initializers, the arrays the kernels
actually touched, onnxruntime's outputs, central finite differences), and becomes one line of a
checklist. A check that cannot run because an earlier one failed fails too, naming the cause;
a check whose reference is not installed (onnxruntime) is skipped. `VerifyReport.ok` is false
when any line failed.
"""

from __future__ import annotations

import importlib.util
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import CnnCalcError
from .ir import Graph, show_shape
from .ops.base import numel
from .weights import Weights

# central-difference steps, relative to each tensor's RMS (float64); a kink (ReLU at 0, a max-pool tie)
# that a step crosses adds an error proportional to the step, a wrong gradient one that stays, so a
# group that disagrees is measured again with smaller steps before it fails
# (ImageNet-size nets cross kinks down to 1e-8; 1e-9 measured clean on ResNet-50 at 224x224, batch 2)
GRAD_STEPS = (1e-6, 1e-7, 1e-8, 1e-9, 1e-10)
GRAD_RTOL = 1e-5  # |fd - analytic| / (sum_k |analytic_k| + rounding floor) allowed per group of tensors
ORT_RTOL = 1e-4  # onnxruntime vs cnncalc, max abs difference over the output's max abs value (float32)
# a float16 file runs in float16 in onnxruntime (cnncalc computes in float32): every op's output is rounded
# to 11 significant bits (unit roundoff 2**-11 = 4.9e-4), so a deep network drifts by tens of units
ORT_RTOL_FLOAT16 = 1e-2
GRAD_BUDGET_S = 20.0  # time the finite differences may take; over it, tensors are checked in groups


@dataclass
class Check:
    """One line of the checklist; passed is None when the check was skipped."""

    name: str
    passed: bool | None
    detail: str
    time_s: float = 0.0

    @property
    def status(self) -> str:
        """PASS, FAIL or SKIP."""
        return "SKIP" if self.passed is None else "PASS" if self.passed else "FAIL"


@dataclass
class VerifyReport:
    """The checklist of one network."""

    network: str
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no line failed (skipped lines do not fail)."""
        return all(check.passed is not False for check in self.checks)

    def check(self, name: str) -> Check:
        """The line called `name`."""
        for check in self.checks:
            if check.name == name:
                return check
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for --format json."""
        return {"network": self.network, "ok": self.ok,
                "checks": [{"name": c.name, "status": c.status, "passed": c.passed, "detail": c.detail,
                            "time_s": round(c.time_s, 3)} for c in self.checks]}


# names of the checklist lines, in order
ANALYSIS = "spec -> analysis"
CHECKER = "export: onnx.checker"
SHAPE_INFERENCE = "export: strict shape inference == analysis"
PARAMS = "params in the file == analysis"
EXEC_SHAPES = "executed shapes == analysis"
EXEC_MACS = "executed MACs == analysis"
PEAK = "peak live bytes == analysis"
ONNXRUNTIME = "outputs == onnxruntime"
GRADIENTS = "gradients == finite differences (float64)"
TRAINING = "a few training steps reduce the loss"
CHECKS = (ANALYSIS, CHECKER, SHAPE_INFERENCE, PARAMS, EXEC_SHAPES, EXEC_MACS, PEAK, ONNXRUNTIME, GRADIENTS,
          TRAINING)


# what each piece of shared state needs to have succeeded, for "not run" lines
_STAGES = {"analysis": ANALYSIS, "model": CHECKER, "weights": CHECKER, "execution": EXEC_SHAPES}


class _Failed(Exception):
    """A check's finding that fails its line, with the detail to show."""


class _Skipped(Exception):
    """A check that cannot be decided for this network (its reference cannot run it), with the reason."""


def verify(graph: Graph, seed: int = 0, grad_budget_s: float = GRAD_BUDGET_S, grad_batch: int = 2,
           train_steps: int = 3, on_check: Callable[[Check], None] | None = None,
           weights: Weights | None = None) -> VerifyReport:
    """Run every check on `graph` (see the module docstring); `on_check` sees each line as it is decided.
    `weights` (an ONNX file's own) are checked as they are; without them, He weights are drawn from `seed`."""
    report = VerifyReport(graph.name)
    state: dict[str, Any] = {}

    def run(name: str, needs: tuple[str, ...], check: Callable[[], str]) -> None:
        missing = [key for key in needs if key not in state]
        if missing:
            report.checks.append(Check(name, False, f"not run: {_STAGES[missing[0]]} failed before"))
            if on_check is not None:
                on_check(report.checks[-1])
            return
        began = time.perf_counter()
        try:
            detail = check()
            passed: bool | None = True
        except _Skipped as reason:
            passed, detail = None, str(reason)
        except _Failed as finding:
            passed, detail = False, str(finding)
        except CnnCalcError as error:
            passed, detail = False, error.message
        except Exception as error:  # noqa: BLE001 - a crash in any stage is that line's failure, not a traceback
            passed, detail = False, f"{type(error).__name__}: {error}"
        report.checks.append(Check(name, passed, detail, time.perf_counter() - began))
        if on_check is not None:
            on_check(report.checks[-1])

    run(ANALYSIS, (), lambda: _analysis(graph, state))
    run(CHECKER, ("analysis",), lambda: _checker(graph, seed, state, weights))
    run(SHAPE_INFERENCE, ("model",), lambda: _shape_inference(state))
    run(PARAMS, ("model",), lambda: _params(graph, state))
    run(EXEC_SHAPES, ("analysis",), lambda: _execute(graph, seed, state))
    run(EXEC_MACS, ("execution",), lambda: _executed_macs(state))
    run(PEAK, ("execution",), lambda: _peak(state))
    run(ONNXRUNTIME, ("model", "execution"), lambda: _onnxruntime(graph, state))
    run(GRADIENTS, ("weights",), lambda: gradient_check(graph, state["weights"], seed, grad_batch,
                                                       grad_budget_s).summary())
    run(TRAINING, ("weights",), lambda: _training(graph, state["weights"], seed, train_steps))
    return report


# ---- the checks ---------------------------------------------------------------------------------------
def _analysis(graph: Graph, state: dict[str, Any]) -> str:
    """The analysis runs; execution is compared with it in float32, the dtype the NumPy backend runs."""
    from .analysis import analyze

    report = analyze(graph)
    state["analysis"] = report
    state["analysis32"] = report if graph.dtype == "float32" else analyze(graph, dtype="float32")
    totals = report.totals
    return (f"{len(report.layers)} layers, {totals.params:,} params, {totals.macs:,} MACs at batch {graph.batch}, "
            f"output {show_shape(graph.shapes[graph.output])}")


def _checker(graph: Graph, seed: int, state: dict[str, Any], given: Weights | None = None) -> str:
    """The exported model passes onnx.checker with full_check (which also runs strict shape inference)."""
    import onnx

    from .onnx_io import to_onnx
    from .weights import init_weights

    weights = given if given is not None else init_weights(graph, seed)
    state["weights"] = weights
    model = to_onnx(graph, weights, seed=seed)
    onnx.checker.check_model(model, full_check=True)
    state["model"] = model
    return (f"opset {model.opset_import[0].version}, {len(model.graph.node)} nodes, "
            f"{len(model.graph.initializer)} initializers")


def _shape_inference(state: dict[str, Any]) -> str:
    """ONNX's strict shape inference gives every node output the analysis' shape (batch symbolic)."""
    import onnx

    model, report = state["model"], state["analysis"]
    inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
    found = {}
    for value in [*inferred.graph.value_info, *inferred.graph.output]:
        dims = value.type.tensor_type.shape.dim
        found[value.name] = [dim.dim_value if dim.HasField("dim_value") else dim.dim_param for dim in dims]
    for layer in report.layers:
        dims = found.get(layer.name)
        if dims is None:
            raise _Failed(f"ONNX inferred no shape for {layer.name}")
        if dims[1:] != list(layer.shape):
            raise _Failed(f"{layer.name} ({layer.label}): ONNX infers {_dims(dims[1:])}, "
                          f"the analysis {_dims(layer.shape)} (NCHW)")
    return f"{len(report.layers)} tensors agree"


def _params(graph: Graph, state: dict[str, Any]) -> str:
    """The initializers each node reads in the file hold as many values as the analysis counts for it.

    Constant operands (Clip's bounds, Dropout's ratio) are initializers too but no parameters; they are
    told apart by name, f"{node}.{weight}", and counted separately.
    """
    model, report = state["model"], state["analysis"]
    constants = {f"{node.name}.{spec.name}" for node in graph.nodes
                 for spec in node.op.weights([graph.shapes[name] for name in node.inputs]) if spec.constant is not None}
    sizes = {tensor.name: numel(tuple(tensor.dims)) for tensor in model.graph.initializer}
    by_node = {node.name: sum(sizes.get(name, 0) for name in node.input if name not in constants)
               for node in model.graph.node}
    for layer in report.layers:
        expected = layer.params + layer.state_params
        if by_node.get(layer.name, 0) != expected:
            raise _Failed(f"{layer.name} ({layer.label}) reads {by_node.get(layer.name, 0):,} values in the file, "
                          f"the analysis counts {expected:,}")
    in_file = sum(size for name, size in sizes.items() if name not in constants)
    totals = report.totals
    if in_file != totals.params + totals.state_params:
        raise _Failed(f"the file holds {in_file:,} values, the analysis {totals.params + totals.state_params:,}")
    extra = f", and {len(constants)} constant operands" if constants else ""
    return f"{in_file:,} = {totals.params:,} trainable + {totals.state_params:,} state{extra}"


def _execute(graph: Graph, seed: int, state: dict[str, Any]) -> str:
    """Run at the analysis' batch with records; every node's executed output shape matches."""
    from .runtime import Runtime, random_input
    from .weights import init_weights

    weights = state.get("weights") or init_weights(graph, seed)
    runtime = Runtime(graph, weights, np.float32)
    x = random_input(runtime, graph.batch, seed)
    result = runtime.run(x, record=True)
    state["execution"] = (x, result)
    layers = state["analysis32"].layers
    for record, layer in zip(result.records, layers, strict=True):
        if tuple(record.shape) != tuple(layer.shape):
            raise _Failed(f"{layer.name} ({layer.label}) produced {_dims(record.shape)}, "
                          f"the analysis says {_dims(layer.shape)} (NCHW)")
    return f"{len(layers)} nodes at batch {graph.batch}, output {show_shape(tuple(result.output.shape[1:]))}"


def _executed_macs(state: dict[str, Any]) -> str:
    """MACs counted by the kernels from the arrays they multiplied equal the analysis' formulas, per node."""
    _, result = state["execution"]
    layers = state["analysis32"].layers
    for record, layer in zip(result.records, layers, strict=True):
        if record.macs != layer.macs:
            raise _Failed(f"{layer.name} ({layer.label}) executed {record.macs:,} MACs, "
                          f"the analysis counts {layer.macs:,}")
    return f"{result.macs:,} MACs"


def _peak(state: dict[str, Any]) -> str:
    """The largest sum of live tensors during the run equals the analysis' inference peak (float32)."""
    _, result = state["execution"]
    predicted = state["analysis32"].totals.peak_activation_bytes
    if result.peak_live_bytes != predicted:
        raise _Failed(f"the run peaked at {result.peak_live_bytes:,} B, the analysis predicts {predicted:,} B")
    return f"{predicted:,} B (float32)"


def _onnxruntime(graph: Graph, state: dict[str, Any]) -> str:
    """The exported file run by onnxruntime gives cnncalc's outputs; skipped without onnxruntime or its kernel."""
    if importlib.util.find_spec("onnxruntime") is None:
        raise _Skipped("onnxruntime is not installed (pip install onnxruntime)")
    from .runtime import OnnxruntimeLacksKernel, check_with_onnxruntime

    x, result = state["execution"]
    try:
        found = check_with_onnxruntime(state["model"], graph.input_name, x, result.output)
    except OnnxruntimeLacksKernel as missing:
        raise _Skipped(missing.message) from None
    detail = f"max abs diff {found['max_abs_diff']:.2g}, relative {found['max_rel_diff']:.2g}"
    tolerance = ORT_RTOL_FLOAT16 if graph.dtype == "float16" else ORT_RTOL
    if not found["max_rel_diff"] <= tolerance:
        raise _Failed(f"{detail}, above {tolerance:g}")
    return f"{detail} (onnxruntime {found['onnxruntime']})"


def _training(graph: Graph, weights: Any, seed: int, steps: int) -> str:
    """Adam steps on one fixed batch toward random targets (MSE) lower the loss, measured in training mode."""
    from .runtime import Runtime
    from .train import Adam, trainable_arrays, trainable_grads, update_running_stats

    runtime = Runtime(graph, {name: [a.copy() for a in arrays] for name, arrays in weights.items()}, np.float32)
    rng = np.random.default_rng(seed)
    batch = 2
    x = rng.standard_normal((batch, *graph.input_shape)).astype(np.float32)
    target = rng.standard_normal((batch, *graph.shapes[graph.output])).astype(np.float32)
    params = trainable_arrays(runtime)
    optimizer = Adam([array for _, _, array in params])
    if not optimizer.params:
        raise _Skipped("the network has no trainable weights")
    losses = []
    for step in range(steps + 1):
        # the same seed each step, so Dropout draws the same mask and the losses are comparable
        out = runtime.run(x, training=True, keep_tape=step < steps, rng=np.random.default_rng(seed)).output
        diff = out - target
        losses.append(float((diff.astype(np.float64) ** 2).mean()))  # MSE
        if step == steps:
            break
        grads = runtime.backward(2 * diff / diff.size)  # d MSE / d out
        update_running_stats(runtime, None)
        runtime.clear_tape()
        optimizer.step(trainable_grads(grads, params), 1e-3)
    detail = f"MSE {losses[0]:.4g} -> {losses[-1]:.4g} after {steps} Adam steps (lr 1e-3, batch {batch})"
    if not losses[-1] < losses[0]:
        raise _Failed(detail)
    return detail


# ---- gradients ----------------------------------------------------------------------------------------
@dataclass
class GradientCheck:
    """Central differences against the runtime's backward, per tensor or per group of tensors."""

    tensors: int
    groups: int
    worst_error: float  # largest |fd - analytic| / (sum |analytic_k| + rounding floor) over the groups
    worst: str  # the group (or tensor) with that error
    failed: list[str]  # tensors found wrong, each with its figures
    batch: int
    retried: int = 0  # differences taken again with a smaller step (a kink was crossed)
    rtol: float = GRAD_RTOL

    @property
    def passed(self) -> bool:
        """True when every group agreed within rtol."""
        return not self.failed

    def summary(self) -> str:
        """The checklist detail; raises _Failed when a tensor is wrong."""
        how = "each alone" if self.groups == self.tensors else f"in {self.groups} groups"
        text = (f"{self.tensors} tensors (input and every trainable weight) {how}, batch {self.batch}, "
                f"worst relative error {self.worst_error:.1e} ({self.worst})")
        if self.retried:
            text += f"; {self.retried} re-measured with a smaller step"
        if self.failed:
            raise _Failed(f"{'; '.join(self.failed[:3])}; tolerance {self.rtol:g}")
        return text


def gradient_check(graph: Graph, weights: Any, seed: int = 0, batch: int = 2,
                   budget_s: float = GRAD_BUDGET_S, rtol: float = GRAD_RTOL) -> GradientCheck:
    """Runtime gradients of L = sum(R * output) against central differences along random directions, in float64.

    Training mode (batch statistics in BN; Dropout with one fixed mask). Each tensor k gets a random
    direction d_k scaled by its RMS; a group's analytic derivative is sum_k <g_k, d_k>. Groups are
    single tensors when 2 forwards per tensor fit in `budget_s`, else the tensors are split into as
    many contiguous groups as fit. A group that disagrees is measured again with the smaller steps
    of GRAD_STEPS (a crossed kink fades, a wrong gradient stays), then bisected down to the tensor at fault.
    """
    from .runtime import Runtime

    runtime = Runtime(graph, {name: [np.array(a, dtype=np.float64) for a in arrays]
                              for name, arrays in weights.items()}, np.float64)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, *graph.input_shape))
    out = runtime.run(x, training=True, keep_tape=True, rng=np.random.default_rng(seed)).output
    projection = rng.standard_normal(out.shape) / out.size
    grads = runtime.backward(projection)  # dL/d out = R for L = sum(R * out)
    runtime.clear_tape()

    def loss() -> float:
        result = runtime.run(x, training=True, rng=np.random.default_rng(seed)).output
        return float((projection * result).sum())

    began = time.perf_counter()
    loss()  # a forward like those the differences take (the taped first one is slower), to plan the groups
    forward_s = time.perf_counter() - began

    # rounding in L is about eps * sum |R * out|; divided by 2h it is what a difference cannot resolve
    rounding = 10 * np.finfo(np.float64).eps * float(np.abs(projection * out).sum())

    # (label, array perturbed in place, its analytic gradient, direction)
    items: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]] = []
    if grads.input is None:
        raise _Failed("backward returned no gradient for the input")
    items.append(("input", x, grads.input, rng.standard_normal(x.shape)))
    for node in graph.nodes:
        specs = node.op.weights([graph.shapes[name] for name in node.inputs])
        for spec, array, grad in zip(specs, runtime.weights[node.name], grads.weights[node.name], strict=True):
            if not spec.trainable:
                continue
            label = f"{node.name}.{spec.name}"
            if grad is None or np.shape(grad) != array.shape:
                raise _Failed(f"backward returned {'no' if grad is None else 'a wrong-shaped'} gradient for {label}")
            rms = float(np.sqrt((array**2).mean())) if array.size else 0.0
            items.append((label, array, np.asarray(grad), rng.standard_normal(array.shape) * (rms or 1.0)))

    def difference(group: list[int], step: float) -> float:
        """Central difference along the group's directions: (L(w + h d) - L(w - h d)) / 2h = <dL/dw, d> + O(h^2)."""
        for i in group:
            items[i][1][...] += step * items[i][3]
        plus = loss()
        for i in group:
            items[i][1][...] -= 2 * step * items[i][3]
        minus = loss()
        for i in group:
            items[i][1][...] += step * items[i][3]
        return (plus - minus) / (2 * step)

    def error(group: list[int]) -> tuple[float, float, float]:
        """(relative error, finite difference, analytic) for the group, at the first step that agrees."""
        parts = [float((items[i][2] * items[i][3]).sum()) for i in group]
        analytic = sum(parts)
        found = (math.inf, math.nan)
        for attempt, step in enumerate(GRAD_STEPS):
            retried[0] += attempt > 0
            fd = difference(group, step)
            # relative to the group's total; a gradient below what rounding resolves (a conv bias before
            # BN, whose true gradient is 0) is measured against the rounding floor instead
            scale = sum(abs(p) for p in parts) + rounding / step / rtol
            err = abs(fd - analytic) / scale
            found = min(found, (err, fd))
            if err <= rtol:
                break
        return found[0], found[1], analytic

    retried = [0]  # differences taken again with a smaller step
    original = [item[1].copy() for item in items]
    affordable = budget_s / max(2 * forward_s, 1e-9)  # forward pairs that fit in the budget
    count = len(items) if affordable >= len(items) else max(1, int(affordable))
    groups = [list(g) for g in np.array_split(np.arange(len(items)), count) if len(g)]
    worst, worst_label, failed = 0.0, "", []
    for group in groups:
        err, _, _ = error(group)
        label = items[group[0]][0] if len(group) == 1 else f"{items[group[0]][0]} .. {items[group[-1]][0]}"
        if err > worst:
            worst, worst_label = err, label
        if err > rtol:
            failed.extend(_bisect(group, error, items, rtol))
    for item, value in zip(items, original, strict=True):  # undo the rounding of += / -= exactly
        item[1][...] = value
    return GradientCheck(len(items), len(groups), worst, worst_label, failed, batch, retried[0], rtol)


def _bisect(group: list[int], error: Callable[[list[int]], tuple[float, float, float]],
            items: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]], rtol: float) -> list[str]:
    """The tensors of a failing group that fail alone, found by halving (2 forwards per half)."""
    if len(group) == 1:
        err, fd, analytic = error(group)
        return [f"{items[group[0]][0]}: backward {analytic:.6g}, finite difference {fd:.6g} (error {err:.1e})"]
    half = len(group) // 2
    found = []
    for part in (group[:half], group[half:]):
        if error(part)[0] > rtol:
            found.extend(_bisect(part, error, items, rtol))
    if not found:  # the parts pass alone but not together: report the group
        err, fd, analytic = error(group)
        found.append(f"{items[group[0]][0]} .. {items[group[-1]][0]}: backward {analytic:.6g}, "
                     f"finite difference {fd:.6g} (error {err:.1e})")
    return found


def _dims(dims: Any) -> str:
    """Dimensions as 64x56x56."""
    return "x".join(str(d) for d in dims)


def check_line(check: Check) -> str:
    """One checklist line for the CLI: status, name, detail."""
    return f"{check.status}  {check.name}: {check.detail}"


def summary_line(report: VerifyReport) -> str:
    """The verdict for one network."""
    failed = [check for check in report.checks if check.passed is False]
    skipped = sum(check.passed is None for check in report.checks)
    total_s = sum(check.time_s for check in report.checks)
    if failed:
        return f"{report.network}: {len(failed)} of {len(report.checks)} checks FAILED ({total_s:.1f} s)"
    extra = f", {skipped} skipped" if skipped else ""
    return f"{report.network}: all {len(report.checks) - skipped} checks passed{extra} ({total_s:.1f} s)"
