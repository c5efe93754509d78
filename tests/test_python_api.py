"""cnncalc used as a library, the way a notebook sweep calls it: argument types a user passes naturally
(Path, numpy integers, profile names), and errors that are CnnCalcErrors rather than crashes inside."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import cnncalc
from cnncalc.errors import CnnCalcError, SpecFileError
from cnncalc.train import load_data

SPECS = Path(__file__).resolve().parent.parent / "specs"
SMALL = "6x6x2|3x3x2x4(p=1)|BN|ReLU|MP|FC(3)"


def test_load_takes_a_path_object_like_its_text():
    by_path = cnncalc.load(SPECS / "lenet5.yaml")
    by_text = cnncalc.load(str(SPECS / "lenet5.yaml"))
    assert [g.nodes for g in by_path.networks] == [g.nodes for g in by_text.networks]
    assert by_path.path == str(SPECS / "lenet5.yaml")


def test_load_of_a_missing_path_object_is_no_such_file(tmp_path):
    with pytest.raises(SpecFileError, match="no such file"):
        cnncalc.load(tmp_path / "net.yaml")


def test_load_of_something_that_is_neither_text_nor_path_is_a_clear_error():
    with pytest.raises(SpecFileError, match="give a file name"):
        cnncalc.load(None)  # type: ignore[arg-type]


def test_load_data_takes_a_path_object(tmp_path):
    # 5 samples of 6x6x2 (NHWC), 3 classes; val_fraction 0.2 of 5 holds out 1 sample
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.standard_normal((5, 6, 6, 2)).astype(np.float32), y=np.arange(5) % 3)
    data = load_data(tmp_path / "d.npz", cnncalc.parse(SMALL), val_fraction=0.2)
    assert data.x_train.shape[1:] == (2, 6, 6)
    assert len(data.x_train) + len(data.x_val) == 5


def test_analyze_takes_profile_names_as_well_as_profiles():
    from cnncalc.hardware import get_profiles

    graph = cnncalc.parse(SMALL)
    by_object = cnncalc.analyze(graph, profiles=get_profiles(["jetson-nano", "a100"]))
    by_name = cnncalc.analyze(graph, profiles=["jetson-nano", "a100"])
    one_name = cnncalc.analyze(graph, profiles="jetson-nano")
    assert list(by_name.costs) == ["jetson-nano", "a100"]
    assert by_name.costs == by_object.costs
    assert one_name.costs == {"jetson-nano": by_object.costs["jetson-nano"]}


def test_analyze_with_an_unknown_profile_name_suggests_the_close_one():
    with pytest.raises(CnnCalcError, match="unknown hardware profile 'jetson'") as caught:
        cnncalc.analyze(cnncalc.parse(SMALL), profiles=["jetson"])
    assert "jetson-nano" in str(caught.value)


def test_analyze_refuses_a_profile_of_another_type_clearly():
    with pytest.raises(CnnCalcError, match="a hardware profile is a name or a Profile, not int"):
        cnncalc.analyze(cnncalc.parse(SMALL), profiles=[3])  # type: ignore[list-item]


def test_get_profiles_takes_one_name_alone():
    from cnncalc.hardware import get_profiles

    assert [p.name for p in get_profiles("jetson-nano")] == ["jetson-nano"]


# by hand: conv 3x3x2x4 on 6x6 with p=1 gives 6*6*4 = 144 outputs of 3*3*2 = 18 MACs each, 2592; BN, ReLU and
# MP count none; FC(3) after MP reads 3x3x4 = 36 values per output, 108. So 2700 MACs per sample.
SMALL_MACS_PER_SAMPLE = 2592 + 108


@pytest.mark.parametrize("batch", [np.int64(8), np.int32(8), 8])
def test_a_numpy_integer_batch_is_a_plain_int_in_parse_and_analyze(batch):
    report = cnncalc.analyze(cnncalc.parse(SMALL), batch=batch)
    assert type(report.batch) is int and report.batch == 8
    assert report.totals.macs == 8 * SMALL_MACS_PER_SAMPLE
    graph = cnncalc.parse(SMALL, batch=batch)
    assert type(graph.batch) is int and graph.batch == 8


@pytest.mark.parametrize("batch", [2.5, "4", True, None])
def test_a_batch_that_is_not_a_whole_number_is_refused(batch):
    with pytest.raises(CnnCalcError, match="batch must be a whole number"):
        cnncalc.analyze(cnncalc.parse(SMALL), batch=batch if batch is not None else [4])  # type: ignore[arg-type]
    with pytest.raises(CnnCalcError, match="batch must be a whole number"):
        cnncalc.parse(SMALL, batch=batch)  # type: ignore[arg-type]


def test_analyze_at_batch_zero_is_an_error_not_the_graphs_own_batch():
    graph = cnncalc.parse(SMALL, batch=4)
    with pytest.raises(CnnCalcError, match="batch must be 1 to"):
        cnncalc.analyze(graph, batch=0)
    with pytest.raises(CnnCalcError, match="unknown dtype ''"):
        cnncalc.analyze(graph, dtype="")


def test_parse_takes_an_input_shape_of_numpy_integers():
    x = np.zeros((2, 3, 10, 12), dtype=np.float32)
    graph = cnncalc.parse("3x3x3x8|ReLU", input_shape=x.shape[1:])
    assert graph.input_shape == (3, 10, 12) and all(type(d) is int for d in graph.input_shape)
    # a valid 3x3 conv on 10x12 gives 8x10 (H x W), 8 channels, by hand
    assert graph.shapes[graph.output] == (8, 8, 10)
    shaped = cnncalc.parse("3x3x3x8|ReLU", input_shape=tuple(np.array([3, 10, 12])))
    assert shaped.input_shape == (3, 10, 12)


@pytest.mark.parametrize("key, value", [("epochs", 1.5), ("batch", "16"), ("patience", 0.5), ("seed", None)])
def test_train_config_refuses_numbers_that_are_not_whole(key, value):
    from cnncalc.train import TrainConfig

    with pytest.raises(CnnCalcError, match=f"{key} must be a whole number"):
        TrainConfig(**{key: value}).check()


def test_train_config_takes_numpy_integers_as_plain_ints():
    from cnncalc.train import TrainConfig

    config = TrainConfig(epochs=np.int64(2), batch=np.int32(16)).check()
    assert (config.epochs, config.batch) == (2, 16) and type(config.epochs) is int


def test_reprs_are_one_line_summaries_for_a_notebook():
    """The dataclass reprs printed every node, layer and weight array: a wall of text for one cell."""
    from cnncalc.train import TrainConfig, synthetic_data, train
    from cnncalc.weights import init_weights

    graph = cnncalc.parse(SMALL)
    # conv, BN, ReLU, MP, the implicit Flatten before FC, FC: 6 nodes; output FC(3) shows as 1x1x3
    assert repr(graph) == "<Graph 'network': 6x6x2 -> 1x1x3, 6 nodes, batch 1, float32>"
    report = cnncalc.analyze(graph, batch=2, profiles="jetson-nano")
    # params by hand: conv 3*3*2*4 + 4 = 76, BN scale and bias 8 (running stats are state), FC 36*3 + 3 = 111
    assert repr(report) == ("<NetworkReport 'network': 6x6x2 -> 1x1x3, 6 layers, batch 2, float32, 195 params, "
                            f"{2 * SMALL_MACS_PER_SAMPLE:,} MACs, costs for jetson-nano>")
    cost = report.costs["jetson-nano"]
    assert repr(cost).startswith("<NetworkCost jetson-nano: ") and "at batch 2 float32" in repr(cost)
    assert f"max batch {cost.max_batch_inference:,} for inference, fits>" in repr(cost)
    runtime = cnncalc.Runtime.from_graph(graph)
    # weights held: 195 params + BN's 8 running statistics = 203 float32 values = 812 bytes
    assert repr(runtime) == "<Runtime 'network': input (N, 2, 6, 6) float32, 6 nodes, 812 bytes of weights>"
    data = synthetic_data(graph.input_shape, classes=3, samples=20, seed=0)
    # 20 samples, a fifth held out: 16 and 4
    assert repr(data) == "<Dataset synthetic: 16 training and 4 validation samples of 6x6x2, 3 classes>"
    result = train(graph, init_weights(graph, 0), data, TrainConfig(epochs=2, batch=8))
    # 16 samples in batches of 8: 2 steps per epoch, 4 in all
    assert repr(result).startswith("<TrainResult 'network', adam: 2 epochs, 4 steps, val_loss ")
    assert repr(result).endswith(" at epoch 2>") and "\n" not in repr(result)


def test_the_python_api_page_runs_as_written(tmp_path, monkeypatch, capsys):
    """docs/api.md's code blocks, in order, in one namespace; what their comments claim is checked here."""
    import re

    text = (Path(__file__).resolve().parent.parent / "docs" / "api.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) == 4
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    for block in blocks:
        exec(compile(block, "docs/api.md", "exec"), namespace)
    printed = capsys.readouterr().out.splitlines()
    assert printed[1].startswith("<NetworkReport 'network': 64x64x3 -> 1x1x10, ") and printed[2] == "True"
    assert printed[6].startswith(f"{namespace['largest']} True")
    assert printed[8] == "(4, 10) True"
    assert printed[9].startswith("<TrainResult 'network', adam: 2 epochs, 8 steps, ")  # 64 samples: 51 train, 4 x 16
    assert (tmp_path / "best.onnx").is_file()
    x = namespace["x"]
    assert isinstance(x, np.ndarray)
    assert np.array_equal(x, np.random.default_rng(0).standard_normal((4, 3, 64, 64)).astype(np.float32))


def test_an_unknown_node_name_is_a_cnncalc_error_with_the_closest_name():
    graph = cnncalc.parse("8x8x3|3x3x3x4(p=1)|ReLU")  # nodes conv1, relu1 (names by op and count)
    assert graph.node("relu1").op.op_type == "Relu"
    with pytest.raises(CnnCalcError, match="'relu2' is no node") as caught:  # was a bare KeyError
        graph.node("relu2")
    assert caught.value.hint == "did you mean 'relu1'?"


@pytest.mark.parametrize("dtype", ["fp16", "half", "FP16"])
def test_a_dtype_alias_is_refused_with_the_name_meant(dtype):
    # the CLI and profile files hinted 'float16' for these; the library listed every dtype instead
    with pytest.raises(CnnCalcError) as caught:
        cnncalc.parse("8x8x3|ReLU", dtype=dtype)
    assert caught.value.hint == "did you mean 'float16'?"
