"""`cnncalc verify`: every bundled spec passes, and a deliberately broken op fails the matching line."""

from __future__ import annotations

import glob
import importlib.util
import json
import os

import pytest
from typer.testing import CliRunner

from cnncalc import verify as vf
from cnncalc.analysis import analyze
from cnncalc.cli import app
from cnncalc.spec import parse
from cnncalc.specfile import load

ROOT = os.path.join(os.path.dirname(__file__), "..")
SPEC_FILES = sorted(os.path.relpath(path, ROOT) for path in glob.glob(os.path.join(ROOT, "specs", "*.yaml")))
#: networks above this many MACs take 5 s to 2 min each to verify (float64 gradients); CNNCALC_SLOW_TESTS=1 runs them
SLOW_MACS = 250_000_000
SLOW = not os.environ.get("CNNCALC_SLOW_TESTS")
# a residual, a concat, a pool, dropout and an FC in one small network
SMALL = "8x8x3|3x3x3x4(p=1)|BN|ReLU|res[3x3x4x4(p=1)|BN|ReLU]|cat[1x1x4x2;MP(3,s=1,p=1)]|MP|DO(0.2)|FC(5)"


def networks():
    for path in SPEC_FILES:
        for graph in load(os.path.join(ROOT, path)).networks:
            heavy = analyze(graph).totals.macs > SLOW_MACS
            marks = [pytest.mark.skipif(SLOW, reason="ImageNet-size: set CNNCALC_SLOW_TESTS=1")] if heavy else []
            yield pytest.param(graph, id=f"{os.path.basename(path)}:{graph.name}", marks=marks)


@pytest.mark.parametrize("graph", list(networks()))
def test_every_bundled_spec_passes(graph):
    report = vf.verify(graph, grad_budget_s=2.0)
    assert [check.name for check in report.checks] == list(vf.CHECKS)
    failed = [vf.check_line(check) for check in report.checks if check.passed is False]
    assert report.ok, failed


def test_every_line_passes_on_a_small_network():
    report = vf.verify(parse(SMALL))
    assert report.ok, [vf.check_line(c) for c in report.checks]
    expect_ort = importlib.util.find_spec("onnxruntime") is not None
    assert report.check(vf.ONNXRUNTIME).passed is (True if expect_ort else None)
    # trainable: conv 3*3*3*4 + 4 = 112, BN 4 + 4, res conv 3*3*4*4 + 4 = 148, BN 8, cat 1x1 4*2 + 2 = 10,
    # FC on MP's 4x4x(4 + 2) = 96: 96*5 + 5 = 485 -> 771; state: two BNs' running mean and var, 16
    assert "771 params" in report.check(vf.ANALYSIS).detail
    assert report.check(vf.PARAMS).detail.startswith("787 = 771 trainable + 16 state, and 1 constant")
    assert "each alone" in report.check(vf.GRADIENTS).detail


@pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None, reason="needs onnxruntime")
def test_a_float16_network_is_compared_with_onnxruntime_in_float16(tmp_path):
    # the file's input is float16: onnxruntime refused the float32 batch cnncalc used to hand it
    spec = tmp_path / "half.yaml"
    spec.write_text(f"name: half\ndtype: float16\nnetwork: \"{SMALL}\"\n")
    graph = load(str(spec)).networks[0]
    report = vf.verify(graph, grad_budget_s=2.0)
    line = next(check for check in report.checks if check.name == vf.ONNXRUNTIME)
    assert line.passed, vf.check_line(line)
    assert report.ok


@pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None, reason="needs onnxruntime")
def test_a_model_onnxruntime_has_no_kernel_for_is_skipped_not_failed(tmp_path):
    # onnxruntime's CPU provider has no float64 Conv (NOT_IMPLEMENTED): nothing to compare with
    spec = tmp_path / "double.yaml"
    spec.write_text("name: double\ndtype: float64\nnetwork: 8x8x3|3x3x3x4(p=1)|ReLU|GAP|FC(2)\n")
    report = vf.verify(load(str(spec)).networks[0], grad_budget_s=2.0)
    line = next(check for check in report.checks if check.name == vf.ONNXRUNTIME)
    assert line.passed is None and "no kernel" in line.detail
    assert report.ok


def test_a_network_without_weights_skips_the_training_line():
    report = vf.verify(parse("15x15x4|MP(3,s=2,ceil=1)|AP(2,ceil=1)|GMP"), grad_budget_s=2.0)
    lines = {check.name: check for check in report.checks}
    assert lines[vf.TRAINING].passed is None and "no trainable weights" in lines[vf.TRAINING].detail
    assert report.ok


def test_a_wrong_backward_fails_the_gradient_line(monkeypatch):
    from cnncalc.ops.relu import Relu

    real = Relu.backward
    monkeypatch.setattr(Relu, "backward", lambda self, g, inputs, fwd: [r * 0.99 for r in real(self, g, inputs, fwd)])
    report = vf.verify(parse(SMALL))
    failed = [check.name for check in report.checks if check.passed is False]
    assert failed == [vf.GRADIENTS]
    assert "input" in report.check(vf.GRADIENTS).detail  # the bisection names a tensor at fault


def test_a_wrong_mac_count_fails_the_macs_line(monkeypatch):
    from cnncalc.ops.conv import Conv

    real = Conv.macs
    monkeypatch.setattr(Conv, "macs", lambda self, in_shapes, out_shape: real(self, in_shapes, out_shape) + 1)
    report = vf.verify(parse(SMALL))
    failed = [check.name for check in report.checks if check.passed is False]
    assert failed == [vf.EXEC_MACS]
    assert "conv1" in report.check(vf.EXEC_MACS).detail


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the kernel fills the extra row it was told to make
def test_a_wrong_output_shape_fails_shape_inference(monkeypatch):
    from cnncalc.ops.maxpool import MaxPool

    real = MaxPool.output_shape

    def off_by_one(self, in_shapes):
        c, h, w = real(self, in_shapes)
        return (c, h + 1, w) if h == 4 else (c, h, w)  # only the 8x8 -> 4x4 pool

    monkeypatch.setattr(MaxPool, "output_shape", off_by_one)
    graph = parse("8x8x3|3x3x3x4(p=1)|MP|GAP|FC(2)")
    report = vf.verify(graph, train_steps=0)
    # ONNX infers 4x4 on its own; the kernels follow the op's (broken) output_shape, so execution agrees
    assert report.check(vf.SHAPE_INFERENCE).passed is False
    assert "mp1" in report.check(vf.SHAPE_INFERENCE).detail and "4x5x4" in report.check(vf.SHAPE_INFERENCE).detail


def test_a_broken_export_fails_its_line_and_what_depends_on_it(monkeypatch):
    import cnncalc.onnx_io as onnx_io

    def broken(*args, **kwargs):
        raise RuntimeError("exporter exploded")

    monkeypatch.setattr(onnx_io, "to_onnx", broken)
    report = vf.verify(parse(SMALL))
    assert report.check(vf.CHECKER).passed is False and "exploded" in report.check(vf.CHECKER).detail
    assert report.check(vf.SHAPE_INFERENCE).detail.startswith("not run")
    assert report.check(vf.EXEC_MACS).passed is True  # execution does not need the file
    assert not report.ok


def test_without_onnxruntime_that_line_is_skipped(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    report = vf.verify(parse(SMALL))
    assert report.check(vf.ONNXRUNTIME).passed is None and report.ok


def test_grouped_gradient_check_when_time_is_short():
    graph = parse(SMALL)
    from cnncalc.weights import init_weights

    check = vf.gradient_check(graph, init_weights(graph, 0), budget_s=0.0)
    assert check.groups == 1 and check.tensors > 1 and check.passed
    assert "in 1 groups" in check.summary()


runner = CliRunner()


def test_cli_checklist_and_exit_codes(monkeypatch):
    result = runner.invoke(app, ["verify", SMALL])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if line.strip().startswith(("PASS", "FAIL", "SKIP"))]
    assert len(lines) == len(vf.CHECKS)
    assert "all" in result.stdout and "checks passed" in result.stdout
    from cnncalc.ops.conv import Conv

    real = Conv.macs
    monkeypatch.setattr(Conv, "macs", lambda self, in_shapes, out_shape: real(self, in_shapes, out_shape) * 2)
    failing = runner.invoke(app, ["verify", SMALL, "--format", "json"])
    assert failing.exit_code == 1
    doc = json.loads(failing.stdout)
    assert doc[0]["ok"] is False
    assert [c["name"] for c in doc[0]["checks"] if c["status"] == "FAIL"] == [vf.EXEC_MACS]


def test_cli_verify_bad_spec_is_one_red_line():
    result = runner.invoke(app, ["verify", "8x8x3|3x3x4x4"])
    assert result.exit_code == 1 and "Traceback" not in result.output


def test_an_onnx_model_is_verified_with_its_own_weights(tmp_path):
    # verify drew fresh He weights for a .onnx file too, so a model whose weights hold a NaN passed every line
    path = _nan_model(tmp_path)
    result = CliRunner().invoke(app, ["verify", str(path)])
    assert result.exit_code == 1, result.output
    assert "NaN" in result.output


def _nan_model(tmp_path):
    """A small exported model whose first conv kernel holds a NaN: only its own weights can fail verify."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    from cnncalc import onnx_io

    model = onnx_io.to_onnx(parse("8x8x3|3x3x3x4(p=1)|ReLU|GAP|FC(2)"))
    for index, tensor in enumerate(model.graph.initializer):
        if tensor.name.endswith(".W"):
            array = numpy_helper.to_array(tensor).copy()
            array.flat[0] = np.nan
            model.graph.initializer[index].CopyFrom(numpy_helper.from_array(array, tensor.name))
            break
    path = tmp_path / "nan.onnx"
    onnx.save(model, path)
    return path


def test_an_onnx_model_beside_other_specs_keeps_its_own_weights(tmp_path):
    # with more than one argument, verify drew He weights for the .onnx file as well: the NaN went unseen
    path = _nan_model(tmp_path)
    result = CliRunner().invoke(app, ["verify", str(path), "8x8x3|3x3x3x4(p=1)|ReLU|GAP|FC(2)", "-f", "json",
                                      "--grad-seconds", "0.5"])
    assert result.exit_code == 1, result.output
    reports = json.loads(result.stdout)
    assert [report["ok"] for report in reports] == [False, True]  # the file fails, the chain's He weights pass


@pytest.mark.parametrize("command", ["run", "train", "verify"])
def test_an_onnx_model_refuses_a_variant_it_does_not_have(tmp_path, command):
    # run, train and verify ignored --variant for an .onnx file and went on with its one network
    import onnx

    from cnncalc import onnx_io

    path = tmp_path / "small.onnx"
    onnx.save(onnx_io.to_onnx(parse("8x8x3|3x3x3x4(p=1)|ReLU|GAP|FC(2)")), path)
    result = CliRunner().invoke(app, [command, str(path), "--variant", "nosuch"])
    assert result.exit_code == 1, result.output
    assert "no variant named nosuch" in result.output and "Traceback" not in result.output
