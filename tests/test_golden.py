"""Golden files pin what `cnncalc analyze` prints: the terminal table, Markdown and CSV.

The files in tests/golden/ were written for this small network and every number in them checked by hand
against the derivation below, so a change of format or of a figure shows up as a diff here. When the format
changes on purpose, edit the files and check the numbers again; do not regenerate them blindly.

Network: 8x8x3 | 3x3x3x4(p=1) | ReLU | MP | 4x4x4 | FC(10), float32, batch 1.
  conv1   8x8x4   params 3*3*3*4 + 4 = 112       MACs 8*8*4*27 = 6,912     FLOPs 2*6,912 + 256 (bias) = 14,080
  relu1   8x8x4   FLOPs 256 (one per element)
  mp1     4x4x4   FLOPs 64 outputs * 3 comparisons = 192
  fc1     1x1x10  params 64*10 + 10 = 650        MACs 640                  FLOPs 2*640 + 10 = 1,290
  totals  params 762; MACs 7,552; FLOPs 14,080 + 256 + 192 + 1,290 = 15,818
  activation bytes per layer 1,024 / 1,024 / 256 / 256 / 40 = 2,600 B (2.5 KiB); weights 762*4 = 3,048 B (3.0 KiB)
  peak activations: ReLU's input and output, 2 * 1,024 = 2,048 B (2.0 KiB); inference 3,048 + 2,048 = 5,096 B
  training: kept = input 768 + 2,600 = 3,368 B; SGD-momentum 3*3,048 + 3,368 = 12,512 B (12.2 KiB),
            Adam 4*3,048 + 3,368 = 15,560 B (15.2 KiB)
  receptive field: conv 3 (jump 1); MP 3 + 1 = 4 (jump 2); the FC sees the whole 4x4 map: 4 + 3*2 = 10
  bars: full for the heaviest layer; fc1's MACs 640/6,912 of a 48-eighth bar = 4 eighths; mp1's 256/1,024
        activation bytes = 12 eighths (one block and a half); fc1's 40/1,024 = 2 eighths
  advice: FC share 650/762 = 85%; GAP then FC(10) = 4*10 + 10 = 50 params, saving 600 = 79% of 762
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cnncalc.cli import app

GOLDEN = Path(__file__).resolve().parent / "golden"
SPEC = "8x8x3|3x3x3x4(p=1)|ReLU|MP|4x4x4|FC(10)"
runner = CliRunner()


def lines(text: str) -> list[str]:
    """Lines without trailing spaces (rich pads a table's title to the table's width)."""
    return [line.rstrip() for line in text.rstrip("\n").splitlines()]


@pytest.mark.parametrize(("golden", "args"), [
    ("small_cnn_table.txt", []),
    ("small_cnn.md", ["--format", "markdown"]),
    ("small_cnn.csv", ["--format", "csv"]),
])
def test_analyze_output_matches_its_golden_file(golden, args):
    result = runner.invoke(app, ["analyze", SPEC, *args], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    assert lines(result.stdout) == lines((GOLDEN / golden).read_text(encoding="utf-8"))
