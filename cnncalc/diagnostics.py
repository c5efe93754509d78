"""Design smells that the notes this tool grew from call out, found on an analysed graph.

The rules live in `advice.py` (each finding with the numbers behind it); this module is the hook
`analysis.analyze` calls, before hardware costs exist, so only the rules that need no profile fire
here. The CLI re-runs `advice.diagnostics` once costs and --object-size are known.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .ir import Graph

if TYPE_CHECKING:
    from .analysis import Diagnostic, NetworkReport


def design_diagnostics(graph: Graph, report: NetworkReport) -> list[Diagnostic]:
    """All design findings for one network that need no hardware profile."""
    from .advice import diagnostics

    return diagnostics(report)
