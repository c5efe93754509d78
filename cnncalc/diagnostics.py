"""Design smells that the notes this tool grew from call out, found on an analysed graph.

Each finding carries the numbers behind it. Ops are recognised by what they say about
themselves (kernel class, window, weights), never by their type.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .ir import Graph, show_shape

if TYPE_CHECKING:
    from .analysis import Diagnostic, LayerReport, NetworkReport

#: FC layers holding more than this share of all params get a warning
FC_PARAM_SHARE = 0.5
#: kernel classes that do no spatial mixing and keep one input (looked through when walking a chain)
PASS_THROUGH = ("elementwise", "reshape")


def design_diagnostics(graph: Graph, report: NetworkReport) -> list[Diagnostic]:
    """All design findings for one network, in spec order."""
    return [
        *_strided_convs(report),
        *_receptive_field_vs_input(report),
        *_fc_heavy(report),
        *_pool_placement(graph, report),
    ]


def _make(level: str, code: str, message: str, layer: LayerReport | None = None,
          hint: str | None = None) -> Diagnostic:
    from .analysis import Diagnostic

    return Diagnostic(level, message, layer.pos if layer else None, layer.name if layer else None, hint, code)


def _stride(layer: LayerReport, report: NetworkReport) -> int:
    """Largest stride of a layer's window (1 for pointwise layers)."""
    graph = report.graph
    assert graph is not None
    node = graph.nodes[layer.index]
    window = node.op.window([graph.shapes[name] for name in node.inputs])
    return max(window.stride) if window else 1


def _strided_convs(report: NetworkReport) -> list[Diagnostic]:
    """Strided convolutions skip input positions; the notes keep them for hardware limits."""
    strided = [layer for layer in report.layers if layer.cost_class.startswith("conv") and _stride(layer, report) > 1]
    if not strided:
        return []
    names = ", ".join(f"{layer.name} ({layer.label})" for layer in strided[:4])
    more = f" and {len(strided) - 4} more" if len(strided) > 4 else ""
    first = strided[0]
    s = _stride(first, report)
    return [_make(
        "warning", "strided-conv",
        f"{len(strided)} conv(s) use stride > 1: {names}{more}. A strided conv skips input positions "
        f"(checkerboard risk, blurrier features); it pays off only under a hardware limit",
        first,
        hint=f"stride 1 then MP({s}) sees every pixel at {s * s}x the conv's MACs "
             f"({first.macs:,} -> {first.macs * s * s:,}); keep the stride if the device needs it",
    )]


def _receptive_field_vs_input(report: NetworkReport) -> list[Diagnostic]:
    """A final field smaller than the input cannot see a whole object that fills the image."""
    field = report.totals.receptive_field
    height, width = report.input[0], report.input[1]
    if field.size[0] >= height and field.size[1] >= width:
        return []
    share = min(field.size[0] / height, field.size[1] / width)
    return [_make(
        "warning", "receptive-field",
        f"final receptive field {field.size[0]}x{field.size[1]} covers {share:.0%} of the "
        f"{height}x{width} input",
        hint="add 3x3 layers or downsample earlier if the network must see whole objects",
    )]


def _fc_heavy(report: NetworkReport) -> list[Diagnostic]:
    """FC layers that hold most of the parameters; the notes avoid them for that reason."""
    fc_layers = [layer for layer in report.layers if layer.cost_class == "gemm"]
    total = report.totals.params
    fc_params = sum(layer.params for layer in fc_layers)
    if not fc_layers or total == 0 or fc_params <= FC_PARAM_SHARE * total:
        return []
    first = fc_layers[0]
    graph = report.graph
    assert graph is not None
    hint = "flattening throws away where features are; a GAP before the classifier keeps params small"
    producer = graph.nodes[first.index].inputs[0]
    if producer != graph.input_name:
        flattened = graph.shapes[graph.node(producer).inputs[0]] if graph.node(producer).inputs else ()
        if len(flattened) == 3:
            channels, outputs = flattened[0], first.shape[0]
            # GAP then FC: C * n weights + n biases
            hint = (f"GAP then {first.label}: {channels * outputs + outputs:,} params instead of {first.params:,} "
                    f"(the input {show_shape(flattened)} pooled to 1x1x{channels})")
    return [_make(
        "warning", "fc-params",
        f"fully connected layers hold {fc_params / total:.0%} of the parameters ({fc_params:,} of {total:,})",
        first, hint=hint,
    )]


def _pool_placement(graph: Graph, report: NetworkReport) -> list[Diagnostic]:
    """Downsampling pools next to each other, or right before the classifier."""
    consumers: dict[str, list[int]] = {}
    for index, node in enumerate(graph.nodes):
        for name in node.inputs:
            consumers.setdefault(name, []).append(index)
    found = []
    for layer in report.layers:
        if layer.cost_class != "pool" or _stride(layer, report) == 1:
            continue
        following = _next_mixing_layer(layer, report, consumers)
        if following is None:
            continue
        if following.cost_class == "pool" and _stride(following, report) > 1:
            found.append(_make(
                "warning", "adjacent-pools",
                f"{layer.name} ({layer.label}) and {following.name} ({following.label}) are pools with nothing "
                f"learned between them: the second discards features the first already thinned",
                following, hint=f"put conv layers between them or merge them into one pool of stride "
                                f"{_stride(layer, report) * _stride(following, report)}",
            ))
        elif following.cost_class == "gemm":
            found.append(_make(
                "warning", "pool-before-classifier",
                f"{layer.name} ({layer.label}) sits right before the classifier {following.name}: "
                f"max-pooling is best kept far from the final layer",
                layer, hint="end the feature extractor with a conv and use GAP (or no pool) before FC",
            ))
    return found


def _next_mixing_layer(layer: LayerReport, report: NetworkReport,
                       consumers: dict[str, list[int]]) -> LayerReport | None:
    """The next layer that does real work, looking through activations, BN and reshapes on a single path."""
    current = layer
    while True:
        users = consumers.get(current.name, [])
        if len(users) != 1:
            return None
        current = report.layers[users[0]]
        if current.cost_class not in PASS_THROUGH or len(current.inputs) != 1:
            return current
