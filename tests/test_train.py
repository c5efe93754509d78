"""Training: losses, optimizers, schedules, data, the loop, Ctrl-C, the CLI; expected values derived by hand."""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import zipfile

import numpy as np
import pytest
from typer.testing import CliRunner

from cnncalc import train as tr
from cnncalc.analysis import OPTIMIZER_SLOTS, analyze
from cnncalc.cli import app
from cnncalc.errors import CnnCalcError, RuntimeInputError
from cnncalc.runtime import Runtime
from cnncalc.spec import parse
from cnncalc.specfile import load
from cnncalc.weights import init_weights

LENET_DIGITS = "specs/lenet_digits.yaml"
SMALL = "6x6x2|3x3x2x4(p=1)|BN|ReLU|MP|FC(3)"
BRANCHY = ("8x8x2|3x3x2x4(p=1)|BN|ReLU|res[3x3x4x4(p=1)|BN|ReLU|3x3x4x4(p=1)|BN]|ReLU|"
           "cat[1x1x4x4;3x3x4x4(p=1)|ReLU]|MP|GAP|DO(0.2)|FC(4)|LogSoftmax")


@pytest.fixture(autouse=True)
def _repo_root(monkeypatch):
    monkeypatch.chdir(os.path.join(os.path.dirname(__file__), ".."))


# ---- losses ----------------------------------------------------------------------------------------------
def test_softmax_cross_entropy_by_hand():
    # two equal logits: p = (1/2, 1/2), loss = -log(1/2) = ln 2; grad = p - onehot = (-1/2, 1/2)
    loss, grad = tr.softmax_cross_entropy(np.array([[0.0, 0.0]]), np.array([0]))
    assert loss == pytest.approx(math.log(2))
    np.testing.assert_allclose(grad, [[-0.5, 0.5]])


def test_softmax_cross_entropy_is_stable_for_huge_logits():
    # logits (1000, 0), label 1: loss = 1000 + log(1 + e^-1000) = 1000 to double precision; naive exp overflows
    loss, grad = tr.softmax_cross_entropy(np.array([[1000.0, 0.0]]), np.array([1]))
    assert loss == pytest.approx(1000.0)
    np.testing.assert_allclose(grad, [[1.0, -1.0]])
    assert np.all(np.isfinite(grad))


def test_nll_and_probability_losses_by_hand():
    # log-probabilities (ln 1/4, ln 3/4), label 1: loss = -ln 3/4 = 0.28768...; grad = -onehot / N
    loss, grad = tr.nll_loss(np.log([[0.25, 0.75]]), np.array([1]))
    assert loss == pytest.approx(-math.log(0.75))
    np.testing.assert_allclose(grad, [[0.0, -1.0]])
    # the same as probabilities: d(-ln p_y)/dp_y = -1 / p_y = -4/3
    loss, grad = tr.probability_cross_entropy(np.array([[0.25, 0.75]]), np.array([1]))
    assert loss == pytest.approx(-math.log(0.75))
    np.testing.assert_allclose(grad, [[0.0, -4.0 / 3.0]])


def test_mse_by_hand():
    # outputs (0.5, 0.5) against one-hot (1, 0): diff (-0.5, 0.5), mean square 0.25, grad 2 * diff / 2
    loss, grad = tr.mse_loss(np.array([[0.5, 0.5]]), np.array([0]))
    assert loss == pytest.approx(0.25)
    np.testing.assert_allclose(grad, [[-0.5, 0.5]])


@pytest.mark.parametrize("name", ["cross-entropy", "nll", "mse"])
def test_loss_gradients_match_finite_differences(name):
    rng = np.random.default_rng(1)
    out = rng.standard_normal((4, 5))
    if name == "nll":
        out = out - np.log(np.exp(out).sum(axis=1, keepdims=True))
    labels = np.array([0, 3, 4, 1])
    _, fn = tr.pick_loss(name, out)
    _, grad = fn(out, labels)
    h = 1e-6
    for index in [(0, 0), (1, 3), (2, 1), (3, 4)]:
        plus, minus = out.copy(), out.copy()
        plus[index] += h
        minus[index] -= h
        fd = (fn(plus, labels)[0] - fn(minus, labels)[0]) / (2 * h)
        assert fd == pytest.approx(grad[index], rel=1e-6, abs=1e-9)


def test_auto_loss_follows_what_the_network_outputs():
    logits = np.array([[2.0, -1.0, 0.5]])
    log_probs = logits - np.log(np.exp(logits).sum())
    assert tr.pick_loss("auto", logits)[1] is tr.softmax_cross_entropy
    assert tr.pick_loss("auto", log_probs)[1] is tr.nll_loss
    assert tr.pick_loss("auto", np.exp(log_probs))[1] is tr.probability_cross_entropy


# ---- optimizers ------------------------------------------------------------------------------------------
def step(optimizer: str, steps: int = 1, **kwargs) -> float:
    w = np.array([1.0])
    opt = tr.make_optimizer(optimizer, [w], **kwargs)
    for _ in range(steps):
        opt.step([np.array([0.5])], 0.1)
    return float(w[0])


def test_sgd_momentum_nesterov_adam_by_hand():
    # SGD: w = 1 - 0.1 * 0.5 = 0.95
    assert step("sgd") == pytest.approx(0.95)
    # momentum: v1 = 0.5 -> w = 0.95; v2 = 0.9 * 0.5 + 0.5 = 0.95 -> w = 0.95 - 0.095 = 0.855
    assert step("sgd-momentum", 2) == pytest.approx(0.855)
    # Nesterov: v1 = 0.5, step = g + mu v1 = 0.5 + 0.45 = 0.95 -> w = 1 - 0.095 = 0.905
    assert step("nesterov") == pytest.approx(0.905)
    # Adam's first step: m_hat = g, v_hat = g^2, so w -= lr * g / |g| = 0.1 (up to eps = 1e-8)
    assert step("adam") == pytest.approx(0.9, abs=1e-7)


def steps(optimizer: str, grads: list[float]) -> float:
    """w = 1 after one step per gradient at lr 0.1."""
    w = np.array([1.0])
    opt = tr.make_optimizer(optimizer, [w])
    for g in grads:
        opt.step([np.array([g])], 0.1)
    return float(w[0])


def test_optimizers_over_two_steps_with_a_changing_gradient():
    # With one step, or a constant gradient, a wrong beta or a missing bias correction can go unseen
    # (Adam's first step is lr * g / |g| for any beta). Gradients 0.5 then -0.25, lr 0.1, w0 = 1:
    # momentum (PyTorch's SGD: v = mu v + g; w -= lr v): v1 = 0.5, w1 = 0.95; v2 = 0.45 - 0.25 = 0.2, w2 = 0.93
    assert steps("sgd-momentum", [0.5, -0.25]) == pytest.approx(0.93)
    # Nesterov (PyTorch: w -= lr (g + mu v)): w1 = 1 - 0.1 * (0.5 + 0.45) = 0.905;
    # v2 = 0.2, w2 = 0.905 - 0.1 * (-0.25 + 0.9 * 0.2) = 0.905 + 0.007 = 0.912
    assert steps("nesterov", [0.5, -0.25]) == pytest.approx(0.912)
    # Adam (Kingma & Ba 2015, Algorithm 1; beta1 0.9, beta2 0.999): step 1 w1 = 0.9 (see above);
    # step 2: m = 0.9 * 0.05 + 0.1 * (-0.25) = 0.02, v = 0.999 * 0.00025 + 0.001 * 0.0625 = 0.00031225;
    # m_hat = 0.02 / (1 - 0.9^2) = 0.02 / 0.19 = 0.1052632, v_hat = 0.00031225 / (1 - 0.999^2) = 0.00031225 / 0.001999
    # = 0.1562031, sqrt 0.3952254; w2 = 0.9 - 0.1 * 0.1052632 / 0.3952254 = 0.9 - 0.0266337 = 0.8733663
    assert steps("adam", [0.5, -0.25]) == pytest.approx(0.8733663, abs=1e-7)


def test_weight_decay_acts_on_kernels_not_on_biases():
    kernel, bias = np.ones((1, 1)), np.ones(1)
    opt = tr.make_optimizer("sgd", [kernel, bias], weight_decay=0.1)
    opt.step([np.zeros((1, 1)), np.zeros(1)], 1.0)
    # kernel: w -= lr * wd * w = 1 - 0.1; bias untouched
    assert kernel[0, 0] == pytest.approx(0.9)
    assert bias[0] == 1.0


@pytest.mark.parametrize("name", tr.OPTIMIZERS)
def test_optimizer_state_matches_the_analysis_training_memory(name):
    graph = parse(SMALL)
    runtime = Runtime(graph, init_weights(graph, 0))
    params = [array for _, _, array in tr.trainable_arrays(runtime)]
    opt = tr.make_optimizer(name, params)
    assert all(len(slots) == tr.slots_per_param(name) for slots in opt.state)
    totals = analyze(graph).totals
    # analysis: training bytes differ between optimizers only by slots * trainable params * 4 B (float32)
    key = "sgd-momentum" if name == "nesterov" else name
    assert opt.state_bytes() == totals.training_bytes[key] - totals.training_bytes["sgd"]
    assert opt.state_bytes() == OPTIMIZER_SLOTS[key] * totals.trainable_params * 4


def test_learning_rate_schedules():
    assert tr.learning_rate("constant", 0.1, 0.7, 7) == 0.1
    # cosine: base / 2 * (1 + cos(pi t)): t = 0 -> base, t = 1/2 -> base / 2, t = 1 -> 0
    assert tr.learning_rate("cosine", 0.1, 0.0, 0) == pytest.approx(0.1)
    assert tr.learning_rate("cosine", 0.1, 0.5, 5) == pytest.approx(0.05)
    assert tr.learning_rate("cosine", 0.1, 1.0, 9) == pytest.approx(0.0)
    # step every 3 epochs by 0.1: epochs 0-2 -> 0.1, 3-5 -> 0.01
    assert tr.learning_rate("step", 0.1, 0.2, 2, step_size=3) == pytest.approx(0.1)
    assert tr.learning_rate("step", 0.1, 0.3, 3, step_size=3) == pytest.approx(0.01)
    with pytest.raises(CnnCalcError):
        tr.learning_rate("linear", 0.1, 0.5, 1)


# ---- data ------------------------------------------------------------------------------------------------
def test_synthetic_data_follows_any_input_shape_and_seed():
    data = tr.synthetic_data((3, 5, 7), classes=4, samples=50, seed=3)
    # 20% of 50 = 10 held out
    assert data.x_train.shape == (40, 3, 5, 7) and data.x_val.shape == (10, 3, 5, 7)
    assert data.x_train.dtype == np.float32 and set(np.unique(data.y_train)) <= {0, 1, 2, 3}
    again = tr.synthetic_data((3, 5, 7), classes=4, samples=50, seed=3)
    np.testing.assert_array_equal(data.x_train, again.x_train)
    vectors = tr.synthetic_data((12,), classes=3, samples=20)
    assert vectors.x_train.shape == (16, 12)


def test_digits_are_split_and_standardized():
    pytest.importorskip("sklearn")
    data = tr.digits_data(seed=0)
    # scikit-learn ships 1,797 digits; round(1797 * 0.2) = 359 held out
    assert len(data.x_val) == 359 and len(data.x_train) == 1797 - 359
    assert data.x_train.shape[1:] == (1, 8, 8)
    assert abs(float(data.x_train.mean())) < 1e-4 and float(data.x_train.std()) == pytest.approx(1.0, rel=1e-4)


def test_digits_without_scikit_learn_says_how_to_get_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # import fails as if not installed
    with pytest.raises(CnnCalcError) as info:
        tr.digits_data()
    assert "scikit-learn" in info.value.message and "pip install" in info.value.hint


def test_npz_nhwc_and_nchw_give_the_same_samples(tmp_path):
    rng = np.random.default_rng(0)
    nhwc = rng.standard_normal((10, 6, 6, 2)).astype(np.float32)
    y = rng.integers(0, 3, 10)
    np.savez(tmp_path / "a.npz", x=nhwc, y=y)
    np.savez(tmp_path / "b.npz", x=nhwc.transpose(0, 3, 1, 2), y=y)
    graph = parse(SMALL)
    a = tr.load_data(str(tmp_path / "a.npz"), graph, val_fraction=0.3)
    b = tr.load_data(str(tmp_path / "b.npz"), graph, val_fraction=0.3)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert a.x_train.shape == (7, 2, 6, 6) and len(a.x_val) == 3


def test_npz_with_validation_arrays_uses_them(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.standard_normal((8, 6, 6, 2)), y=np.arange(8) % 3,
             x_val=rng.standard_normal((5, 6, 6, 2)), y_val=np.arange(5) % 3)
    data = tr.load_data(str(tmp_path / "d.npz"), parse(SMALL))
    assert len(data.x_train) == 8 and len(data.x_val) == 5


@pytest.mark.parametrize("arrays, words", [
    ({"x": np.zeros((4, 5, 5, 2)), "y": np.zeros(4, int)}, "N x 6 x 6 x 2"),
    ({"x": np.zeros((4, 6, 6, 2)), "y": np.eye(4)[:, :3]}, "labels"),
    ({"x": np.zeros((4, 6, 6, 2)), "y": np.array([0, 1, 2, 5])}, "FC(6)"),
    ({"images": np.zeros((4, 6, 6, 2))}, "no array 'x'"),
])
def test_bad_npz_files_are_clear_errors(tmp_path, arrays, words):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(CnnCalcError) as info:
        tr.load_data(str(tmp_path / "bad.npz"), parse(SMALL))
    assert words in info.value.render()


def test_data_files_that_are_not_npz_archives_are_clear_errors(tmp_path):
    np.save(tmp_path / "single.npy", np.zeros((4, 6, 6, 2)))
    (tmp_path / "text.npz").write_text("x,y\n1,2\n")
    with zipfile.ZipFile(tmp_path / "raw.npz", "w") as archive:  # a zip whose members are not .npy arrays
        archive.writestr("x.npy", b"raw bytes")
        archive.writestr("y.npy", b"raw bytes")
    np.savez(tmp_path / "objects.npz", x=np.array([{"a": 1}] * 4, dtype=object), y=np.zeros(4, int))
    for name, words in [("single.npy", "a single array (.npy)"), ("text.npz", "not a .npz file"),
                        ("raw.npz", "member 'x' is not a .npy array"), ("objects.npz", "Python objects")]:
        with pytest.raises(CnnCalcError) as info:
            tr.load_data(str(tmp_path / name), parse(SMALL))
        assert words in info.value.render(), name


def test_data_of_the_wrong_shape_names_both_shapes():
    pytest.importorskip("sklearn")
    with pytest.raises(RuntimeInputError) as info:
        tr.load_data("digits", parse(SMALL))
    assert "8x8x1" in info.value.message and "6x6x2" in info.value.message
    assert "lenet_digits" in info.value.hint


def test_a_network_ending_in_an_image_cannot_be_trained_on_labels():
    with pytest.raises(CnnCalcError) as info:
        tr.class_count(parse("8x8x3|3x3x3x4(p=1)"))
    assert "FC(K)" in info.value.hint


# ---- the loop --------------------------------------------------------------------------------------------
def run_training(spec: str, data: str = "synthetic", **config) -> tr.TrainResult:
    graph = load(spec).networks[0]
    dataset = tr.load_data(data, graph, seed=0)
    return tr.train(graph, init_weights(graph, 0), dataset, tr.TrainConfig(**config))


@pytest.mark.parametrize("spec", [LENET_DIGITS, BRANCHY])
def test_synthetic_task_is_learned(spec):
    result = run_training(spec, epochs=10, batch=32)
    # acceptance: the loss falls by an order of magnitude
    assert result.final.val_loss < result.initial_val_loss / 10
    assert result.final.train_loss < result.history[0].train_loss / 10
    assert result.final.val_accuracy >= 0.95


def test_digits_reach_97_percent_and_onnxruntime_agrees(tmp_path):
    """Acceptance: the LeNet-style spec on the digits, 10 epochs, >= 97% held out (time: benchmarks/)."""
    pytest.importorskip("sklearn")
    ort = pytest.importorskip("onnxruntime")
    from cnncalc.onnx_io import save_model, to_onnx

    graph = load(LENET_DIGITS).networks[0]
    data = tr.load_data("digits", graph, seed=0)
    result = tr.train(graph, init_weights(graph, 0), data, tr.TrainConfig(epochs=10))
    assert result.final.val_accuracy >= 0.97, result.history
    path = tmp_path / "trained.onnx"
    save_model(to_onnx(graph, result.weights), path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    expected = session.run(None, {graph.input_name: data.x_val})[0]
    ours = Runtime.from_file(path).run(data.x_val).output
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-4)
    assert np.array_equal(ours.argmax(axis=1), expected.argmax(axis=1))


def test_training_updates_bn_running_statistics_and_keeps_dropout_off_in_evaluation():
    graph = parse(BRANCHY)
    weights = init_weights(graph, 0)
    before = {name: [a.copy() for a in arrays] for name, arrays in weights.items()}
    data = tr.synthetic_data(graph.input_shape, 4, samples=40)
    tr.train(graph, weights, data, tr.TrainConfig(epochs=1, batch=8))
    bn = next(node.name for node in graph.nodes if node.op.op_type == "BatchNormalization")
    # running mean starts at 0 and var at 1 (ONNX defaults); a training step moves both
    assert not np.allclose(weights[bn][2], before[bn][2]) and not np.allclose(weights[bn][3], before[bn][3])
    runtime = Runtime(graph, weights)
    first = runtime.run(data.x_val).output
    np.testing.assert_array_equal(first, runtime.run(data.x_val).output)  # no Dropout in inference


def test_early_stopping_keeps_the_best_epoch(monkeypatch):
    # scripted validation losses: initial, then epochs 1..5; with patience 2 the run stops after epoch 4
    losses = iter([9.0, 1.0, 0.5, 0.7, 0.8, 0.1])
    monkeypatch.setattr(tr, "evaluate", lambda *args: (next(losses), 0.5))
    graph = parse(SMALL)
    weights = init_weights(graph, 0)
    snapshots = {}

    def remember(record):
        snapshots[record.epoch] = {name: [a.copy() for a in arrays] for name, arrays in weights.items()}

    data = tr.synthetic_data(graph.input_shape, 3, samples=20)
    result = tr.train(graph, weights, data, tr.TrainConfig(epochs=5, batch=8, patience=2), on_epoch=remember)
    assert result.stopped_early and len(result.history) == 4 and result.best_epoch == 2
    for name, arrays in weights.items():
        for array, kept in zip(arrays, snapshots[2][name], strict=True):
            np.testing.assert_array_equal(array, kept)


def test_ctrl_c_finishes_the_step_then_stops():
    graph = parse(SMALL)
    data = tr.synthetic_data(graph.input_shape, 3, samples=64)
    seen = []

    def interrupt(info):
        seen.append(info.step)
        if info.step == 2:
            os.kill(os.getpid(), signal.SIGINT)  # as the terminal sends on Ctrl-C

    before = signal.getsignal(signal.SIGINT)  # Python's default_int_handler, or SIG_IGN under nohup or `cmd &`
    result = tr.train(graph, init_weights(graph, 0), data, tr.TrainConfig(epochs=3, batch=8), on_step=interrupt)
    assert result.interrupted and result.steps == 2 and seen == [1, 2]
    assert len(result.history) == 1  # the interrupted epoch is still evaluated and recorded
    assert signal.getsignal(signal.SIGINT) is before  # the handler is restored


def test_bad_config_is_a_clear_error():
    for config, words in [({"optimizer": "rmsprop"}, "optimizer"), ({"lr": -1.0}, "learning rate"),
                          ({"schedule": "linear"}, "schedule"), ({"loss": "hinge"}, "loss")]:
        with pytest.raises(CnnCalcError, match=words):
            tr.TrainConfig(**config).check()


# ---- the CLI ---------------------------------------------------------------------------------------------
runner = CliRunner()


def test_cli_train_json_history_and_saved_model(tmp_path):
    out = tmp_path / "t.onnx"
    result = runner.invoke(app, ["train", SMALL, "--epochs", "2", "--batch", "16", "--samples", "64",
                                 "--optimizer", "nesterov", "--lr", "0.05", "-o", str(out), "--format", "json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert [r["epoch"] for r in doc["history"]] == [1, 2]
    assert doc["optimizer"] == "nesterov" and doc["config"]["lr"] == 0.05 and doc["output"] == str(out)
    # 64 samples, 20% held out = 13 -> 51 training samples -> ceil(51 / 16) = 4 steps per epoch
    assert doc["steps"] == 8 and doc["samples"] == 102
    assert Runtime.from_file(out).run(np.zeros((1, 2, 6, 6), np.float32)).output.shape == (1, 3)


def test_cli_train_table_and_errors(tmp_path):
    result = runner.invoke(app, ["train", SMALL, "--epochs", "1", "--samples", "32"])
    assert result.exit_code == 0, result.output
    assert "validation accuracy" in result.stdout and "train loss" in result.stdout
    bad = runner.invoke(app, ["train", SMALL, "--optimizer", "rmsprop"])
    assert bad.exit_code == 1 and "rmsprop" in bad.output
    existing = tmp_path / "x.onnx"
    existing.write_bytes(b"")
    refused = runner.invoke(app, ["train", SMALL, "-o", str(existing)])
    assert refused.exit_code == 1 and "--force" in refused.output


def test_cli_train_saves_when_interrupted(tmp_path, monkeypatch):
    real_step = tr.train_step
    calls = []

    def step_then_interrupt(*args, **kwargs):
        calls.append(1)
        outcome = real_step(*args, **kwargs)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return outcome

    monkeypatch.setattr(tr, "train_step", step_then_interrupt)
    out = tmp_path / "partial.onnx"
    result = runner.invoke(app, ["train", SMALL, "--epochs", "5", "--samples", "64", "--batch", "8", "-o", str(out)])
    assert result.exit_code == 130 and out.exists() and len(calls) == 2
    assert "interrupted" in result.stdout


def test_cli_trains_an_onnx_model_and_keeps_its_weights_as_the_start(tmp_path):
    from cnncalc.onnx_io import save_model, to_onnx

    graph = parse(SMALL)
    source, trained = tmp_path / "start.onnx", tmp_path / "trained.onnx"
    save_model(to_onnx(graph, init_weights(graph, 5)), source)
    result = runner.invoke(app, ["train", str(source), "--epochs", "1", "--samples", "40", "-o", str(trained),
                                 "--format", "json"])
    assert result.exit_code == 0, result.output
    x = np.random.default_rng(0).standard_normal((4, 2, 6, 6)).astype(np.float32)
    before, after = Runtime.from_file(source).run(x).output, Runtime.from_file(trained).run(x).output
    assert before.shape == after.shape == (4, 3) and not np.allclose(before, after)


def test_bn_that_would_see_one_value_per_channel_is_refused():
    # PyTorch's rule: BN over a batch of 1 on a 1x1 map has variance 0; training went from loss 3.6 to 661
    cli = CliRunner()
    result = cli.invoke(app, ["train", "1x1x5|FC(3)|BN|FC(2)", "-b", "1", "--epochs", "1"])
    assert result.exit_code == 1 and "one value per channel" in result.output
    # 12 synthetic samples: 2 validate (round(12 x 0.2)), 10 train; at batch 3 the last batch holds 1
    result = cli.invoke(app, ["train", "1x1x5|FC(3)|BN|FC(2)", "-b", "3", "--samples", "12", "--epochs", "1"])
    assert result.exit_code == 1 and "the last batch of each epoch holds 1 sample" in result.output
    # a BN on a 2x2 map has 4 values per channel even at batch 1
    result = cli.invoke(app, ["train", "2x2x1|1x1x1x2|BN|Flatten|FC(2)", "-b", "1", "--epochs", "1"])
    assert result.exit_code == 0, result.output


def test_bad_training_choices_are_refused_before_training():
    cli = CliRunner()
    result = cli.invoke(app, ["train", "8x8x1|FC(2)", "--loss", "nll", "--epochs", "1"])
    assert result.exit_code == 1 and "needs log-probabilities" in result.output  # NLL on logits has no minimum
    result = cli.invoke(app, ["train", "8x8x1|FC(2)", "--layout", "xyz", "--epochs", "1"])  # ignored before
    assert result.exit_code == 1 and "unknown layout 'xyz'" in result.output
    result = cli.invoke(app, ["train", "224x224x3|GAP|FC(2)", "--samples", "10000000"])  # 6.0 TB of float32 alone
    assert result.exit_code == 1 and "synthetic samples need about" in result.output


def test_the_step_schedule_decays_every_third_of_the_run():
    # docs/training.md: x0.1 every third of the run; 5 epochs decayed every epoch (step size 5 // 3 = 1),
    # now every ceil(5 / 3) = 2 epochs: 1e-2, 1e-2, 1e-3, 1e-3, 1e-4
    graph = parse("4x4x1|FC(2)")
    data = tr.synthetic_data(graph.input_shape, 2, 40, 0)
    config = tr.TrainConfig(epochs=5, batch=8, lr=0.01, optimizer="sgd", schedule="step")
    result = tr.train(graph, init_weights(graph, 0), data, config)
    assert [record.lr for record in result.history] == pytest.approx([1e-2, 1e-2, 1e-3, 1e-3, 1e-4])


def test_empty_sets_and_wrapped_labels_in_a_npz_are_clear_errors(tmp_path):
    cli = CliRunner()
    x = np.random.default_rng(0).random((40, 6, 6, 2)).astype(np.float32)
    y = np.arange(40) % 3
    cases = {
        "noval.npz": (dict(x=x, y=y, x_val=x[:0], y_val=y[:0]), "validation set of noval.npz has no samples"),
        "notrain.npz": (dict(x=x[:0], y=y[:0], x_val=x, y_val=y), "training set of notrain.npz has no samples"),
        # class 2 stored as 2**64 - 1 wrapped to -1 in int64 and trained silently
        "wrapped.npz": (dict(x=x, y=np.where(y == 2, np.uint64(2**64 - 1), y.astype(np.uint64))), "holds the label"),
    }
    for name, (arrays, message) in cases.items():
        np.savez(tmp_path / name, **arrays)
        result = cli.invoke(app, ["train", "6x6x2|3x3x2x4(p=1)|ReLU|FC(3)", "--data", str(tmp_path / name)])
        assert result.exit_code == 1 and message in result.output, (name, result.output)


def test_a_huge_whole_float_label_is_named_not_wrapped():
    # 1e20 as float64 is a whole number; cast to int64 it wrapped to -2**63 and the error blamed "int64"
    # labels that the file never held. int(1e20) = 100,000,000,000,000,000,000 exactly (1e20 = 2**20 * 5**20,
    # 5**20 < 2**53, so float64 holds it exactly)
    with pytest.raises(CnnCalcError, match="holds the label 100,000,000,000,000,000,000"):
        tr.labels(np.array([0.0, 1e20]), 2, "data.npz: y")
    assert tr.labels(np.array([[2.0], [0.0]], dtype=np.float32), 2, "y").tolist() == [2, 0]  # whole floats still pass


def test_nothing_to_train_is_refused_and_the_memory_check_counts_gradients(monkeypatch):
    cli = CliRunner()
    result = cli.invoke(app, ["train", "8x8x3|GAP", "--epochs", "2"])  # ran every epoch at the same loss
    assert result.exit_code == 1 and "no trainable weights" in result.output
    # FC(4) on 192 values: 772 float32 weights = 3,088 B; Adam adds a gradient and two moments: 3 x 3,088 = 9,264 B
    import cnncalc.runtime as runtime_module

    monkeypatch.setattr(runtime_module, "_available_memory_for", lambda needed: 9_000)
    graph = parse("8x8x3|FC(4)")
    data = tr.synthetic_data(graph.input_shape, 4, 20, 0)
    with pytest.raises(CnnCalcError, match="of gradients and optimizer state"):
        tr.train(graph, init_weights(graph, 0), data, tr.TrainConfig(epochs=1, batch=4))


@pytest.mark.parametrize("fields", [{"bn_momentum": 2.0}, {"bn_momentum": float("nan")}, {"gamma": float("nan")},
                                    {"gamma": 0.0}, {"momentum": float("nan")}])
def test_api_config_values_out_of_range_are_refused(fields):
    # bn_momentum=2.0 trained "successfully" to a val loss of nan; gamma=nan was reported as divergence
    with pytest.raises(CnnCalcError):
        tr.TrainConfig(**fields).check()


def test_api_runtime_refuses_dtype_none():
    with pytest.raises(CnnCalcError, match="float32 or float64"):  # np.dtype(None) silently meant float64
        Runtime.from_graph(parse("4x4x1|FC(2)"), dtype=None)


def test_layout_errors_name_the_layout_the_data_has(tmp_path):
    # grey (N, H, W) data with --layout nchw was refused as "(60, 6, 6, 1)", a shape the file never had
    cli = CliRunner()
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "grey.npz", x=rng.random((60, 6, 6)).astype(np.float32), y=np.arange(60) % 3)
    result = cli.invoke(app, ["train", "6x6x1|FC(3)", "--data", str(tmp_path / "grey.npz"), "--layout", "nchw",
                              "--epochs", "1"])
    assert result.exit_code == 0, result.output
    np.savez(tmp_path / "nhwc.npz", x=rng.random((60, 6, 6, 2)).astype(np.float32), y=np.arange(60) % 3)
    result = cli.invoke(app, ["train", "6x6x2|FC(3)", "--data", str(tmp_path / "nhwc.npz"), "--layout", "nchw"])
    assert result.exit_code == 1 and "which is NHWC" in result.output and "--layout nhwc" in result.output


def test_flags_the_data_would_ignore_are_refused(tmp_path):
    # --val-fraction with a file's own x_val, and --samples with a file or digits, were ignored silently
    cli = CliRunner()
    x = np.random.default_rng(0).random((20, 6, 6, 2)).astype(np.float32)
    np.savez(tmp_path / "v.npz", x=x, y=np.arange(20) % 3, x_val=x[:4], y_val=np.arange(4) % 3)
    net = "6x6x2|FC(3)"
    result = cli.invoke(app, ["train", net, "--data", str(tmp_path / "v.npz"), "--val-fraction", "0.5"])
    assert result.exit_code == 1 and "would not be used" in result.output
    result = cli.invoke(app, ["train", net, "--data", str(tmp_path / "v.npz"), "--samples", "10"])
    assert result.exit_code == 1 and "--samples sizes the synthetic set" in result.output
    assert cli.invoke(app, ["train", net, "--data", str(tmp_path / "v.npz"), "--epochs", "1"]).exit_code == 0


def test_a_run_whose_loss_explodes_says_it_diverged():
    # SGD at lr 0.05 on an MSE loss: the step losses went 0.89, 10, 210, ... 7.7e32 and the summary said nothing
    result = CliRunner().invoke(app, ["train", "16x16x3|3x3x3x8(p=1)|BN|ReLU|MP|FC(4)", "--loss", "mse",
                                      "--optimizer", "sgd", "--samples", "300"])
    assert result.exit_code == 0 and "training diverged" in result.output
    quiet = CliRunner().invoke(app, ["train", "16x16x3|3x3x3x8(p=1)|BN|ReLU|MP|FC(4)", "--samples", "300"])
    assert quiet.exit_code == 0 and "diverged" not in quiet.output
