"""Analysis passes over a frozen Graph: shapes, receptive field, params, MACs/FLOPs, memory.

Each pass is a plain loop over the nodes in topological order that returns data; the
graph is never changed. `analyze` gathers them into a `NetworkReport`, which renderers,
the hardware cost model, plots and `verify` all read, so no two outputs can disagree.
All counts are exact Python ints for the whole batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from .ir import DTYPE_BYTES, Graph, to_hwc
from .ops.base import Shape, numel

if TYPE_CHECKING:
    from .hardware import Profile

#: optimizer state per trainable parameter, in parameter-sized slots
OPTIMIZER_SLOTS = {"sgd": 0, "sgd-momentum": 1, "adam": 2}


@dataclass(frozen=True)
class ReceptiveField:
    """Receptive field of one tensor in input pixels, per axis (H, W)."""

    size: tuple[int, int]  # r: input pixels one output element sees
    jump: tuple[int, int]  # j: effective stride, input pixels between neighbouring outputs
    padding: tuple[int, int]  # effective padding: input pixels of padding left of the first window
    start: tuple[float, float]  # centre of the first output's field, in input pixels (first pixel's centre = 0.5)


INPUT_FIELD = ReceptiveField((1, 1), (1, 1), (0, 0), (0.5, 0.5))


@dataclass(frozen=True)
class LayerReport:
    """Every figure about one node, for the whole batch."""

    index: int
    name: str
    op: str  # canonical spec name, e.g. "Conv", "MP", "ReLU"
    op_type: str  # ONNX op type
    label: str  # the op written in the spec language
    block: str
    inputs: tuple[str, ...]
    shape: Shape  # per-sample output shape, NCHW without batch
    output: list[int]  # [H, W, C] as users read it
    params: int
    trainable_params: int
    state_params: int  # non-trainable values such as BN running statistics
    macs: int
    flops: int
    activation_bytes: int  # bytes of this node's output tensor
    input_bytes: int  # bytes of the activations it reads
    weight_bytes: int  # bytes of its params and state
    receptive_field: ReceptiveField
    cost_class: str
    implicit: bool = False
    pos: int | None = None


@dataclass(frozen=True)
class Totals:
    """Whole-network figures; memory conventions are documented in docs/conventions.md."""

    params: int
    trainable_params: int
    state_params: int
    macs: int
    flops: int
    weight_bytes: int
    input_bytes: int
    activation_bytes: int  # sum of every node's output
    peak_activation_bytes: int  # inference: tensors freed after their last consumer
    training_bytes: dict[str, int]  # per optimizer: weights + grads + optimizer state + kept activations
    receptive_field: ReceptiveField

    @property
    def inference_bytes(self) -> int:
        """Weights plus the peak of live activations."""
        return self.weight_bytes + self.peak_activation_bytes


@dataclass
class Diagnostic:
    """A finding about the design: a warning or a note, located in the spec text where possible."""

    level: str  # "warning" | "info"
    message: str
    position: int | None = None
    layer: str | None = None
    hint: str | None = None
    code: str = ""


@dataclass
class NetworkReport:
    """The analysis of one network (one variant)."""

    name: str
    description: str
    text: str
    batch: int
    dtype: str
    input: list[int]
    output: list[int]
    layers: list[LayerReport]
    totals: Totals
    diagnostics: list[Diagnostic] = field(default_factory=list)
    costs: dict[str, Any] = field(default_factory=dict)  # profile name -> hardware.NetworkCost
    lower_bound: bool = False  # some ops were not counted (ONNX import with --allow-unsupported)
    graph: Graph | None = field(default=None, repr=False, compare=False)

    def __repr__(self) -> str:
        """One line for a notebook (the dataclass' own repr spells out every layer); figures are `totals`."""
        shape = "x".join(map(str, self.input)) + " -> " + "x".join(map(str, self.output))
        costs = f", costs for {', '.join(self.costs)}" if self.costs else ""
        at_least = "at least " if self.lower_bound else ""
        return (f"<NetworkReport {self.name!r}: {shape}, {len(self.layers)} layers, batch {self.batch}, "
                f"{self.dtype}, {at_least}{self.totals.params:,} params, {at_least}{self.totals.macs:,} MACs{costs}>")


def analyze(graph: Graph, batch: int | None = None, dtype: str | None = None,
            profiles: Sequence[Profile | str] | str = ()) -> NetworkReport:
    """Run every pass on `graph`; batch and dtype override the graph's own.

    `profiles` are Profile objects or profile names ("jetson-nano", or a list of names, as
    `cnncalc profiles` lists them); each one's estimate lands in `report.costs[name]`.
    """
    if batch is not None or dtype is not None:
        # `is None`, not `or`: batch=0 is a mistake to report, not a request for the graph's own batch
        graph = replace(graph, batch=graph.batch if batch is None else batch,
                        dtype=graph.dtype if dtype is None else dtype, shapes={})
    shapes = graph.shapes
    layers = _layers(graph, shapes, receptive_fields(graph, shapes))
    totals = _totals(graph, layers)
    report = NetworkReport(
        name=graph.name, description=graph.description, text=graph.text, batch=graph.batch,
        dtype=graph.dtype, input=to_hwc(graph.input_shape), output=to_hwc(shapes[graph.output]),
        layers=layers, totals=totals, lower_bound=bool(graph.unsupported), graph=graph,
    )
    from .diagnostics import design_diagnostics

    report.diagnostics.extend(design_diagnostics(graph, report))
    if profiles:
        from .hardware import estimate_network, resolve_profiles

        for profile in resolve_profiles(profiles):
            report.costs[profile.name] = estimate_network(report, profile)
    return report


def receptive_fields(graph: Graph, shapes: dict[str, Shape]) -> dict[str, ReceptiveField]:
    """Araujo et al. recursion per axis; where branches meet, the largest field wins on each axis."""
    fields = {graph.input_name: INPUT_FIELD}
    for node in graph.nodes:
        incoming = [fields[name] for name in node.inputs]
        widest = incoming[0] if len(incoming) == 1 else _merged_field(incoming)
        window = node.op.window([shapes[name] for name in node.inputs])
        if window is None:
            fields[node.name] = widest
            continue
        size, jump, padding, start = [], [], [], []
        for axis in (0, 1):
            k, s, p = window.kernel[axis], window.stride[axis], window.pad[axis]
            j_in = widest.jump[axis]
            size.append(widest.size[axis] + (k - 1) * j_in)  # r_out = r_in + (k_eff - 1) * j_in
            jump.append(j_in * s)  # j_out = j_in * s
            padding.append(widest.padding[axis] + p * j_in)  # p_out = p_in + p * j_in
            start.append(widest.start[axis] + ((k - 1) / 2 - p) * j_in)  # centre of the first window
        fields[node.name] = ReceptiveField(tuple(size), tuple(jump), tuple(padding), tuple(start))  # type: ignore[arg-type]
    return fields


def _merged_field(incoming: list[ReceptiveField]) -> ReceptiveField:
    """The field where branches meet, axis by axis: cat[1x3 ; 3x1] sees 3x3, not one branch's 1x3 or 3x1.
    Size, stride and padding are the largest on the axis; the start is the widest branch's on that axis."""
    size, jump, padding, start = [], [], [], []
    for axis in (0, 1):
        widest = max(incoming, key=lambda rf: (rf.size[axis], rf.jump[axis]))
        size.append(widest.size[axis])
        jump.append(max(rf.jump[axis] for rf in incoming))
        padding.append(max(rf.padding[axis] for rf in incoming))
        start.append(widest.start[axis])
    return ReceptiveField(tuple(size), tuple(jump), tuple(padding), tuple(start))  # type: ignore[arg-type]


def _layers(graph: Graph, shapes: dict[str, Shape], fields: dict[str, ReceptiveField]) -> list[LayerReport]:
    """Per-node figures, scaled by batch and dtype."""
    batch, nbytes = graph.batch, graph.dtype_bytes
    layers = []
    for index, node in enumerate(graph.nodes):
        in_shapes = [shapes[name] for name in node.inputs]
        out_shape = shapes[node.name]
        weights = [w for w in node.op.weights(in_shapes) if w.constant is None]  # ReLU6 bounds are not state
        trainable = sum(numel(w.shape) for w in weights if w.trainable)
        state = sum(numel(w.shape) for w in weights if not w.trainable)
        layers.append(LayerReport(
            index=index, name=node.name, op=node.op.spec_name(), op_type=node.op.op_type,
            label=node.op.describe(), block=node.block, inputs=node.inputs, shape=out_shape,
            output=to_hwc(out_shape), params=trainable, trainable_params=trainable, state_params=state,
            macs=batch * node.op.macs(in_shapes, out_shape),
            flops=batch * node.op.flops(in_shapes, out_shape),
            activation_bytes=batch * numel(out_shape) * nbytes,
            input_bytes=batch * sum(numel(s) for s in in_shapes) * nbytes,
            weight_bytes=(trainable + state) * nbytes,
            receptive_field=fields[node.name], cost_class=_cost_class(node.op),
            implicit=node.implicit, pos=node.pos,
        ))
    return layers


def _cost_class(op: Any) -> str:
    """The op's kernel class; an op may refine it per instance with a `kernel_class()` method."""
    refine = getattr(op, "kernel_class", None)
    return refine() if callable(refine) else op.cost_class


def peak_activation_bytes(graph: Graph) -> int:
    """Largest sum of live tensors in inference: each output is allocated, then inputs at their last use are freed."""
    sizes = {name: graph.batch * numel(shape) * graph.dtype_bytes for name, shape in graph.shapes.items()}
    last = graph.last_use()
    live = sizes[graph.input_name]
    peak = live
    for index, node in enumerate(graph.nodes):
        live += sizes[node.name]
        peak = max(peak, live)
        for name in set(node.inputs):
            if last[name] == index:
                live -= sizes[name]
        if last[node.name] == index:  # an output nobody reads is dropped at once
            live -= sizes[node.name]
    return peak


def _totals(graph: Graph, layers: list[LayerReport]) -> Totals:
    """Sums, the inference peak, and training memory per optimizer."""
    nbytes = graph.dtype_bytes
    trainable = sum(layer.trainable_params for layer in layers)
    state = sum(layer.state_params for layer in layers)
    weight_bytes = (trainable + state) * nbytes
    input_bytes = graph.batch * numel(graph.input_shape) * nbytes
    activation_bytes = sum(layer.activation_bytes for layer in layers)
    # training keeps the input and every activation for backward, plus one gradient per weight
    kept = input_bytes + activation_bytes
    training = {
        name: weight_bytes + trainable * nbytes * (1 + slots) + kept for name, slots in OPTIMIZER_SLOTS.items()
    }
    final = layers[-1].receptive_field if layers else INPUT_FIELD
    for layer in layers:
        if layer.name == graph.output:
            final = layer.receptive_field
    return Totals(
        params=trainable, trainable_params=trainable, state_params=state,
        macs=sum(layer.macs for layer in layers), flops=sum(layer.flops for layer in layers),
        weight_bytes=weight_bytes, input_bytes=input_bytes, activation_bytes=activation_bytes,
        peak_activation_bytes=peak_activation_bytes(graph), training_bytes=training, receptive_field=final,
    )


def dtype_bytes(dtype: str) -> int:
    """Bytes per element of a dtype name."""
    return DTYPE_BYTES[dtype]
