"""Pictures of an analysis: where the MACs and memory go, how the receptive field grows, where each
layer sits on each device's roofline, and variants side by side.

matplotlib is optional (the `plot` extra) and imported only here, inside the functions, so the
analyze command starts fast without it. Figures are built on `matplotlib.figure.Figure` with an
Agg canvas, never through pyplot, so nothing global changes. Every function reads `NetworkReport`s
and computes nothing the analysis has not already computed.
"""

from __future__ import annotations

import io
import itertools
import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import CnnCalcError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from .analysis import NetworkReport
    from .hardware import Profile

KINDS = ("layers", "receptive-field", "roofline", "variants")
FORMATS = (".png", ".svg")
#: a value axis switches to log scale when its largest non-zero value exceeds the smallest by this factor
LOG_RANGE = 50.0
#: layers named on the x axis when there are at most this many (else every n-th index)
MAX_NAMED_TICKS = 40
#: layers labelled by name on a roofline (the slowest)
ROOFLINE_LABELS = 3
#: legend labels wrap at this many characters, so one long variant name cannot widen the legend past the figure
LEGEND_WRAP = 48
#: colours by kernel class, then by bound
CLASS_COLOURS = {"conv": "#1f77b4", "depthwise": "#17becf", "gemm": "#d62728", "pool": "#2ca02c",
                 "elementwise": "#9e9e9e", "concat": "#8c564b", "reshape": "#cfcfcf"}
BOUND_COLOURS = {"compute": "#d62728", "memory": "#1f77b4", "overhead": "#7f7f7f"}
MARKERS = ("o", "s", "^", "D", "v", "P", "X")
STYLE = {
    "font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8,
    "xtick.labelsize": 8, "ytick.labelsize": 8, "axes.grid": True, "grid.alpha": 0.3,
    "axes.spines.top": False, "axes.spines.right": False, "svg.fonttype": "none", "svg.hashsalt": "cnncalc",
    # layer and network names are shown as written: 'conv$\\frac$' from an ONNX file is not TeX to typeset
    "text.parse_math": False,
}
INSTALL_HINT = "pip install 'cnncalc[plot]'"


def require_matplotlib() -> Any:
    """The matplotlib module, or a CnnCalcError naming the extra that installs it."""
    try:
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: F401 - the canvas we draw on
    except ImportError:
        raise CnnCalcError("plots need matplotlib, which is not installed",
                           hint=f"install the plot extra: {INSTALL_HINT}") from None
    return matplotlib


@contextmanager
def _style() -> Iterator[None]:
    matplotlib = require_matplotlib()
    with matplotlib.rc_context(STYLE):
        yield


def _figure(width: float, height: float) -> Figure:
    """A Figure on an Agg canvas, with layout managed so labels never overlap."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


# ---- axis helpers -------------------------------------------------------------
def _byte_unit(values: Sequence[float]) -> tuple[float, str]:
    """The binary unit that suits the largest value, so axes tick at round MiB/GiB, not at powers of ten of bytes."""
    largest = max(values, default=0)
    for factor, suffix in ((2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if largest >= factor:
            return float(factor), suffix
    return 1.0, "bytes"


def _si(unit: str = "", places: int | None = None) -> Any:
    """Tick text with SI prefixes (k, M, G, T)."""
    from matplotlib.ticker import EngFormatter

    return EngFormatter(unit=unit, places=places, sep=" ")


def _plain() -> Any:
    """Tick text as plain numbers (0.1, 1, 10): intensities are small and unitless ratios."""
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda value, _pos: f"{value:g}")


def _maybe_log(axes: Axes, values: Sequence[float]) -> bool:
    """Log scale when the non-zero values span more than LOG_RANGE; returns whether it did.

    The axis starts a power of ten below the smallest value (at least 2x below): autoscaled, it starts
    just under the smallest bar's top and that bar all but vanishes (LeNet-5's 840-MAC fc3)."""
    positive = [v for v in values if v > 0]
    if positive and max(positive) / min(positive) > LOG_RANGE:
        axes.set_yscale("log")
        axes.set_ylim(bottom=10 ** math.floor(math.log10(min(positive) / 2)))
        return True
    return False


def _layer_ticks(axes: Axes, report: NetworkReport, slots: int) -> None:
    """Layer names under the bars when few, else indices; `slots` keeps bar widths equal across columns."""
    count = len(report.layers)
    if count <= MAX_NAMED_TICKS:
        axes.set_xticks(range(count), [layer.name for layer in report.layers], rotation=90)
    else:
        step = max(1, math.ceil(count / 20))
        axes.set_xticks(range(0, count, step))
    axes.set_xlim(-0.7, slots - 0.3)


def _class_colour(cost_class: str) -> str:
    for prefix, colour in CLASS_COLOURS.items():
        if cost_class.startswith(prefix):
            return colour
    return CLASS_COLOURS["elementwise"]


def _class_legend(figure: Figure, classes: set[str]) -> None:
    """Kernel-class colours, under the panels where no bar can hide behind them."""
    from matplotlib.patches import Patch

    shown = [name for name in CLASS_COLOURS if any(c.startswith(name) for c in classes)]
    figure.legend(handles=[Patch(color=CLASS_COLOURS[name], label=name) for name in shown],
                  title="kernel class", loc="outside lower center", ncols=len(shown))


def _wrapped(text: str, width: int) -> str:
    """`text` broken onto lines of at most `width` characters (at '-', '_' or spaces where it can)."""
    import textwrap

    return "\n".join(textwrap.wrap(text, width, break_on_hyphens=True)) or text


def _legend_columns(labels: Sequence[str], figure_width: float) -> int:
    """As many legend columns as fit across `figure_width` inches at the legend's 8 pt (about 13 characters
    an inch), at most 4: long labels get fewer columns instead of running off both edges."""
    widest = max((min(len(label), LEGEND_WRAP) for label in labels), default=1)
    fitting = int(figure_width * 13 // (widest + 6))  # + marker, gap
    return max(1, min(4, len(labels), fitting))


def _network_label(report: NetworkReport) -> str:
    return f"{report.name} (batch {report.batch}, {report.dtype})"


# ---- per-layer MACs and activation memory ------------------------------------------
def layers_figure(reports: Sequence[NetworkReport]) -> Figure:
    """Per layer, MACs and activation memory as bars coloured by kernel class; one column per network."""
    from .render import human_count

    with _style():
        columns = len(reports)
        widest = max(len(r.layers) for r in reports)
        # every column as wide as its bars need (4 in at least, for its title), the whole at most 32 in
        if columns > 1:
            column_width = max(4.0, min(16.0, 2.0 + 0.16 * widest))
        else:
            column_width = max(6.5, min(16.0, 2.5 + 0.18 * widest))
        width = min(32.0, column_width * columns)
        figure = _figure(width, 7.0)
        title_chars = int(width / columns * 11)  # 10 pt titles: about 11 characters an inch
        grid = figure.subplots(2, columns, squeeze=False, sharey="row")
        factor, unit = _byte_unit([layer.activation_bytes for r in reports for layer in r.layers])
        figure.suptitle("MACs and activation memory per layer", fontweight="bold")
        for column, report in enumerate(reports):
            macs_axes, memory_axes = grid[0][column], grid[1][column]
            positions = range(len(report.layers))
            colours = [_class_colour(layer.cost_class) for layer in report.layers]
            macs_axes.bar(positions, [layer.macs for layer in report.layers], color=colours)
            memory_axes.bar(positions, [layer.activation_bytes / factor for layer in report.layers], color=colours)
            # the total as the tables write it ('924.84M'); wrapped, so neighbouring columns' titles never overlap
            macs_axes.set_title(_wrapped(f"{_network_label(report)}: MACs (total {human_count(report.totals.macs)})",
                                         title_chars))
            memory_axes.set_title(_wrapped(f"{report.name}: activation memory (output of each layer)", title_chars))
            if column == 0:
                macs_axes.set_ylabel("multiply-accumulates")
                memory_axes.set_ylabel(unit)
            memory_axes.set_xlabel("layer (in order)")
            for axes in (macs_axes, memory_axes):
                _layer_ticks(axes, report, widest)
        all_layers = [layer for r in reports for layer in r.layers]
        # as drawn: memory in `unit`, so a log axis's lower limit is in the same unit as the bars
        drawn: list[list[float]] = [[layer.macs for layer in all_layers],
                                    [layer.activation_bytes / factor for layer in all_layers]]
        for row, values in enumerate(drawn):
            axes = grid[row][0]
            if _maybe_log(axes, values):
                axes.set_ylabel(axes.get_ylabel() + " (log scale)")
            else:
                if not any(values):  # an axis of nothing but zeros: from 0, not -0.05 to 0.05 ('-40 m' MACs)
                    axes.set_ylim(0, 1)
                    for panel in grid[row]:
                        panel.text(0.5, 0.5, "none in any layer", transform=panel.transAxes, ha="center",
                                   va="center", color="#666666")
                if row == 0:
                    from matplotlib.ticker import MaxNLocator

                    axes.yaxis.set_major_locator(MaxNLocator(integer=True))  # a count: no '800 m' MACs
            # formatters after the scale: setting a scale resets them
            axes.yaxis.set_major_formatter(_si() if row == 0 else _plain())
        _class_legend(figure, {layer.cost_class for layer in all_layers})
        return figure


# ---- receptive field growth --------------------------------------------------------
def receptive_field_figure(reports: Sequence[NetworkReport], object_size: int | None = None) -> Figure:
    """Receptive field (and effective stride) against depth, with the input size and object size marked."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    with _style():
        figure = _figure(7.5, 4.8)
        axes = figure.subplots()
        axes.set_title("Receptive field growth with depth", fontweight="bold")
        colours = _cycle()
        largest = 1
        several = len(reports) > 1
        handles: list[Any] = []
        for number, report in enumerate(reports):
            colour = next(colours)
            depth = list(range(len(report.layers) + 1))
            # the largest field reached so far: a shortcut branch, listed after its main branch, has a smaller one
            fields = list(itertools.accumulate([1] + [max(layer.receptive_field.size) for layer in report.layers], max))
            jumps = list(itertools.accumulate([1] + [max(layer.receptive_field.jump) for layer in report.layers], max))
            largest = max(largest, max(fields), max(report.input[:2]))
            input_size = max(report.input[:2])
            covered = next((i for i, f in enumerate(fields) if f >= input_size), None)
            # depth d is the output of layer d - 1, the '#' the layer tables show: name it, not the depth
            coverage = (f"covers the input at {report.layers[covered - 1].name} (#{covered - 1})"
                        if covered else None)
            label = report.name if several else "receptive field"
            if several and coverage:  # in the legend: annotations of networks that cover at one depth collide
                label = f"{report.name}: {coverage}"
            marker = MARKERS[number % len(MARKERS)]
            size = 4 if len(depth) <= 60 else 0
            (line,) = axes.plot(depth, fields, color=colour, linewidth=2, marker=marker, markersize=size, label=label)
            axes.plot(depth, jumps, color=colour, linewidth=1, linestyle=":")
            handles.append(line)
            if covered and coverage:
                axes.plot([covered], [fields[covered]], marker="o", color=colour, zorder=3)
                if not several:
                    axes.annotate(coverage, (covered, fields[covered]),
                                  textcoords="offset points", xytext=(6, -12), fontsize=8, color=colour)
        # one entry for the dotted style, not one per network: the legend stays as long as the network list
        handles.append(Line2D([], [], color="#444444" if several else "#1f77b4", linewidth=1, linestyle=":",
                              label="effective stride (dotted)" if several else "effective stride"))
        sizes = sorted({max(r.input[:2]) for r in reports})
        for size in sizes:
            axes.axhline(size, color="black", linestyle="--", linewidth=1)
            axes.annotate(f"input {size} px", (0, size), textcoords="offset points", xytext=(4, 4), fontsize=8)
        if object_size:
            axes.axhline(object_size, color="#ff7f0e", linestyle="-.", linewidth=1)
            axes.annotate(f"object {object_size} px", (0, object_size), textcoords="offset points",
                          xytext=(4, 4), fontsize=8, color="#ff7f0e")
        axes.set_xlabel("depth (layers from the input)")
        axes.set_ylabel("pixels of the input")
        if largest > LOG_RANGE:
            axes.set_yscale("log", base=2)
            axes.set_ylabel("pixels of the input (log scale)")
            axes.yaxis.set_major_formatter(_plain())
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_xlim(0, max(len(r.layers) for r in reports) + 0.2)
        labels = [handle.get_label() for handle in handles]
        figure.legend(handles, [_wrapped(label, LEGEND_WRAP) for label in labels], loc="outside lower center",
                      ncols=_legend_columns(labels, 7.5))
        return figure


def _cycle() -> Iterator[str]:
    palette = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2")
    while True:
        yield from palette


# ---- roofline ------------------------------------------------------------------------
def roofline_figure(reports: Sequence[NetworkReport], profiles: Sequence[Profile]) -> Figure:
    """Per profile, every layer at (arithmetic intensity, achieved FLOP/s) under the device's roofline."""
    if not profiles:
        raise CnnCalcError("a roofline needs a hardware profile", hint="add -p, e.g. -p jetson-nano")
    with _style():
        figure = _figure(max(6.0, 5.2 * len(profiles)), 5.2)
        grid = figure.subplots(1, len(profiles), squeeze=False)[0]
        figure.suptitle("Roofline: where each layer sits on each device", fontweight="bold")
        for axes, profile in zip(grid, profiles, strict=False):
            _roofline(axes, reports, profile)
        _shared_legend(figure, grid)
        return figure


def _shared_legend(figure: Figure, axes_list: Sequence[Axes]) -> None:
    """One legend under all panels (labels merged), so no legend covers a data point."""
    handles: dict[str, Any] = {}
    for axes in axes_list:
        for handle, label in zip(*axes.get_legend_handles_labels(), strict=False):
            handles.setdefault(label, handle)
    # at most 4 entries a row, so a long note or variant name cannot push the legend past the figure's edge
    figure.legend(list(handles.values()), list(handles), loc="outside lower center", ncols=min(len(handles), 4))


def _roofline(axes: Axes, reports: Sequence[NetworkReport], profile: Profile) -> None:
    import numpy as np

    dtype = reports[0].dtype
    peak = profile.peak(dtype)
    bandwidth = profile.mem_bytes_per_s
    ridge = peak / bandwidth  # FLOP/byte where the memory roof meets the compute roof
    points: list[tuple[float, float, str, str, int, float]] = []  # intensity, FLOP/s, bound, name, variant, time
    for v, report in enumerate(reports):
        cost = report.costs.get(profile.name)
        if cost is None:
            continue
        for layer in cost.layers:
            if layer.time_s > 0 and layer.flops > 0 and layer.bytes > 0:
                points.append((layer.intensity, layer.flops / layer.time_s, layer.bound, layer.name, v, layer.time_s))
    low = min([p[0] for p in points] + [ridge]) / 4
    high = max([p[0] for p in points] + [ridge]) * 4
    xs = np.geomspace(low, high, 200)
    axes.plot(xs, np.minimum(peak, xs * bandwidth), color="black", linewidth=1.5, label="roofline (peak)")
    axes.axvline(ridge, color="black", linestyle=":", linewidth=1)
    # above the sloped roof, left of the ridge: no layer can sit there (none beats the memory roof)
    axes.annotate(f"ridge point\n{ridge:.3g} FLOP/B", (ridge, peak), textcoords="offset points", xytext=(-6, 6),
                  fontsize=8, ha="right", va="bottom")
    for bound, colour in BOUND_COLOURS.items():
        for v in range(len(reports)):
            chosen = [p for p in points if p[2] == bound and p[4] == v]
            if not chosen:
                continue
            axes.scatter([p[0] for p in chosen], [p[1] for p in chosen], color=colour, alpha=0.75, s=22,
                         marker=MARKERS[v % len(MARKERS)], edgecolors="white", linewidths=0.4)
        if any(p[2] == bound for p in points):  # colour = bound; with variants, marker shape = variant
            axes.plot([], [], linestyle="none", marker="o", color=colour, label=f"{bound}-bound")
    if len(reports) > 1:
        for v, report in enumerate(reports):
            axes.plot([], [], linestyle="none", marker=MARKERS[v % len(MARKERS)], color="#444444", label=report.name)
    offsets = ((-40, 24), (16, -24), (-60, -34))  # staggered so neighbouring names do not collide
    for point, (dx, dy) in zip(sorted(points, key=lambda p: -p[5])[:ROOFLINE_LABELS], offsets, strict=False):
        if math.log(point[0] / low) < 0.3 * math.log(high / low):
            dx = abs(dx)  # near the left edge a name goes to the right, clear of the tick labels
        axes.annotate(f"{point[3]} {point[5] * 1e3:.2g} ms", (point[0], point[1]), textcoords="offset points",
                      xytext=(dx, dy), fontsize=7, arrowprops={"arrowstyle": "-", "color": "#555555", "lw": 0.6},
                      bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8})
    if any(p[1] > peak for p in points):  # explained in the legend, where it cannot cover a point
        axes.plot([], [], linestyle="none",
                  label="above the roof: Winograd 3x3 convs\ndo fewer multiplies than counted")
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlim(low, high)
    top = [p[1] for p in points] + [peak]
    axes.set_ylim(min(top) / 4, max(top) * 3)
    axes.xaxis.set_major_formatter(_plain())
    axes.yaxis.set_major_formatter(_si("FLOP/s"))
    axes.set_xlabel("arithmetic intensity (FLOP per byte moved)")
    axes.set_ylabel(f"achieved FLOP/s ({dtype})")
    axes.set_title(f"{profile.name}: peak {_si('FLOP/s')(peak)}, {_si('B/s')(bandwidth)}")


# ---- variants side by side ----------------------------------------------------------
def variants_figure(reports: Sequence[NetworkReport]) -> Figure:
    """Params, MACs, memory and latency per profile of every variant, as bars side by side."""
    if len(reports) < 2:
        raise CnnCalcError("the variants plot compares two or more networks; this spec holds one",
                           hint="give a file with `variants:` or several specs, e.g. cnncalc plot a.yaml b.yaml")
    from matplotlib.patches import Patch

    with _style():
        profiles = list(dict.fromkeys(name for r in reports for name in r.costs))
        from .render import human_bytes, human_count

        panels: list[tuple[str, str, list[float], Callable[[float], str]]] = [
            ("parameters", "count", [r.totals.params for r in reports], human_count),
            ("MACs", "multiply-accumulates", [r.totals.macs for r in reports], human_count),
            ("peak activation memory\n(inference)", "bytes", [r.totals.peak_activation_bytes for r in reports],
             human_bytes),
            ("training memory\n(SGD-momentum)", "bytes",
             [r.totals.training_bytes["sgd-momentum"] for r in reports], human_bytes),
        ]
        # the latency panel widens with its bars (a bar per variant per profile), the totals panels do not
        latency_width = max(1.0, len(profiles) * len(reports) / 4)
        ratios = [1.0] * len(panels) + ([latency_width] if profiles else [])
        figure = _figure(max(8.0, 2.4 * sum(ratios) + 0.2 * len(reports) * len(ratios)), 4.2)
        grid = figure.subplots(1, len(ratios), squeeze=False, gridspec_kw={"width_ratios": ratios})[0]
        figure.suptitle("Variants side by side" + (f" (batch {reports[0].batch}, {reports[0].dtype})"),
                        fontweight="bold")
        colours = _cycle()
        palette = [next(colours) for _ in reports]
        # several values to a bar label: turned upright, neighbours' labels would overlap
        upright = {"rotation": 90} if len(reports) > 3 else {}
        for axes, (title, unit, values, text) in zip(grid, panels, strict=False):
            factor, shown_unit = _byte_unit(values) if unit == "bytes" else (1.0, unit)
            bars = axes.bar(range(len(reports)), [v / factor for v in values], color=palette)
            axes.bar_label(bars, labels=[text(v) for v in values], fontsize=7, padding=2, **upright)
            axes.set_title(title)
            axes.set_ylabel(shown_unit)
            # the variants are named once, in the legend: rotated names under every panel took more room than
            # the bars and a long one pushed the panels apart
            axes.set_xticks([])
            axes.yaxis.set_major_formatter(_si() if unit != "bytes" else _plain())
            axes.margins(y=0.3 if upright else 0.15)
        if profiles:
            _latency_panel(grid[-1], reports, profiles, palette, upright)
        handles = [Patch(color=colour, label=report.name) for colour, report in zip(palette, reports, strict=False)]
        names = [report.name for report in reports]
        figure.legend(handles, [_wrapped(name, LEGEND_WRAP) for name in names], loc="outside lower center",
                      ncols=_legend_columns(names, figure.get_figwidth()))
        return figure


def _latency_panel(axes: Axes, reports: Sequence[NetworkReport], profiles: list[str], palette: list[str],
                   label_style: dict[str, Any]) -> None:
    """Grouped bars: one group per profile, one bar per variant."""
    width = 0.8 / len(reports)
    values = []
    for v, report in enumerate(reports):
        xs = [p + (v - (len(reports) - 1) / 2) * width for p in range(len(profiles))]
        ms = [report.costs[name].latency_s * 1e3 if name in report.costs else 0.0 for name in profiles]
        values += ms
        bars = axes.bar(xs, ms, width=width, color=palette[v], label=report.name)
        axes.bar_label(bars, labels=[f"{m:.3g}" for m in ms], fontsize=7, padding=2, **label_style)
    axes.set_xticks(range(len(profiles)), profiles, rotation=30, ha="right")
    axes.set_title("latency per profile")
    axes.set_ylabel("milliseconds per batch")
    if _maybe_log(axes, values):
        axes.set_ylabel("milliseconds per batch (log scale)")
        axes.yaxis.set_major_formatter(_plain())
    axes.margins(y=0.3 if label_style else 0.15)


# ---- kinds, saving ---------------------------------------------------------------
def applicable_kinds(reports: Sequence[NetworkReport], profiles: Sequence[Profile]) -> list[str]:
    """The kinds that say something here: rooflines need profiles, the comparison needs two networks."""
    kinds = ["layers", "receptive-field"]
    if profiles:
        kinds.append("roofline")
    if len(reports) > 1:
        kinds.append("variants")
    return kinds


def figure_for(kind: str, reports: Sequence[NetworkReport], profiles: Sequence[Profile] = (),
               object_size: int | None = None) -> Figure:
    """One plot kind for the given networks."""
    if kind == "layers":
        return layers_figure(reports)
    if kind == "receptive-field":
        return receptive_field_figure(reports, object_size)
    if kind == "roofline":
        return roofline_figure(reports, profiles)
    if kind == "variants":
        return variants_figure(reports)
    raise CnnCalcError(f"unknown plot kind {kind!r}", hint=f"use one of {', '.join(KINDS)}")


def figure_bytes(figure: Figure, fmt: str) -> bytes:
    """The figure encoded as PNG or SVG (no timestamps, so the same analysis gives the same file)."""
    fmt = fmt.lstrip(".").lower()
    if f".{fmt}" not in FORMATS:
        raise CnnCalcError(f"cannot save a plot as {fmt!r}", hint="use a .png or .svg file name")
    buffer = io.BytesIO()
    metadata = {"Date": None} if fmt == "svg" else {"Software": None}
    with _style(), warnings.catch_warnings():
        # a name in a script the font lacks (CJK, say) warned once per glyph per figure, a screenful of
        # Python warnings on stderr; SVG keeps the text as text, which the viewer's fonts draw
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from font", category=UserWarning)
        figure.savefig(buffer, format=fmt, dpi=150, metadata=metadata)
    return buffer.getvalue()


def output_paths(output: Path, kinds: Sequence[str]) -> dict[str, Path]:
    """Where each kind goes: `output` itself for one kind, else `<stem>-<kind><suffix>` beside it."""
    if output.suffix.lower() not in FORMATS:
        raise CnnCalcError(f"cannot save a plot as {output.name}", hint="use a .png or .svg file name")
    if len(kinds) == 1:
        return {kinds[0]: output}
    return {kind: output.with_name(f"{output.stem}-{kind}{output.suffix}") for kind in kinds}
