"""Each plot kind for a bundled spec: a valid PNG/SVG with the expected titles, axes and marks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cnncalc.analysis import analyze
from cnncalc.cli import app
from cnncalc.errors import CnnCalcError
from cnncalc.hardware import get_profiles
from cnncalc.specfile import load

pytest.importorskip("matplotlib")

from cnncalc import plots  # noqa: E402 - after the skip: needs matplotlib

ROOT = Path(__file__).resolve().parent.parent
NOTES = str(ROOT / "specs" / "titan_x_vs_jetson_nano.yaml")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
runner = CliRunner()


@pytest.fixture(scope="module")
def notes():
    """The notes' two designs on the notes' two devices."""
    profiles = get_profiles(["titan-x-maxwell", "jetson-nano"])
    return [analyze(graph, profiles=profiles) for graph in load(NOTES).networks], profiles


def chain(text: str):
    """The analysis of one spec chain, no profiles."""
    from cnncalc.spec import parse

    return analyze(parse(text))


def texts(figure) -> dict[str, list[str]]:
    """Titles and axis labels of every panel, and the figure's legend texts."""
    found: dict[str, list[str]] = {"titles": [], "x": [], "y": [], "legend": [], "notes": []}
    for axes in figure.axes:
        found["titles"].append(axes.get_title())
        found["x"].append(axes.get_xlabel())
        found["y"].append(axes.get_ylabel())
        found["notes"] += [text.get_text() for text in axes.texts]
    for legend in figure.legends:
        found["legend"] += [text.get_text() for text in legend.get_texts()]
    found["suptitle"] = [figure._suptitle.get_text()] if figure._suptitle else []
    return found


def test_layers_plot_has_macs_and_memory_per_layer(notes):
    reports, _ = notes
    found = texts(plots.layers_figure(reports))
    assert found["suptitle"] == ["MACs and activation memory per layer"]
    # one column per variant, MACs on top, memory below
    assert any("full-res-then-pool" in t and "MACs" in t for t in found["titles"])
    assert any("strided" in t and "activation memory" in t for t in found["titles"])
    assert "multiply-accumulates" in found["y"] and "MiB" in found["y"]  # 12.2 MiB is the largest layer output
    assert "layer (in order)" in found["x"]
    assert {"conv", "pool"} <= set(found["legend"])



def test_layers_log_axes_keep_the_smallest_bar_visible():
    # LeNet-5 by hand: fc3 is FC(84 -> 10), 840 MACs, the smallest non-zero; its output is 10 float32 = 40 B
    # = 0.039 KiB. Autoscaled, the log axis began just under each, and fc3's bars were a sliver
    report = analyze(load(str(ROOT / "specs" / "lenet5.yaml")).networks[0])
    macs_axes, memory_axes = plots.layers_figure([report]).axes[:2]
    assert macs_axes.get_yscale() == "log" and memory_axes.get_yscale() == "log"
    assert macs_axes.get_ylim()[0] <= 840 / 2
    assert memory_axes.get_ylabel().startswith("KiB") and memory_axes.get_ylim()[0] <= 40 / 1024 / 2


def test_layers_of_a_network_without_macs_count_from_zero():
    # a lone ReLU: 0 MACs. The axis ran from -0.05 to 0.05 in ticks of '-40 m' multiply-accumulates
    report = chain("32x32x3 | ReLU")
    figure = plots.layers_figure([report])
    macs_axes = figure.axes[0]
    assert macs_axes.get_ylim() == (0, 1)
    assert all(float(tick).is_integer() and tick >= 0 for tick in macs_axes.get_yticks()
               if 0 <= tick <= 1)
    assert "none in any layer" in texts(figure)["notes"]
    assert "(total 0)" in macs_axes.get_title()


def test_layers_titles_of_four_long_named_variants_do_not_overlap(tmp_path):
    spec = tmp_path / "four.yaml"
    names = ["baseline-three-by-three-convolutions-everywhere", "depthwise-separable-mobile-friendly-variant",
             "strided-first-layer", "tiny"]
    spec.write_text("input: 16x16x3\nvariants:\n" + "".join(f"  {name}: '3x3x3x4(p=1) | MP'\n" for name in names))
    figure = plots.layers_figure([analyze(graph) for graph in load(str(spec)).networks])
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    for row in (figure.axes[:4], figure.axes[4:8]):  # subplots(2, 4) lists the axes row by row
        boxes = sorted((axes.title.get_window_extent(renderer) for axes in row), key=lambda box: box.x0)
        assert all(left.x1 <= right.x0 for left, right in zip(boxes, boxes[1:], strict=False))
        assert boxes[0].x0 >= 0 and boxes[-1].x1 <= figure.bbox.width

def test_receptive_field_plot_marks_the_input_and_object(notes):
    reports, _ = notes
    found = texts(plots.receptive_field_figure(reports, object_size=64))
    assert found["titles"] == ["Receptive field growth with depth"]
    assert found["x"] == ["depth (layers from the input)"]
    assert found["y"][0].startswith("pixels of the input")
    assert "input 224 px" in found["notes"] and "object 64 px" in found["notes"]
    # one line style entry for the strides, not one per network
    assert {"full-res-then-pool", "strided", "effective stride (dotted)"} <= set(found["legend"])


def test_receptive_field_names_the_layer_that_covers_the_input():
    # by hand: four 3x3 convs on 8x8 grow the field 3, 5, 7, 9: the fourth conv (conv4, table '#3', depth 4)
    # is the first to see all 8 pixels; the old note said 'layer 4', which the tables call bn/relu/...
    report = chain("8x8x1 | 3x3x1x1(p=1) | 3x3x1x1(p=1) | 3x3x1x1(p=1) | 3x3x1x1(p=1) | ReLU")
    found = texts(plots.receptive_field_figure([report]))
    assert "covers the input at conv4 (#3)" in found["notes"]


def test_receptive_field_coverage_of_several_networks_goes_in_the_legend():
    # by hand, 8x8 input: a 9x9 conv covers it at conv1 (#0); 3x3 s2 (field 3, jump 2) then 5x5 reaches
    # 3 + 4 * 2 = 11 at conv2 (#1); two 3x3 convs reach only 5
    wide = chain("8x8x1 | 9x9x1x1(p=4)")
    strided = chain("8x8x1 | 3x3x1x1(p=1,s=2) | 5x5x1x1(p=2)")
    small = chain("8x8x1 | 3x3x1x1(p=1) | 3x3x1x1(p=1)")
    figure = plots.receptive_field_figure([wide, strided, small])
    found = texts(figure)
    # annotations of two networks covering at one depth would be drawn over each other: none on the axes
    assert not [note for note in found["notes"] if "covers" in note]
    legend = [label.replace("\n", " ") for label in found["legend"]]
    assert "network: covers the input at conv1 (#0)" in legend
    assert "network: covers the input at conv2 (#1)" in legend
    assert legend.count("network") == 1 and "effective stride (dotted)" in legend


def test_receptive_field_legend_of_long_names_fits_the_figure(tmp_path):
    spec = tmp_path / "long.yaml"
    name_a, name_b = "baseline-three-by-three-convolutions-everywhere", "depthwise-separable-mobile-friendly"
    spec.write_text(f"input: 16x16x3\nvariants:\n  {name_a}: '3x3x3x4(p=1) | MP'\n  {name_b}: '3x3x3x4(p=1)'\n")
    figure = plots.receptive_field_figure([analyze(graph) for graph in load(str(spec)).networks])
    figure.canvas.draw()
    legend = figure.legends[0].get_window_extent()
    assert 0 <= legend.x0 and legend.x1 <= figure.bbox.width  # it ran off both edges with 4 columns


def test_receptive_field_plot_data_is_the_analysis():
    report = analyze(load(str(ROOT / "specs" / "lenet5.yaml")).networks[0])
    figure = plots.receptive_field_figure([report])
    field_line = figure.axes[0].lines[0]
    # LeNet-5: 5x5 conv -> 5; AP(2) -> 6 (j 2); 5x5 conv -> 6 + 4*2 = 14; AP(2) -> 16 (j 4); flatten -> 32
    assert list(field_line.get_ydata())[:8] == [1, 5, 5, 6, 14, 14, 16, 32]


def test_roofline_has_a_panel_per_profile_with_the_ridge(notes):
    reports, profiles = notes
    figure = plots.roofline_figure(reports, profiles)
    found = texts(figure)
    assert [t.split(":")[0] for t in found["titles"]] == ["titan-x-maxwell", "jetson-nano"]
    assert set(found["x"]) == {"arithmetic intensity (FLOP per byte moved)"}
    assert set(found["y"]) == {"achieved FLOP/s (float32)"}
    # ridge = peak / bandwidth: Titan X 6.14e12 / 336.5e9 = 18.25 FLOP/B; Jetson Nano 235.9e9 / 25.6e9 = 9.21
    assert any("18.2 FLOP/B" in note for note in found["notes"])
    assert any("9.21 FLOP/B" in note for note in found["notes"])
    assert {"compute-bound", "memory-bound"} <= {label.split(" ")[0] for label in found["legend"]}
    assert all(axes.get_xscale() == "log" and axes.get_yscale() == "log" for axes in figure.axes)


def test_roofline_needs_a_profile(notes):
    reports, _ = notes
    with pytest.raises(CnnCalcError, match="needs a hardware profile"):
        plots.roofline_figure(reports, [])


def test_variants_plot_compares_totals_and_latency(notes):
    reports, _ = notes
    found = texts(plots.variants_figure(reports))
    assert found["suptitle"][0].startswith("Variants side by side")
    assert [title.replace("\n", " ") for title in found["titles"]] == [
        "parameters", "MACs", "peak activation memory (inference)", "training memory (SGD-momentum)",
        "latency per profile"]
    assert found["y"][-1].startswith("milliseconds per batch")
    assert found["legend"] == ["full-res-then-pool", "strided"]


def test_variants_plot_needs_two_networks(tmp_path):
    # `-k variants` on one network drew a one-bar 'comparison' (its last title cut at the edge)
    with pytest.raises(CnnCalcError, match="two or more networks"):
        plots.variants_figure([chain("8x8x1 | 3x3x1x1")])
    result = runner.invoke(app, ["plot", "8x8x1 | 3x3x1x1", "-k", "variants", "-o", str(tmp_path / "v.png")])
    assert result.exit_code == 1 and "two or more networks" in result.output and "Traceback" not in result.output
    assert not list(tmp_path.iterdir())


def test_variants_plot_of_four_long_named_variants_on_three_profiles_fits(tmp_path):
    spec = tmp_path / "four.yaml"
    names = ["baseline-three-by-three-convolutions-everywhere", "depthwise-separable-mobile-friendly-variant",
             "strided-first-layer", "tiny"]
    spec.write_text("input: 16x16x3\nvariants:\n"
                    + "".join(f"  {name}: '3x3x3x{4 + i}(p=1) | MP'\n" for i, name in enumerate(names)))
    profiles = get_profiles(["titan-x-maxwell", "jetson-nano", "h100"])
    figure = plots.variants_figure([analyze(graph, profiles=profiles) for graph in load(str(spec)).networks])
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    # the names once, in a legend inside the figure; not rotated under each of the five panels
    assert [text.get_text() for text in figure.legends[0].get_texts()] == names
    legend = figure.legends[0].get_window_extent(renderer)
    assert 0 <= legend.x0 and legend.x1 <= figure.bbox.width
    assert all(not [t for t in axes.get_xticklabels() if t.get_text()] for axes in figure.axes[:4])
    # twelve latency labels (4 variants x 3 profiles): none overlaps its neighbour
    boxes = sorted((text.get_window_extent(renderer) for text in figure.axes[4].texts), key=lambda box: box.x0)
    assert len(boxes) == 12
    assert all(left.x1 <= right.x0 + 0.5 for left, right in zip(boxes, boxes[1:], strict=False))


def test_cli_writes_every_kind_as_png_and_svg(tmp_path):
    result = runner.invoke(app, ["plot", NOTES, "-o", str(tmp_path / "notes.png")])
    assert result.exit_code == 0, result.output
    for kind in plots.KINDS:
        assert (tmp_path / f"notes-{kind}.png").read_bytes().startswith(PNG_MAGIC)
    result = runner.invoke(app, ["plot", NOTES, "-o", str(tmp_path / "roof.svg"), "--kind", "roofline"])
    assert result.exit_code == 0, result.output
    svg = (tmp_path / "roof.svg").read_text()
    assert svg.startswith("<?xml") and "<svg" in svg
    # text stays text in the SVG (svg.fonttype none): the titles are there to read and search
    assert "Roofline: where each layer sits on each device" in svg and "jetson-nano" in svg


def test_cli_rejects_unknown_kind_and_format(tmp_path):
    result = runner.invoke(app, ["plot", NOTES, "-o", str(tmp_path / "x.png"), "--kind", "pie"])
    assert result.exit_code == 1 and "pie" in result.output and "roofline" in result.output
    result = runner.invoke(app, ["plot", NOTES, "-o", str(tmp_path / "x.jpg")])
    assert result.exit_code == 1 and ".png or .svg" in result.output


def test_missing_matplotlib_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    with pytest.raises(CnnCalcError) as caught:
        plots.require_matplotlib()
    assert "pip install 'cnncalc[plot]'" in str(caught.value)
    result = runner.invoke(app, ["plot", NOTES, "-o", "never.png"])
    assert result.exit_code == 1 and "cnncalc[plot]" in result.output and "Traceback" not in result.output


def test_analyze_never_imports_matplotlib():
    code = ("import sys\nfrom typer.testing import CliRunner\nfrom cnncalc.cli import app\n"
            f"result = CliRunner().invoke(app, ['analyze', {NOTES!r}, '--top', '1', '--object-size', '8'])\n"
            "assert result.exit_code == 0, result.output\n"
            "print('matplotlib' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


@pytest.mark.parametrize("args", [
    # analysis is arithmetic on shapes; NumPy (about half of the start-up) loads only for run/train/verify
    ["analyze", "specs/resnet50.yaml", "-p", "jetson-nano", "--format", "json"],
    # `spec TEXT` rewrites text; it loaded onnx and NumPy (about 0.1 s) through onnx_io's to_spec
    ["spec", "8x8x3|3x3x3x4(p=1)|ReLU"],
])
def test_commands_on_spec_text_never_import_numpy_or_onnx(args):
    code = ("import sys\nfrom typer.testing import CliRunner\nfrom cnncalc.cli import app\n"
            f"result = CliRunner().invoke(app, {args!r})\n"
            "assert result.exit_code == 0, result.output\n"
            "print('numpy' in sys.modules, 'onnx' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False False"


def test_names_with_dollar_signs_are_drawn_as_written(tmp_path):
    # matplotlib would read 'conv$\frac$' (a free-text ONNX node name) as TeX and fail on it
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")
    nodes = [helper.make_node("Conv", ["in", "w"], ["y"], name="conv$\\frac$", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["y"], ["out"], name="relu$_$")]
    graph = helper.make_graph(nodes, "net", [helper.make_tensor_value_info("in", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 4, 8, 8])], [weight])
    model = tmp_path / "dollar.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(model))
    result = runner.invoke(app, ["plot", str(model), "-o", str(tmp_path / "d.svg"), "--kind", "roofline",
                                 "-p", "titan-x-maxwell"])
    assert result.exit_code == 0, result.output
    assert "conv$\\frac$" in (tmp_path / "d.svg").read_text(encoding="utf-8")  # SVG text stays text


def test_names_in_scripts_the_font_lacks_warn_nothing(tmp_path):
    # matplotlib's DejaVu Sans has no CJK glyphs: it warned once per glyph and figure on stderr
    spec = tmp_path / "cjk.yaml"
    spec.write_text('input: 8x8x3\nvariants:\n  "日本語": "3x3x3x4(p=1)"\n  "中文": "3x3x3x2(p=1)"\n', encoding="utf-8")
    code = ("from cnncalc.cli import app; import sys; sys.argv = ['cnncalc', 'plot', sys.argv[1], '-o', sys.argv[2]]; "
            "app()")
    done = subprocess.run([sys.executable, "-c", code, str(spec), str(tmp_path / "p.svg")], capture_output=True,
                          text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Warning" not in done.stderr and "wrote" in done.stderr
    assert "日本語" in (tmp_path / "p-variants.svg").read_text(encoding="utf-8")
