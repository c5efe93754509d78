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

from .render import (
    at_least,
    caption_hidden,
    columns_that_fit,
    columns_width,
    human_bytes,
    human_count,
    human_ms,
    json_text,
    shape_text,
)

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

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
#: between the two sides of a changed cell: on one line, or stacked (a narrow terminal)
ARROW, STACKED_ARROW = " -> ", "\n-> "


def _both(value_a: str | None, value_b: str | None, arrow: str = ARROW) -> str:
    """One value when both sides agree, else 'a -> b' (`arrow` between them)."""
    if value_a is None:
        return value_b or ""
    if value_b is None or value_a == value_b:
        return value_a
    return f"{value_a}{arrow}{value_b}"


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


def diff_cells(diff: NetworkDiff, changed_only: bool = False, stacked: bool = False
               ) -> tuple[list[str], list[list[str]], list[str]]:
    """Header, one row per aligned layer pair (status mark first), and the totals row; `stacked` puts the
    two sides of a changed cell, and a total's percentage, on lines of their own (for a narrow terminal)."""
    arrow, gap = (STACKED_ARROW, "\n") if stacked else (ARROW, " ")
    header = ["", "#", "name", "layer", "output", "params", "MACs", "act mem"] + [f"{p} ms" for p in diff.profiles]
    rows = []
    for row in diff.rows:
        if changed_only and row.status == "same":
            continue
        la, lb = row.a, row.b

        def pick(get: Any, la: LayerReport | None = la, lb: LayerReport | None = lb, arrow: str = arrow) -> str:
            return _both(get(la, diff.a) if la else None, get(lb, diff.b) if lb else None, arrow)

        cells = [
            MARKS[row.status],
            pick(lambda layer, _r: str(layer.index), arrow=ARROW),  # '1 -> 3' is short: one line
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
    total = ["", "", "total", f"{diff.a.name}{arrow}{diff.b.name}",
             _both(shape_text(diff.a.output), shape_text(diff.b.output), arrow),
             f"{_both(f'{at_least(diff.a)}{ta.params:,}', f'{at_least(diff.b)}{tb.params:,}', arrow)}{gap}"
             f"({_delta(ta.params, tb.params)})",
             f"{_both(at_least(diff.a) + human_count(ta.macs), at_least(diff.b) + human_count(tb.macs), arrow)}"
             f"{gap}({_delta(ta.macs, tb.macs)})",
             f"{_both(human_bytes(ta.peak_activation_bytes), human_bytes(tb.peak_activation_bytes), arrow)}{gap}"
             f"peak ({_delta(ta.peak_activation_bytes, tb.peak_activation_bytes)})"]
    for name in diff.profiles:
        la_s, lb_s = diff.a.costs[name].latency_s, diff.b.costs[name].latency_s
        total.append(f"{_both(human_ms(la_s), human_ms(lb_s), arrow)}{gap}({_delta(la_s, lb_s)})")
    return header, rows, total


#: columns a narrow terminal drops from the diff tables, first to last: the layer's spec text says what it is,
#: and the rows keep the order of the networks
DROPPED_WHEN_NARROW = ("name", "#")
FIRST_NUMBER = 5  # the columns before it (mark, #, name, layer, output) are text; from it on, figures
TEXT_COLUMNS = (2, 3)  # name and spec text: the cells that fold when nothing else gives way


def render_diff(diff: NetworkDiff, console: Console, changed_only: bool = False) -> None:
    """Print the aligned table with changed rows highlighted, and a one-line summary.

    In a terminal too narrow for it (80 columns folded every cell over three or four lines), the two sides
    of a changed cell stack, the per-profile times move to a table of their own, and the names go (a
    caption says so); the spec text folds before any number does.
    """
    from rich.console import Group
    from rich.markup import escape

    counts = {status: sum(1 for row in diff.rows if row.status == status) for status in STATUSES}
    title = (f"[bold]{escape(diff.a.name)}[/bold] -> [bold]{escape(diff.b.name)}[/bold]: {counts['changed']} changed, "
             f"{counts['added']} added, {counts['removed']} removed, {counts['same']} the same")
    statuses = [row.status for row in diff.rows if not (changed_only and row.status == "same")]
    header, rows, total = diff_cells(diff, changed_only)
    everything = list(range(len(header)))
    if columns_width(header, rows, total, everything) <= console.width:
        console.print(_diff_table(title, header, rows, total, statuses, everything))
        return
    header, rows, total = diff_cells(diff, changed_only, stacked=True)
    times = list(range(FIRST_NUMBER + 3, len(header)))
    parts = [(title, everything)]
    if times and columns_width(header, rows, total, everything) > console.width:
        parts = [(title, everything[:FIRST_NUMBER + 3]), ("per-layer time on each profile", [0, 1, 2, 3, *times])]
    tables = []
    for part_title, keep in parts:
        shown, hidden = columns_that_fit(header, rows, total, keep, console.width, DROPPED_WHEN_NARROW)
        table = _diff_table(part_title, header, rows, total, statuses, shown)
        caption_hidden(table, hidden, console.width, "markdown/json")
        tables.append(table)
    console.print(Group(*tables))


def _diff_table(title: str, header: list[str], rows: list[list[str]], total: list[str], statuses: list[str],
                columns: list[int]) -> Table:
    """One rich table of the chosen columns; figures never wrap, text (names, spec text) folds if it must."""
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, title_justify="left", show_footer=True, header_style="bold")
    for i in columns:
        table.add_column(escape(header[i]), justify="right" if i >= FIRST_NUMBER else "left", footer=Text(total[i]),
                         no_wrap=i not in TEXT_COLUMNS, overflow="fold")
    for status, cells in zip(statuses, rows, strict=True):
        table.add_row(*(Text(cells[i]) for i in columns), style=STYLES[status])  # Text: spec labels are not markup
    return table


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
