"""ONNX export: every bundled spec becomes a valid, runnable ONNX model whose shapes and parameter
counts are the analysis' own; weights are seeded He/BN-identity; files are written atomically.

Oracles: onnx.checker (full check), onnx.shape_inference in strict mode, and onnxruntime.
"""

from __future__ import annotations

import glob
import math
import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from typer.testing import CliRunner

from cnncalc import onnx_io
from cnncalc.analysis import analyze
from cnncalc.cli import app
from cnncalc.errors import CnnCalcError, UnsupportedOpError
from cnncalc.ir import Graph, Node
from cnncalc.ops import OPS
from cnncalc.runtime import Runtime
from cnncalc.spec import parse
from cnncalc.specfile import load

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = [(path, graph.name) for path in sorted(glob.glob(str(ROOT / "specs" / "*.yaml")))
           for graph in load(path).networks]


def bundled(path: str, name: str) -> Graph:
    return next(graph for graph in load(path).networks if graph.name == name)


def quick_weights(graph: Graph) -> dict[str, list[np.ndarray]]:
    """Zeros of every weight's shape (constant operands keep their value): no cost of He draws."""
    weights = {}
    for node in graph.nodes:
        specs = node.op.weights([graph.shapes[name] for name in node.inputs])
        weights[node.name] = [np.zeros(spec.shape, np.float32) if spec.constant is None
                              else np.full(spec.shape, spec.constant, np.float32) for spec in specs]
    return weights


def structure(model: onnx.ModelProto) -> onnx.ModelProto:
    """The same graph with each initializer declared as an input of its type and shape.

    The checker and shape inference only look at initializers' types and shapes; this avoids copying
    hundreds of MB of VGG weights through them. onnxruntime then loads the real file with its data.
    """
    graph = model.graph
    inputs = list(graph.input) + [onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
                                  for t in graph.initializer]
    body = onnx.helper.make_graph(list(graph.node), graph.name, inputs, list(graph.output))
    copy = onnx.helper.make_model(body, opset_imports=list(model.opset_import))
    copy.ir_version = model.ir_version
    return copy


def session(data: bytes) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # load faster; same results
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def test_bundled_specs_are_found():
    # the acceptance needs every bundled spec; a broken glob would make the parametrised test vacuous
    assert len(BUNDLED) >= 8


@pytest.mark.parametrize(("path", "name"), BUNDLED, ids=[name for _, name in BUNDLED])
def test_bundled_spec_exports_valid_runnable_model_and_round_trips(path, name):
    graph = bundled(path, name)
    report = analyze(graph)
    model = onnx_io.to_onnx(graph, quick_weights(graph))

    shaped = structure(model)
    onnx.checker.check_model(shaped, full_check=True)
    inferred = onnx.shape_inference.infer_shapes(shaped, check_type=True, strict_mode=True, data_prop=True)
    shapes = {value.name: value.type.tensor_type.shape.dim for value in [*inferred.graph.value_info,
                                                                          *inferred.graph.output]}
    for node in graph.nodes:  # every tensor: the symbolic batch, then exactly the analysis' shape
        dims = shapes[node.name]
        assert dims[0].dim_param == "batch"
        assert tuple(d.dim_value for d in dims[1:]) == graph.shapes[node.name], node.name

    # parameters in the file: trainable initializers == analysis params; BN statistics == state
    by_name = {tensor.name: math.prod(tensor.dims) for tensor in model.graph.initializer}
    trainable = state = 0
    for node in graph.nodes:
        for spec in node.op.weights([graph.shapes[n] for n in node.inputs]):
            count = by_name.pop(f"{node.name}.{spec.name}")
            if spec.trainable:
                trainable += count
            elif spec.constant is None:
                state += count
    assert not by_name  # no initializer that no layer asked for
    assert (trainable, state) == (report.totals.params, report.totals.state_params)
    assert model.metadata_props[[p.key for p in model.metadata_props].index("cnncalc.params")].value == \
        str(report.totals.params)

    data = model.SerializeToString()
    del model, shaped, inferred
    runner = session(data)
    x = np.zeros((2, *graph.input_shape), dtype=np.float32)
    (out,) = runner.run(None, {graph.input_name: x})
    assert out.shape == (2, *graph.shapes[graph.output])
    del runner

    # and back: spec -> ONNX -> spec gives the same analysis, layer by layer
    imported = onnx_io.import_onnx(data)
    again = parse(onnx_io.to_spec(imported))
    for other in (imported, again):
        result = analyze(other)
        assert result.totals == report.totals
        assert [(layer.op_type, layer.shape, layer.params, layer.macs, layer.flops) for layer in result.layers] == \
            [(layer.op_type, layer.shape, layer.params, layer.macs, layer.flops) for layer in report.layers]


# ---- names, metadata, weights ---------------------------------------------------------------------
SMALL = "16x16x3|3x3x3x8(p=1,b=0)|BN|ReLU|res[3x3x8x8(p=1)|ReLU6]|cat[1x1x8x4 ; 3x3x8x4(p=1)]|MP|GAP|DO(0.2)|FC(10)"


def test_names_follow_the_spec_and_the_spec_is_stored():
    graph = parse(SMALL)
    model = onnx_io.to_onnx(graph)
    assert [node.name for node in model.graph.node] == [node.name for node in graph.nodes]
    assert [node.output[0] for node in model.graph.node] == [node.name for node in graph.nodes]
    conv = model.graph.node[0]
    assert conv.op_type == "Conv" and list(conv.input) == [graph.input_name, f"{graph.nodes[0].name}.W"]
    assert model.doc_string == SMALL
    props = {p.key: p.value for p in model.metadata_props}
    assert props["cnncalc.spec"] == SMALL
    assert props["cnncalc.name"] == graph.name


def test_weights_are_seeded_he_and_bn_identity():
    graph = parse("32x32x64|3x3x64x128(p=1,b=0)|BN|ReLU|FC(10)")
    model = onnx_io.to_onnx(graph, seed=7)
    arrays = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    conv, bn, fc = graph.nodes[0].name, graph.nodes[1].name, graph.nodes[-1].name
    w = arrays[f"{conv}.W"]
    # He/Kaiming normal: std = sqrt(2 / fan_in), fan_in = 64 * 3 * 3 = 576 -> 0.0589; 73,728 draws
    assert w.shape == (128, 64, 3, 3)
    assert abs(w.std() - math.sqrt(2 / 576)) < 0.02 * math.sqrt(2 / 576)
    assert abs(w.mean()) < 0.002
    # FC on the flattened 32*32*128 = 131,072 inputs: std = sqrt(2 / 131072)
    assert abs(arrays[f"{fc}.W"].std() - math.sqrt(2 / 131072)) < 0.05 * math.sqrt(2 / 131072)
    assert np.all(arrays[f"{fc}.B"] == 0)
    assert np.all(arrays[f"{bn}.scale"] == 1) and np.all(arrays[f"{bn}.B"] == 0)
    assert np.all(arrays[f"{bn}.input_mean"] == 0) and np.all(arrays[f"{bn}.input_var"] == 1)
    assert {p.key: p.value for p in model.metadata_props}["cnncalc.seed"] == "7"
    same = onnx_io.to_onnx(graph, seed=7).SerializeToString()
    assert same == model.SerializeToString()
    other = onnx_io.to_onnx(graph, seed=8)
    assert not np.array_equal(onnx.numpy_helper.to_array(other.graph.initializer[0]), w)


def test_exported_model_runs_as_exported():
    # BN at identity and ReLU6 bounds 0..6: with a positive input the output is known by hand
    graph = parse("4x4x2|1x1x2x3|BN|ReLU6")
    weights = {graph.nodes[0].name: [np.ones((3, 2, 1, 1), np.float32), np.array([0.5, 1, 10], np.float32)],
               graph.nodes[1].name: [np.ones(3, np.float32), np.zeros(3, np.float32), np.zeros(3, np.float32),
                                     np.ones(3, np.float32)],
               graph.nodes[2].name: [np.array(0.0, np.float32), np.array(6.0, np.float32)]}
    model = onnx_io.to_onnx(graph, weights)
    (out,) = session(model.SerializeToString()).run(None, {graph.input_name: np.ones((1, 2, 4, 4), np.float32)})
    # conv: 1 + 1 + bias -> 2.5, 3, 12; BN identity (up to eps: x / sqrt(1 + 1e-5)); clip at 6
    assert np.allclose(out[0, :, 0, 0], [2.5 / math.sqrt(1 + 1e-5), 3 / math.sqrt(1 + 1e-5), 6.0])


def test_batch_dimension_fixed_or_dynamic():
    graph = parse("8x8x3|3x3x3x4|ReLU")
    dims = onnx_io.to_onnx(graph, batch=4).graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_value == 4
    dims = onnx_io.to_onnx(graph).graph.output[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch"
    fixed = onnx_io.to_onnx(parse("8x8x3|ReLU"), dynamic_batch=False)
    assert fixed.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 1


def test_opset_default_and_range():
    graph = parse("8x8x3|3x3x3x4|ReLU")
    assert onnx_io.DEFAULT_OPSET == 17
    assert onnx_io.to_onnx(graph).opset_import[0].version == 17
    newest = onnx_io.to_onnx(graph, opset=onnx_io.MAX_OPSET)
    onnx.checker.check_model(newest, full_check=True)
    for bad in (12, onnx_io.MAX_OPSET + 1):
        with pytest.raises(CnnCalcError, match="opset"):
            onnx_io.to_onnx(graph, opset=bad)


def test_a_layer_that_needs_a_later_opset_gets_it_or_a_clear_error(tmp_path):
    # ONNX's operator docs: LpPool has ceil_mode from opset 18, so opset 17 would fail the checker
    graph = parse("7x7x2|LP(2,ceil=1)")
    model = onnx_io.to_onnx(graph)
    assert model.opset_import[0].version == 18
    onnx.checker.check_model(model, full_check=True)
    with pytest.raises(CnnCalcError, match="needs ONNX opset 18"):
        onnx_io.to_onnx(graph, opset=17)
    assert onnx_io.to_onnx(parse("7x7x2|LP(2)")).opset_import[0].version == 17  # without ceil: the default
    target = tmp_path / "lp.onnx"
    result = CliRunner().invoke(app, ["export", "7x7x2|LP(2,ceil=1)", "-o", str(target), "--opset", "17"])
    assert result.exit_code == 1 and "--opset 18" in result.output and not target.exists()


def test_an_exported_spec_imports_with_its_description_not_its_spec_text(tmp_path):
    # the model's doc string holds the spec text (15 lines for LeNet-5), which became the table's title
    graph = load(str(ROOT / "specs" / "lenet5.yaml")).networks[0]
    target = tmp_path / "lenet.onnx"
    onnx_io.save_model(onnx_io.to_onnx(graph), target)
    assert onnx_io.import_onnx(target).description == graph.description == "LeNet-5 on 32x32 grey images, 10 classes."


def test_wrong_weights_are_refused():
    graph = parse("8x8x3|3x3x3x4")
    with pytest.raises(CnnCalcError, match="shape"):
        onnx_io.to_onnx(graph, {graph.nodes[0].name: [np.zeros((4, 3, 2, 2)), np.zeros(4)]})
    with pytest.raises(CnnCalcError, match="needs 2 weight arrays"):
        onnx_io.to_onnx(graph, {graph.nodes[0].name: []})


def test_unsupported_graph_is_not_exported():
    graph = onnx_io.import_onnx(str(ROOT / "tests" / "data" / "torch_tiny_unsupported.onnx"), allow_unsupported=True)
    with pytest.raises(UnsupportedOpError):
        onnx_io.to_onnx(graph)


# ---- atomic writing -------------------------------------------------------------------------------
def test_save_refuses_to_overwrite_and_is_atomic(tmp_path, monkeypatch):
    model = onnx_io.to_onnx(parse("8x8x3|3x3x3x4|ReLU"))
    target = tmp_path / "m.onnx"
    onnx_io.save_model(model, target)
    first = target.read_bytes()
    assert onnx.load_model_from_string(first) == model
    with pytest.raises(CnnCalcError, match="--force"):
        onnx_io.save_model(onnx_io.to_onnx(parse("8x8x3|ReLU")), target)
    assert target.read_bytes() == first

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(CnnCalcError, match="No space left"):
        onnx_io.save_model(onnx_io.to_onnx(parse("8x8x3|ReLU")), target, force=True)
    assert target.read_bytes() == first  # the old file is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]  # and no temporary file is left
    monkeypatch.undo()
    onnx_io.save_model(onnx_io.to_onnx(parse("8x8x3|ReLU")), target, force=True)
    assert target.read_bytes() != first


# ---- the 2 GiB limit ------------------------------------------------------------------------------------
HUGE = "128x128x1|FC(40000)"  # 128*128*1 * 40000 + 40000 = 655,400,000 params: 2,621,600,000 bytes in float32


def test_a_model_over_2_gib_is_refused_before_any_weight_is_drawn(monkeypatch):
    from cnncalc.onnx_io import export

    def no_drawing(*args, **kwargs):
        raise AssertionError("weights were drawn for a model that cannot be written")

    monkeypatch.setattr(export, "init_weights", no_drawing)
    with pytest.raises(CnnCalcError) as info:
        onnx_io.to_onnx(parse(HUGE))
    assert "too large for one ONNX file" in info.value.message and "2,621,600,000 bytes" in info.value.message
    assert "fc1 alone holds 2,621,600,000 bytes" in (info.value.hint or "")
    # the dtype counts: in float16 the same weights take 1,310,800,000 bytes, under 2**31 - 1
    onnx_io.check_file_size(parse(HUGE, dtype="float16"))


def test_cli_export_over_2_gib_is_one_clean_line_at_once(tmp_path, monkeypatch):
    from cnncalc.onnx_io import export

    monkeypatch.setattr(export, "init_weights", lambda *args: pytest.fail("weights were drawn"))
    result = runner.invoke(app, ["export", HUGE, "-o", str(tmp_path / "huge.onnx")])
    assert result.exit_code == 1 and "too large for one ONNX file" in result.output
    assert "internal error" not in result.output and not list(tmp_path.iterdir())


def test_protobuf_refusing_to_serialize_is_the_same_clean_error(tmp_path, monkeypatch):
    # the up-front estimate counts weights only; a model just under the limit can still fail in protobuf,
    # whose upb backend raises EncodeError (not the ValueError of the pure-Python one)
    from google.protobuf.message import EncodeError

    def encode_error(self):
        raise EncodeError("Failed to serialize proto")

    monkeypatch.setattr(onnx.ModelProto, "SerializeToString", encode_error)
    result = runner.invoke(app, ["export", "8x8x1|FC(2)", "-o", str(tmp_path / "m.onnx")])
    assert result.exit_code == 1 and "too large for one ONNX file" in result.output, result.output
    assert "internal error" not in result.output and not list(tmp_path.iterdir())


def test_export_of_an_imported_model_keeps_its_weights():
    path = ROOT / "tests" / "data" / "torch_tiny_cnn.onnx"
    imported = onnx_io.load_model(path)
    again = onnx_io.to_onnx(imported.graph, imported.weights, batch=3)
    x = np.random.default_rng(0).standard_normal((3, 3, 16, 16)).astype(np.float32)
    (expected,) = ort.InferenceSession(str(path)).run(None, {"input": x})
    (got,) = session(again.SerializeToString()).run(None, {imported.graph.input_name: x})
    assert np.allclose(got, expected, atol=1e-6)



def test_a_layer_named_like_another_layers_weight_gets_a_distinct_initializer_name():
    # an imported model may name a layer "a.W" beside a Conv "a" whose weight would be "a.W" too:
    # one tensor name written twice makes the file invalid (onnx.checker: not SSA; onnxruntime refuses it)
    nodes = (Node("a", OPS["Conv"]((1, 1), 3, 4, bias=False), ("input",)), Node("a.W", OPS["Relu"](), ("a",)))
    graph = Graph("names", (3, 2, 2), nodes, "a.W")
    model = onnx_io.to_onnx(graph)
    onnx.checker.check_model(model, full_check=True)
    assert [tensor.name for tensor in model.graph.initializer] == ["a.W_2"]
    assert list(model.graph.node[0].input) == ["input", "a.W_2"]
    (out,) = session(model.SerializeToString()).run(None, {"input": np.ones((1, 3, 2, 2), np.float32)})
    assert out.shape == (1, 4, 2, 2)


# ---- the command line -------------------------------------------------------------------------------
runner = CliRunner()


def test_cli_export_variants_one_file_each(tmp_path):
    spec = str(ROOT / "specs" / "titan_x_vs_jetson_nano.yaml")
    result = runner.invoke(app, ["export", spec, "-o", str(tmp_path / "net.onnx")])
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["net-full-res-then-pool.onnx", "net-strided.onnx"]
    model = onnx.load(str(tmp_path / "net-strided.onnx"))
    onnx.checker.check_model(model, full_check=True)
    # strided variant: 3x3x32x64(p=1,s=2) on 224x224x32 -> 112x112x64
    assert [d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim[1:]] == [64, 112, 112]

    again = runner.invoke(app, ["export", spec, "-o", str(tmp_path / "net.onnx")])
    assert again.exit_code == 1 and "--force" in again.output
    one = runner.invoke(app, ["export", spec, "--variant", "strided", "-o", str(tmp_path / "one.onnx"),
                              "--batch", "2", "--opset", "18", "--seed", "3"])
    assert one.exit_code == 0, one.output
    model = onnx.load(str(tmp_path / "one.onnx"))
    assert model.opset_import[0].version == 18
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 2


def test_cli_export_errors_are_one_clean_line(tmp_path):
    spec = "8x8x3|3x3x3x4"
    bad_opset = runner.invoke(app, ["export", spec, "-o", str(tmp_path / "a.onnx"), "--opset", "9"])
    assert bad_opset.exit_code == 1 and "opset 9" in bad_opset.output and "Traceback" not in bad_opset.output
    both = runner.invoke(app, ["export", spec, "-o", str(tmp_path / "a.onnx"), "--batch", "2", "--dynamic-batch"])
    assert both.exit_code == 1 and "exclude" in both.output
    assert not list(tmp_path.iterdir())


def test_cli_spec_prints_the_chain(tmp_path):
    path = tmp_path / "m.onnx"
    onnx_io.save_model(onnx_io.to_onnx(parse(SMALL)), path)
    result = runner.invoke(app, ["spec", str(path)])
    assert result.exit_code == 0, result.output
    # the Flatten the parser inserts before FC (on the 1x1x8 image) is written out; the rest reads as written
    assert result.output.strip() == SMALL.replace("DO(0.2)|FC(10)", "DO(0.2)|Flatten|FC(10)")


def test_hand_built_graph_exports():
    # a graph built without the parser: names are free-form, a Flatten precedes the FC
    nodes = (Node("c", OPS["Conv"]((3, 3), 3, 4, pads=(1, 1, 1, 1)), ("input",)),
             Node("f", OPS["Flatten"](), ("c",)), Node("fc", OPS["Gemm"](4 * 5 * 5, 2), ("f",)))
    graph = Graph("hand", (3, 5, 5), nodes, "fc")
    model = onnx_io.to_onnx(graph)
    onnx.checker.check_model(model, full_check=True)
    (out,) = session(model.SerializeToString()).run(None, {"input": np.ones((1, 3, 5, 5), np.float32)})
    assert out.shape == (1, 2)


def test_cli_export_default_name_and_reexport_of_an_onnx_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["export", str(ROOT / "specs" / "lenet5.yaml")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "lenet5.onnx").is_file()
    again = runner.invoke(app, ["export", "lenet5.onnx", "-o", "copy.onnx", "--batch", "1"])
    assert again.exit_code == 0, again.output
    first, second = onnx.load("lenet5.onnx"), onnx.load("copy.onnx")
    # the imported model keeps its weights: the same arrays in the same order
    assert [onnx.numpy_helper.to_array(t).tolist() for t in first.graph.initializer] == \
        [onnx.numpy_helper.to_array(t).tolist() for t in second.graph.initializer]


@pytest.mark.parametrize("pool", ["MP(p=1,ceil=1)", "AP(p=1,ceil=1)", "LP(p=1,ceil=1)"])
def test_a_ceil_mode_pool_whose_last_window_would_start_in_the_padding_passes_the_checker(pool):
    # by hand, 5 pixels, 2x2 windows at stride 2, pad 1 each side, ceil: windows start at -1, 1, 3 and 5; the one
    # at 5 starts in the right padding, which the ONNX spec, PyTorch and onnxruntime drop: 3x3 out. onnx 1.23's
    # shape inference keeps it (4x4), so the file failed onnx.checker; without the end pad the windows are the same
    graph = parse(f"5x5x3|{pool}")
    assert graph.shapes[graph.output] == (3, 3, 3)
    model = onnx_io.to_onnx(graph)
    onnx.checker.check_model(model, full_check=True)
    pads = next(a for a in model.graph.node[0].attribute if a.name == "pads").ints
    assert list(pads) == [1, 1, 0, 0]
    x = np.random.default_rng(0).standard_normal((2, 3, 5, 5)).astype(np.float32)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    ours = Runtime.from_graph(graph).run(x).output
    np.testing.assert_allclose(session.run(None, {graph.input_name: x})[0],
                               ours, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["lenet_digits", "resnet18", "inception_block"])
def test_the_stored_spec_of_a_yaml_network_parses_alone_to_the_same_network(name):
    # a YAML network's own text lacks the file's input, defaults and blocks: "3x3x1x16(p=1) | BN | ..." would not
    # parse, and read alone its convs would get biases the file's `defaults: {bias: false}` left out
    graph = load(str(ROOT / "specs" / f"{name}.yaml")).networks[0]
    props = {p.key: p.value for p in onnx_io.to_onnx(graph, quick_weights(graph)).metadata_props}
    again = analyze(parse(props["cnncalc.spec"]))
    expected = analyze(graph)
    assert (again.totals.params, again.totals.macs) == (expected.totals.params, expected.totals.macs)
