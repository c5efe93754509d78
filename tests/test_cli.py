"""`cnncalc analyze` as a user runs it: figures, formats, and clean errors."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cnncalc.cli import app

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
NOTES_FIRST = "224x224x32|3x3x32x64(p=1)|224x224x64|MP|112x112x64"
NOTES_SECOND = "224x224x32|3x3x32x64(p=0,s=2)|112x112x64"


def run(*args: str):
    return runner.invoke(app, list(args))


def test_notes_example_json_figures():
    result = run("analyze", NOTES_FIRST, "--format", "json")
    assert result.exit_code == 0, result.output
    network = json.loads(result.stdout)["networks"][0]
    assert network["output"] == [112, 112, 64]
    totals = network["totals"]
    # issue 2's acceptance figures: 3*3*32*64 + 64 params; 224*224*64*288 MACs; RF 3 + 1 = 4; stride 1*2
    assert totals["params"] == 18_496
    assert totals["macs"] == 924_844_032
    assert totals["receptive_field"] == 4
    assert totals["effective_stride"] == 2
    assert [layer["op"] for layer in network["layers"]] == ["Conv", "MP"]
    for key in ("trainable_params", "flops", "weight_bytes", "peak_activation_bytes", "training_bytes",
                "effective_padding"):
        assert key in totals
    for d in network["diagnostics"]:
        assert set(d) >= {"level", "message", "position"}


def test_notes_second_design_fails_with_caret_and_fix():
    result = run("analyze", NOTES_SECOND)
    assert result.exit_code == 1
    text = result.output
    assert "111x111x64" in text and "112x112x64" in text
    assert "p=1" in text
    assert "^" in text
    assert "Traceback" not in text


def test_table_shows_layers_and_totals():
    result = run("analyze", NOTES_FIRST)
    assert result.exit_code == 0, result.output
    assert "18,496" in result.stdout
    assert "112x112x64" in result.stdout


def test_csv_has_one_row_per_layer():
    result = run("analyze", NOTES_FIRST, "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [row["op"] for row in rows] == ["Conv", "MP"]
    # MP output 112*112*64 elements * 4 bytes = 3,211,264
    assert rows[1]["activation_bytes"] == "3211264"


def test_markdown_has_tables():
    result = run("analyze", NOTES_FIRST, "--format", "markdown")
    assert result.exit_code == 0
    assert "| # | name | layer |" in result.stdout


def test_batch_and_dtype_scale_the_figures():
    result = run("analyze", NOTES_FIRST, "--format", "json", "--batch", "4", "--dtype", "float16")
    totals = json.loads(result.stdout)["networks"][0]["totals"]
    assert totals["macs"] == 4 * 924_844_032
    # weights: 18,496 params * 2 bytes
    assert totals["weight_bytes"] == 36_992


def test_output_file_is_written(tmp_path):
    target = tmp_path / "out.json"
    result = run("analyze", NOTES_FIRST, "--format", "json", "-o", str(target))
    assert result.exit_code == 0
    assert json.loads(target.read_text())["networks"][0]["totals"]["params"] == 18_496


def test_bad_flags_and_inputs_are_clean_errors(tmp_path):
    for args in (
        ("analyze", NOTES_FIRST, "--format", "xml"),
        ("analyze", NOTES_FIRST, "--dtype", "float8"),
        ("analyze", str(tmp_path / "missing.yaml")),
        ("analyze", "224x224x3|3x3x4x8"),
        ("analyze", NOTES_FIRST, "-o", str(tmp_path / "no" / "such" / "dir.json"), "--format", "json"),
    ):
        result = run(*args)
        assert result.exit_code == 1, (args, result.output)
        assert "error" in result.output and "Traceback" not in result.output
    assert not list((tmp_path).glob("**/*.json"))


def test_output_files_take_their_format_from_the_suffix(tmp_path):
    # .csv was refused ("--output needs a file format"), a .txt too; diff wrote Markdown into d.json
    for name, first in (("an.csv", "network,index,name"), ("an.json", "{"), ("an.md", "## "), ("an.txt", "network")):
        result = run("analyze", NOTES_FIRST, "-o", str(tmp_path / name))
        assert result.exit_code == 0, (name, result.output)
        text = (tmp_path / name).read_text()
        assert text.startswith(first), (name, text[:40])
        assert "\x1b" not in text  # no colour codes in a file
    titan = str(ROOT / "specs" / "titan_x_vs_jetson_nano.yaml")
    result = run("diff", titan, "-o", str(tmp_path / "d.json"))
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "d.json").read_text())["schema"] == "cnncalc.diff/1"
    result = run("diff", titan, "-o", str(tmp_path / "d.txt"))
    assert result.exit_code == 0 and "full-res-then-pool -> strided" in (tmp_path / "d.txt").read_text()
    result = run("diff", titan, "-o", str(tmp_path / "d.csv"))
    assert result.exit_code == 1 and "no CSV" in result.output and not (tmp_path / "d.csv").exists()


def test_the_unsupported_op_hint_names_the_commands_that_take_the_flag(tmp_path):
    # run said "pass --allow-unsupported", an option run does not have
    model = str(ROOT / "tests" / "data" / "torch_tiny_unsupported.onnx")
    result = run("run", model)
    assert result.exit_code == 1 and "analyze, diff, plot and report take --allow-unsupported" in result.output
    assert run("analyze", model, "--allow-unsupported").exit_code == 0


def test_report_title_is_the_spec_files_name_and_analyze_takes_float64(tmp_path):
    target = tmp_path / "r.md"
    result = run("report", str(ROOT / "specs" / "titan_x_vs_jetson_nano.yaml"), "-o", str(target), "--no-plots")
    assert result.exit_code == 0, result.output
    assert target.read_text().startswith("# cnncalc report: titan-x-vs-jetson-nano\n")  # its `name:`, not the stem
    result = run("analyze", "8x8x3|3x3x3x4", "--dtype", "float64", "-f", "json")
    assert result.exit_code == 0, result.output
    totals = json.loads(result.stdout)["networks"][0]["totals"]
    # by hand, 8 bytes a value: input 8x8x3 = 192 and output 6x6x4 = 144 live together; 3*3*3*4 + 4 = 112 params
    assert (totals["peak_activation_bytes"], totals["weight_bytes"]) == ((192 + 144) * 8, 112 * 8)


def test_train_and_run_refuse_an_unwritable_output_before_they_compute(tmp_path, monkeypatch):
    # train used to run every epoch, then fail on the missing folder and lose the result
    import cnncalc.train

    def no_training(*args, **kwargs):
        raise AssertionError("trained before checking the output")

    monkeypatch.setattr(cnncalc.train, "train", no_training)
    missing = tmp_path / "nodir" / "m.onnx"
    result = run("train", "16x16x3|3x3x3x8(p=1)|BN|ReLU|MP|FC(4)", "--epochs", "5", "-o", str(missing))
    assert result.exit_code == 1 and "does not exist" in result.output, result.output
    result = run("train", "128x128x1|FC(40000)", "--epochs", "1", "-o", str(tmp_path / "huge.onnx"))
    assert result.exit_code == 1 and "too large for one ONNX file" in result.output, result.output
    result = run("run", "8x8x1|FC(2)", "-o", str(tmp_path / "nodir" / "y.npy"))
    assert result.exit_code == 1 and "does not exist" in result.output


def test_variants_come_in_the_order_named():
    titan = str(ROOT / "specs" / "titan_x_vs_jetson_nano.yaml")
    result = run("diff", titan, "--variant", "strided", "--variant", "full-res-then-pool", "-f", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["a"], data["b"]) == ("strided", "full-res-then-pool")


def test_json_output_is_strict_json_when_a_figure_is_infinite():
    # an identity network costs no time on any profile: its throughput (batch / 0 s) was printed as Infinity
    def refuse(constant):
        raise AssertionError(f"non-JSON number {constant}")

    result = run("analyze", "8x8x1|ID", "-p", "jetson-nano", "-f", "json")
    assert result.exit_code == 0, result.output
    profile = json.loads(result.stdout, parse_constant=refuse)["networks"][0]["profiles"]["jetson-nano"]
    assert profile["latency_ms"] == 0 and profile["throughput_per_s"] is None


def test_out_of_range_seeds_and_batches_are_usage_errors(tmp_path):
    # a negative seed reached NumPy's generator (internal error); a 310-digit batch overflowed a float
    target = tmp_path / "t.onnx"
    for args in (
        ("export", "8x8x1|FC(2)", "-o", str(target), "--seed", "-5"),
        ("run", "8x8x1|FC(2)", "--seed", "-1"),
        ("train", "8x8x1|FC(2)", "--seed", "-1", "--epochs", "1"),
        ("verify", "8x8x1|FC(2)", "--seed", "-1"),
        ("analyze", "8x8x1|FC(2)", "-b", "1" + "0" * 310),
        ("analyze", "8x8x1|FC(2)", "-b", "1000001"),
    ):
        result = run(*args)
        assert result.exit_code == 2, (args, result.output)
        assert "Invalid value" in result.output and "Traceback" not in result.output
    assert not target.exists()
    for args in (  # click's float ranges let nan through: verify then failed a line, train ran and diverged
        ("verify", "8x8x1|FC(2)", "--grad-seconds", "nan"),
        ("train", "8x8x1|FC(2)", "--weight-decay", "nan"),
        ("train", "8x8x1|FC(2)", "--lr", "inf"),
        ("train", "8x8x1|FC(2)", "--val-fraction", "nan"),
    ):
        result = run(*args)
        assert result.exit_code == 1 and "is not a finite number" in result.output, (args, result.output)
    spec = tmp_path / "big.yaml"
    spec.write_text("name: big\nbatch: 100000000\nnetwork: 8x8x1|FC(2)\n")
    result = run("analyze", str(spec))
    assert result.exit_code == 1 and "batch must be 1 to 1,000,000" in result.output


def test_names_that_look_like_rich_markup_print_as_written(tmp_path):
    # ONNX names are free text; rich reads '[/x]' as a closing tag (a crash) and '[red]' as a style (text lost)
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w[/x]")
    nodes = [helper.make_node("Conv", ["in[bold]", "w[/x]"], ["y[/x]"], name="conv[/x]", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["y[/x]"], ["out[red]"], name="relu[red]")]
    graph = helper.make_graph(nodes, "net[/b]",
                              [helper.make_tensor_value_info("in[bold]", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("out[red]", TensorProto.FLOAT, [1, 4, 8, 8])], [weight])
    model_path = tmp_path / "brackets[red].onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(model_path))

    result = runner.invoke(app, ["analyze", str(model_path), "-p", "titan-x-maxwell"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "conv[/x]" in result.stdout and "relu[red]" in result.stdout
    result = runner.invoke(app, ["diff", str(model_path), str(model_path)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "conv[/x]" in result.stdout
    (tmp_path / "out[").mkdir()
    copy = tmp_path / "out[" / "x]copy.onnx"  # the path holds '[/x]'
    assert "[/x]" in str(copy)
    result = runner.invoke(app, ["export", str(model_path), "-o", str(copy)])
    assert result.exit_code == 0, result.output
    assert f"wrote {copy}" in result.output and copy.exists()


def test_an_internal_error_with_brackets_in_its_message_is_still_one_clean_message(monkeypatch):
    import cnncalc.cli as cli

    def broken(*args, **kwargs):
        raise ValueError("tensor 'y[/x]' went wrong")

    monkeypatch.setattr(cli, "analyzed", broken)
    monkeypatch.delenv("CNNCALC_DEBUG", raising=False)
    result = runner.invoke(app, ["analyze", "8x8x3|3x3x3x4"])
    assert result.exit_code == 2
    assert "internal error: ValueError: tensor 'y[/x]' went wrong" in result.output
    assert "Traceback" not in result.output


def test_csv_times_agree_with_json_down_to_nanoseconds(tmp_path):
    # a profile without launch overhead: an FC(10) on 8x8x3 takes nanoseconds, which CSV rounded to 0.0
    profiles = tmp_path / "p.yaml"
    profiles.write_text("profiles:\n  no-overhead:\n    extends: h100\n    launch_overhead_us: 0\n")
    args = ["analyze", "8x8x3|FC(10)", "--profiles", str(profiles), "-p", "no-overhead"]
    layers = json.loads(run(*args, "-f", "json").stdout)["networks"][0]["layers"]
    rows = list(csv.DictReader(io.StringIO(run(*args, "-f", "csv").stdout)))
    for layer, row in zip(layers, rows, strict=True):
        in_json, in_csv = layer["time_ms"]["no-overhead"], float(row["time_ms[no-overhead]"])
        assert in_csv == pytest.approx(in_json, rel=1e-5)
    assert rows[-1]["op"] == "FC" and float(rows[-1]["time_ms[no-overhead]"]) > 0


def test_totals_and_comparison_show_a_non_square_receptive_field_whole():
    # by hand: a 1x7 kernel sees 1x7 pixels; a 3x3 at stride 1 after it adds 2 per axis: 3x9, stride 1
    wide = "16x32x3|1x7x3x8(p=0,3,0,3)|3x3x8x8"
    result = run("analyze", wide, "16x32x3|3x3x3x8", "--format", "markdown")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    comparison = next(line for line in lines if line.startswith("| network | 14x30x8 |"))
    assert comparison.endswith("| 3x9 |")  # was '9', the larger axis only
    at = next(i for i, line in enumerate(lines) if line.startswith("| 1 | conv2 |"))
    last_layer, total = lines[at], lines[at + 1]  # the first network's last layer, then its totals
    assert last_layer.endswith("| 3x9/1 |") and total.endswith("| 3x9/1 |")  # the total row said '9/1'


def test_comparison_and_diff_mark_lower_bounds():
    # counted params: 3*3*3*8+8 = 224, 3*3*8*16+16 = 1,168, 16*10+10 = 170: 1,562, plus what the skipped
    # ops hold, so at least 1,562; the totals row said '≥ 1,562' but the comparison and the diff '1,562'
    model = str(ROOT / "tests" / "data" / "torch_tiny_unsupported.onnx")
    result = run("analyze", model, "8x8x3|ReLU", "--allow-unsupported", "--format", "markdown")
    assert result.exit_code == 0, result.output
    assert "| torch_tiny_unsupported | 1x1x10 | ≥ 1,562 | ≥ " in result.stdout
    assert "| network | 8x8x3 | 0 | 0 |" in result.stdout  # a complete count carries no mark
    result = run("diff", model, "8x8x3|ReLU", "--allow-unsupported", "--format", "markdown")
    assert "| ≥ 1,562 -> 0 (-100%) | ≥ " in result.stdout


@pytest.mark.parametrize(("args", "meant"), [
    (["--dtype", "fp16"], "--dtype float16"),  # the usual short name: the hint said "e.g. --dtype float32"
    (["--format", "jsn"], "--format json"),  # a typo gets the nearest choice
])
def test_a_wrong_choice_hints_the_one_meant(args, meant):
    result = CliRunner().invoke(app, ["analyze", "8x8x3|ReLU", *args])
    assert result.exit_code == 1 and f"did you mean {meant}?" in result.output


def test_json_chain_of_a_yaml_variant_is_its_text_after_the_files_input():
    result = run("analyze", str(ROOT / "specs" / "titan_x_vs_jetson_nano.yaml"), "--format", "json")
    assert result.exit_code == 0, result.output
    networks = json.loads(result.stdout)["networks"]
    # the file says input: 224x224x32 and strided: "3x3x32x64(p=1,s=2) | 112x112x64"; "spec" keeps the text as
    # written (the positions index it), "chain" is that text with the input before it, which parses alone
    assert networks[1]["spec"] == "3x3x32x64(p=1,s=2) | 112x112x64"
    assert networks[1]["chain"] == "224x224x32 | 3x3x32x64(p=1,s=2) | 112x112x64"


def test_json_chain_parses_back_to_the_same_network_for_every_bundled_spec():
    # a YAML network's own text lacks the file's input, blocks and defaults ({bias: false}): fed back alone it
    # would not parse, or would give convs with biases; the "chain" field must give the same figures
    for path in sorted((ROOT / "specs").glob("*.yaml")):
        first = run("analyze", str(path), "--format", "json")
        assert first.exit_code == 0, first.output
        for network in json.loads(first.stdout)["networks"]:
            again = run("analyze", network["chain"], "--format", "json")
            assert again.exit_code == 0, (path.name, network["chain"], again.output)
            back = json.loads(again.stdout)["networks"][0]
            assert (back["input"], back["output"]) == (network["input"], network["output"]), path.name
            for key in ("params", "state_params", "macs", "flops"):
                assert back["totals"][key] == network["totals"][key], (path.name, key)


def test_spec_command_prints_chains_that_parse_back_to_the_same_networks():
    # every bundled spec and each variant alone (--variant): the printed chain, analysed, gives the figures
    # of the file itself
    for path in sorted((ROOT / "specs").glob("*.yaml")):
        first = run("analyze", str(path), "--format", "json")
        for network in json.loads(first.stdout)["networks"]:
            printed = run("spec", str(path), "--variant", network["name"])
            assert printed.exit_code == 0, printed.output
            again = run("analyze", printed.stdout.strip(), "--format", "json")
            assert again.exit_code == 0, (path.name, printed.stdout, again.output)
            back = json.loads(again.stdout)["networks"][0]
            assert [layer["output"] for layer in back["layers"]] == [layer["output"] for layer in network["layers"]]
            for key in ("params", "macs", "flops", "peak_activation_bytes"):
                assert back["totals"][key] == network["totals"][key], (path.name, network["name"], key)


def test_spec_command_names_the_batch_and_dtype_a_chain_cannot_carry(tmp_path):
    # a file at batch 8 in float16: the chain alone analysed at batch 1, float32 (8x fewer MACs, twice the
    # bytes per value) without a word; 3x3x3x8 on 16x16 is 16*16*8*27 = 55,296 MACs a sample, 442,368 for 8
    spec = tmp_path / "b8.yaml"
    spec.write_text('name: b8\ninput: 16x16x3\nbatch: 8\ndtype: float16\nnetwork: "3x3x3x8(p=1)|ReLU"\n')
    printed = run("spec", str(spec))
    assert printed.exit_code == 0, printed.output
    assert printed.stdout == "16x16x3|3x3x3x8(p=1)|ReLU\n"  # stdout stays a chain, to pipe or paste
    assert "give it --batch 8 --dtype float16" in " ".join(printed.stderr.split())
    again = run("analyze", printed.stdout.strip(), "--batch", "8", "--dtype", "float16", "--format", "json")
    assert json.loads(again.stdout)["networks"][0]["totals"]["macs"] == 442_368
    plain = run("spec", str(ROOT / "specs" / "lenet5.yaml"))
    assert plain.stderr == ""  # batch 1, float32: nothing to add
