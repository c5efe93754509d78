"""`cnncalc diff`: layers aligned by their spec text, changed figures marked, totals compared."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from cnncalc.analysis import analyze
from cnncalc.cli import app
from cnncalc.diff import diff_cells, diff_reports
from cnncalc.hardware import get_profiles
from cnncalc.spec import parse
from cnncalc.specfile import load

ROOT = Path(__file__).resolve().parent.parent
NOTES = str(ROOT / "specs" / "titan_x_vs_jetson_nano.yaml")
runner = CliRunner()


def test_notes_designs_layer_by_layer():
    a, b = (analyze(graph, profiles=get_profiles(["jetson-nano"])) for graph in load(NOTES).networks)
    result = diff_reports(a, b)
    assert [row.status for row in result.rows] == ["changed", "removed"]
    conv, pool = result.rows
    # conv1 keeps its 3*3*32*64 + 64 = 18,496 params; its output and MACs shrink:
    # 224*224*64*288 = 924,844,032 -> 112*112*64*288 = 231,211,008
    assert "params" not in conv.changed
    assert {"layer", "output", "macs", "activation_bytes", "time_s[jetson-nano]"} <= set(conv.changed)
    assert (conv.a.macs, conv.b.macs) == (924_844_032, 231_211_008)
    assert pool.a.name == "mp1" and pool.b is None
    header, rows, total = diff_cells(result)
    assert rows[0][4] == "224x224x64 -> 112x112x64"
    assert rows[1][0] == "-"
    # totals: MACs 924,844,032 -> 231,211,008 is -75%; peak 18.4 MiB -> 9.2 MiB is -50%
    assert "(-75%)" in total[6] and "(-50%)" in total[7]


def test_an_inserted_layer_keeps_the_rest_aligned():
    a = analyze(parse("32x32x3|3x3x3x8(p=1)|MP|FC(10)"))
    b = analyze(parse("32x32x3|3x3x3x8(p=1)|ReLU|MP|FC(10)"))
    result = diff_reports(a, b)
    # conv | (ReLU) | MP | Flatten (inserted before FC on an image) | FC
    assert [row.status for row in result.rows] == ["same", "added", "same", "same", "same"]
    assert result.rows[1].b.label == "ReLU"


def test_identical_networks_have_no_changes():
    text = "16x16x3|3x3x3x8(p=1)|ReLU|GAP|FC(4)"
    result = diff_reports(analyze(parse(text)), analyze(parse(text)))
    assert result.changed_rows == []


def test_cli_table_json_and_markdown():
    result = runner.invoke(app, ["diff", NOTES], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "full-res-then-pool -> strided: 1 changed, 0 added, 1 removed, 0 the same" in result.stdout
    result = runner.invoke(app, ["diff", NOTES, "--format", "json"])
    data = json.loads(result.stdout)
    assert [row["status"] for row in data["rows"]] == ["changed", "removed"]
    assert data["totals"]["macs"] == [924_844_032, 231_211_008]
    assert set(data["latency_s"]) == {"titan-x-maxwell", "jetson-nano"}  # the file's default profiles
    result = runner.invoke(app, ["diff", NOTES, "--format", "markdown", "--changed-only"])
    assert "| **~** |" in result.stdout and "**224x224x64 -> 112x112x64**" in result.stdout


def test_two_specs_on_the_command_line():
    result = runner.invoke(app, ["diff", "8x8x3|3x3x3x4(p=1)", "8x8x3|3x3x3x8(p=1)", "--format", "json"])
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout)["rows"][0]
    # params 3*3*3*4 + 4 = 112 -> 3*3*3*8 + 8 = 224
    assert (row["a"]["params"], row["b"]["params"]) == (112, 224)


def test_diff_needs_exactly_two_networks():
    result = runner.invoke(app, ["diff", "8x8x3|3x3x3x4(p=1)"])
    assert result.exit_code == 1 and "diff compares two networks" in result.output


def test_totals_change_never_rounds_to_none_or_all():
    # by hand: 3x3x3x8 on 32x32 without padding is 30*30*8*27 = 194,400 MACs; FC(1) on 8*8*3 = 192
    # inputs is 192 MACs: (192 - 194,400) / 194,400 = -99.90%, which whole percent showed as -100%
    a = analyze(parse("32x32x3|3x3x3x8"))
    b = analyze(parse("8x8x3|FC(1)"))
    assert "(-99.9%)" in diff_cells(diff_reports(a, b))[2][6]
    # params (3*3*3*8 + 8) + 8*1 = 232 -> 232 + 1 bias = 233: +1/232 = +0.43%, which showed as +0%
    c = analyze(parse("32x32x3|3x3x3x8|1x1x8x1(b=0)"))
    d = analyze(parse("32x32x3|3x3x3x8|1x1x8x1"))
    assert "(+0.4%)" in diff_cells(diff_reports(c, d))[2][5]


def test_an_80_column_terminal_stacks_changes_instead_of_folding_every_cell():
    # at 80 columns the ten-column diff of the notes' two designs folded every cell over three or four
    # lines ('924.84 / M -> / 231.21 / M'); now a change stacks, the times get a table and numbers stay whole
    result = runner.invoke(app, ["diff", NOTES], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "…" not in result.stdout
    cells = [[cell.strip() for cell in line.split("│")[1:-1]] for line in lines if line.startswith("│")]
    # conv1's MACs 224*224*64*288 = 924,844,032 -> 112*112*64*288 = 231,211,008, one side a line;
    # 3*3*32*64 + 64 = 18,496 params, unchanged, whole
    assert ["~", "924.84M", "18,496"] == [cells[0][0], cells[0][-2], cells[0][-3]]
    assert cells[1][-2] == "-> 231.21M"
    # the totals: the peak 6.125 + 12.25 = 18.4 MiB -> 6.125 + 3.06 = 9.2 MiB, half (-50%)
    assert any(row[-1] == "peak (-50%)" for row in cells)
    assert "per-layer time on each profile" in result.stdout
    timing = result.stdout[result.stdout.index("per-layer time on each profile"):]
    assert "titan-x-maxwell ms" in timing and "jetson-nano ms" in timing
    caption = " ".join(result.stdout.split("per-layer time")[0].split("hidden to fit")[1].split())
    assert caption.startswith("80 columns: name, # (")  # the spec text and the order say which layer


def test_a_wide_terminal_keeps_the_diff_on_one_table():
    result = runner.invoke(app, ["diff", NOTES], env={"COLUMNS": "250"})
    assert "per-layer time on each profile" not in result.stdout and "hidden" not in result.stdout
    assert "924.84M -> 231.21M" in result.stdout
