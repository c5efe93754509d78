"""A design-review document: the spec, what it costs on each device, the advice, the pictures, the layers.

`build` gathers everything into a `Document` (plots rendered to SVG, advice computed); `to_markdown`
and `to_html` only lay it out. The HTML is one self-contained file: styles inline and every image
embedded as a data URI, so it opens with no network. The Markdown links its images, which the
caller writes beside it (the form a README needs). Tables reuse the cells `render.py` builds, so
the report, the terminal and `--format markdown` show the same figures.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import quote

from . import __version__
from .advice import Advice, advise, checkpoint_advice
from .render import (
    _comparison_cells,
    _layer_cells,
    _md_table,
    _profile_cells,
    _summary_cells,
    _totals_cells,
    md_line,
)

if TYPE_CHECKING:
    from .analysis import NetworkReport
    from .errors import SpecError
    from .hardware import Profile

#: how to read each plot, shown under it
CAPTIONS = {
    "layers": "MACs and activation memory of every layer, coloured by kernel class: the tall bars are where "
              "the work and the memory go.",
    "receptive-field": "How many input pixels one output sees, layer by layer, against the input size "
                       "(and the object size, if given): edges first, then parts, then whole objects.",
    # the colour, not the side of the ridge, says what holds a layer back: a depthwise conv left of the
    # ridge can be compute-bound (it runs far below peak), and a small layer waits on kernel launches
    "roofline": "Each layer at its arithmetic intensity and the FLOP/s the cost model gives it, under the "
                "device's roofline: the sloped roof is memory bandwidth, the flat one peak compute, and they meet "
                "at the ridge point. The colour is what the cost model finds limits the layer: compute, memory, or "
                "overhead (too little work to hide the cost of launching a kernel).",
    "variants": "The variants' totals side by side: parameters, MACs, memory and latency on each profile.",
}
#: the heading and alt text of each plot (the kinds are command-line names, not words for a reader)
PLOT_TITLES = {
    "layers": "MACs and activation memory per layer",
    "receptive-field": "Receptive field growth with depth",
    "roofline": "Roofline on each device",
    "variants": "Variants side by side",
}
LEVEL_MARK = {"error": "✖ error", "warning": "⚠ warning", "info": "ℹ note"}


@dataclass
class Document:
    """Everything a report shows, computed once; the renderers only lay it out."""

    title: str
    description: str = ""
    sources: list[tuple[str, str]] = field(default_factory=list)  # (label, spec text as written)
    reports: list[NetworkReport] = field(default_factory=list)
    advice: dict[str, list[Advice]] = field(default_factory=dict)  # network name -> items
    figures: list[tuple[str, bytes]] = field(default_factory=list)  # (kind, SVG)
    errors: list[Advice] = field(default_factory=list)  # specs that did not build (failed checkpoints ...)
    plots_skipped: str = ""  # why there are no plots, when there are none
    error_text: str = ""  # the parser's message with the caret under the spec text


def build(reports: Sequence[NetworkReport], *, title: str, description: str = "",
          sources: Sequence[tuple[str, str]] = (), profiles: Sequence[Profile] = (),
          object_size: int | None = None, plots: bool = True) -> Document:
    """Analyse advice and render the plots (SVG) for one report document."""
    doc = Document(title, description, list(sources), list(reports))
    for report in reports:
        doc.advice[report.name] = advise(report, object_size, profiles)
    if not plots:
        doc.plots_skipped = "plots were turned off (--no-plots)"
    elif reports:
        from .plots import applicable_kinds, figure_bytes, figure_for

        for kind in applicable_kinds(reports, profiles):
            doc.figures.append((kind, figure_bytes(figure_for(kind, reports, profiles, object_size), "svg")))
    return doc


def failed(title: str, error: SpecError, sources: Sequence[tuple[str, str]] = ()) -> Document:
    """A document for a spec that does not build: the spec, the error with its caret, and the fix."""
    items = checkpoint_advice(error) or [Advice("spec-error", "error", error.message, error.hint, None, error.pos)]
    return Document(title, sources=list(sources), errors=items, plots_skipped="the spec does not build",
                    error_text=error.render())


# ---- Markdown ------------------------------------------------------------------
def to_markdown(doc: Document, image_dir: str = "report_files") -> tuple[str, dict[str, bytes]]:
    """The document as GitHub Markdown, and the images it links (relative path -> SVG bytes)."""
    parts = [f"# {md_line(doc.title)}\n", _intro(doc)]
    if doc.description:
        parts.append(f"{doc.description}\n")
    parts.append("## Spec\n")
    for label, text in doc.sources:
        parts.append(f"{md_line(label)}:\n\n{_fenced(text.rstrip())}")
    if doc.error_text:
        parts.append(_fenced(doc.error_text))
    for error in doc.errors:
        parts.append(f"**{LEVEL_MARK['error']}**: {error.message}\n")
        if error.hint:
            parts.append(f"> fix: {error.hint}\n")
        if error.numbers.get("wanted"):
            parts.append(f"Checkpoint {error.numbers['wanted']} against computed {error.numbers['actual']}.\n")
    if doc.reports:
        parts.append("## Summary\n")
        if len(doc.reports) > 1:
            parts.append(_md_table(*_comparison_cells(doc.reports)))
        for report in doc.reports:
            if len(doc.reports) > 1:
                parts.append(f"### {md_line(report.name)}\n")
            parts.append(_md_table(*_summary_cells(report)))
        if any(report.costs for report in doc.reports):
            parts.append("## Hardware profiles\n")
            for report in doc.reports:
                if report.costs:
                    parts.append(f"{md_line(report.name)}:\n")
                    parts.append(_md_table(*_profile_cells(report)))
        parts.append("## Advice\n")
        for report in doc.reports:
            if len(doc.reports) > 1:
                parts.append(f"### {md_line(report.name)}\n")
            items = doc.advice.get(report.name, [])
            if not items:
                parts.append("Nothing to flag.\n")
            for item in items:
                hint = f"\n  *{item.hint}*" if item.hint else ""
                parts.append(f"- **{LEVEL_MARK.get(item.level, item.level)}** ({item.code}): {item.message}{hint}")
            parts.append("")
    assets: dict[str, bytes] = {}
    if doc.figures:
        parts.append("## Plots\n")
        for kind, svg in doc.figures:
            path = f"{image_dir}/{kind}.svg"
            assets[path] = svg
            # percent-encoded: a link ends at a space and nests on parentheses ('my report (v2).md')
            parts.append(f"### {PLOT_TITLES[kind]}\n\n![{PLOT_TITLES[kind]}]({quote(path)})\n\n{CAPTIONS[kind]}\n")
    elif doc.plots_skipped:
        parts.append(f"*No plots: {doc.plots_skipped}.*\n")
    if doc.reports:
        parts.append("## Layers\n")
        for report in doc.reports:
            header, rows = _layer_cells(report)
            parts.append(f"### {md_line(report.name)}\n" if len(doc.reports) > 1 else "")
            parts.append(_md_table(header, rows + [_totals_cells(report)]))
    return "\n".join(parts), assets


def _fenced(text: str) -> str:
    """A code block that holds any text: its fence is longer than any run of backticks inside (a YAML
    comment quoting a ``` block would otherwise end the block early and spill the rest as Markdown)."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{text}\n{fence}\n"


def _intro(doc: Document) -> str:
    if not doc.reports:
        return f"*cnncalc {__version__}*\n"
    workloads = list(dict.fromkeys(f"batch {r.batch}, {r.dtype}" for r in doc.reports))
    # one batch and dtype for all, else each network's (two files may set different ones)
    workload = workloads[0] if len(workloads) == 1 else "; ".join(
        f"{md_line(r.name)}: batch {r.batch}, {r.dtype}" for r in doc.reports)
    profiles = list(dict.fromkeys(name for r in doc.reports for name in r.costs))
    shown = ", ".join(profiles) if profiles else "none (add -p to estimate time)"
    return f"*cnncalc {__version__}; {workload}; profiles: {shown}*\n"


# ---- HTML ------------------------------------------------------------------------
STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2rem auto;
       max-width: 1200px; padding: 0 1rem; color: #222; line-height: 1.45; }
h1 { font-size: 1.7rem; margin-bottom: 0.2rem; } h2 { border-bottom: 1px solid #ddd; margin-top: 2rem; }
.meta { color: #666; font-size: 0.9rem; }
pre { background: #f6f8fa; padding: 0.8rem; overflow-x: auto; border-radius: 4px; font-size: 0.85rem; }
table { border-collapse: collapse; margin: 0.6rem 0 1rem; font-size: 0.85rem; }
th, td { border: 1px solid #ddd; padding: 0.25rem 0.55rem; }
th { background: #f0f2f5; text-align: left; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.total td { font-weight: 600; background: #fafafa; }
.advice { border-left: 4px solid #999; padding: 0.4rem 0.8rem; margin: 0.5rem 0; background: #fafafa; }
.advice.warning { border-color: #e0a100; background: #fffbea; }
.advice.error { border-color: #d32f2f; background: #fdecea; }
.advice.info { border-color: #1976d2; background: #eef5fd; }
.advice .hint { color: #444; font-size: 0.9rem; margin-top: 0.25rem; }
.code { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 0.8rem; color: #555; }
figure { margin: 1rem 0 2rem; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9rem; }
.wide { overflow-x: auto; }
"""


def to_html(doc: Document) -> str:
    """The document as one self-contained HTML page (inline style, images as data URIs, no scripts)."""
    e = html.escape
    body = [f"<h1>{e(doc.title)}</h1>", f"<p class='meta'>{e(_intro(doc).strip().strip('*'))}</p>"]
    if doc.description:
        body.append(f"<p>{e(doc.description)}</p>")
    body.append("<h2>Spec</h2>")
    for label, text in doc.sources:
        body.append(f"<p>{e(label)}:</p><pre>{e(text.rstrip())}</pre>")
    if doc.error_text:
        body.append(f"<pre>{e(doc.error_text)}</pre>")
    for error in doc.errors:
        body.append(_advice_html(error))
    if doc.reports:
        body.append("<h2>Summary</h2>")
        if len(doc.reports) > 1:
            body.append(_html_table(*_comparison_cells(doc.reports), numeric_from=1))
        for report in doc.reports:
            if len(doc.reports) > 1:
                body.append(f"<h3>{e(report.name)}</h3>")
            body.append(_html_table(*_summary_cells(report), numeric_from=1))
        if any(report.costs for report in doc.reports):
            body.append("<h2>Hardware profiles</h2>")
            for report in doc.reports:
                if report.costs:
                    body.append(f"<p>{e(report.name)}:</p>")
                    body.append(_html_table(*_profile_cells(report), numeric_from=1))
        body.append("<h2>Advice</h2>")
        for report in doc.reports:
            if len(doc.reports) > 1:
                body.append(f"<h3>{e(report.name)}</h3>")
            items = doc.advice.get(report.name, [])
            body.append("".join(_advice_html(item) for item in items) or "<p>Nothing to flag.</p>")
    if doc.figures:
        body.append("<h2>Plots</h2>")
        for kind, svg in doc.figures:
            data = base64.b64encode(svg).decode("ascii")
            body.append(f"<h3>{e(PLOT_TITLES[kind])}</h3>"
                        f"<figure><img alt='{e(PLOT_TITLES[kind])}' src='data:image/svg+xml;base64,{data}'>"
                        f"<figcaption>{e(CAPTIONS[kind])}</figcaption></figure>")
    elif doc.plots_skipped:
        body.append(f"<p class='meta'>No plots: {e(doc.plots_skipped)}.</p>")
    if doc.reports:
        body.append("<h2>Layers</h2>")
        for report in doc.reports:
            if len(doc.reports) > 1:
                body.append(f"<h3>{e(report.name)}</h3>")
            header, rows = _layer_cells(report)
            body.append(_html_table(header, rows, numeric_from=4, total=_totals_cells(report)))
    return ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<title>{e(doc.title)}</title><style>{STYLE}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def _html_table(header: list[str], rows: list[list[str]], numeric_from: int = 0,
                total: list[str] | None = None) -> str:
    e = html.escape
    head = "".join(f"<th>{e(cell)}</th>" for cell in header)
    lines = []
    for row, css in [(row, "") for row in rows] + ([(total, " class='total'")] if total else []):
        cells = "".join(f"<td class='num'>{e(c)}</td>" if i >= numeric_from else f"<td>{e(c)}</td>"
                        for i, c in enumerate(row))
        lines.append(f"<tr{css}>{cells}</tr>")
    return f"<div class='wide'><table><thead><tr>{head}</tr></thead><tbody>{''.join(lines)}</tbody></table></div>"


def _advice_html(item: Advice) -> str:
    e = html.escape
    hint = f"<div class='hint'>{e(item.hint)}</div>" if item.hint else ""
    where = f" at {e(item.layer)}" if item.layer else ""
    return (f"<div class='advice {e(item.level)}'><strong>{e(LEVEL_MARK.get(item.level, item.level))}</strong> "
            f"<span class='code'>{e(item.code)}{where}</span><br>{e(item.message)}{hint}</div>")
