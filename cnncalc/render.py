"""Presentation of analysis results: rich tables, JSON, CSV, Markdown.

Everything here reads `NetworkReport`s and computes nothing new, so the table and
`--format json` cannot disagree. The JSON schema is documented in docs/json-schema.md.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from typing import Any

from rich.cells import cell_len
from rich.console import Console, Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from .analysis import LayerReport, NetworkReport, ReceptiveField
from .ops.base import pair_text
from .spec import standalone_text

SCHEMA = "cnncalc.analysis/1"
FORMATS = ("table", "json", "csv", "markdown")


# ---- numbers for people -------------------------------------------------------
def human_count(value: float) -> str:
    """1234567 -> '1.23M' (SI prefixes, for MACs and FLOPs). The prefix is chosen after rounding, so
    999,999 reads '1.00M', not '1000.00k'."""
    return _scaled(value, ((1, "", 0), (1e3, "k", 2), (1e6, "M", 2), (1e9, "G", 2), (1e12, "T", 2)))


def human_bytes(value: float) -> str:
    """Binary units: 1536 -> '1.5 KiB'; 1,048,575 B reads '1.0 MiB', not '1024.0 KiB'."""
    return _scaled(value, ((1, " B", 0), (2**10, " KiB", 1), (2**20, " MiB", 1), (2**30, " GiB", 1),
                           (2**40, " TiB", 1)))


def _scaled(value: float, units: tuple[tuple[float, str, int], ...]) -> str:
    """`value` in the largest of `units` (factor, suffix, decimals; ascending) it reaches, moved up one unit
    when rounding would show the next unit's factor (999.996k is '1.00M')."""
    i = max((i for i, (factor, _, _) in enumerate(units) if abs(value) >= factor), default=0)
    factor, suffix, decimals = units[i]
    if i + 1 < len(units) and abs(round(value / factor, decimals)) >= units[i + 1][0] / factor:
        factor, suffix, decimals = units[i + 1]
    return f"{value / factor:.{decimals}f}{suffix}"


#: the smallest time in milliseconds the tables show with digits; below it they say '<0.001'
SMALLEST_MS = 0.001


def human_ms(seconds: float) -> str:
    """Seconds shown as milliseconds with sensible precision: 3 decimals below 1 ms, 2 below 100 ms, then
    whole. A time too small for 3 decimals but not zero reads '<0.001', never '0.000' (a profile without
    launch overhead gives small layers such times; 0.000 would claim they are free)."""
    ms = seconds * 1e3
    if 0 < ms < SMALLEST_MS / 2:  # what '.3f' would show as 0.000
        return f"<{SMALLEST_MS}"
    # the precision follows the rounded value: 0.9996 ms is '1.00', 99.996 ms is '100'
    if round(abs(ms), 3) < 1:
        return f"{ms:.3f}"
    return f"{ms:.2f}" if round(abs(ms), 2) < 100 else f"{ms:.0f}"


def human_rate(per_s: float) -> str:
    """Samples per second with one decimal; below 1/s three significant digits (a 20 s latency is 0.05/s,
    not 0.0), and '-' when there is no time to divide by (a network without layers)."""
    if not math.isfinite(per_s):
        return "-"
    return f"{per_s:,.1f}" if per_s >= 1 else f"{per_s:.3g}"


def shape_text(hwc: Sequence[int]) -> str:
    """[H, W, C] -> 'HxWxC'."""
    return "x".join(str(d) for d in hwc)


def _field_text(rf: ReceptiveField) -> str:
    """A receptive field as 'size/stride', each 'HxW' when the axes differ (a 1x7 kernel's field is '1x7/1')."""
    return f"{pair_text(rf.size)}/{pair_text(rf.jump)}"


# ---- bars and the heaviest layers (terminal table, --top) ----------------------
BAR_WIDTH = 6
_EIGHTHS = " ▏▎▍▌▋▊▉"


def bar(share: float, width: int = BAR_WIDTH) -> str:
    """A share in [0, 1] as a fixed-width bar of block characters (eighths of a cell) on a dim track."""
    eighths = round(max(0.0, min(1.0, share)) * width * 8)
    full, rest = divmod(eighths, 8)
    filled = "█" * full + (_EIGHTHS[rest] if rest else "")
    # rich markup: the track shows the full scale, so bars line up and compare across rows
    return f"[cyan]{filled}[/cyan][bright_black]{'░' * (width - len(filled))}[/bright_black]"


def layer_shares(report: NetworkReport) -> list[dict[str, float]]:
    """Per layer: its share of the total MACs, of all activation bytes, and of time on the first profile."""
    totals = report.totals
    cost = next(iter(report.costs.values()), None)
    time_total = sum(layer.time_s for layer in cost.layers) if cost else 0.0
    shares = []
    for layer in report.layers:
        share = {
            "macs": layer.macs / totals.macs if totals.macs else 0.0,
            "activation_bytes": layer.activation_bytes / totals.activation_bytes if totals.activation_bytes else 0.0,
        }
        if cost is not None:
            share["time"] = cost.layers[layer.index].time_s / time_total if time_total else 0.0
        shares.append(share)
    return shares


def top_layers(report: NetworkReport, n: int) -> list[LayerReport]:
    """The n most expensive layers: by time on the first profile when there is one, else by MACs."""
    cost = next(iter(report.costs.values()), None)

    def weight(layer: LayerReport) -> tuple[float, int, int]:
        time_s = cost.layers[layer.index].time_s if cost else 0.0
        return (time_s, layer.macs, layer.activation_bytes)

    return sorted(report.layers, key=weight, reverse=True)[:n]


def top_metric(report: NetworkReport) -> str:
    """What `top_layers` ranks by, in words."""
    first = next(iter(report.costs), None)
    return f"time on {first}" if first else "MACs"


# ---- JSON ----------------------------------------------------------------------
def layer_json(layer: LayerReport, report: NetworkReport) -> dict[str, Any]:
    """One layer's figures as JSON."""
    rf = layer.receptive_field
    entry: dict[str, Any] = {
        "index": layer.index, "name": layer.name, "op": layer.op, "op_type": layer.op_type,
        "label": layer.label, "block": layer.block, "inputs": list(layer.inputs), "output": layer.output,
        "params": layer.params, "trainable_params": layer.trainable_params, "state_params": layer.state_params,
        "macs": layer.macs, "flops": layer.flops, "activation_bytes": layer.activation_bytes,
        "weight_bytes": layer.weight_bytes,
        "receptive_field": max(rf.size), "receptive_field_hw": list(rf.size),
        "effective_stride": max(rf.jump), "effective_stride_hw": list(rf.jump),
        "effective_padding": max(rf.padding), "effective_padding_hw": list(rf.padding),
        "rf_start": list(rf.start), "implicit": layer.implicit, "position": layer.pos,
    }
    if report.costs:
        entry["time_ms"] = {name: cost.layers[layer.index].time_s * 1e3 for name, cost in report.costs.items()}
        entry["bound"] = {name: cost.layers[layer.index].bound for name, cost in report.costs.items()}
    return entry


def network_json(report: NetworkReport) -> dict[str, Any]:
    """One network's analysis as JSON (schema in docs/json-schema.md)."""
    totals = report.totals
    rf = totals.receptive_field
    return {
        "name": report.name,
        "description": report.description,
        "spec": report.text,
        "chain": standalone_text(report.graph) if report.graph is not None else report.text,
        "batch": report.batch,
        "dtype": report.dtype,
        "input": report.input,
        "output": report.output,
        "totals": {
            "params": totals.params, "trainable_params": totals.trainable_params,
            "state_params": totals.state_params, "macs": totals.macs, "flops": totals.flops,
            "weight_bytes": totals.weight_bytes, "input_bytes": totals.input_bytes,
            "activation_bytes": totals.activation_bytes,
            "peak_activation_bytes": totals.peak_activation_bytes,
            "inference_bytes": totals.inference_bytes,
            "training_bytes": totals.training_bytes["sgd-momentum"],
            "training_bytes_by_optimizer": dict(totals.training_bytes),
            "receptive_field": max(rf.size), "receptive_field_hw": list(rf.size),
            "effective_stride": max(rf.jump), "effective_padding": max(rf.padding),
            "lower_bound": report.lower_bound,
        },
        "profiles": {name: cost.to_json() for name, cost in report.costs.items()},
        "layers": [layer_json(layer, report) for layer in report.layers],
        "diagnostics": [
            {"level": d.level, "code": d.code, "message": d.message, "position": d.position,
             "layer": d.layer, "hint": d.hint}
            for d in report.diagnostics
        ],
        "unsupported": list(report.graph.unsupported) if report.graph else [],
    }


def to_json(reports: Sequence[NetworkReport]) -> str:
    """The whole result as a JSON document."""
    return json_text({"schema": SCHEMA, "networks": [network_json(r) for r in reports]})


def json_text(data: Any) -> str:
    """Indented JSON with infinities and NaN as null: JSON has no such numbers, and strict parsers
    (JavaScript's JSON.parse, jq) reject Python's `Infinity` (e.g. the throughput of a network with no cost)."""
    return json.dumps(_finite(data), indent=2, allow_nan=False) + "\n"


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


# ---- CSV and Markdown ------------------------------------------------------------
CSV_COLUMNS = ("network", "index", "name", "op", "label", "output", "params", "macs", "flops",
               "activation_bytes", "weight_bytes", "receptive_field", "effective_stride")


def _rows(report: NetworkReport) -> list[dict[str, Any]]:
    rows = []
    for layer in report.layers:
        row = {
            "network": report.name, "index": layer.index, "name": layer.name, "op": layer.op,
            "label": layer.label, "output": shape_text(layer.output), "params": layer.params,
            "macs": layer.macs, "flops": layer.flops, "activation_bytes": layer.activation_bytes,
            "weight_bytes": layer.weight_bytes, "receptive_field": max(layer.receptive_field.size),
            "effective_stride": max(layer.receptive_field.jump),
        }
        for name, cost in report.costs.items():
            # six significant digits, not six decimals: a layer of a few nanoseconds is not 0.0
            row[f"time_ms[{name}]"] = float(f"{cost.layers[layer.index].time_s * 1e3:.6g}")
            row[f"bound[{name}]"] = cost.layers[layer.index].bound
        rows.append(row)
    return rows


def to_csv(reports: Sequence[NetworkReport]) -> str:
    """One row per layer of every network (totals are the column sums)."""
    rows = [row for report in reports for row in _rows(report)]
    columns = list(CSV_COLUMNS)
    for row in rows:
        columns.extend(key for key in row if key not in columns)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def to_markdown(reports: Sequence[NetworkReport], top: int = 0) -> str:
    """GitHub-flavoured Markdown tables, one per network, plus the comparison; `top` keeps the heaviest layers."""
    parts = []
    if len(reports) > 1:
        parts.append("## Comparison\n")
        parts.append(_md_table(*_comparison_cells(reports)))
    for report in reports:
        parts.append(f"## {md_line(report.name)}\n")
        if report.description:
            parts.append(f"{report.description}\n")
        if report.text:
            parts.append(f"`{report.text}`\n")
        header, body = _layer_cells(report, top=top)
        if top:
            parts.append(f"Top {len(body)} of {len(report.layers)} layers by {top_metric(report)}:\n")
        parts.append(_md_table(header, body + [_totals_cells(report)]))
        parts.append(_md_table(*_summary_cells(report)))
        if report.costs:
            parts.append(_md_table(*_profile_cells(report)))
        for d in report.diagnostics:
            hint = f" ({d.hint})" if d.hint else ""
            parts.append(f"- **{d.level}**: {d.message}{hint}\n")
    return "\n".join(parts)


def md_line(text: str) -> str:
    """Free text (a name, a title) on one line: in a heading a newline would end the heading mid-name."""
    return " ".join(text.splitlines())


def _md_cell(text: str) -> str:
    """A cell that cannot break the table: names are free text ('|' ends a cell, a newline ends the row)."""
    return md_line(text).replace("|", "\\|")


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(map(_md_cell, header)) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(map(_md_cell, row)) + " |" for row in rows]
    return "\n".join(lines) + "\n"


# ---- cells shared by the rich and Markdown tables ------------------------------
def _layer_cells(report: NetworkReport, top: int = 0, bars: bool = False) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the per-layer table; `top` keeps the heaviest layers, `bars` adds share bars."""
    header = ["#", "name", "layer", "output", "params", "MACs", "FLOPs", "act mem", "RF/stride"]
    for name in report.costs:
        header += [f"{name} ms", "bound"]
    layers = top_layers(report, top) if top else report.layers
    shares = layer_shares(report) if bars else []
    # a full bar is the heaviest layer's share, so the heavy layers stand out even in a deep network
    scale = {key: max((share[key] for share in shares), default=0.0) or 1.0 for key in (shares[0] if shares else {})}
    rows = []
    for layer in layers:
        share = {key: value / scale[key] for key, value in shares[layer.index].items()} if bars else {}
        row = [str(layer.index), layer.name, layer.label, shape_text(layer.output), f"{layer.params:,}",
               human_count(layer.macs) + (f" {bar(share['macs'])}" if bars else ""), human_count(layer.flops),
               human_bytes(layer.activation_bytes) + (f" {bar(share['activation_bytes'])}" if bars else ""),
               _field_text(layer.receptive_field)]
        for i, cost in enumerate(report.costs.values()):
            layer_cost = cost.layers[layer.index]
            time_bar = f" {bar(share['time'])}" if bars and i == 0 else ""
            row += [human_ms(layer_cost.time_s) + time_bar, layer_cost.bound]
        rows.append(row)
    return header, rows


def at_least(report: NetworkReport) -> str:
    """'≥ ' before the params and MACs of a network whose unsupported ONNX ops were not counted, else ''."""
    return "≥ " if report.lower_bound else ""


def _totals_cells(report: NetworkReport) -> list[str]:
    totals = report.totals
    rf = totals.receptive_field
    mark = at_least(report)
    row = ["", "total", "", shape_text(report.output), f"{mark}{totals.params:,}",
           mark + human_count(totals.macs), mark + human_count(totals.flops),
           human_bytes(totals.activation_bytes), _field_text(rf)]
    for cost in report.costs.values():
        row += [human_ms(cost.latency_s), cost.bound]
    return row


def _summary_cells(report: NetworkReport) -> tuple[list[str], list[list[str]]]:
    totals = report.totals
    rf = totals.receptive_field
    mark = " (lower bound: unsupported ops not counted)" if report.lower_bound else ""
    rows = [
        ["input / output", f"{shape_text(report.input)} -> {shape_text(report.output)}"],
        ["batch / dtype", f"{report.batch} / {report.dtype}"],
        ["params", f"{totals.params:,} trainable, {totals.state_params:,} state{mark}"],
        ["MACs", f"{totals.macs:,} ({human_count(totals.macs)}){mark}"],
        ["FLOPs", f"{totals.flops:,} ({human_count(totals.flops)}){mark}"],
        ["weights", human_bytes(totals.weight_bytes)],
        ["peak activations (inference)", human_bytes(totals.peak_activation_bytes)],
        ["inference memory (weights + peak)", human_bytes(totals.inference_bytes)],
        ["training memory (SGD-momentum / Adam)",
         f"{human_bytes(totals.training_bytes['sgd-momentum'])} / {human_bytes(totals.training_bytes['adam'])}"],
        ["receptive field", f"{rf.size[0]}x{rf.size[1]}, stride {max(rf.jump)}, padding {max(rf.padding)}"],
    ]
    return ["figure", "value"], rows


def _profile_cells(report: NetworkReport) -> tuple[list[str], list[list[str]]]:
    header = ["profile", "latency ms", "throughput /s", "train step ms", "bound", "max batch (infer)",
              "max batch (train, SGD-m / Adam)"]
    rows = []
    for name, cost in report.costs.items():
        rows.append([name, human_ms(cost.latency_s), human_rate(cost.throughput_per_s), human_ms(cost.train_step_s),
                     cost.bound, f"{cost.max_batch_inference:,}",
                     f"{cost.max_batch_training['sgd-momentum']:,} / {cost.max_batch_training['adam']:,}"])
    return header, rows


def _comparison_cells(reports: Sequence[NetworkReport]) -> tuple[list[str], list[list[str]]]:
    """The networks' totals side by side; with a batch / dtype column when those differ (two files with
    different `batch:` compare MACs and memory of different workloads, which the reader must see)."""
    profiles = list(dict.fromkeys(name for r in reports for name in r.costs))
    mixed = len({(r.batch, r.dtype) for r in reports}) > 1
    header = ["variant", *(["batch / dtype"] if mixed else []), "output", "params", "MACs", "peak act mem",
              "training mem", "RF"]
    header += [f"{name} ms" for name in profiles]
    fastest = {
        name: min((r.costs[name].latency_s, i) for i, r in enumerate(reports) if name in r.costs)[1]
        for name in profiles
    }
    rows = []
    for i, report in enumerate(reports):
        totals = report.totals
        mark = at_least(report)
        row = [report.name, *([f"{report.batch} / {report.dtype}"] if mixed else []), shape_text(report.output),
               f"{mark}{totals.params:,}", mark + human_count(totals.macs),
               human_bytes(totals.peak_activation_bytes), human_bytes(totals.training_bytes["sgd-momentum"]),
               pair_text(totals.receptive_field.size)]
        for name in profiles:
            if name not in report.costs:
                row.append("-")
                continue
            cost = report.costs[name]
            star = " ★" if fastest[name] == i and len(reports) > 1 else ""
            row.append(f"{human_ms(cost.latency_s)} ({cost.bound}){star}")
        rows.append(row)
    return header, rows


# ---- rich ------------------------------------------------------------------------
def _rich_table(title: str, header: list[str], rows: list[list[str]], numeric_from: int = 0,
                footer: list[str] | None = None, markup_columns: frozenset[int] = frozenset()) -> Table:
    """A rich table of plain cells: names and labels are escaped (an ONNX node may be called 'conv[/x]'); only
    the cells of `markup_columns` carry markup of our own (the share bars). `title` is markup: escape its names."""
    table = Table(title=title, title_justify="left", show_footer=footer is not None, header_style="bold")
    for i, name in enumerate(header):
        # in a terminal too narrow for the table the text columns (names, spec text) fold first; a number
        # folds onto a second line only when nothing else can give way, and never loses digits to '…'
        table.add_column(escape(name), justify="right" if i >= numeric_from else "left",
                         footer=escape(footer[i]) if footer else "", no_wrap=i >= numeric_from, overflow="fold")
    for row in rows:
        table.add_row(*(cell if i in markup_columns else escape(cell) for i, cell in enumerate(row)))
    return table


def _table_width(header: list[str], rows: list[list[str]], footer: list[str],
                 markup_columns: frozenset[int] = frozenset()) -> int:
    """The width `_rich_table` takes when nothing is squeezed: the widest line of each column (a cell may hold
    several, as diff's stacked values do), one space of padding on each side, and a rule before every column
    and after the last. Counted from the cells, which is several times faster than rich's measurement of a
    170-layer table."""
    def width(cell: str, markup: bool = False) -> int:
        plain = Text.from_markup(cell).plain if markup else cell
        return max(cell_len(line) for line in plain.split("\n"))

    widths = [max(width(header[i]), width(footer[i]), *(width(row[i], i in markup_columns) for row in rows))
              for i in range(len(header))]
    return sum(widths) + 3 * len(widths) + 1


def columns_width(header: list[str], rows: list[list[str]], footer: list[str], columns: list[int]) -> int:
    """`_table_width` of a table of the chosen columns only."""
    return _table_width([header[i] for i in columns], [[row[i] for i in columns] for row in rows],
                        [footer[i] for i in columns])


def caption_hidden(table: Table, hidden: list[str], width: int, formats: str) -> None:
    """Say under a table which columns a terminal `width` wide left out, and where to see them."""
    if hidden:
        table.caption = (f"hidden to fit {width} columns: {', '.join(hidden)} "
                         f"(a wider terminal, or --format {formats}, shows them)")
        table.caption_justify = "left"


def _layer_tables(report: NetworkReport, title: str, top: int, console: Console) -> list[Table]:
    """The per-layer table in the widest form the console fits: with share bars; without; then with the
    profiles' time columns in a second table. Past that, cells wrap (numbers fold, never cut to '...')."""
    footer = _totals_cells(report)
    header, rows = _layer_cells(report, top=top, bars=True)
    bar_columns = frozenset([header.index("MACs"), header.index("act mem")]
                            + [header.index(f"{name} ms") for name in list(report.costs)[:1]])
    if _table_width(header, rows, footer, bar_columns) <= console.width:
        return [_rich_table(title, header, rows, numeric_from=4, footer=footer, markup_columns=bar_columns)]
    header, rows = _layer_cells(report, top=top)
    if _table_width(header, rows, footer) <= console.width or not report.costs:
        return [_rich_table(title, header, rows, numeric_from=4, footer=footer)]
    first_cost = len(header) - 2 * len(report.costs)  # the analysis columns, then time and bound per profile

    def pick(cells: list[str], keep: list[int]) -> list[str]:
        return [cells[i] for i in keep]

    figures, times = list(range(first_cost)), [0, 1, *range(first_cost, len(header))]
    tables = []
    for table_title, keep in ((title, figures), ("per-layer time on each profile", times)):
        keep, hidden = columns_that_fit(header, rows, footer, keep, console.width, DROPPED_WHEN_NARROW)
        shown_footer = list(footer)
        if "name" in hidden and not shown_footer[2]:
            shown_footer[2] = footer[1]  # 'total' under the spec text when the name column is hidden
        table = _rich_table(table_title, pick(header, keep), [pick(row, keep) for row in rows],
                            numeric_from=sum(1 for i in keep if i < 4 and header[i] in ("#", "name", "layer")),
                            footer=pick(shown_footer, keep))
        caption_hidden(table, hidden, console.width, "markdown/csv/json")
        tables.append(table)
    return tables


#: columns a narrow terminal drops from the per-layer tables, first to last: FLOPs are about twice the MACs,
#: the layer's spec text (or '#') identifies it without its name, the receptive field is in the summary
#: table's last row; what stays (#, layer, output, params, MACs, memory, a profile's time) is the table
DROPPED_WHEN_NARROW = ("FLOPs", "name", "RF/stride", "bound")


def _turned_to_fit(header: list[str], rows: list[list[str]], width: int) -> tuple[list[str], list[list[str]]]:
    """A table of one row per profile or network, turned to one column each where its width does not fit:
    seven figures side by side take 130 columns, two profiles side by side 50."""
    if _table_width(header, rows, [""] * len(header)) <= width or not rows:
        return header, rows
    return [header[0], *(row[0] for row in rows)], [[name, *(row[j] for row in rows)]
                                                     for j, name in enumerate(header) if j > 0]


def columns_that_fit(header: list[str], rows: list[list[str]], footer: list[str], keep: list[int],
                     width: int, droppable: Sequence[str]) -> tuple[list[int], list[str]]:
    """The columns of `keep` that fit in `width` once the `droppable` headers are dropped in turn, and the
    dropped names; where even that does not fit, cells fold rather than lose digits. Numbers folded over
    three lines at 80 columns ('112 / x11 / 2x6 / 4'), which no one can read."""
    hidden: list[str] = []
    for name in droppable:
        if columns_width(header, rows, footer, keep) <= width:
            break
        dropped = [i for i in keep if header[i] == name]
        if dropped:
            keep = [i for i in keep if i not in dropped]
            hidden.append(name if len(dropped) == 1 else f"{name} (each profile's)")
    return keep, hidden


def render_tables(reports: Sequence[NetworkReport], console: Console, *, layers: bool = True, top: int = 0) -> None:
    """Print the per-layer tables (with share bars; only the `top` heaviest when > 0), summaries,
    profile tables, diagnostics and the comparison."""
    for report in reports:
        title = f"[bold]{escape(report.name)}[/bold]"
        if report.description:
            title += f": {escape(report.description)}"
        if top:
            title += f" - top {min(top, len(report.layers))} of {len(report.layers)} layers by {top_metric(report)}"
        parts: list[Any] = []
        if layers:
            parts.extend(_layer_tables(report, title, top, console))
        parts.append(_rich_table("" if layers else title, *_summary_cells(report), numeric_from=1))
        if report.costs:
            parts.append(_rich_table("hardware estimates", *_turned_to_fit(*_profile_cells(report), console.width),
                                     numeric_from=1))
        console.print(Group(*parts))
        for d in report.diagnostics:
            style = "yellow" if d.level == "warning" else "cyan"
            line = Text(f"{d.level}: ", style=f"bold {style}")
            line.append(d.message)
            if d.hint:
                line.append(f"\n  hint: {d.hint}", style="dim")
            console.print(line)
        console.print()
    if len(reports) > 1:
        console.print(_rich_table("[bold]comparison[/bold] (★ fastest per profile)",
                                  *_turned_to_fit(*_comparison_cells(reports), console.width), numeric_from=1))


def render(reports: Sequence[NetworkReport], fmt: str, console: Console | None = None, top: int = 0) -> str | None:
    """Text for a machine format, or print tables to `console` and return None; `top` trims the tables."""
    if fmt == "json":
        return to_json(reports)
    if fmt == "csv":
        return to_csv(reports)
    if fmt == "markdown":
        return to_markdown(reports, top=top)
    render_tables(reports, console or Console(), top=top)
    return None
