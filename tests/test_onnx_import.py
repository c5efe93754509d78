"""ONNX import: models laid out as PyTorch's exporter writes them (built with onnx.helper in
tests/data/make_models.py, no torch) are read into the IR and analysed like a spec.

Published figures: torchvision's weight metadata (torchvision/models/resnet.py, mobilenetv2.py):
ResNet-50 "num_params": 25557032, "_ops": 4.089 (GFLOPS, i.e. conv/FC multiply-adds);
MobileNetV2 "num_params": 3504872, "_ops": 0.301.
"""

from __future__ import annotations

import builtins
import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from cnncalc import onnx_io
from cnncalc.analysis import analyze
from cnncalc.cli import app
from cnncalc.errors import CnnCalcError, OnnxFileError, UnsupportedOpError
from cnncalc.render import render
from cnncalc.runtime import Runtime
from cnncalc.spec import parse

DATA = Path(__file__).resolve().parent / "data"
_spec = importlib.util.spec_from_file_location("make_models", DATA / "make_models.py")
mm = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mm)  # type: ignore[union-attr]

# BN channels, summed by hand (each folded BN turns its 2C scale/shift into C conv biases):
# ResNet-50: stem 64; per stage blocks x (w + w + 4w) + downsample 4w, w = 64, 128, 256, 512, blocks 3, 4, 6, 3:
#   3*384 + 256 = 1408; 4*768 + 512 = 3584; 6*1536 + 1024 = 10240; 3*3072 + 2048 = 11264 -> 64 + ... = 26,560
RESNET50_BN_CHANNELS = 26_560
# MobileNetV2: stem 32; block 1 (t=1): 32 + 16; expanded blocks 2 * hidden + out:
#   24-stage 216 + 312 = 528; 32: 320 + 2 * 416 = 1152; 64: 448 + 3 * 832 = 2944; 96: 864 + 2 * 1248 = 3360;
#   160: 1312 + 2 * 2080 = 5472; 320: 2240; head 1280 -> 32 + 48 + 528 + 1152 + 2944 + 3360 + 5472 + 2240 + 1280
MOBILENET_V2_BN_CHANNELS = 17_056


def imported(model: onnx.ModelProto, **kwargs):
    return onnx_io.import_onnx(model.SerializeToString(), **kwargs)


# ---- torchvision models, PyTorch layout ----------------------------------------------------------
@pytest.fixture(scope="module")
def resnet50_bytes():
    return mm.resnet50(fold_bn=False).SerializeToString()


def test_resnet50_unfolded_gives_published_params_and_macs(resnet50_bytes):
    report = analyze(onnx_io.import_onnx(resnet50_bytes))
    assert report.totals.params == 25_557_032  # torchvision num_params
    assert abs(report.totals.macs - 4.089e9) / 4.089e9 < 0.005  # torchvision _ops 4.089 GFLOPS
    assert report.totals.state_params == 2 * RESNET50_BN_CHANNELS  # running mean and variance
    assert report.output == [1, 1, 1000] and report.batch == 1


def test_resnet50_names_and_blocks_follow_the_exporter(resnet50_bytes):
    graph = onnx_io.import_onnx(resnet50_bytes)
    names = [node.name for node in graph.nodes]
    assert names[:4] == ["conv1/Conv", "bn1/BatchNormalization", "relu/Relu", "maxpool/MaxPool"]
    node = graph.node("layer1/layer1.0/downsample/downsample.0/Conv")
    assert node.block == "layer1/layer1.0/downsample"
    assert graph.node("layer1/layer1.0/relu_2/Relu").inputs == ("layer1/layer1.0/Add",)


def test_resnet50_folded_bn_layout():
    report = analyze(imported(mm.resnet50(fold_bn=True)))
    assert report.totals.params == 25_557_032 - RESNET50_BN_CHANNELS
    assert report.totals.state_params == 0
    assert abs(report.totals.macs - 4.089e9) / 4.089e9 < 0.005
    assert not any(layer.op_type == "BatchNormalization" for layer in report.layers)


def test_mobilenet_v2_unfolded_gives_published_params_and_macs():
    report = analyze(imported(mm.mobilenet_v2(fold_bn=False)))
    assert report.totals.params == 3_504_872  # torchvision num_params
    assert abs(report.totals.macs - 0.301e9) / 0.301e9 < 0.005  # torchvision _ops 0.301 GFLOPS
    assert report.totals.state_params == 2 * MOBILENET_V2_BN_CHANNELS
    clips = [layer for layer in report.layers if layer.op_type == "Clip"]
    assert len(clips) == 35 and {layer.label for layer in clips} == {"ReLU6"}  # 1 + 1 + 16 * 2 + 1


def test_mobilenet_v2_folded_with_view_flatten():
    folded = analyze(imported(mm.mobilenet_v2(fold_bn=True, view_flatten=True, dropout=False)))
    assert folded.totals.params == 3_504_872 - MOBILENET_V2_BN_CHANNELS
    plain = analyze(imported(mm.mobilenet_v2(fold_bn=True, dropout=False)))
    assert folded.totals == plain.totals  # x.view(x.size(0), -1) reads as the same Flatten


def test_fixed_batch_is_kept():
    graph = imported(mm.tiny_cnn(batch=4))
    assert graph.batch == 4
    assert analyze(graph).totals.macs == 4 * analyze(imported(mm.tiny_cnn())).totals.macs


# ---- the small example in tests/data -----------------------------------------------------------------
TINY_SPEC = ("16x16x3|3x3x3x8(p=1,b=0)|BN|ReLU|MP|res[3x3x8x8(p=1,b=0)|BN|ReLU|3x3x8x8(p=1,b=0)|BN]|ReLU|"
             "3x3x8x8(p=1,dw,b=0)|BN|ReLU6|LReLU(a=0.1)|AP|Flatten|DO(0.3)|FC(32)|Sigmoid|Tanh|FC(10)|Softmax")


def test_example_model_reads_as_its_spec():
    graph = onnx_io.import_onnx(DATA / "torch_tiny_cnn.onnx")
    assert onnx_io.to_spec(graph) == TINY_SPEC
    # params by hand: conv1 3*3*3*8 = 216; BN 2*8 = 16 (x4 BNs = 64); block convs 2 * 3*3*8*8 = 1152;
    # dw 3*3*8 = 72; FC 128*32 + 32 = 4128; FC 32*10 + 10 = 330 -> 216 + 64 + 1152 + 72 + 4128 + 330
    assert analyze(graph).totals.params == 5962


def test_example_model_weights_are_the_files():
    model = onnx.load(str(DATA / "torch_tiny_cnn.onnx"))
    arrays = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    result = onnx_io.load_model(DATA / "torch_tiny_cnn.onnx")
    assert np.array_equal(result.weights["conv1/Conv"][0], arrays["conv1.weight"])
    bn = result.weights["bn1/BatchNormalization"]
    assert [a.shape for a in bn] == [(8,)] * 4
    fc = result.weights["head/head.1/MatMul"]  # MatMul + Add read as one FC with the file's (in, out) weight
    assert np.array_equal(fc[0], next(a for n, a in arrays.items() if n.startswith("onnx::MatMul")))
    assert np.array_equal(fc[1], arrays["head.1.bias"])
    assert result.weights["dw/dw.2/Clip"] == [np.float32(0.0), np.float32(6.0)]


def test_folded_example_runs_the_same_after_reexport():
    path = DATA / "torch_tiny_cnn_folded.onnx"
    result = onnx_io.load_model(path)
    assert result.graph.batch == 1
    again = onnx_io.to_onnx(result.graph, result.weights, dynamic_batch=False)
    x = np.random.default_rng(1).standard_normal((1, 3, 16, 16)).astype(np.float32)
    (expected,) = ort.InferenceSession(str(path)).run(None, {"input": x})
    (got,) = ort.InferenceSession(again.SerializeToString()).run(None, {"input": x})
    assert np.allclose(got, expected, atol=1e-6)


# ---- single patterns, in minimal models ---------------------------------------------------------------
def small_model(nodes, initializers=(), shape=(1, 4, 6, 6), output_dims=None, opset=17, inputs=None):
    """One input "x" of `shape`, the given nodes, output "y"."""
    graph = helper.make_graph(
        nodes, "g", inputs or [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, output_dims)], list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def const(name, values, dtype=np.float32):
    return numpy_helper.from_array(np.asarray(values, dtype=dtype), name)


@pytest.mark.parametrize("target", [[-1, 144], [0, -1], [1, -1], [1, 144]])
def test_reshape_as_flatten(target):
    graph = imported(small_model([helper.make_node("Reshape", ["x", "s"], ["y"])], [const("s", target, np.int64)]))
    assert [node.op.op_type for node in graph.nodes] == ["Flatten"]
    assert graph.shapes["y" if "y" in graph.shapes else graph.output] == (144,)


def test_reshape_to_the_same_shape_is_a_pass_through_and_others_are_unsupported():
    same = small_model([helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Reshape", ["r", "s"], ["y"])],
                       [const("s", [1, 4, 6, 6], np.int64)])
    assert [node.op.op_type for node in imported(same).nodes] == ["Relu"]
    other = small_model([helper.make_node("Reshape", ["x", "s"], ["y"])], [const("s", [1, 16, 9], np.int64)])
    with pytest.raises(UnsupportedOpError, match="Reshape"):
        imported(other)


def test_squeeze_after_global_pool_is_a_flatten():
    model = small_model([helper.make_node("GlobalAveragePool", ["x"], ["p"]),
                         helper.make_node("Squeeze", ["p", "axes"], ["y"])], [const("axes", [2, 3], np.int64)])
    graph = imported(model)
    assert [node.op.op_type for node in graph.nodes] == ["GlobalAveragePool", "Flatten"]
    assert graph.shapes[graph.output] == (4,)


def test_matmul_without_add_is_fc_without_bias_and_identity_passes_through():
    model = small_model([helper.make_node("Flatten", ["x"], ["f"]), helper.make_node("Identity", ["f"], ["i"]),
                         helper.make_node("MatMul", ["i", "w"], ["y"])], [const("w", np.ones((144, 5)))])
    graph = imported(model)
    assert [node.op.describe() for node in graph.nodes] == ["Flatten", "FC(5,b=0)"]
    assert analyze(graph).totals.params == 144 * 5


def test_clip_bounds_as_constants_initializers_or_old_attributes():
    as_inputs = small_model([helper.make_node("Constant", [], ["lo"], value=const("v", 0.0)),
                             helper.make_node("Clip", ["x", "lo", "hi"], ["y"])], [const("hi", 6.0)])
    old = small_model([helper.make_node("Clip", ["x"], ["y"], min=-1.0, max=1.0)], opset=9)
    only_max = small_model([helper.make_node("Clip", ["x", "", "hi"], ["y"])], [const("hi", 6.0)])
    assert [n.op.describe() for n in imported(as_inputs).nodes] == ["ReLU6"]
    assert [n.op.describe() for n in imported(old).nodes] == ["Clip(min=-1,max=1)"]
    (clip,) = imported(only_max).nodes  # a bound left out is no bound, as in ONNX
    assert (clip.op.min, clip.op.max) == (float("-inf"), 6.0)


def test_clip_with_min_not_below_max_is_unsupported():
    # ONNX gives max everywhere (min(max(x, 5), 1) = 1); the spec refuses such a Clip, so its imported
    # text 'Clip(min=5,max=1)' did not parse back
    model = small_model([helper.make_node("Clip", ["x", "lo", "hi"], ["y"])], [const("lo", 5.0), const("hi", 1.0)])
    with pytest.raises(UnsupportedOpError, match="min 5 not below max 1 outputs 1 everywhere"):
        imported(model)


def test_concat_logsoftmax_dropout_with_mask():
    model = small_model([helper.make_node("Conv", ["x", "w1"], ["a"]),
                         helper.make_node("Conv", ["x", "w2"], ["b"], pads=[1, 1, 1, 1]),
                         helper.make_node("Concat", ["a", "b"], ["c"], axis=1),
                         helper.make_node("Dropout", ["c"], ["d", "mask"], ratio=0.25),
                         helper.make_node("GlobalAveragePool", ["d"], ["p"]),
                         helper.make_node("LogSoftmax", ["p"], ["y"], axis=1)],
                        [const("w1", np.ones((2, 4, 1, 1))), const("w2", np.ones((3, 4, 3, 3)))], opset=11)
    graph = imported(model)
    assert onnx_io.to_spec(graph) == "6x6x4|cat[1x1x4x2(b=0) ; 3x3x4x3(p=1,b=0)]|DO(0.25)|GAP|LogSoftmax"


@pytest.mark.parametrize("op_type", ["Softmax", "LogSoftmax"])
def test_softmax_before_opset_13_over_an_image_is_unsupported(op_type):
    # opsets 1-12 flatten the input at axis 1 and normalize over C x H x W together, not per pixel
    model = small_model([helper.make_node(op_type, ["x"], ["y"])], opset=12)
    with pytest.raises(UnsupportedOpError) as caught:
        imported(model)
    assert "4 x 6 x 6 together" in caught.value.render() and "opset 13" in caught.value.render()


def test_softmax_before_opset_13_over_features_is_the_usual_softmax():
    # no axis attribute: the old default is 1, which on (N, F) is the feature axis, as today's Softmax
    model = small_model([helper.make_node("Flatten", ["x"], ["f"]), helper.make_node("Softmax", ["f"], ["y"])],
                        opset=12)
    graph = imported(model)
    assert [node.op.op_type for node in graph.nodes] == ["Flatten", "Softmax"]
    x = np.random.default_rng(0).standard_normal((2, 4, 6, 6)).astype(np.float32)
    flat = x.reshape(2, -1)
    expected = np.exp(flat - flat.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)  # softmax over the 144 features, by its definition
    np.testing.assert_allclose(Runtime.from_graph(graph).run(x).output, expected, rtol=1e-5)


def test_concat_of_mismatched_branches_is_a_clean_error():
    # 1x1 keeps 6x6, 3x3 without padding gives 4x4: they cannot be concatenated
    model = small_model([helper.make_node("Conv", ["x", "w1"], ["a"]), helper.make_node("Conv", ["x", "w2"], ["b"]),
                         helper.make_node("Concat", ["a", "b"], ["y"], axis=1)],
                        [const("w1", np.ones((2, 4, 1, 1))), const("w2", np.ones((3, 4, 3, 3)))])
    with pytest.raises(OnnxFileError, match="Concat"):
        imported(model)


# ---- ops cnncalc does not know ---------------------------------------------------------------------------
UNSUPPORTED = DATA / "torch_tiny_unsupported.onnx"


def test_unsupported_ops_are_listed_with_their_places():
    with pytest.raises(UnsupportedOpError) as caught:
        onnx_io.import_onnx(UNSUPPORTED)
    assert caught.value.ops == {"HardSigmoid": ["act/HardSigmoid"], "Mul": ["act/Mul"], "Pad": ["pad/Pad"]}
    assert "--allow-unsupported" in caught.value.render()


def test_allow_unsupported_analyses_the_rest_as_a_lower_bound():
    graph = onnx_io.import_onnx(UNSUPPORTED, allow_unsupported=True)
    assert graph.unsupported == ("HardSigmoid at act/HardSigmoid", "Mul at act/Mul", "Pad at pad/Pad")
    report = analyze(graph)
    assert report.lower_bound
    # params by hand: conv1 3*3*3*8 + 8 = 224; conv2 3*3*8*16 + 16 = 1168; fc 16*10 + 10 = 170
    assert report.totals.params == 224 + 1168 + 170
    # Pad adds 1 pixel on each side (from ONNX shape inference): conv2 sees 18x18
    assert graph.shapes["pad/Pad"] == (8, 18, 18)
    network = json.loads(render([report], "json", None))["networks"][0]
    assert network["totals"]["lower_bound"] is True
    assert network["unsupported"] == list(graph.unsupported)


def test_unsupported_op_cannot_be_run():
    graph = onnx_io.import_onnx(UNSUPPORTED, allow_unsupported=True)
    with pytest.raises(UnsupportedOpError, match="HardSigmoid"):
        graph.node("act/HardSigmoid").op.forward([np.zeros((1, 8, 16, 16), np.float32)])


def test_unsupported_op_on_constants_feeds_weights_of_known_shape():
    # a quantized model's weight: int8 initializer -> DequantizeLinear -> Conv; the Conv is still counted
    model = small_model([helper.make_node("DequantizeLinear", ["wq", "scale"], ["w"]),
                         helper.make_node("Conv", ["x", "w"], ["y"])],
                        [const("wq", np.ones((2, 4, 3, 3)), np.int8), const("scale", 0.1)])
    with pytest.raises(UnsupportedOpError, match="DequantizeLinear"):
        imported(model)
    graph = imported(model, allow_unsupported=True)
    assert graph.unsupported == ("DequantizeLinear at w",)
    assert analyze(graph).totals.params == 2 * 4 * 3 * 3  # the conv's weight, from its inferred shape


def test_op_from_another_domain_is_unsupported():
    model = small_model([helper.make_node("Relu", ["x"], ["r"]),
                         helper.make_node("FusedThing", ["r"], ["y"], domain="com.example")])
    with pytest.raises(UnsupportedOpError, match="FusedThing"):
        imported(model)


# ---- bad files: one clear error, nothing read outside the model's folder ----------------------------------
def test_not_onnx_empty_truncated_missing(tmp_path):
    text = tmp_path / "notes.onnx"
    text.write_text("this is not a model\n" * 20)
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    data = (DATA / "torch_tiny_cnn.onnx").read_bytes()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(data[: len(data) // 2])
    for path in (text, empty, cut, tmp_path / "missing.onnx", tmp_path):
        with pytest.raises(OnnxFileError) as caught:
            onnx_io.load_model(path)
        assert str(path.name) in caught.value.render()


def with_external_weight(folder: Path, location: str) -> Path:
    """A one-conv model whose weight lives in external data at `location`."""
    weight = numpy_helper.from_array(np.arange(2 * 4 * 1 * 1, dtype=np.float32).reshape(2, 4, 1, 1), "w")
    weight.ClearField("raw_data")
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "32")):
        weight.external_data.add(key=key, value=value)
    model = small_model([helper.make_node("Conv", ["x", "w"], ["y"])], [weight])
    path = folder / "model.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def test_external_data_inside_the_folder_is_read(tmp_path):
    (tmp_path / "weights.bin").write_bytes(np.arange(8, dtype="<f4").tobytes())
    result = onnx_io.load_model(with_external_weight(tmp_path, "weights.bin"))
    assert np.array_equal(result.weights["y"][0].reshape(-1), np.arange(8, dtype=np.float32))


@pytest.mark.parametrize("location", ["../secret.bin", "/etc/passwd", "sub/../../secret.bin", "C:\\secret.bin",
                                      "link.bin", "missing.bin"])
def test_external_data_outside_the_folder_is_refused(tmp_path, monkeypatch, location):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.arange(8, dtype="<f4").tobytes())
    (model_dir / "link.bin").symlink_to(secret)
    path = with_external_weight(model_dir, location)
    opened = []
    real_open = builtins.open

    def spy(file, *args, **kwargs):
        opened.append(os.path.realpath(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", spy)
    with pytest.raises(OnnxFileError, match="model's folder|does not exist"):
        onnx_io.load_model(path)
    with pytest.raises(OnnxFileError):
        onnx_io.import_onnx(path)
    monkeypatch.undo()
    assert str(secret) not in opened and "/etc/passwd" not in opened


def test_external_data_from_bytes_or_of_the_wrong_size(tmp_path):
    path = with_external_weight(tmp_path, "weights.bin")
    (tmp_path / "weights.bin").write_bytes(b"\0" * 16)  # 16 bytes, the weight needs 32
    with pytest.raises(OnnxFileError, match="does not fit"):
        onnx_io.load_model(path)
    with pytest.raises(OnnxFileError, match="bytes"):
        onnx_io.load_model(path.read_bytes())


@pytest.mark.parametrize("case", ["huge initializer", "huge input", "huge pads", "negative dim"])
def test_absurd_dimensions_are_refused(case):
    if case == "huge initializer":  # dims that promise 40 million values the file does not hold
        weight = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[10**7, 4, 1, 1])
        model = small_model([helper.make_node("Conv", ["x", "w"], ["y"])], [weight])
    elif case == "huge input":
        model = small_model([helper.make_node("Relu", ["x"], ["y"])], shape=(1, 3, 2**21, 2**21))
    elif case == "huge pads":
        model = small_model([helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2],
                                              pads=[0, 0, 2**40, 2**40], strides=[1, 1])])
    else:
        weight = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[-2, 4, 1, 1])
        model = small_model([helper.make_node("Conv", ["x", "w"], ["y"])], [weight])
    with pytest.raises(CnnCalcError):
        imported(model)


def test_model_shapes_cnncalc_cannot_take_are_clean_errors():
    two_inputs = small_model([helper.make_node("Add", ["x", "z"], ["y"])],
                             inputs=[helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4, 6, 6]) for n in "xz"])
    rank3 = small_model([helper.make_node("Relu", ["x"], ["y"])], shape=(1, 4, 6))
    symbolic = small_model([helper.make_node("Relu", ["x"], ["y"])], shape=("N", 3, "H", "W"))
    ints = small_model([helper.make_node("Relu", ["x"], ["y"])],
                       inputs=[helper.make_tensor_value_info("x", TensorProto.INT64, [1, 4, 6, 6])])
    dangling = small_model([helper.make_node("Add", ["x", "ghost"], ["y"])])
    two_outputs = small_model([helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Sigmoid", ["x"], ["z"])])
    two_outputs.graph.output.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, None))
    for model, words in ((two_inputs, "one input"), (rank3, "rank 3"), (symbolic, "fixed size"),
                         (ints, "INT64"), (dangling, "ghost"), (two_outputs, "one output")):
        with pytest.raises(OnnxFileError, match=words):
            imported(model)


# ---- the command line ----------------------------------------------------------------------------------
runner = CliRunner()


def test_cli_analyze_and_spec_of_an_onnx_file():
    result = runner.invoke(app, ["analyze", str(DATA / "torch_tiny_cnn.onnx"), "--format", "json"])
    assert result.exit_code == 0, result.output
    network = json.loads(result.output)["networks"][0]
    assert network["totals"]["params"] == 5962
    assert network["spec"] == TINY_SPEC  # the JSON of an imported model carries its equivalent chain
    spec = runner.invoke(app, ["spec", str(DATA / "torch_tiny_cnn.onnx")])
    assert spec.exit_code == 0 and spec.output.strip() == TINY_SPEC


def test_cli_unsupported_fails_with_the_list_or_marks_lower_bound():
    failed = runner.invoke(app, ["analyze", str(UNSUPPORTED)])
    assert failed.exit_code == 1
    assert "HardSigmoid" in failed.output and "pad/Pad" in failed.output and "Traceback" not in failed.output
    ok = runner.invoke(app, ["analyze", str(UNSUPPORTED), "--allow-unsupported", "--format", "json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output)["networks"][0]["spec"] == ""  # unknown ops have no spec text
    assert json.loads(ok.output)["networks"][0]["totals"]["lower_bound"] is True


def test_cli_bad_file_is_one_clean_error(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07\x12\x04junk\xff\xff")
    result = runner.invoke(app, ["analyze", str(bad)])
    assert result.exit_code == 1
    assert "bad.onnx" in result.output and "Traceback" not in result.output


# ---- files a careful exporter can write (found by a sweep of hand-built models) -------------------
def test_a_conv_with_per_axis_strides_and_dilations_reads_back_from_its_spec():
    # by hand, 17x15 input, kernel 3x5, strides 2x1, dilations 1x2, pads top 1 left 2 bottom 0 right 1:
    # H = (17 + 1 + 0 - 3) // 2 + 1 = 8, W = (15 + 2 + 1 - 9) // 1 + 1 = 10; MACs 8 * 8 * 10 * 3 * 3 * 5 = 28,800
    conv = helper.make_node("Conv", ["x", "W"], ["y"], kernel_shape=[3, 5], strides=[2, 1], pads=[1, 2, 0, 1],
                            dilations=[1, 2])
    graph = imported(small_model([conv], [const("W", np.ones((8, 3, 3, 5)))], shape=(1, 3, 17, 15)))
    text = onnx_io.to_spec(graph)
    assert "s=2x1" in text and "d=1x2" in text  # the spec wrote s=2, d=1 and described another network
    for network in (graph, parse(text)):
        report = analyze(network)
        assert report.output == [8, 10, 8] and report.totals.macs == 28_800
        assert report.totals.receptive_field.size == (3, 9)


def test_a_dropout_in_training_mode_is_not_run_as_a_pass_through():
    node = helper.make_node("Dropout", ["x", "ratio", "mode"], ["y"])
    model = small_model([node], [const("ratio", 0.5), numpy_helper.from_array(np.array(True), "mode")])
    with pytest.raises(UnsupportedOpError, match="training_mode=true"):
        imported(model)


def test_matmul_add_folds_only_a_bias_along_the_features():
    flat = helper.make_node("Flatten", ["x"], ["f"])
    nodes = [flat, helper.make_node("MatMul", ["f", "W"], ["m"]), helper.make_node("Add", ["m", "B"], ["y"])]
    weights = [const("W", np.ones((144, 5)))]
    graph = imported(small_model(nodes, [*weights, const("B", np.ones(5))]))
    assert [node.op.op_type for node in graph.nodes] == ["Flatten", "Gemm"]
    with pytest.raises(UnsupportedOpError, match="Add"):  # (5, 1) broadcasts the output to (5, 5): not an FC bias
        imported(small_model(nodes, [*weights, const("B", np.ones((5, 1)))]))


@pytest.mark.parametrize(("attrs", "message"), [
    ({"pads": [-1, 0, 0, 0]}, "negative pad"),
    ({"dilations": [0, 1]}, "below 1"),
    ({"strides": [0, 1]}, "below 1"),
    ({"group": 0}, "below 1"),
    ({"pads": [1, 1]}, "must have 4 values"),
    ({"strides": [1]}, "must have 2 values"),
])
def test_conv_attributes_out_of_range_are_clear_errors(attrs, message):
    # negative pads crashed `run` (internal error); dilation 0 ran where onnxruntime refuses it
    conv = helper.make_node("Conv", ["x", "W"], ["y"], kernel_shape=[3, 3], **attrs)
    with pytest.raises(CnnCalcError, match=message):
        imported(small_model([conv], [const("W", np.ones((2, 4, 3, 3)))]))


def test_a_gemm_with_one_bias_for_every_feature_runs_like_onnxruntime():
    nodes = [helper.make_node("Flatten", ["x"], ["f"]), helper.make_node("Gemm", ["f", "W", "C"], ["y"], transB=1)]
    model = small_model(nodes, [const("W", np.ones((5, 144)) / 144), const("C", [0.5])])  # C broadcasts
    loaded = onnx_io.load_model(model.SerializeToString())
    x = np.random.default_rng(0).standard_normal((1, 4, 6, 6)).astype(np.float32)
    ours = Runtime(loaded.graph, loaded.weights).run(x).output
    theirs = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


def test_shape_of_an_initializer_is_folded():
    nodes = [helper.make_node("Shape", ["W"], ["ws"]), helper.make_node("Conv", ["x", "W"], ["y"], kernel_shape=[3, 3])]
    graph = imported(small_model(nodes, [const("W", np.ones((2, 4, 3, 3)))]))  # an AssertionError before
    assert [node.op.op_type for node in graph.nodes] == ["Conv"]


def test_layers_the_output_does_not_depend_on_are_left_out():
    # a conv reading the output and feeding nothing: it was counted (108 params, 1,728 MACs) and run
    nodes = [helper.make_node("Relu", ["x"], ["y"]),
             helper.make_node("Conv", ["y", "W"], ["dead"], kernel_shape=[3, 3])]
    loaded = onnx_io.load_model(small_model(nodes, [const("W", np.ones((4, 4, 3, 3)))]).SerializeToString())
    assert [node.op.op_type for node in loaded.graph.nodes] == ["Relu"]
    assert analyze(loaded.graph).totals.params == 0 and set(loaded.weights) <= {"y"}


def conv_relu_function_model(recursive: bool = False) -> onnx.ModelProto:
    """Laid out like PyTorch's dynamo exporter (torch 2.1-2.4): each module a model-local function."""
    body = [helper.make_node("Conv", ["inp", "w"], ["t"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
            helper.make_node("Block" if recursive else "Relu", ["t"], ["out"],
                             domain="pkg.torch" if recursive else "")]
    function = helper.make_function("pkg.torch", "Block", ["inp", "w"], ["out"], body,
                                    opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("pkg.torch", 1)])
    graph = helper.make_graph(
        [helper.make_node("Block", ["x", "conv.weight"], ["y"], domain="pkg.torch", name="block_1")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 6, 6])],
        [const("conv.weight", np.random.default_rng(0).standard_normal((4, 3, 3, 3)))])
    model = helper.make_model(graph, functions=[function],
                              opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("pkg.torch", 1)])
    model.ir_version = 8
    return model


def test_model_local_functions_are_inlined():
    model = conv_relu_function_model()
    loaded = onnx_io.load_model(model.SerializeToString())
    assert onnx_io.to_spec(loaded.graph) == "6x6x3|3x3x3x4(p=1,b=0)|ReLU"
    # params 3*3*3*4 = 108; MACs Ho*Wo*Cout*K*K*Cin = 6*6*4*3*3*3 = 3888
    assert (analyze(loaded.graph).totals.params, analyze(loaded.graph).totals.macs) == (108, 3888)
    x = np.random.default_rng(1).standard_normal((1, 3, 6, 6)).astype(np.float32)
    (expected,) = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})
    assert np.allclose(Runtime(loaded.graph, loaded.weights).run(x).output, expected, atol=1e-5)


def test_a_recursive_local_function_is_one_clean_error():
    with pytest.raises(OnnxFileError, match="local functions cannot be inlined"):
        imported(conv_relu_function_model(recursive=True))


def test_a_broadcasting_add_is_unsupported_not_a_damaged_file():
    # x + GAP(x): a valid file (ONNX's Add broadcasts 1x1x4 over 6x6x4) that cnncalc's Add cannot compute
    model = small_model([helper.make_node("GlobalAveragePool", ["x"], ["g"]),
                         helper.make_node("Add", ["x", "g"], ["y"], name="se/add")])
    with pytest.raises(UnsupportedOpError, match="Add broadcasting 6x6x4 and 1x1x4") as caught:
        imported(model)
    assert "se/add" in caught.value.ops["Add"][0]
    graph = imported(model, allow_unsupported=True)  # the rest analysed, the Add a placeholder of ONNX's shape
    assert graph.shapes[graph.output] == (4, 6, 6) and graph.unsupported
