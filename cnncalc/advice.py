"""Design advice with the numbers behind it, from the heuristics the tool grew from.

The notes teach: 3x3 kernels and enough depth for the receptive field the task needs; 1x1
bottlenecks before 3x3 work on many channels; stride instead of pooling only when the hardware
forces it; no large fully connected layers; max-pools far apart and far from the classifier; fill
the device's memory with the batch. Each rule below reads an analysed `NetworkReport` (and its
hardware costs, when profiles were given) and returns `Advice` items whose `numbers` hold every
figure quoted in the text, so tests and reports can check them. Ops are recognised by what they
say about themselves (kernel class, window, weights), never by their type.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .ir import DTYPE_BYTES, MAX_BATCH, Graph, Node, show_shape
from .ops.base import Op, Shape, Window, numel

if TYPE_CHECKING:
    from .analysis import Diagnostic, LayerReport, NetworkReport, ReceptiveField
    from .errors import SpecError
    from .hardware import NetworkCost, Profile

#: FC layers holding more than this share of all params get a warning
FC_PARAM_SHARE = 0.5
#: an input with more channels than this is a feature map: the chain is a fragment of a network
IMAGE_CHANNELS = 4
#: kernel classes that do no spatial mixing and keep one input (looked through when walking a chain)
PASS_THROUGH = ("elementwise", "reshape")
#: a 3x3 conv gets the bottleneck hint when both its channel counts are at least this (the notes: 256 -> 512)
BOTTLENECK_MIN_CHANNELS = 256
#: bottleneck width = min(Cin, Cout) / this (the notes' example: 256 -> 32 -> 32 -> 512)
BOTTLENECK_REDUCTION = 8
#: at most this many stride/pool swaps are costed per network (the costliest first)
MAX_SWAPS = 3
#: variations of an op tried when looking for a strided or unstrided twin
MAX_VARIATIONS = 200
#: a conv + pool pair is memory-bound on a profile when at least this share of its time is in memory-bound kernels
MEMORY_BOUND_SHARE = 0.5
#: the optimizer training memory is quoted for (the report's headline)
TRAIN_OPTIMIZER = "sgd-momentum"


@dataclass
class Advice:
    """One hint about the design; `numbers` holds every figure the text quotes."""

    code: str
    level: str  # "error" | "warning" | "info"
    message: str
    hint: str | None = None
    layer: str | None = None
    position: int | None = None
    numbers: dict[str, Any] = field(default_factory=dict)

    def diagnostic(self) -> Diagnostic:
        """The same finding as an analysis Diagnostic (what `report.diagnostics` and JSON carry)."""
        from .analysis import Diagnostic

        return Diagnostic(self.level, self.message, self.position, self.layer, self.hint, self.code)


def advise(report: NetworkReport, object_size: int | None = None,
           profiles: Sequence[Profile] = ()) -> list[Advice]:
    """Every rule on one analysed network; hardware rules only run when the report has costs.

    `profiles` are the Profile objects behind `report.costs` (looked up by name when not given);
    the stride/pool rules re-analyse alternatives on them.
    """
    if report.graph is None:
        return []
    return [
        *receptive_field_vs_input(report),
        *object_size_reached(report, object_size),
        *fc_heavy(report),
        *pool_placement(report),
        *bottlenecks(report),
        *pool_first(report),
        *strided_convs(report),
        *stride_for_pool(report, profiles),
        *pool_for_stride(report, profiles),
        *batch_limits(report),
    ]


def diagnostics(report: NetworkReport, object_size: int | None = None,
                profiles: Sequence[Profile] = ()) -> list[Diagnostic]:
    """`advise` as analysis Diagnostics, for `report.diagnostics` and the renderers."""
    return [item.diagnostic() for item in advise(report, object_size, profiles)]


def profiles_for(report: NetworkReport, profiles: Sequence[Profile] = ()) -> list[Profile]:
    """The Profile objects of `report.costs`, in its order: from `profiles`, else the known profiles by name."""
    given = {profile.name: profile for profile in profiles}
    missing = [name for name in report.costs if name not in given]
    if missing:
        from .hardware import load_profiles

        known = load_profiles()
        given.update({name: known[name] for name in missing if name in known})
    return [given[name] for name in report.costs if name in given]


# ---- helpers -------------------------------------------------------------------
def _make(code: str, level: str, message: str, layer: LayerReport | None = None, hint: str | None = None,
          **numbers: Any) -> Advice:
    return Advice(code, level, message, hint, layer.name if layer else None, layer.pos if layer else None,
                  dict(numbers))


def _graph(report: NetworkReport) -> Graph:
    assert report.graph is not None
    return report.graph


def _in_shapes(graph: Graph, node: Node) -> list[Shape]:
    return [graph.shapes[name] for name in node.inputs]


def _window(layer: LayerReport, report: NetworkReport) -> Window | None:
    """A layer's window (kernel, stride, pads) on its input, None for pointwise layers."""
    graph = _graph(report)
    node = graph.nodes[layer.index]
    return node.op.window(_in_shapes(graph, node))


def _stride(layer: LayerReport, report: NetworkReport) -> int:
    """Largest stride of a layer's window (1 for pointwise layers)."""
    window = _window(layer, report)
    return max(window.stride) if window else 1


def _macs_on_positions(layer: LayerReport, positions: int) -> int:
    """A layer's MACs at `positions` output positions instead of its own H x W: a 1x1's work per position is
    the same everywhere (pool first, then the 1x1, runs it on the pooled positions only)."""
    _, height, width = layer.shape
    return layer.macs // (height * width) * positions


def _consumers(graph: Graph) -> dict[str, list[int]]:
    """Tensor name -> indices of the nodes that read it."""
    users: dict[str, list[int]] = {}
    for index, node in enumerate(graph.nodes):
        for name in node.inputs:
            users.setdefault(name, []).append(index)
    return users


def _pass_through_chain(layer: LayerReport, report: NetworkReport,
                        users: dict[str, list[int]]) -> tuple[list[LayerReport], LayerReport | None]:
    """The activations/BN/reshapes after `layer` on a single path, and the next layer that does real work."""
    chain: list[LayerReport] = []
    current = layer
    while True:
        following = users.get(current.name, [])
        if len(following) != 1 or current.name == _graph(report).output:
            return chain, None
        current = report.layers[following[0]]
        if current.cost_class not in PASS_THROUGH or len(current.inputs) != 1:
            return chain, current
        chain.append(current)


def _is_conv(layer: LayerReport) -> bool:
    return layer.cost_class.startswith("conv")


def _is_any_conv(layer: LayerReport) -> bool:
    """A conv of any kind, depthwise too: what striding and pooling advice applies to (MobileNetV2's s=2 convs)."""
    return _is_conv(layer) or layer.cost_class == "depthwise"


def _is_downsampling_pool(layer: LayerReport, report: NetworkReport) -> bool:
    return layer.cost_class == "pool" and _stride(layer, report) > 1


def _pct(part: float, whole: float) -> str:
    return f"{part / whole:.0%}" if whole else "-"


# ---- receptive field -----------------------------------------------------------
def _convs_needed(missing: int, jump: int, kernel: int = 3) -> int:
    """k x k convs at the final jump needed to grow the field by `missing` pixels: each adds (k - 1) * j."""
    return max(0, math.ceil(missing / ((kernel - 1) * jump)))


def receptive_field_vs_input(report: NetworkReport) -> list[Advice]:
    """A final field smaller than the input cannot see a whole object that fills the image.

    Only for an image input (at most IMAGE_CHANNELS channels): a chain that starts from a feature
    map is a fragment of a network (the notes' `224x224x32|3x3x32x64...`), whose field in pixels
    of the real image the fragment cannot know.
    """
    if len(report.input) < 3 or report.input[2] > IMAGE_CHANNELS:
        return []
    rf, pool = _field_before_global_pool(report)
    height, width = report.input[0], report.input[1]
    if rf.size[0] >= height and rf.size[1] >= width:
        return []
    share = min(rf.size[0] / height, rf.size[1] / width)
    missing = max(height - rf.size[0], width - rf.size[1])
    jump = max(rf.jump)
    more = _convs_needed(missing, jump)
    where = f" before {pool.name} ({pool.label}, which pools each feature over the map)" if pool else ""
    return [_make(
        "receptive-field", "warning",
        f"final receptive field {rf.size[0]}x{rf.size[1]}{where} covers {share:.0%} of the {height}x{width} "
        f"input: the last layer sees parts, never a whole object that fills the image",
        hint=f"{more} more 3x3 conv(s) at the final effective stride {jump} would add {2 * jump * more} px "
             f"(each adds 2 x {jump}); or downsample earlier so each 3x3 adds more",
        field_h=rf.size[0], field_w=rf.size[1], input_h=height, input_w=width, share=share,
        missing_px=missing, jump=jump, convs_needed=more,
    )]


def _field_before_global_pool(report: NetworkReport) -> tuple[ReceptiveField, LayerReport | None]:
    """The field to judge, and the global pool it was read before (None: the network's final field).

    A pool whose window covers its whole map (GAP, GMP, or AP(7) on a 7x7 map) makes every output's field the
    whole input, yet each feature it pools still sees only its own field: `32x32x3|3x3x3x8(p=1)|GAP|FC(10)`
    recognises 3x3 patterns anywhere, never a 32x32 object. Flatten and FC keep where each feature came
    from, so a classifier after them does see the whole image."""
    from .analysis import INPUT_FIELD

    shapes = report.graph.shapes if report.graph is not None else {}
    fields = {layer.name: layer.receptive_field for layer in report.layers}
    for layer in report.layers:
        if layer.cost_class != "pool" or len(layer.shape) != 3 or layer.shape[1:] != (1, 1):
            continue
        source = layer.inputs[0]
        in_shape = shapes.get(source, ())
        if len(in_shape) == 3 and in_shape[1] * in_shape[2] > 1:
            return fields.get(source, INPUT_FIELD), layer
    return report.totals.receptive_field, None


def object_size_reached(report: NetworkReport, object_size: int | None) -> list[Advice]:
    """Where the field first covers an object of the size the user gives (--object-size)."""
    if object_size is None:
        return []
    for depth, layer in enumerate(report.layers, start=1):
        rf = layer.receptive_field
        if min(rf.size) >= object_size:
            return [_make(
                "object-size", "info",
                f"the receptive field first covers a {object_size} px object at {layer.name} ({layer.label}), "
                f"# {layer.index} in the table, layer {depth} of {len(report.layers)}: "
                f"field {rf.size[0]}x{rf.size[1]}, stride {max(rf.jump)}; "
                f"layers before it see edges and parts of such objects",
                layer, object_size=object_size, depth=depth, layers=len(report.layers),
                field=min(rf.size), jump=max(rf.jump),
            )]
    rf = report.totals.receptive_field
    jump = max(rf.jump)
    more = _convs_needed(object_size - min(rf.size), jump)
    return [_make(
        "object-size", "warning",
        f"the final receptive field {rf.size[0]}x{rf.size[1]} never covers a {object_size} px object: "
        f"the network sees only parts of it",
        hint=f"{more} more 3x3 conv(s) at the final effective stride {jump} reach {min(rf.size) + 2 * jump * more} px",
        object_size=object_size, field=min(rf.size), jump=jump, convs_needed=more,
    )]


# ---- fully connected layers --------------------------------------------------------
def fc_heavy(report: NetworkReport) -> list[Advice]:
    """FC layers that hold most of the parameters; a global pool before the classifier keeps it small."""
    fc_layers = [layer for layer in report.layers if layer.cost_class == "gemm"]
    total = report.totals.params
    fc_params = sum(layer.params for layer in fc_layers)
    if not fc_layers or total == 0 or fc_params <= FC_PARAM_SHARE * total:
        return []
    first = fc_layers[0]
    numbers: dict[str, Any] = {"fc_params": fc_params, "total_params": total, "share": fc_params / total}
    hint = "flattening throws away where features are; a GAP before the classifier keeps params small"
    graph = _graph(report)
    flattened = _flattened_image(graph, graph.nodes[first.index])
    if flattened is not None:
        channels, height, width = flattened
        outputs = first.shape[0]
        bias = first.params - channels * height * width * outputs  # what the FC adds beyond its weights
        # GAP then the same FC: C * n weights + the same biases
        gap_params = channels * outputs + bias
        saving = first.params - gap_params
        numbers.update(gap_params=gap_params, saving=saving, channels=channels, height=height, width=width,
                       outputs=outputs)
        if height * width > 1:
            hint = (f"GAP to 1x1x{channels} then {first.label}: {channels:,} x {outputs:,} + {bias:,} = "
                    f"{gap_params:,} params instead of {height * width * channels:,} x {outputs:,} + {bias:,} = "
                    f"{first.params:,} (saves {saving:,}, {_pct(saving, total)} of the network)")
        else:
            hint = "its input is already pooled to 1x1; its size is set by the widths of the FC layers"
    return [_make(
        "fc-params", "warning",
        f"fully connected layers hold {fc_params / total:.0%} of the parameters ({fc_params:,} of {total:,})",
        first, hint=hint, **numbers,
    )]


def _flattened_image(graph: Graph, fc: Node) -> tuple[int, int, int] | None:
    """(C, H, W) of the image an FC layer reads through a flatten, if it does."""
    producer = fc.inputs[0]
    if producer == graph.input_name:
        return None
    source = graph.node(producer)
    if len(graph.shapes[producer]) != 1 or len(source.inputs) != 1:
        return None
    image = graph.shapes[source.inputs[0]]
    return (image[0], image[1], image[2]) if len(image) == 3 else None


# ---- pooling placement -------------------------------------------------------------
def pool_placement(report: NetworkReport) -> list[Advice]:
    """Downsampling pools next to each other, or right before the classifier."""
    users = _consumers(_graph(report))
    found = []
    for layer in report.layers:
        if not _is_downsampling_pool(layer, report):
            continue
        _, following = _pass_through_chain(layer, report, users)
        if following is None:
            continue
        if _is_downsampling_pool(following, report):
            s1, s2 = _stride(layer, report), _stride(following, report)
            source = show_shape(_graph(report).shapes[report.layers[layer.index].inputs[0]])
            found.append(_make(
                "adjacent-pools", "warning",
                f"{layer.name} ({layer.label}) and {following.name} ({following.label}) are pools with nothing "
                f"learned between them ({source} -> {_hwc(layer)} -> {_hwc(following)}): the second discards "
                f"features the first already thinned",
                following, hint=f"put conv layers between them, or merge them into one pool of stride {s1 * s2}",
                first_stride=s1, second_stride=s2, merged_stride=s1 * s2,
            ))
        elif following.cost_class == "gemm":
            # the classifier's weights scale with what it reads: pooled H*W*C now, C after a GAP, s^2 more without
            pooled_c, pooled_h, pooled_w = layer.shape
            source_c, source_h, source_w = _graph(report).shapes[layer.inputs[0]]
            outputs = following.shape[0]
            bias = following.params - pooled_c * pooled_h * pooled_w * outputs
            gap_params = source_c * outputs + bias
            unpooled_params = source_c * source_h * source_w * outputs + bias
            found.append(_make(
                "pool-before-classifier", "warning",
                f"{layer.name} ({layer.label}) sits right before the classifier {following.name} "
                f"({following.label}, {following.params:,} params on the pooled {_hwc(layer)}): "
                f"{'max-pooling' if layer.op_type == 'MaxPool' else 'a downsampling pool'} is best kept far "
                f"from the final layer",
                layer,
                hint=f"end the feature extractor with a conv and put GAP where {layer.name} is: {following.name} "
                     f"then needs {gap_params:,} params instead of {following.params:,}; dropping the pool alone "
                     f"would feed it the whole {source_h}x{source_w}x{source_c} ({unpooled_params:,} params)",
                pooled=_hwc(layer), classifier_params=following.params, gap_params=gap_params,
                unpooled_params=unpooled_params,
            ))
    return found


def _hwc(layer: LayerReport) -> str:
    return "x".join(str(d) for d in layer.output)


# ---- 1x1 bottlenecks ----------------------------------------------------------------
@dataclass(frozen=True)
class Bottleneck:
    """A k x k conv on many channels and its 1x1 -> k x k -> 1x1 alternative, for the whole batch."""

    layer: LayerReport
    kernel: tuple[int, int]
    in_channels: int
    out_channels: int
    width: int
    weights: int
    alt_weights: int
    macs: int
    alt_macs: int

    def alternative(self) -> str:
        kh, kw = self.kernel
        m = self.width
        return f"1x1x{self.in_channels}x{m} | {kh}x{kw}x{m}x{m} | 1x1x{m}x{self.out_channels}"


def _kernel(graph: Graph, node: Node) -> tuple[int, int, int, int] | None:
    """(Cout, Cin / groups, Kh, Kw) of a node's 4-D trainable weight, if it has one."""
    shapes = [w.shape for w in node.op.weights(_in_shapes(graph, node)) if w.trainable and len(w.shape) == 4]
    return (shapes[0][0], shapes[0][1], shapes[0][2], shapes[0][3]) if shapes else None


def _after_pointwise_conv(graph: Graph, node: Node) -> bool:
    """Whether the layer feeding `node` (through activations/BN) is a 1x1 conv."""
    name = node.inputs[0]
    while name != graph.input_name:
        producer = graph.node(name)
        kernel = _kernel(graph, producer)
        if kernel is not None:
            return kernel[2] * kernel[3] == 1
        if producer.op.cost_class not in PASS_THROUGH or len(producer.inputs) != 1:
            return False
        name = producer.inputs[0]
    return False


def bottleneck_candidates(report: NetworkReport) -> list[Bottleneck]:
    """Ungrouped k x k convs (k > 1) with at least BOTTLENECK_MIN_CHANNELS in and out."""
    graph = _graph(report)
    found = []
    for layer in report.layers:
        if not _is_conv(layer):
            continue
        node = graph.nodes[layer.index]
        in_shapes = _in_shapes(graph, node)
        kernel = _kernel(graph, node)
        if kernel is None or len(in_shapes[0]) != 3:
            continue
        cout, cin_per_group, kh, kw = kernel
        cin, hin, win = in_shapes[0]
        _, hout, wout = layer.shape
        if kh * kw == 1 or cin_per_group != cin or min(cin, cout) < BOTTLENECK_MIN_CHANNELS:
            continue
        if _after_pointwise_conv(graph, node):  # already the middle of a bottleneck
            continue
        m = min(cin, cout) // BOTTLENECK_REDUCTION
        # weights: kh*kw*Cin*Cout against Cin*m + kh*kw*m*m + m*Cout (biases left out of both)
        weights = kh * kw * cin * cout
        alt_weights = cin * m + kh * kw * m * m + m * cout
        # MACs: the first 1x1 runs at the input resolution, the k x k and last 1x1 at the output's
        alt_macs = report.batch * (hin * win * cin * m + hout * wout * (kh * kw * m * m + m * cout))
        found.append(Bottleneck(layer, (kh, kw), cin, cout, m, weights, alt_weights, layer.macs, alt_macs))
    return found


def bottlenecks(report: NetworkReport) -> list[Advice]:
    """The costliest k x k conv on many channels, with the 1x1 bottleneck alternative and the saving."""
    candidates = bottleneck_candidates(report)
    if not candidates:
        return []
    top = max(candidates, key=lambda c: c.macs)
    all_macs = sum(c.macs for c in candidates)
    all_alt = sum(c.alt_macs for c in candidates)
    others = (f"; all {len(candidates)} such convs: {all_macs:,} -> {all_alt:,} MACs "
              f"(saves {_pct(all_macs - all_alt, report.totals.macs)} of the network's MACs)"
              if len(candidates) > 1 else "")
    kh, kw = top.kernel
    return [_make(
        "bottleneck", "info",
        f"{top.layer.name} ({top.layer.label}) does {kh}x{kw} work on {top.in_channels} -> {top.out_channels} "
        f"channels: {top.weights:,} weights, {top.macs:,} MACs",
        top.layer,
        hint=f"a 1x1 bottleneck {top.alternative()} (the notes' width, min(Cin, Cout) / {BOTTLENECK_REDUCTION}; "
             f"ResNet's blocks use / 4) needs {top.alt_weights:,} weights and "
             f"{top.alt_macs:,} MACs, {_pct(top.macs - top.alt_macs, top.macs)} fewer MACs{others}; "
             f"the 1x1s merge and filter channels so the {kh}x{kw} works on fewer",
        width=top.width, weights=top.weights, alt_weights=top.alt_weights, macs=top.macs, alt_macs=top.alt_macs,
        saving_macs=top.macs - top.alt_macs, candidates=len(candidates), all_macs=all_macs, all_alt_macs=all_alt,
    )]


# ---- pool before 1x1 ---------------------------------------------------------------
def pool_first(report: NetworkReport) -> list[Advice]:
    """A 1x1 conv at full resolution whose output a downsampling pool then thins: pool first, 1x1 after.

    The notes: at the end of a block both MP and 1x1 filter features, and the trend is MP first,
    then 1x1 ("check the computation"). A 1x1 (stride 1, no padding) keeps H x W, so the pool on its
    input gives the same output shape, and the 1x1 then runs on the pooled positions only.
    """
    graph = _graph(report)
    users = _consumers(graph)
    found = []
    for layer in report.layers:
        if not _is_conv(layer) or len(layer.shape) != 3:
            continue
        window = _window(layer, report)
        if window is None or window.kernel != (1, 1) or window.stride != (1, 1) or window.pad != (0, 0):
            continue
        between, following = _pass_through_chain(layer, report, users)
        if following is None or not _is_downsampling_pool(following, report):
            continue
        _, height, width = layer.shape
        _, pooled_h, pooled_w = following.shape
        alt_macs = _macs_on_positions(layer, pooled_h * pooled_w)
        saving = layer.macs - alt_macs
        chain = " | ".join([following.label, layer.label, *(step.label for step in between)])
        found.append(_make(
            "pool-first", "info",
            f"{layer.name} ({layer.label}) runs at {height}x{width} and {following.name} ({following.label}) then "
            f"keeps {pooled_h}x{pooled_w} of its output: {layer.macs:,} MACs, {saving:,} of them on positions "
            f"the pool thins out",
            layer,
            hint=f"pool first, then the 1x1 (the notes' trend: MP before the 1x1 at the end of a block): {chain} "
                 f"gives the same {_hwc(following)} output with {alt_macs:,} MACs for the 1x1 "
                 f"(saves {_pct(saving, report.totals.macs)} of the network's MACs)",
            macs=layer.macs, alt_macs=alt_macs, saving_macs=saving, alternative=chain,
        ))
    return found


# ---- stride versus pooling ----------------------------------------------------------
def strided_convs(report: NetworkReport) -> list[Advice]:
    """Strided convolutions skip input positions; the notes keep them for hardware limits."""
    strided = [layer for layer in report.layers if _is_any_conv(layer) and _stride(layer, report) > 1]
    if not strided:
        return []
    names = ", ".join(f"{layer.name} ({layer.label})" for layer in strided[:4])
    more = f" and {len(strided) - 4} more" if len(strided) > 4 else ""
    first = strided[0]
    s = _stride(first, report)
    if _kernel_below_stride(first, report):
        # 1x1 at stride 2 never reads 3 of every 4 pixels; a pool in front of it reads them all at the same MACs
        # (ResNet-D's shortcut: He et al., Bag of Tricks, 2019, puts a 2x2 average pool before its 1x1)
        graph = _graph(report)
        node = graph.nodes[first.index]
        unstrided = _twin(node.op, _in_shapes(graph, node), 1, None)
        from .ops.maxpool import MaxPool

        _, height, width = first.shape
        _, pooled_h, pooled_w = MaxPool((s, s), (s, s)).output_shape(_in_shapes(graph, node))
        alt_macs = _macs_on_positions(first, pooled_h * pooled_w)
        same = "the same" if alt_macs == first.macs else f"{first.macs:,} ->"
        hint = (f"MP({s}) | {unstrided.describe() if unstrided else first.label} sees every pixel at {same} "
                f"{alt_macs:,} MACs: the pool does the downsampling, the conv runs on the pooled positions"
                + ("" if (pooled_h, pooled_w) == (height, width) else
                   f" ({pooled_h}x{pooled_w} instead of {height}x{width}: the pool drops an incomplete last window)"))
    else:
        hint = (f"stride 1 then MP({s}) sees every pixel at about {s * s}x the conv's MACs "
                f"({first.macs:,} -> {first.macs * s * s:,}); keep the stride if the device needs it")
        alt_macs = first.macs * s * s
    return [_make(
        "strided-conv", "warning",
        f"{len(strided)} conv(s) use stride > 1: {names}{more}. A strided conv skips input positions "
        f"(checkerboard risk, blurrier features); it pays off only under a hardware limit",
        first, hint=hint, count=len(strided), stride=s, macs=first.macs, alt_macs=alt_macs,
    )]


def _kernel_below_stride(layer: LayerReport, report: NetworkReport) -> bool:
    """Whether a conv's window is smaller than its stride on some axis: it never reads some input pixels."""
    window = _window(layer, report)
    return window is not None and any(k < s for k, s in zip(window.kernel, window.stride, strict=True))


@dataclass(frozen=True)
class Swap:
    """A design and its stride/pool alternative, each analysed on the same profiles."""

    conv: LayerReport
    pool: LayerReport | None  # the pool removed (stride-for-pool) or None (pool-for-stride)
    graph: Graph  # the alternative network
    alternative: str  # the alternative written in the spec language
    between: tuple[LayerReport, ...] = ()  # activations/BN between the conv and the pool


def _twin(op: Op, in_shapes: list[Shape], want_stride: int, want_out: Shape | None,
          pool: Op | None = None) -> Op | None:
    """The first of the op's own variations with stride `want_stride` and the same kernel that gives `want_out`."""
    window = op.window(in_shapes)
    if window is None:
        return None
    for tries, (_, candidate) in enumerate(op.variations()):
        if tries >= MAX_VARIATIONS:
            break
        try:
            twin_window = candidate.window(in_shapes)
            if twin_window is None or twin_window.kernel != window.kernel:
                continue
            if twin_window.stride != (want_stride, want_stride):
                continue
            out = candidate.output_shape(in_shapes)
            if pool is not None:
                out = pool.output_shape([out])
            if want_out is None or tuple(out) == tuple(want_out):
                return candidate
        except Exception:  # noqa: BLE001 - a variation that does not fit is just not a twin
            continue
    return None


def _rebuild(graph: Graph, nodes: list[Node], rename: dict[str, str], output: str | None = None) -> Graph | None:
    """A new graph from edited nodes, reads of renamed tensors redirected; None if its shapes fail."""
    fixed = [dataclasses.replace(node, inputs=tuple(rename.get(name, name) for name in node.inputs))
             for node in nodes]
    output = output or rename.get(graph.output, graph.output)
    try:
        return dataclasses.replace(graph, nodes=tuple(fixed), output=output, shapes={})
    except Exception:  # noqa: BLE001 - an alternative that does not build is not offered
        return None


def stride_swaps(report: NetworkReport) -> list[Swap]:
    """Conv (stride 1) -> [activation/BN] -> downsampling pool, rebuilt as one strided conv."""
    graph = _graph(report)
    users = _consumers(graph)
    swaps = []
    for layer in report.layers:
        if not _is_any_conv(layer) or _stride(layer, report) != 1:
            continue
        between, following = _pass_through_chain(layer, report, users)
        if following is None or not _is_downsampling_pool(following, report):
            continue
        node = graph.nodes[layer.index]
        window = node.op.window(_in_shapes(graph, node))
        pool_stride = _stride(following, report)
        if window is None or min(window.kernel) < pool_stride:
            continue  # a 1x1 at stride 2 reads 1 pixel in 4: pool first instead (pool_first)
        pool_in = following.inputs[0]
        twin = _twin(node.op, _in_shapes(graph, node), pool_stride, (layer.shape[0], *following.shape[1:]))
        if twin is None:
            continue
        nodes = [dataclasses.replace(n, op=twin) if n.name == layer.name else n
                 for n in graph.nodes if n.name != following.name]
        alt = _rebuild(graph, nodes, {following.name: pool_in})
        if alt is not None:
            swaps.append(Swap(layer, following, alt, twin.describe(), tuple(between)))
    return sorted(swaps, key=lambda s: -s.conv.macs)[:MAX_SWAPS]


def pool_swaps(report: NetworkReport) -> list[Swap]:
    """Strided conv -> the same conv at stride 1, then a max-pool of that stride after its activations."""
    from .ops.maxpool import MaxPool  # the pooling the notes pair with stride-1 convs

    graph = _graph(report)
    users = _consumers(graph)
    swaps = []
    for layer in report.layers:
        if not _is_any_conv(layer):
            continue
        s = _stride(layer, report)
        if s == 1 or _kernel_below_stride(layer, report):
            continue  # a 1x1 at stride 2 has a free fix, a pool before it (strided_convs' hint), not a 4x one
        node = graph.nodes[layer.index]
        pool = MaxPool((s, s), (s, s))
        twin = _twin(node.op, _in_shapes(graph, node), 1, layer.shape, pool)
        if twin is None:
            continue
        between, _ = _pass_through_chain(layer, report, users)
        last = between[-1].name if between else layer.name
        pool_name = _fresh_name(graph, f"{last}_pool")
        nodes = []
        for n in graph.nodes:
            if n.name == layer.name:
                n = dataclasses.replace(n, op=twin)
            elif last in n.inputs:  # later readers of the conv's output now read the pool's
                n = dataclasses.replace(n, inputs=tuple(pool_name if i == last else i for i in n.inputs))
            nodes.append(n)
            if n.name == last:
                nodes.append(Node(pool_name, pool, (last,), label=pool.describe()))
        output = pool_name if graph.output == last else graph.output
        alt = _rebuild(graph, nodes, {}, output)
        if alt is not None:
            chain = [twin.describe(), *(step.label for step in between), pool.describe()]  # the pool after BN, ReLU
            swaps.append(Swap(layer, None, alt, " | ".join(chain)))
    return sorted(swaps, key=lambda s: -s.conv.macs)[:MAX_SWAPS]


def _fresh_name(graph: Graph, base: str) -> str:
    taken = {graph.input_name, *(node.name for node in graph.nodes)}
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}{n}"
    return name


def _alternative_report(report: NetworkReport, swap: Swap, profiles: Sequence[Profile]) -> NetworkReport:
    """The alternative analysed with the same batch, dtype and profiles as the original."""
    from .analysis import analyze

    return analyze(swap.graph, batch=report.batch, dtype=report.dtype, profiles=profiles_for(report, profiles))


def _cost_line(name: str, before: NetworkCost, after: NetworkCost, batch: int) -> str:
    """Latency and the largest batches of a design and its alternative on one profile."""
    from .render import human_ms

    train, alt_train = before.max_batch_training[TRAIN_OPTIMIZER], after.max_batch_training[TRAIN_OPTIMIZER]
    fits = after.max_batch_inference >= batch and alt_train >= batch
    return (f"{name}: {human_ms(before.latency_s)} -> {human_ms(after.latency_s)} ms, largest batch "
            f"{before.max_batch_inference:,} -> {after.max_batch_inference:,} for inference, {train:,} -> "
            f"{alt_train:,} for training ({'fits' if fits else 'does not fit'} at batch {batch})")


def _pressure(report: NetworkReport, name: str, swap: Swap) -> str | None:
    """Why profile `name` needs the cheaper design: the pair is memory-bound there, or the batch does not fit."""
    cost = report.costs[name]
    assert swap.pool is not None
    pair = [cost.layers[layer.index] for layer in (swap.conv, *swap.between, swap.pool)]
    pair_s = sum(layer.time_s for layer in pair)
    memory_s = sum(layer.time_s for layer in pair if layer.bound == "memory")
    if pair_s > 0 and memory_s >= MEMORY_BOUND_SHARE * pair_s:
        return f"{name} spends {memory_s * 1e3:.3g} of the pair's {pair_s * 1e3:.3g} ms in memory-bound kernels"
    infer, train = cost.max_batch_inference, cost.max_batch_training[TRAIN_OPTIMIZER]
    if infer < report.batch:  # then training, which keeps more, does not fit either
        return (f"batch {report.batch} does not fit on {name} (max {infer:,} for inference, "
                f"{train:,} for training)")
    if train < report.batch:  # say which: inference at this batch does fit
        return (f"training at batch {report.batch} does not fit on {name} "
                f"(max {train:,}; inference fits up to {infer:,})")
    return None


def stride_for_pool(report: NetworkReport, profiles: Sequence[Profile] = ()) -> list[Advice]:
    """Conv + pool on a profile that is memory-bound on them (or short of memory): one strided conv, costed."""
    if not report.costs:
        return []
    found = []
    for swap in stride_swaps(report):
        assert swap.pool is not None
        reasons = {name: why for name in report.costs if (why := _pressure(report, name, swap)) is not None}
        if not reasons:
            continue
        alt = _alternative_report(report, swap, profiles)
        if set(alt.costs) != set(report.costs):
            continue
        kept = numel(swap.pool.shape) / numel(swap.conv.shape)
        lines = "; ".join(_cost_line(name, report.costs[name], alt.costs[name], report.batch) for name in reasons)
        found.append(_make(
            "stride-for-pool", "info",
            f"{swap.conv.name} ({swap.conv.label}) writes {_bytes(swap.conv.activation_bytes)} at full resolution "
            f"for {swap.pool.name} ({swap.pool.label}) to keep {kept:.0%} of it; {'; '.join(reasons.values())}",
            swap.conv,
            hint=f"where the device forces it, {swap.alternative} replaces both: MACs {report.totals.macs:,} -> "
                 f"{alt.totals.macs:,}, peak activations {_bytes(report.totals.peak_activation_bytes)} -> "
                 f"{_bytes(alt.totals.peak_activation_bytes)}; {lines}. The stride skips pixels, so expect some "
                 f"quality loss",
            profiles=list(reasons), macs=report.totals.macs, alt_macs=alt.totals.macs,
            peak_bytes=report.totals.peak_activation_bytes, alt_peak_bytes=alt.totals.peak_activation_bytes,
            latency_s={name: report.costs[name].latency_s for name in reasons},
            alt_latency_s={name: alt.costs[name].latency_s for name in reasons},
            max_batch={name: report.costs[name].max_batch_inference for name in reasons},
            alt_max_batch={name: alt.costs[name].max_batch_inference for name in reasons},
            alternative=swap.alternative, kept=kept,
        ))
    return found


def pool_for_stride(report: NetworkReport, profiles: Sequence[Profile] = ()) -> list[Advice]:
    """Strided conv where a profile has room for stride 1 + max-pool: the quality option, costed."""
    if not report.costs:
        return []
    found = []
    for swap in pool_swaps(report):
        alt = _alternative_report(report, swap, profiles)
        if set(alt.costs) != set(report.costs):
            continue
        room = [name for name in report.costs if alt.costs[name].max_batch_inference >= report.batch
                and alt.costs[name].max_batch_training[TRAIN_OPTIMIZER] >= report.batch]
        # the notes' rule: stride where the hardware forces it; say where it does
        forced = "; ".join(
            f"on {name} the stride-1 version does not fit at batch {report.batch:,} (at most "
            f"{alt.costs[name].max_batch_inference:,} for inference, "
            f"{alt.costs[name].max_batch_training[TRAIN_OPTIMIZER]:,} for training): keep the stride there"
            for name in report.costs if name not in room)
        if not room:
            found.append(_make("pool-for-stride", "info",
                               f"{swap.conv.name} ({swap.conv.label}) skips input positions, and the hardware "
                               f"forces it: {forced}", swap.conv, profiles=[], alternative=swap.alternative))
            continue
        lines = "; ".join(_cost_line(name, report.costs[name], alt.costs[name], report.batch) for name in room)
        found.append(_make(
            "pool-for-stride", "info",
            f"{swap.conv.name} ({swap.conv.label}) skips input positions; {', '.join(room)} "
            f"{'has' if len(room) == 1 else 'have'} room for the stride-1 version" + (f"; {forced}" if forced else ""),
            swap.conv,
            hint=f"if quality matters, {swap.alternative} sees every pixel: MACs {report.totals.macs:,} -> "
                 f"{alt.totals.macs:,}, peak activations {_bytes(report.totals.peak_activation_bytes)} -> "
                 f"{_bytes(alt.totals.peak_activation_bytes)}; {lines}",
            profiles=room, macs=report.totals.macs, alt_macs=alt.totals.macs,
            peak_bytes=report.totals.peak_activation_bytes, alt_peak_bytes=alt.totals.peak_activation_bytes,
            latency_s={name: report.costs[name].latency_s for name in room},
            alt_latency_s={name: alt.costs[name].latency_s for name in room},
            alternative=swap.alternative,
        ))
    return found


# ---- batch ------------------------------------------------------------------------------
def batch_limits(report: NetworkReport) -> list[Advice]:
    """The largest batch that fits on each profile, and what takes the memory."""
    return [_batch_advice(report, name, cost) for name, cost in report.costs.items()]


def _batch_advice(report: NetworkReport, name: str, cost: NetworkCost) -> Advice:
    totals = report.totals
    usable = cost.usable_bytes
    # inference: weights stay, the activation peak grows with the batch
    per_sample = totals.peak_activation_bytes / report.batch
    # training (SGD-momentum): weights, gradients and momentum stay, every kept activation grows
    kept_per_sample = (totals.input_bytes + totals.activation_bytes) / report.batch
    fixed_training = totals.training_bytes[TRAIN_OPTIMIZER] - (totals.input_bytes + totals.activation_bytes)
    infer, train = cost.max_batch_inference, cost.max_batch_training[TRAIN_OPTIMIZER]
    problems = [f"{use} at batch {report.batch:,} does not fit"
                + (f" (at most {largest:,})" if largest else " even at batch 1" if report.batch > 1 else "")
                for use, largest in (("inference", infer), ("training", train)) if largest < report.batch]
    if totals.weight_bytes >= usable:
        limit = "the weights alone exceed it"
    elif infer == 0:  # "at batch 0 activations fill 0%" said nothing
        limit = (f"one sample's activations ({_bytes(per_sample)}) exceed the "
                 f"{_bytes(usable - totals.weight_bytes)} left after the weights")
    elif infer >= MAX_BATCH:  # capped: memory is not what stops it
        limit = (f"{MAX_BATCH:,} is the largest --batch; at it activations fill {_share(per_sample * infer, usable)} "
                 f"of the memory, weights {_share(totals.weight_bytes, usable)}")
    else:
        # at the largest batch, what fills the usable memory
        limit = (f"memory is the limit: at batch {infer:,} activations fill {_share(per_sample * infer, usable)} "
                 f"of it, weights {_share(totals.weight_bytes, usable)}")
    if train == 0 and 0 < fixed_training < usable <= fixed_training + kept_per_sample:
        limit += f"; for training, one sample's kept activations ({_bytes(kept_per_sample)}) do not fit either"
    elif train == 0 and totals.weight_bytes < usable <= fixed_training:
        limit += "; for training, weights, gradients and momentum alone exceed it"
    message = (f"{name}: {_bytes(usable)} usable; largest batch {infer:,} for inference "
               f"({_bytes(totals.weight_bytes)} weights + {_bytes(per_sample)} of activations per sample), "
               f"{train:,} for training with SGD-momentum ({_bytes(fixed_training)} weights, gradients and "
               f"momentum + {_bytes(kept_per_sample)} kept per sample); {limit}")
    hint = None
    if problems:
        hint = "; ".join(problems) + ": " + _memory_fixes(report, usable, infer, train, fixed_training)
    return _make(
        "batch", "warning" if problems else "info", message, hint=hint, profile=name, usable_bytes=usable,
        max_batch_inference=infer, max_batch_training=train, weight_bytes=totals.weight_bytes,
        per_sample_bytes=per_sample, fixed_training_bytes=fixed_training, kept_per_sample_bytes=kept_per_sample,
    )


def _share(part: float, whole: float) -> str:
    """part / whole as a whole percentage that never rounds to 0% or 100% unless it is (72 KiB of
    weights in 11.5 GiB read "weights 0%" beside "activations fill 100%")."""
    ratio = part / whole
    if 0 < ratio < 0.005:
        return "<1%"
    if 0.995 <= ratio < 1:
        return ">99%"
    return f"{ratio:.0%}"


def _memory_fixes(report: NetworkReport, usable: int, infer: int, train: int, fixed_training: int) -> str:
    """What would make the batch fit, only the fixes that can: a smaller batch not at batch 1, float16 not
    when the dtype is already 2 bytes or less, fewer activations not when the fixed part alone is too big."""
    failing = [(largest, fixed) for largest, fixed in ((infer, report.totals.weight_bytes), (train, fixed_training))
               if largest < report.batch]
    fixes = []
    if any(largest >= 1 for largest, _ in failing):
        fixes.append("lower the batch")
    if DTYPE_BYTES[report.dtype] > 2:
        fixes.append(f"use --dtype float16 (half the bytes of {report.dtype})")
    if any(largest == 0 and fixed >= usable for largest, fixed in failing):
        fixes.append("cut parameters (a GAP before the classifier, fewer channels)")
    if any(largest == 0 and fixed < usable for largest, fixed in failing):
        fixes.append("downsample earlier (fewer activation bytes per sample)")
    if not fixes:
        fixes.append("pick a device with more memory")
    return fixes[0] if len(fixes) == 1 else f"{', '.join(fixes[:-1])}, or {fixes[-1]}"


# ---- shape checkpoints ----------------------------------------------------------------------
_CHECKPOINT = re.compile(r"checkpoint (\d+x\d+x\d+) does not hold: the tensor here is (\d+x\d+x\d+)")


def checkpoint_advice(error: SpecError) -> list[Advice]:
    """A failed shape checkpoint from the parser, as advice: both shapes and the nearest change that holds."""
    found = _CHECKPOINT.search(error.message)
    if found is None:
        return []
    wanted, actual = found.group(1), found.group(2)
    return [Advice(
        "checkpoint", "error", error.message, error.hint, None, error.pos,
        {"wanted": wanted, "actual": actual, "fix": error.hint or ""},
    )]


def _bytes(value: float) -> str:
    from .render import human_bytes

    return human_bytes(value)



def refresh(report: NetworkReport, object_size: int | None = None, profiles: Sequence[Profile] = ()) -> None:
    """Add to `report.diagnostics` what only costs and --object-size reveal (analysis ran the rest)."""
    seen = {(d.code, d.message) for d in report.diagnostics}
    report.diagnostics.extend(d for d in diagnostics(report, object_size, profiles) if (d.code, d.message) not in seen)
