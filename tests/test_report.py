"""`cnncalc report` (Markdown and self-contained HTML), and the terminal table's bars and --top."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cnncalc.analysis import analyze
from cnncalc.cli import app
from cnncalc.render import bar, top_layers
from cnncalc.spec import parse

ROOT = Path(__file__).resolve().parent.parent
NOTES = str(ROOT / "specs" / "titan_x_vs_jetson_nano.yaml")
runner = CliRunner()


@pytest.fixture(scope="module")
def html_report(tmp_path_factory) -> str:
    pytest.importorskip("matplotlib")
    path = tmp_path_factory.mktemp("report") / "notes.html"
    result = runner.invoke(app, ["report", NOTES, "-o", str(path), "--object-size", "64"])
    assert result.exit_code == 0, result.output
    return path.read_text()


def test_html_report_has_every_section(html_report):
    for heading in ("Spec", "Summary", "Hardware profiles", "Advice", "Plots", "Layers"):
        assert f"<h2>{heading}</h2>" in html_report
    # the spec as written, both variants, both profiles, the advice with its numbers
    assert "3x3x32x64(p=1,s=2) | 112x112x64" in html_report
    assert "full-res-then-pool" in html_report and "strided" in html_report
    assert "titan-x-maxwell" in html_report and "jetson-nano" in html_report
    # the strided conv's MACs at stride 1: 231,211,008 * 4 = 924,844,032 (the notes' first design)
    assert "231,211,008 -&gt; 924,844,032" in html_report
    assert "never covers a 64 px object" in html_report
    # per-layer rows: 18,496 params = 3*3*32*64 + 64
    assert "18,496" in html_report


def test_html_report_is_self_contained(html_report):
    assert "<script" not in html_report and "<link" not in html_report and "@import" not in html_report
    assert not re.search(r"""(src|href)=['"]?(https?:|//)""", html_report)
    assert "url(http" not in html_report
    images = re.findall(r"src='data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)'", html_report)
    # layers, receptive field, roofline (two profiles), variants side by side
    assert len(images) == 4 == html_report.count("<img")
    svgs = [base64.b64decode(image).decode() for image in images]
    assert all(svg.startswith("<?xml") and "<svg" in svg for svg in svgs)
    assert "Receptive field growth with depth" in svgs[1] and "object 64 px" in svgs[1]
    # an SVG may name its own namespace, but it must load nothing
    assert not any(re.search(r"""(href|src)=['"]https?:""", svg) for svg in svgs)


def test_markdown_report_links_its_images(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "design.md"
    result = runner.invoke(app, ["report", NOTES, "-o", str(path), "-p", "jetson-nano"])
    assert result.exit_code == 0, result.output
    text = path.read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert links == [f"design_files/{kind}.svg" for kind in ("layers", "receptive-field", "roofline", "variants")]
    assert all((tmp_path / link).read_text().startswith("<?xml") for link in links)
    assert "## Advice" in text and "| jetson-nano |" in text



def test_markdown_report_titles_its_plots_for_a_reader(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "design.md"
    result = runner.invoke(app, ["report", NOTES, "-o", str(path)])
    assert result.exit_code == 0, result.output
    text = path.read_text()
    # headings and alt text in words, not the --kind names ('![receptive-field](...)')
    alts = re.findall(r"!\[([^\]]*)\]\(", text)
    assert alts == ["MACs and activation memory per layer", "Receptive field growth with depth",
                    "Roofline on each device", "Variants side by side"]
    assert all(f"### {alt}\n" in text for alt in alts)
    # the caption said every layer left of the ridge waits on memory, yet MobileNet-v2's depthwise convs sit
    # there compute-bound on the Jetson Nano and small layers overhead-bound: it explains the colours instead
    caption = text.split("![Roofline on each device]")[1].split("###")[0]
    assert "left of the ridge point a layer waits on memory" not in caption
    assert all(bound in caption for bound in ("compute", "memory", "overhead"))

def test_report_without_plots_needs_no_matplotlib(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    path = tmp_path / "plain.md"
    result = runner.invoke(app, ["report", "32x32x3|3x3x3x8(p=1)|MP|FC(10)", "-o", str(path), "--no-plots"])
    assert result.exit_code == 0, result.output
    text = path.read_text()
    assert "No plots: plots were turned off" in text and "pool-before-classifier" in text
    result = runner.invoke(app, ["report", "32x32x3|3x3x3x8(p=1)", "-o", str(tmp_path / "x.md")])
    assert result.exit_code == 1 and "cnncalc[plot]" in result.output


def test_failed_checkpoint_still_writes_a_report_with_the_fix(tmp_path):
    path = tmp_path / "broken.html"
    result = runner.invoke(app, ["report", "224x224x32|3x3x32x64(p=0,s=2)|112x112x64", "-o", str(path),
                                 "--no-plots"])
    assert result.exit_code == 1 and "p=1" in result.output
    page = path.read_text()
    # computed floor((224 - 3) / 2) + 1 = 111 against the checkpoint's 112; p=1 makes it hold
    assert "111x111x64" in page and "112x112x64" in page and "p=1 makes it hold" in page
    assert "^^^" in page  # the caret under the checkpoint


def test_report_rejects_other_formats(tmp_path):
    result = runner.invoke(app, ["report", NOTES, "-o", str(tmp_path / "r.pdf")])
    assert result.exit_code == 1 and ".md or .html" in result.output


# ---- inline bars and --top in the terminal table -------------------------------------------
@pytest.mark.parametrize("command", ["report", "plot"])
def test_a_missing_folder_is_named_before_anything_is_drawn(tmp_path, monkeypatch, command):
    # the error named r_files/layers.svg, after every plot had been drawn; now it names -o's own folder first
    import cnncalc.plots as plots

    def never(*args, **kwargs):
        raise AssertionError("drew a figure for a file that cannot be written")

    monkeypatch.setattr(plots, "figure_for", never)
    target = tmp_path / "missing" / ("r.md" if command == "report" else "r.png")
    result = CliRunner().invoke(app, [command, "8x8x3|3x3x3x4(p=1)|ReLU", "-o", str(target)])
    assert result.exit_code == 1
    assert f"cannot write {target}: folder {target.parent} does not exist" in result.output.replace("\n", "")


def test_bar_widths():
    # 6 cells of 8 eighths: half = 24 eighths = 3 full blocks; 1/16 = 3 eighths -> '▍'
    assert bar(0.5) == "[cyan]███[/cyan][bright_black]░░░[/bright_black]"
    assert bar(1 / 16) == "[cyan]▍[/cyan][bright_black]░░░░░[/bright_black]"
    assert bar(0.0) == "[cyan][/cyan][bright_black]░░░░░░[/bright_black]"


def test_top_layers_by_macs_without_profiles():
    report = analyze(parse("32x32x3|3x3x3x8(p=1)|ReLU|3x3x8x16(p=1)|MP|3x3x16x16(p=1)"))
    # MACs: 1024*8*27 = 221,184; 1024*16*72 = 1,179,648; 256*16*144 = 589,824
    assert [layer.name for layer in top_layers(report, 2)] == ["conv2", "conv3"]


def test_analyze_top_shows_only_the_heaviest(tmp_path):
    spec = "32x32x3|3x3x3x8(p=1)|ReLU|3x3x8x16(p=1)|MP|3x3x16x16(p=1)"
    result = runner.invoke(app, ["analyze", spec, "--top", "1"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "top 1 of 5 layers by MACs" in result.stdout
    assert "conv2" in result.stdout and "conv1 " not in result.stdout and "relu1" not in result.stdout
    assert "██████" in result.stdout  # the heaviest layer's bar is full


# ---- table width: full when redirected, squeezed without losing digits in a narrow terminal ----------------
RESNET18 = str(Path(__file__).resolve().parent.parent / "specs" / "resnet18.yaml")


def test_redirected_tables_keep_their_full_width(monkeypatch):
    # CliRunner's stdout is not a terminal, like `cnncalc analyze ... > report.txt` or a CI log; rich alone
    # would render at 80 columns and cut this 13-column table's numbers to '…'
    monkeypatch.delenv("COLUMNS", raising=False)
    result = runner.invoke(app, ["analyze", RESNET18, "-p", "titan-x-maxwell", "-p", "jetson-nano"])
    assert result.exit_code == 0, result.output
    assert "…" not in result.stdout
    # ResNet-18's parameter count, published by torchvision (11,689,512), whole in the totals row
    assert "11,689,512" in result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) > 150
    assert "██████" in result.stdout  # room for the share bars


@pytest.mark.parametrize("columns", [100, 140])
def test_narrow_terminal_drops_the_bars_and_cuts_no_number(columns):
    result = runner.invoke(app, ["analyze", RESNET18, "-p", "titan-x-maxwell", "-p", "jetson-nano"],
                           env={"COLUMNS": str(columns)})
    assert result.exit_code == 0, result.output
    assert "…" not in result.stdout
    assert "█" not in result.stdout and "░" not in result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) <= columns
    # the profiles' time columns moved to a table of their own
    assert "per-layer time on each profile" in result.stdout


def test_an_80_column_terminal_hides_columns_instead_of_folding_numbers():
    # 80 columns is a terminal's default; every number used to fold over several lines ('112 / x11 / 2x6 / 4')
    result = runner.invoke(app, ["analyze", RESNET18, "-p", "titan-x-maxwell", "-p", "jetson-nano"],
                           env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
    # whole cells: the stem's output 112x112x64 and torchvision's published 11,689,512 parameters
    assert "112x112x64" in result.stdout and result.stdout.count("11,689,512") == 2
    assert any(line.startswith("│    │ total") and "11,689,512" in line for line in result.stdout.splitlines())
    caption = " ".join(result.stdout[result.stdout.index("hidden to fit 80 columns"):].split())
    # FLOPs go first (about twice the MACs), then the names (the spec text says what the layer is),
    # then the receptive field (the summary table has the network's)
    assert caption.startswith("hidden to fit 80 columns: FLOPs, name, RF/stride (")


def test_an_80_column_terminal_turns_the_profile_and_comparison_tables():
    # seven figures per profile side by side need about 130 columns: at 80 every header and number folded
    # (or, with numbers kept whole, the profile names were squeezed away); turned, a profile is a column
    notes = str(Path(__file__).resolve().parent.parent / "specs" / "titan_x_vs_jetson_nano.yaml")
    result = runner.invoke(app, ["analyze", notes], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    headers = [line.split() for line in lines if line.startswith("┃ profile")]
    # the hardware table of each variant: a column per profile
    assert headers == [["┃", "profile", "┃", "titan-x-maxwell", "┃", "jetson-nano", "┃"]] * 2
    assert sum(line.startswith("│ max batch (infer)") for line in lines) == 2
    comparison = lines[next(i for i, line in enumerate(lines) if line.startswith("comparison")):]
    assert "full-res-then-pool" in comparison[2] and "strided" in comparison[2]  # a column per variant
    assert any(line.startswith("│ jetson-nano ms") for line in comparison)


def test_split_layer_tables_keep_whole_numbers():
    # at 140 columns the layer table fits once the profile columns are apart: no cell has to wrap;
    # ResNet-18's 11,689,512 parameters (torchvision's published count) appear in the totals and the summary
    result = runner.invoke(app, ["analyze", RESNET18, "-p", "titan-x-maxwell", "-p", "jetson-nano"],
                           env={"COLUMNS": "140"})
    assert result.stdout.count("11,689,512") == 2
    timing = result.stdout[result.stdout.index("per-layer time on each profile"):]
    assert "titan-x-maxwell ms" in timing and "jetson-nano ms" in timing and "conv1" in timing


def test_markdown_cells_hold_names_with_pipes_and_newlines(tmp_path):
    # ONNX names are free text: '|' would end the cell and a newline the row
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")
    node = helper.make_node("Conv", ["in", "w"], ["out"], name="a|b\nc", pads=[1, 1, 1, 1])
    graph = helper.make_graph([node], "net", [helper.make_tensor_value_info("in", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 4, 8, 8])], [weight])
    model = tmp_path / "pipes.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(model))
    result = runner.invoke(app, ["analyze", str(model), "--format", "markdown"])
    assert result.exit_code == 0, result.output
    layer_rows = [line for line in result.stdout.splitlines() if line.startswith("| 0 |")]
    assert layer_rows == [layer_rows[0]] and "| a\\|b c |" in layer_rows[0]
    assert layer_rows[0].count(" | ") == 8  # nine cells, as many as the header has


def test_markdown_report_links_images_beside_a_file_name_with_spaces(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "my report (v2).md"
    result = runner.invoke(app, ["report", "16x16x3|3x3x3x4(p=1)", "-o", str(path), "-p", "jetson-nano"])
    assert result.exit_code == 0, result.output
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", path.read_text())
    # a Markdown link ends at a space and a ')' closes it: both are percent-encoded (' ' %20, '(' %28, ')' %29)
    assert links[0] == "my%20report%20%28v2%29_files/layers.svg"
    assert (tmp_path / "my report (v2)_files" / "layers.svg").read_text().startswith("<?xml")


def test_markdown_keeps_multiline_names_in_their_heading_and_fences_any_yaml(tmp_path):
    # a variant named across two lines, and a YAML comment quoting a ``` block
    spec = tmp_path / "odd.yaml"
    spec.write_text('# usage:\n# ```\n# cnncalc analyze odd.yaml\n# ```\ninput: 8x8x3\n'
                    'variants:\n  "first\\nsecond": "3x3x3x4(p=1)"\n  other: "3x3x3x2(p=1)"\n')
    result = runner.invoke(app, ["analyze", str(spec), "--format", "markdown"])
    assert result.exit_code == 0, result.output
    assert "## first second\n" in result.stdout  # not '## first' and a stray paragraph 'second'
    path = tmp_path / "odd.md"
    result = runner.invoke(app, ["report", str(spec), "-o", str(path), "--no-plots"])
    assert result.exit_code == 0, result.output
    text = path.read_text()
    assert "### first second\n" in text
    # the spec's block opens with a fence longer than the file's ``` and closes with the same fence
    assert "odd.yaml:\n\n````text\n# usage:\n# ```\n" in text
    assert "variants:" in text.split("````text\n")[1].split("\n````\n")[0]
    result = runner.invoke(app, ["diff", str(spec), "--format", "markdown"])
    assert result.stdout.startswith("## first second -> other\n\n")


def test_networks_of_different_batch_and_dtype_say_so(tmp_path):
    # 3x3x3x4 on 8x8 with p=1: 8*8*4*27 = 6,912 MACs per sample; at batch 4, 27,648 (6.91k against 27.65k)
    spec = tmp_path / "b4.yaml"
    spec.write_text('input: 8x8x3\nbatch: 4\ndtype: float16\nnetwork: "3x3x3x4(p=1)"\n')
    result = runner.invoke(app, ["analyze", "8x8x3|3x3x3x4(p=1)", str(spec), "--format", "markdown"])
    assert result.exit_code == 0, result.output
    assert "| network | 1 / float32 | 8x8x4 | 112 | 6.91k |" in result.stdout
    assert "| b4 | 4 / float16 | 8x8x4 | 112 | 27.65k |" in result.stdout
    path = tmp_path / "two.md"
    result = runner.invoke(app, ["report", "8x8x3|3x3x3x4(p=1)", str(spec), "-o", str(path), "--no-plots"])
    assert result.exit_code == 0, result.output
    # the intro named only the first network's 'batch 1, float32'
    assert "network: batch 1, float32; b4: batch 4, float16;" in path.read_text().splitlines()[2]
