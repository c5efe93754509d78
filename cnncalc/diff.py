"""Two networks compared layer by layer: what changed in shape, params, MACs, memory and time.

Layers are matched by their spec text in order (difflib's longest matching blocks), so inserting
or removing a layer shows as one added or removed row and the rest stay aligned; where a block
was replaced, layers are paired in order and shown as changed. Every figure comes from the two
`NetworkReport`s; this module only pairs and compares them.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .render import at_least, human_bytes, human_count, human_ms, json_text, shape_text

if TYPE_CHECKING:
    from rich.console import Console

    from .analysis import LayerReport, NetworkReport

STATUSES = ("same", "changed", "added", "removed")
STYLES = {"same": "dim", "changed": "yellow", "added": "green", "removed": "red"}
MARKS = {"same": " ", "changed": "~", "added": "+", "removed": "-"}


@dataclass(frozen=True)
class RowDiff:
    """One aligned pair of layers (either side may be missing) and the figures that differ."""

    status: str  # "same" | "changed" | "added" | "removed"
    a: LayerReport | None
    b: LayerReport | None
    changed: tuple[str, ...] = ()  # names of the figures that differ


@dataclass(frozen=True)
class NetworkDiff:
    """Network A against network B, row by row, on the profiles both were estimated on."""

    a: NetworkReport
    b: NetworkReport
    rows: list[RowDiff]
    profiles: list[str]

    @property
    def changed_rows(self) -> list[RowDiff]:
        return [row for row in self.rows if row.status != "same"]


def _figures(layer: LayerReport, report: NetworkReport, profiles: Sequence[str]) -> dict[str, Any]:
    """The compared figures of one layer."""
    figures: dict[str, Any] = {
        "layer": layer.label, "output": shape_text(layer.output), "params": layer.params, "macs": layer.macs,
        "activation_bytes": layer.activation_bytes,
    }
    for name in profiles:
        figures[f"time_s[{name}]"] = report.costs[name].layers[layer.index].time_s
    return figures


def diff_reports(a: NetworkReport, b: NetworkReport) -> NetworkDiff:
    """Align the layers of `a` and `b` and mark what changed."""
    profiles = [name for name in a.costs if name in b.costs]
    keys_a = [layer.label for layer in a.layers]
    keys_b = [layer.label for layer in b.layers]
    rows: list[RowDiff] = []
    matcher = difflib.SequenceMatcher(None, keys_a, keys_b, autojunk=False)
    for tag, a0, a1, b0, b1 in matcher.get_opcodes():
        pairs = min(a1 - a0, b1 - b0) if tag == "replace" else (a1 - a0 if tag == "equal" else 0)
        for i in range(pairs):
            rows.append(_pair(a.layers[a0 + i], b.layers[b0 + i], a, b, profiles))
        for i in range(a0 + pairs, a1):
            rows.append(RowDiff("removed", a.layers[i], None))
        for i in range(b0 + pairs, b1):
            rows.append(RowDiff("added", None, b.layers[i]))
    return NetworkDiff(a, b, rows, profiles)


def _pair(la: LayerReport, lb: LayerReport, a: NetworkReport, b: NetworkReport, profiles: list[str]) -> RowDiff:
    fa, fb = _figures(la, a, profiles), _figures(lb, b, profiles)
    changed = tuple(key for key in fa if fa[key] != fb[key])
    return RowDiff("changed" if changed else "same", la, lb, changed)


# ---- presentation ----------------------------------------------------------------
def _both(value_a: str | None, value_b: str | None) -> str:
    """One value when both sides agree, else 'a -> b'."""
    if value_a is None:
        return value_b or ""
    if value_b is None or value_a == value_b:
        return value_a
    return f"{value_a} -> {value_b}"


def _delta(before: float, after: float) -> str:
    """Relative change, e.g. '-75%', with decimals where whole percent would hide it: 224 -> 225 params is
    '+0.4%', not '+0%' (reads as no change), and 194,400 -> 192 MACs '-99.9%', not '-100%' (reads as gone)."""
    if before == after:
        return "="
    if before == 0:
        return "new"
    percent = (after - before) / before * 100
    for decimals in range(4):
        rounded = round(percent, decimals)
        if rounded != 0 and (rounded != -100 or after == 0):
            return f"{percent:+.{decimals}f}%"
    return f"{percent:+.2g}%"


def diff_cells(diff: NetworkDiff, changed_only: bool = False) -> tuple[list[str], list[list[str]], list[str]]:
    """Header, one row per aligned layer pair (status mark first), and the totals row."""
    header = ["", "#", "name", "layer", "output", "params", "MACs", "act mem"] + [f"{p} ms" for p in diff.profiles]
    rows = []
    for row in diff.rows:
        if changed_only and row.status == "same":
            continue
        la, lb = row.a, row.b

        def pick(get: Any, la: LayerReport | None = la, lb: LayerReport | None = lb) -> str:
            return _both(get(la, diff.a) if la else None, get(lb, diff.b) if lb else None)

        cells = [
            MARKS[row.status],
            pick(lambda layer, _r: str(layer.index)),
            pick(lambda layer, _r: layer.name),
            pick(lambda layer, _r: layer.label),
            pick(lambda layer, _r: shape_text(layer.output)),
            pick(lambda layer, _r: f"{layer.params:,}"),
            pick(lambda layer, _r: human_count(layer.macs)),
            pick(lambda layer, _r: human_bytes(layer.activation_bytes)),
        ]
        for name in diff.profiles:
            cells.append(pick(lambda layer, r, name=name: human_ms(r.costs[name].layers[layer.index].time_s)))
        rows.append(cells)
    ta, tb = diff.a.totals, diff.b.totals
    total = ["", "", "total", f"{diff.a.name} -> {diff.b.name}",
             _both(shape_text(diff.a.output), shape_text(diff.b.output)),
             f"{_both(f'{at_least(diff.a)}{ta.params:,}', f'{at_least(diff.b)}{tb.params:,}')} "
             f"({_delta(ta.params, tb.params)})",
             f"{_both(at_least(diff.a) + human_count(ta.macs), at_least(diff.b) + human_count(tb.macs))} "
             f"({_delta(ta.macs, tb.macs)})",
             f"{_both(human_bytes(ta.peak_activation_bytes), human_bytes(tb.peak_activation_bytes))} peak "
             f"({_delta(ta.peak_activation_bytes, tb.peak_activation_bytes)})"]
    for name in diff.profiles:
        la_s, lb_s = diff.a.costs[name].latency_s, diff.b.costs[name].latency_s
        total.append(f"{_both(human_ms(la_s), human_ms(lb_s))} ({_delta(la_s, lb_s)})")
    return header, rows, total


def render_diff(diff: NetworkDiff, console: Console, changed_only: bool = False) -> None:
    """Print the aligned table with changed rows highlighted, and a one-line summary."""
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    header, rows, total = diff_cells(diff, changed_only)
    counts = {status: sum(1 for row in diff.rows if row.status == status) for status in STATUSES}
    title = (f"[bold]{escape(diff.a.name)}[/bold] -> [bold]{escape(diff.b.name)}[/bold]: {counts['changed']} changed, "
             f"{counts['added']} added, {counts['removed']} removed, {counts['same']} the same")
    table = Table(title=title, title_justify="left", show_footer=True, header_style="bold")
    for i, name in enumerate(header):
        table.add_column(escape(name), justify="right" if i >= 5 else "left", footer=escape(total[i]), no_wrap=i < 3,
                         overflow="fold")  # a narrow terminal wraps a number rather than cutting it to '…'
    statuses = [row.status for row in diff.rows if not (changed_only and row.status == "same")]
    for status, cells in zip(statuses, rows, strict=True):
        table.add_row(*(Text(cell) for cell in cells), style=STYLES[status])  # Text: spec labels are not markup
    console.print(table)


def to_json(diff: NetworkDiff) -> str:
    """Both sides' figures per aligned row, with the status and the names of the changed figures."""

    def side(layer: LayerReport | None, report: NetworkReport) -> dict[str, Any] | None:
        if layer is None:
            return None
        figures = _figures(layer, report, diff.profiles)
        return {"index": layer.index, "name": layer.name, **figures}

    data = {
        "schema": "cnncalc.diff/1", "a": diff.a.name, "b": diff.b.name, "profiles": diff.profiles,
        "rows": [{"status": row.status, "changed": list(row.changed), "a": side(row.a, diff.a),
                  "b": side(row.b, diff.b)} for row in diff.rows],
        "totals": {
            key: [getattr(diff.a.totals, key), getattr(diff.b.totals, key)]
            for key in ("params", "macs", "flops", "peak_activation_bytes", "weight_bytes")
        },
        "latency_s": {name: [diff.a.costs[name].latency_s, diff.b.costs[name].latency_s] for name in diff.profiles},
    }
    return json_text(data)


def to_markdown(diff: NetworkDiff, changed_only: bool = False) -> str:
    """The aligned table as Markdown; changed rows in bold, status in the first column."""
    from .render import _md_table, md_line

    header, rows, total = diff_cells(diff, changed_only)
    statuses = [row.status for row in diff.rows if not (changed_only and row.status == "same")]
    shown = [[f"**{c}**" if status != "same" and c else c for c in cells] if status != "same" else cells
             for status, cells in zip(statuses, rows, strict=True)]
    return f"## {md_line(diff.a.name)} -> {md_line(diff.b.name)}\n\n" + _md_table(header, shown + [total])
