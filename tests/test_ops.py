"""Contract tests: every registered op's examples, checked against ONNX's shape inference, onnxruntime,
the ONNX reference evaluator, finite differences, and an ONNX attribute round trip."""

from __future__ import annotations

import zlib

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from cnncalc.errors import ShapeError, SpecError, UnsupportedOpError
from cnncalc.ops import OPS, SPEC_NAMES, Example, Op, SpecArgs

OPSET = 17
BATCH = 2
EXAMPLES = [example for cls in OPS.values() for example in cls.examples]
IDS = [f"{example.op.op_type}-{example.note}" for example in EXAMPLES]
ONNX_TYPES = {np.float32: TensorProto.FLOAT, np.float64: TensorProto.DOUBLE}


# ---- helpers -----------------------------------------------------------------
def make_inputs(example: Example, dtype: type = np.float64) -> list[np.ndarray]:
    """Random activations, then weights: trainable ones random, constants at their value, state positive."""
    rng = np.random.default_rng(zlib.crc32(f"{example.op!r}{example.note}".encode()))
    shapes = list(example.in_shapes)
    arrays = [rng.standard_normal((BATCH, *shape)) for shape in shapes]
    for spec in example.op.weights(shapes):
        if spec.constant is not None:
            arrays.append(np.full(spec.shape, spec.constant))
        elif spec.trainable:
            arrays.append(rng.standard_normal(spec.shape))
        else:
            arrays.append(rng.uniform(0.5, 1.5, spec.shape))  # e.g. a running variance: must be positive
    return [a.astype(dtype) for a in arrays]


def input_names(example: Example) -> list[str]:
    n_act = len(example.in_shapes)
    return [f"x{i}" for i in range(n_act)] + [w.name for w in example.op.weights(list(example.in_shapes))]


def make_model(example: Example, inputs: list[np.ndarray], with_output_shape: bool = True) -> onnx.ModelProto:
    """A one-node ONNX model: activations are graph inputs, weights are initializers."""
    op, n_act = example.op, len(example.in_shapes)
    names = input_names(example)
    elem = ONNX_TYPES[inputs[0].dtype.type]
    node = helper.make_node(op.op_type, names, ["y"], **op.onnx_attributes())
    graph_inputs = [helper.make_tensor_value_info(names[i], elem, inputs[i].shape) for i in range(n_act)]
    initializers = [numpy_helper.from_array(array, name)
                    for name, array in zip(names[n_act:], inputs[n_act:], strict=True)]
    out_shape = (BATCH, *op.output_shape(list(example.in_shapes))) if with_output_shape else None
    output = helper.make_tensor_value_info("y", elem, out_shape)
    graph = helper.make_graph([node], "one_op", graph_inputs, [output], initializer=initializers)
    opset = max(OPSET, op.min_opset())  # e.g. LpPool's ceil_mode exists from opset 18
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def run_onnxruntime(model: onnx.ModelProto, inputs: list[np.ndarray], n_act: int) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(["y"], {f"x{i}": inputs[i] for i in range(n_act)})[0]


def numeric_gradient(loss, arrays: list[np.ndarray], index: int, positions: list[tuple[int, ...]],
                     eps: float = 1e-6) -> np.ndarray:
    """Central differences of loss() with respect to arrays[index] at the given positions."""
    grads = []
    for pos in positions:
        original = arrays[index][pos]
        arrays[index][pos] = original + eps
        up = loss()
        arrays[index][pos] = original - eps
        down = loss()
        arrays[index][pos] = original
        grads.append((up - down) / (2 * eps))
    return np.array(grads)


def sample_positions(shape: tuple[int, ...], rng: np.random.Generator,
                     limit: int = 60) -> list[tuple[int, ...]]:
    """Every position of a small array, else `limit` random ones."""
    every = list(np.ndindex(*shape)) if shape else [()]
    if len(every) <= limit:
        return every
    return [every[i] for i in rng.choice(len(every), limit, replace=False)]


def check_gradients(op: Op, inputs: list[np.ndarray], training: bool, seed: int = 7) -> None:
    """backward(R) == d sum(forward * R) / d input, for every trainable input, by central differences."""
    rng = np.random.default_rng(0)
    fwd = op.forward(inputs, training=training, rng=np.random.default_rng(seed))
    projection = rng.standard_normal(fwd.out.shape)
    grads = op.backward(projection, inputs, fwd)
    assert len(grads) == len(inputs), "backward must return one gradient per input"

    def loss() -> float:
        out = op.forward(inputs, training=training, rng=np.random.default_rng(seed)).out
        return float((out * projection).sum())

    for index, grad in enumerate(grads):
        if grad is None:
            continue
        assert grad.shape == inputs[index].shape
        positions = sample_positions(inputs[index].shape, rng)
        numeric = numeric_gradient(loss, inputs, index, positions)
        analytic = np.array([grad[pos] for pos in positions])
        np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-7, err_msg=f"input {index}")


def trainable_mask(example: Example) -> list[bool]:
    """Which inputs need a gradient: every activation, and the trainable weights."""
    weights = example.op.weights(list(example.in_shapes))
    return [True] * len(example.in_shapes) + [w.trainable for w in weights]


# ---- the contract ------------------------------------------------------------
def test_every_op_has_examples_and_spec_names() -> None:
    for cls in OPS.values():
        assert cls.examples, f"{cls.op_type} has no examples"
        assert cls.spec_names, f"{cls.op_type} has no spec name"
        assert all(SPEC_NAMES[name.lower()] is cls for name in cls.spec_names)


@pytest.mark.parametrize("example", EXAMPLES, ids=IDS)
def test_shape_matches_execution_and_onnx_inference(example: Example) -> None:
    op = example.op
    expected = op.output_shape(list(example.in_shapes))
    inputs = make_inputs(example, np.float32)
    assert op.forward(inputs).out.shape == (BATCH, *expected)
    model = make_model(example, inputs, with_output_shape=False)
    inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
    dims = inferred.graph.output[0].type.tensor_type.shape.dim
    assert tuple(d.dim_value for d in dims) == (BATCH, *expected)


@pytest.mark.parametrize("example", EXAMPLES, ids=IDS)
def test_forward_matches_onnxruntime_float32(example: Example) -> None:
    inputs = make_inputs(example, np.float32)
    model = make_model(example, inputs)
    onnx.checker.check_model(model, full_check=True)
    out = example.op.forward(inputs).out
    assert out.dtype == np.float32
    expected = run_onnxruntime(model, inputs, len(example.in_shapes))
    np.testing.assert_allclose(out, expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("example", EXAMPLES, ids=IDS)
def test_forward_matches_reference_evaluator_float64(example: Example) -> None:
    if example.op.op_type == "LpPool" and example.op.ceil_mode:
        pytest.skip("the reference scales a clipped window's mean by the whole kernel's size "
                    "(onnx/reference/ops/op_lp_pool.py); onnxruntime agrees with cnncalc, and "
                    "test_lp_pool_ceil_windows_hold_only_the_pixels_inside checks it by hand")
    inputs = make_inputs(example, np.float64)
    model = make_model(example, inputs)
    out = example.op.forward(inputs).out
    assert out.dtype == np.float64
    n_act = len(example.in_shapes)
    expected = ReferenceEvaluator(model).run(None, {f"x{i}": inputs[i] for i in range(n_act)})[0]
    # ONNX stores float attributes (alpha, epsilon) as float32: agreement to ~1e-8 relative, not 1e-15
    np.testing.assert_allclose(out, expected, atol=1e-9, rtol=1e-7)


@pytest.mark.parametrize("example", EXAMPLES, ids=IDS)
def test_backward_matches_finite_differences(example: Example) -> None:
    inputs = make_inputs(example, np.float64)
    grads = example.op.backward(np.ones((BATCH, *example.op.output_shape(list(example.in_shapes)))),
                                inputs, example.op.forward(inputs))
    assert [g is not None for g in grads] == trainable_mask(example)
    check_gradients(example.op, inputs, training=False)


@pytest.mark.parametrize("example", EXAMPLES, ids=IDS)
def test_backward_matches_finite_differences_in_training(example: Example) -> None:
    """Training mode changes BN (batch statistics) and Dropout (a mask drawn from the same rng both ways)."""
    check_gradients(example.op, make_inputs(example, np.float64), training=True)


@pytest.mark.parametrize("example", EXAMPLES, ids=IDS)
def test_backward_keeps_dtype_float32(example: Example) -> None:
    inputs = make_inputs(example, np.float32)
    fwd = example.op.forward(inputs, training=True, rng=np.random.default_rng(1))
    for grad in example.op.backward(np.ones_like(fwd.out), inputs, fwd):
        assert grad is None or grad.dtype == np.float32


@pytest.mark.parametrize("example", EXAMPLES, ids=IDS)
def test_onnx_round_trip(example: Example) -> None:
    """Attributes read back from an ONNX node, plus scalar constant inputs by name, rebuild the same op."""
    op = example.op
    shapes = list(example.in_shapes)
    node = helper.make_node(op.op_type, input_names(example), ["y"], **op.onnx_attributes())
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    attrs.update({w.name: w.constant for w in op.weights(shapes) if w.constant is not None})
    assert type(op).from_onnx(attrs, shapes, [w.shape for w in op.weights(shapes)]) == op


@pytest.mark.parametrize("example", EXAMPLES, ids=IDS)
def test_executed_macs_match_analysis(example: Example) -> None:
    op = example.op
    shapes = list(example.in_shapes)
    fwd = op.forward(make_inputs(example, np.float32))
    assert fwd.macs == BATCH * op.macs(shapes, op.output_shape(shapes))


@pytest.mark.parametrize("example", EXAMPLES, ids=IDS)
def test_describe_is_spec_text_with_a_known_name(example: Example) -> None:
    name = example.op.describe().split("(")[0]
    if example.op.op_type != "Conv":
        assert SPEC_NAMES[name.lower()] is type(example.op)


def test_batchnorm_running_stats_match_reference_training_mode() -> None:
    """updated_state and the training output against ONNX's BatchNormalization with training_mode=1."""
    example = OPS["BatchNormalization"].examples[0]
    op = example.op
    inputs = make_inputs(example, np.float64)
    fwd = op.forward(inputs, training=True)
    state = op.updated_state(inputs, fwd, op.momentum)
    node = helper.make_node("BatchNormalization", ["x0", "scale", "B", "input_mean", "input_var"],
                            ["y", "running_mean", "running_var"], training_mode=1, **op.onnx_attributes())
    elem = TensorProto.DOUBLE
    graph = helper.make_graph(
        [node], "bn", [helper.make_tensor_value_info("x0", elem, inputs[0].shape)],
        [helper.make_tensor_value_info(n, elem, None) for n in ("y", "running_mean", "running_var")],
        initializer=[numpy_helper.from_array(a, n) for n, a in
                     zip(["scale", "B", "input_mean", "input_var"], inputs[1:], strict=True)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=8)
    y, mean, var = ReferenceEvaluator(model).run(None, {"x0": inputs[0]})
    np.testing.assert_allclose(fwd.out, y, rtol=1e-10, atol=1e-12)
    # the ONNX momentum attribute is float32 (0.9 -> 0.89999998), hence 1e-7 and not 1e-12
    np.testing.assert_allclose(state[3], mean, rtol=1e-7)
    np.testing.assert_allclose(state[4], var, rtol=1e-7)
    assert op.updated_state(inputs, op.forward(inputs), op.momentum) == {}


def test_dropout_training_drops_about_ratio_and_keeps_the_mean() -> None:
    op = OPS["Dropout"](0.3)
    x = np.ones((200, 500), dtype=np.float32)
    out = op.forward([x, np.array(0.3, np.float32)], training=True, rng=np.random.default_rng(3)).out
    # 100000 Bernoulli(0.3) draws: the dropped fraction is within 0.005 of 0.3 (over 6 standard deviations)
    assert abs((out == 0).mean() - 0.3) < 0.005
    np.testing.assert_allclose(out[out != 0], 1 / 0.7, rtol=1e-6)
    assert op.forward([x, np.array(0.3, np.float32)]).out is x


# ---- errors ------------------------------------------------------------------
def spec_args(*items: tuple[str | None, str]) -> SpecArgs:
    return SpecArgs([(key, value, i) for i, (key, value) in enumerate(items)], "spec")


@pytest.mark.parametrize(("name", "in_shape", "message"), [
    ("MaxPool", (4,), "HxWxC"),
    ("GlobalAveragePool", (4,), "HxWxC"),
    ("GlobalMaxPool", (4,), "HxWxC"),
])
def test_spatial_ops_reject_vectors(name: str, in_shape: tuple[int, ...], message: str) -> None:
    with pytest.raises(ShapeError, match=message):
        OPS[name]().output_shape([in_shape])


def test_lp_pool_ceil_windows_hold_only_the_pixels_inside() -> None:
    # by hand: a 3x3 map of ones, 2x2 windows at stride 2 with ceil -> windows of 4, 2, 2 and 1 pixels,
    # whose L2 norms are sqrt(4), sqrt(2), sqrt(2), sqrt(1)
    out = OPS["LpPool"]((2, 2), (2, 2), (0, 0, 0, 0), ceil_mode=1).forward([np.ones((1, 1, 3, 3))]).out
    np.testing.assert_allclose(out[0, 0], np.sqrt([[4, 2], [2, 1]]), rtol=1e-12)


def test_pool_kernel_larger_than_padded_input() -> None:
    with pytest.raises(ShapeError, match="larger than its padded input 4x4"):
        OPS["MaxPool"]((5, 5), (1, 1), (1, 1, 1, 1)).output_shape([(3, 2, 2)])


def test_pool_pad_not_smaller_than_kernel() -> None:
    with pytest.raises(ShapeError, match="smaller than its kernel"):
        OPS["AveragePool"]((2, 2), (2, 2), (2, 2, 2, 2)).output_shape([(3, 8, 8)])


def test_gemm_on_image_says_flatten() -> None:
    with pytest.raises(ShapeError, match="Flatten"):
        OPS["Gemm"](48, 10).output_shape([(3, 4, 4)])


def test_gemm_wrong_feature_count() -> None:
    with pytest.raises(ShapeError, match="built for 48 inputs but gets 50"):
        OPS["Gemm"](48, 10).output_shape([(50,)])


@pytest.mark.parametrize("attrs", [{"alpha": 2.0, "transB": 1}, {"beta": 0.5, "transB": 1}, {"transA": 1}])
def test_gemm_import_rejects_scaled_or_transposed_a(attrs: dict) -> None:
    with pytest.raises(UnsupportedOpError, match="not supported"):
        OPS["Gemm"].from_onnx(attrs, [(8,)], [(4, 8), (4,)])


def test_gemm_import_trans_b_zero() -> None:
    op = OPS["Gemm"].from_onnx({}, [(8,)], [(8, 4)])
    assert (op.in_features, op.out_features, op.bias, op.transB) == (8, 4, False, 0)


def test_add_names_both_shapes() -> None:
    with pytest.raises(ShapeError, match="8x8x64 and 4x4x128"):
        OPS["Add"]().output_shape([(64, 8, 8), (128, 4, 4)])


def test_concat_names_both_shapes() -> None:
    with pytest.raises(ShapeError, match="8x8x64 and 4x4x32"):
        OPS["Concat"]().output_shape([(64, 8, 8), (32, 4, 4)])


@pytest.mark.parametrize(("op_type", "attrs"), [
    ("Softmax", {"axis": 3}), ("LogSoftmax", {"axis": -1}), ("Concat", {"axis": 2}), ("Flatten", {"axis": 2}),
    ("MaxPool", {"kernel_shape": [2, 2], "dilations": [2, 2]}), ("LpPool", {"kernel_shape": [2, 2], "p": 3}),
    ("BatchNormalization", {"training_mode": 1}),
])
def test_import_rejects_unsupported_attributes(op_type: str, attrs: dict) -> None:
    with pytest.raises(UnsupportedOpError):
        OPS[op_type].from_onnx(attrs, [(4, 6, 6)], [])


def test_clip_import_needs_constant_bounds() -> None:
    with pytest.raises(UnsupportedOpError, match="constant"):
        OPS["Clip"].from_onnx({}, [(4,)], [(), ()])
    assert OPS["Clip"].from_onnx({"min": 0.0, "max": 6.0}, [(4,)], [(), ()]).describe() == "ReLU6"


@pytest.mark.parametrize(("name", "items", "message"), [
    ("mp", [(None, "x")], "not a whole number"),
    ("mp", [("k", "0")], "at least 1"),
    ("mp", [("p", "-1")], "at least 0"),
    ("mp", [("q", "1")], "has no option"),
    ("ap", [("cip", "2")], "0 or 1"),
    ("fc", [], "number of outputs"),
    ("fc", [(None, "0")], "at least 1"),
    ("do", [(None, "1.5")], "must lie in"),
    ("lrelu", [("b", "1")], "has no option"),
    ("relu", [(None, "1")], "has no option"),
])
def test_spec_option_errors(name: str, items: list, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        SPEC_NAMES[name].from_spec(spec_args(*items), [(3, 8, 8)])


def test_spec_options_parse() -> None:
    mp = SPEC_NAMES["mp"].from_spec(spec_args((None, "3"), ("s", "2"), ("p", "1")), [(64, 112, 112)])
    assert mp == OPS["MaxPool"]((3, 3), (2, 2), (1, 1, 1, 1)) and mp.describe() == "MP(k=3,s=2,p=1)"
    assert SPEC_NAMES["maxpool"].from_spec(spec_args(), [(3, 8, 8)]).describe() == "MP"
    # s defaults to k
    assert SPEC_NAMES["mp"].from_spec(spec_args((None, "3")), [(3, 9, 9)]).strides == (3, 3)
    ap = SPEC_NAMES["avgpool"].from_spec(spec_args(("k", "3x2"), ("ceil", "1"), ("cip", "1")), [(3, 9, 9)])
    assert (ap.kernel_shape, ap.strides, ap.ceil_mode, ap.count_include_pad) == ((3, 2), (3, 2), 1, 1)
    assert ap.describe() == "AP(k=3x2,ceil=1,cip=1)"
    fc = SPEC_NAMES["fc"].from_spec(spec_args((None, "10"), ("b", "0")), [(2, 4, 4)])
    assert fc == OPS["Gemm"](32, 10, False)  # F = 2 * 4 * 4 = 32 after the Flatten the parser inserts
    assert SPEC_NAMES["dense"].from_spec(spec_args((None, "10")), [(5,)]).describe() == "FC(10)"
    assert SPEC_NAMES["lrelu"].from_spec(spec_args(("a", "0.1")), [(5,)]).describe() == "LReLU(a=0.1)"
    assert SPEC_NAMES["dropout"].from_spec(spec_args((None, "0.5")), [(5,)]).describe() == "DO(0.5)"
    assert SPEC_NAMES["batchnorm"].from_spec(spec_args(), [(5,)]).describe() == "BN"
    assert SPEC_NAMES["relu6"].from_spec(spec_args(), [(5,)]).spec_name() == "ReLU6"
    assert SPEC_NAMES["clip"].from_spec(spec_args(("min", "-1"), ("max", "1")), [(5,)]).spec_name() == "Clip"


def test_fc_follows_bias_default() -> None:
    args = SpecArgs([(None, "10", 0)], "FC(10)", defaults={"bias": False})
    assert SPEC_NAMES["fc"].from_spec(args, [(5,)]).bias is False


def test_pool_variations_are_other_pools() -> None:
    mp = OPS["MaxPool"]()
    labels = [label for label, _ in mp.variations()]
    assert labels[:3] == ["p=1", "s=1", "s=3"]
    assert all(type(v) is type(mp) and v != mp for _, v in mp.variations())



@pytest.mark.parametrize(("name", "items", "dims"), [
    ("conv", [("b", "2")], (3, 3, 3, 8)),
    ("fc", [(None, "10"), ("bias", "-1")], ()),
    ("mp", [("ceil", "2")], ()),
    ("lp", [("ceil_mode", "yes")], ()),
    ("ap", [("cip", "-1")], ()),
])
def test_on_off_options_reject_other_values_at_the_option(name: str, items: list, dims: tuple) -> None:
    args = SpecArgs([(key, value, i) for i, (key, value) in enumerate(items)], "spec", pos=99, dims=dims)
    with pytest.raises(SpecError, match="must be 0 or 1") as info:
        SPEC_NAMES[name].from_spec(args, [(3, 8, 8)])
    assert info.value.pos == len(items) - 1  # the offset of the last option (the on/off one), not the op's 99


@pytest.mark.parametrize(("items", "pos"), [
    ([("min", "7")], 0),  # against the default max 6
    ([("min", "3"), ("max", "3")], 1),  # equal bounds: the output would be the constant 3
    ([("lo", "2"), ("hi", "1")], 1),
])
def test_clip_needs_min_below_max(items: list, pos: int) -> None:
    args = SpecArgs([(key, value, i) for i, (key, value) in enumerate(items)], "spec", pos=99)
    with pytest.raises(SpecError, match="must be below max") as info:
        SPEC_NAMES["relu6"].from_spec(args, [(5,)])
    assert info.value.pos == pos
