"""Hardware profiles and the cost model: hand-derived rooflines, batch limits, profile files, the published set."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import statistics
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cnncalc.advice import advise
from cnncalc.analysis import analyze
from cnncalc.cli import app
from cnncalc.errors import CnnCalcError, SpecFileError
from cnncalc.hardware import (
    Profile,
    calibrate_host,
    estimate_network,
    get_profiles,
    load_profiles,
    profile_detail_rows,
    save_host_profile,
)
from cnncalc.ops.conv import Conv
from cnncalc.spec import parse
from cnncalc.specfile import load

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()

# A toy device with round numbers, so every figure below can be derived by hand.
TOY = """
profiles:
  toy:
    description: round numbers for hand arithmetic
    peak_tflops: {float32: 0.001}          # 1e9 FLOP/s
    mem_gb_per_s: 1                        # 1e9 B/s
    mem_gib: 1
    usable_mem_gib: 0.0009765625           # 1 MiB = 1,048,576 B
    launch_overhead_us: 1
    mem_efficiency: 0.5                    # 0.5e9 B/s effective
    efficiency: {conv: 0.5, conv_winograd: 1.0, gemm: 0.25, depthwise: 1, pool: 1, elementwise: 1, concat: 1}
    sources: {peak_tflops: "made up for the test"}
"""
TINY = "8x8x4 | 3x3x4x8(p=1) | ReLU | MP | FC(10)"


@pytest.fixture(autouse=True)
def isolated_config(tmp_path, monkeypatch):
    """No test reads or writes the real per-user config."""
    monkeypatch.setenv("CNNCALC_CONFIG_DIR", str(tmp_path / "config"))


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.fixture
def toy(tmp_path):
    return get_profiles(["toy"], [write(tmp_path, "toy.yaml", TOY)])[0]


# ---- the roofline, by hand ----------------------------------------------------------
def test_roofline_of_a_tiny_network_by_hand(toy):
    report = analyze(parse(TINY), batch=2, profiles=[toy])
    cost = report.costs["toy"]
    by_name = {layer.label: c for layer, c in zip(report.layers, cost.layers, strict=True)}
    us = 1e-6
    # conv 3x3x4x8(p=1), 3x3 stride 1 -> conv_winograd (efficiency 1.0), batch 2, float32:
    #   FLOPs = 2 * (8*8*8 outputs * 4*9 MACs) + 512 bias adds = 37,376 per sample -> 74,752
    #   bytes = input 2*256*4 = 2,048 + output 2*512*4 = 4,096 + weights (288 + 8)*4 = 1,184 -> 7,328
    #   compute 74,752 / 1e9 = 74.752 us > memory 7,328 / 0.5e9 = 14.656 us -> compute-bound, + 1 us
    conv = by_name["3x3x4x8(p=1)"]
    assert (conv.flops, conv.bytes, conv.bound) == (74_752, 7_328, "compute")
    assert conv.time_s == pytest.approx(75.752 * us)
    assert conv.intensity == pytest.approx(74_752 / 7_328)
    # ReLU: 1,024 FLOPs; bytes 4,096 in + 4,096 out = 8,192 -> 16.384 us memory > 1.024 us compute
    relu = by_name["ReLU"]
    assert (relu.bound, relu.bytes) == ("memory", 8_192)
    assert relu.time_s == pytest.approx(17.384 * us)
    # MP 2x2: 4*4*8 = 128 outputs/sample, 3 comparisons each -> 768 FLOPs; bytes 4,096 + 1,024 = 5,120
    #   memory 5,120 / 0.5e9 = 10.24 us -> 11.24 us
    assert by_name["MP"].time_s == pytest.approx(11.24 * us)
    # FC(10) on 128 features: FLOPs 2*(2*1,280) + 2*10 = 5,140; bytes 1,024 + 80 + 1,290*4 = 6,264
    #   compute 5,140 / (1e9 * 0.25) = 20.56 us > memory 12.528 us -> 21.56 us
    fc = by_name["FC(10)"]
    assert (fc.bound, fc.bytes) == ("compute", 6_264)
    assert fc.time_s == pytest.approx(21.56 * us)
    # the Flatten before FC launches no kernel
    assert [c.bound for c in cost.layers].count("none") == 1
    # latency 75.752 + 17.384 + 11.24 + 21.56 = 125.936 us; 2 samples per pass
    assert cost.latency_s == pytest.approx(125.936 * us)
    assert cost.throughput_per_s == pytest.approx(2 / (125.936 * us))
    # compute 97.312 us vs memory 28.624 us -> the network is compute-bound
    assert cost.bound == "compute"
    # forward + backward = 3 x forward; SGD-momentum step: 1,586 params * 4 B * (3 + 2*1) / 0.5e9 + 1 us
    assert cost.forward_backward_s == pytest.approx(377.808 * us)
    assert cost.train_step_s == pytest.approx((377.808 + 63.44 + 1) * us)


def test_overhead_bound_when_the_launch_cost_dominates(tmp_path):
    slow = TOY + "  slow-launch: {extends: toy, launch_overhead_us: 1000}\n"
    profile = get_profiles(["slow-launch"], [write(tmp_path, "p.yaml", slow)])[0]
    cost = analyze(parse(TINY), batch=2, profiles=[profile]).costs["slow-launch"]
    # every kernel's work is below 76 us, far under 1,000 us
    assert {c.bound for c in cost.layers} == {"overhead", "none"}
    assert cost.bound == "overhead"
    assert cost.latency_s == pytest.approx(4 * 1000e-6, rel=0.05)


def test_max_batch_by_hand(toy):
    report = analyze(parse(TINY), batch=2, profiles=[toy])
    cost = report.costs["toy"]
    # weights: (288 + 8) + (1,280 + 10) = 1,586 params * 4 B = 6,344 B; usable 1,048,576 B
    # inference peak per sample: conv output 2,048 + ReLU output 2,048 live together = 4,096 B
    #   floor((1,048,576 - 6,344) / 4,096) = floor(254.45) = 254
    assert cost.max_batch_inference == 254
    # training keeps the input (1,024) and every output (2,048 + 2,048 + 512 + 512 Flatten + 40) = 6,184 B/sample
    # fixed: weights + grads = 12,688 (SGD), + 1 slot 19,032 (momentum), + 2 slots 25,376 (Adam)
    #   SGD floor(1,035,888 / 6,184) = 167; momentum floor(1,029,544 / 6,184) = 166; Adam floor(1,023,200 / 6,184) = 165
    assert cost.max_batch_training == {"sgd": 167, "sgd-momentum": 166, "adam": 165}
    assert cost.usable_bytes == 1_048_576
    # the same network analysed at another batch gives the same limits (fixed and per-sample parts split right)
    again = analyze(parse(TINY), batch=7, profiles=[toy]).costs["toy"]
    assert (again.max_batch_inference, again.max_batch_training) == (254, cost.max_batch_training)


def test_a_network_that_never_fits_gives_zero(tmp_path):
    tiny_memory = TOY + "  cramped: {extends: toy, usable_mem_gib: 0.000004}\n"  # 4,294 B < 6,344 B of weights
    profile = get_profiles(["cramped"], [write(tmp_path, "p.yaml", tiny_memory)])[0]
    cost = analyze(parse(TINY), profiles=[profile]).costs["cramped"]
    assert cost.max_batch_inference == 0
    assert set(cost.max_batch_training.values()) == {0}
    assert cost.to_json()["fits"] is False


def test_the_largest_batch_is_one_the_cli_accepts():
    # 8x8x1 | FC(2) on 1 TiB: per sample input 256 B + output 8 B = 264 B, so 2^40 / 264 = 4.2e9 would fit;
    # --batch stops at 1,000,000, and a larger "largest batch" could not be analysed
    roomy = Profile(name="roomy", description="", peak_flops_per_s={"float32": 1e12}, mem_bytes_per_s=1e12,
                    mem_bytes=2**40, usable_mem_bytes=2**40, launch_overhead_s=0.0, efficiency={}, sources={})
    cost = analyze(parse("8x8x1|FC(2)"), profiles=[roomy]).costs["roomy"]
    assert cost.max_batch_inference == 1_000_000
    assert set(cost.max_batch_training.values()) == {1_000_000}
    assert analyze(parse("8x8x1|FC(2)"), batch=cost.max_batch_inference).totals.inference_bytes <= 2**40
    report = analyze(parse("8x8x1|FC(2)"), profiles=[roomy])
    advice = next(item for item in advise(report, None, [roomy]) if item.code == "batch")
    assert "1,000,000 is the largest --batch" in advice.message and "memory is the limit" not in advice.message


def test_fits_says_whether_the_analysed_batch_fits(toy):
    # test_max_batch_by_hand: 254 samples fit for inference on the toy profile; 255 do not
    cost = analyze(parse(TINY), batch=254, profiles=[toy]).costs["toy"]
    assert cost.max_batch_inference == 254 and cost.to_json()["fits"] is True
    cost = analyze(parse(TINY), batch=255, profiles=[toy]).costs["toy"]
    assert cost.max_batch_inference == 254 and cost.to_json()["fits"] is False


def test_missing_dtype_peak_is_a_clear_error():
    report = analyze(parse(TINY), dtype="int8")
    with pytest.raises(CnnCalcError, match="titan-x-maxwell.*no peak rate for int8"):
        estimate_network(report, get_profiles(["titan-x-maxwell"])[0])


def test_fused_classes_cost_nothing_on_tensorrt():
    report = analyze(load(str(ROOT / "specs" / "resnet18.yaml")).networks[0], dtype="float16",
                     profiles=get_profiles(["jetson-nano"]))
    cost = report.costs["jetson-nano"]
    for layer, layer_cost in zip(report.layers, cost.layers, strict=True):
        if layer.cost_class == "elementwise":
            assert (layer_cost.time_s, layer_cost.bound, layer_cost.fused) == (0.0, "none", True)
        if layer.cost_class.startswith("conv"):
            assert layer_cost.time_s > 0


@pytest.mark.parametrize(("spec", "expected"), [
    # a lone activation has no kernel before it: it is a kernel of its own (before, it cost 0 ms and the
    # throughput read inf)
    ("8x8x3|ReLU", {"relu1": False}),
    # BN and ReLU fold into the conv's epilogue; after the pool the ReLU starts a kernel and the BN joins it
    # (TensorRT runs consecutive pointwise layers as one kernel)
    ("8x8x3|3x3x3x8(p=1)|BN|ReLU|MP|ReLU|BN", {"bn1": True, "relu1": True, "relu2": False, "bn2": True}),
    # through a Flatten, an activation after an FC folds into the matrix multiply
    ("8x8x3|3x3x3x8(p=1)|Flatten|FC(4)|ReLU", {"relu1": True}),
])
def test_fused_layers_need_a_kernel_to_fold_into(spec, expected):
    report = analyze(parse(spec), profiles=get_profiles(["jetson-nano"]))
    costs = {layer.name: cost for layer, cost in zip(report.layers, report.costs["jetson-nano"].layers, strict=True)}
    overhead_s = 59.57e-6  # the profile's launch_overhead_us (docs/hardware.md, fitted)
    for name, folded in expected.items():
        cost = costs[name]
        assert cost.fused is folded
        if folded:
            assert (cost.time_s, cost.bound) == (0.0, "none")
        else:  # a few bytes on a 25.6 GB/s device: the launch overhead decides
            assert cost.time_s >= overhead_s and cost.bound == "overhead"


def test_conv_kernel_classes():
    assert Conv((3, 3), 32, 64, pads=(1, 1, 1, 1)).kernel_class() == "conv_winograd"
    assert Conv((3, 3), 32, 64, strides=(2, 2)).kernel_class() == "conv"
    assert Conv((3, 3), 32, 64, dilations=(2, 2)).kernel_class() == "conv"
    assert Conv((1, 1), 32, 64).kernel_class() == "conv"
    assert Conv((3, 3), 32, 32, group=32).kernel_class() == "depthwise"
    assert Conv((3, 3), 32, 64, group=2).kernel_class() == "conv"


# ---- the design notes' example on both devices ---------------------------------------
def test_notes_example_on_titan_x_and_jetson_nano():
    spec = load(str(ROOT / "specs" / "titan_x_vs_jetson_nano.yaml"))
    assert spec.profiles == ["titan-x-maxwell", "jetson-nano"]
    profiles = get_profiles(spec.profiles)
    full, strided = (analyze(graph, profiles=profiles) for graph in spec.networks)
    # MACs: 224*224*64 * 3*3*32 = 924,844,032 vs 112*112*64 * 288 = 231,211,008: exactly a quarter
    assert (full.totals.macs, strided.totals.macs) == (924_844_032, 231_211_008)
    assert strided.totals.macs * 4 == full.totals.macs
    # activations (float32): 224*224*64*4 = 12,845,056 + MP 3,211,264 vs 112*112*64*4 = 3,211,264 -> a fifth
    assert (full.totals.activation_bytes, strided.totals.activation_bytes) == (16_056_320, 3_211_264)
    # inference peak: input 6,422,528 + conv output 12,845,056 vs input + 3,211,264
    assert (full.totals.peak_activation_bytes, strided.totals.peak_activation_bytes) == (19_267_584, 9_633_792)
    for name in ("titan-x-maxwell", "jetson-nano"):
        full_cost, strided_cost = full.costs[name], strided.costs[name]
        # full-res conv: 1,852,899,328 FLOPs over 19,341,568 B = 95.8 FLOP/B, above the Winograd ridge of
        #   both (Titan X: 6.14e12*1.852 / (336.5e9*0.4853) = 69.6; Nano fp32: 0.2359e12*0.9804 / 12.42e9 = 18.6)
        # strided conv: 463,224,832 FLOPs / 9,707,776 B = 47.7, above the conv ridge (37.1 and 9.9)
        # max-pool: 2.4e6 comparisons over 16 MB -> memory-bound everywhere
        assert [c.bound for c in full_cost.layers] == ["compute", "memory"]
        assert [c.bound for c in strided_cost.layers] == ["compute"]
        assert full_cost.layers[0].intensity == pytest.approx(1_852_899_328 / 19_341_568)
        assert strided_cost.latency_s < full_cost.latency_s
    # the Nano is the slower device by far (its peaks are ~26x and bandwidth ~13x lower)
    assert full.costs["jetson-nano"].latency_s > 10 * full.costs["titan-x-maxwell"].latency_s


# ---- profiles as data ------------------------------------------------------------------
def test_builtin_profiles_and_their_sources():
    profiles = load_profiles()
    for name in ("titan-x-maxwell", "titan-x-pascal", "jetson-nano", "jetson-orin-nano", "rtx-3090", "a100", "h100"):
        profile = profiles[name]
        for dtype in profile.peak_flops_per_s:
            assert f"peak_tflops.{dtype}" in profile.sources or "peak_tflops" in profile.sources, (name, dtype)
        for key in ("mem_gb_per_s", "mem_gib", "usable_mem_gib", "efficiency_scale", "launch_overhead_us",
                    "mem_efficiency", *(f"efficiency.{c}" for c in profile.efficiency)):
            assert profile.sources.get(key), (name, key)
        assert 0 < profile.usable_mem_bytes <= profile.mem_bytes
    nano, pascal = profiles["jetson-nano"], profiles["titan-x-pascal"]
    # NVIDIA: Jetson Nano 472 GFLOPS fp16 = 2 x 235.9 fp32
    assert nano.peak_flops_per_s["float16"] == pytest.approx(2 * nano.peak_flops_per_s["float32"], rel=1e-3)
    # GP102's native fp16 is 1/64 rate (CUDA C Programming Guide, compute capability 6.1), so cuDNN computes
    # fp16 data in fp32 there (PSEUDO_HALF_CONFIG): float16 runs at the fp32 rate, as on the Maxwell Titan X.
    # At 1/64 the Pascal card came out 4x slower than the older Maxwell one on any float16 network.
    assert pascal.peak_flops_per_s["float16"] == pascal.peak_flops_per_s["float32"] == 10.97e12
    maxwell = profiles["titan-x-maxwell"]
    assert maxwell.peak_flops_per_s["float16"] == maxwell.peak_flops_per_s["float32"]
    # the Nano's 4 GB are shared with the CPU and OS: a model gets less
    assert nano.mem_bytes == 4 * 2**30 and nano.usable_mem_bytes < nano.mem_bytes


def test_user_config_then_profiles_files_override(tmp_path, monkeypatch):
    config = tmp_path / "config"
    config.mkdir()
    write(config, "profiles.yaml", "profiles:\n  jetson-nano: {usable_mem_gib: 3, peak_tflops: {int8: 1}}\n")
    nano = load_profiles()["jetson-nano"]
    assert nano.usable_mem_bytes == 3 * 2**30
    # peak_tflops merges key by key: the built-in float16 stays
    assert nano.peak_flops_per_s == pytest.approx({"float32": 0.2359e12, "float16": 0.4719e12, "int8": 1e12})
    assert nano.origin.endswith("profiles.yaml")
    later = write(tmp_path, "later.yaml", "jetson-nano: {usable_mem_gib: 2}\n")  # a bare mapping works too
    assert load_profiles([later])["jetson-nano"].usable_mem_bytes == 2 * 2**30
    # without CNNCALC_CONFIG_DIR, $XDG_CONFIG_HOME/cnncalc is read
    monkeypatch.delenv("CNNCALC_CONFIG_DIR")
    xdg = tmp_path / "xdg"
    (xdg / "cnncalc").mkdir(parents=True)
    write(xdg / "cnncalc", "profiles.yaml", "profiles:\n  mine: {extends: a100, mem_gib: 40, usable_mem_gib: 39}\n")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(xdg))
    mine = load_profiles()["mine"]
    assert mine.mem_bytes == 40 * 2**30 and mine.peak_flops_per_s["float16"] == 312e12
    assert mine.sources["mem_gb_per_s"].startswith("from a100:")


def test_a_profile_that_extends_another_shows_its_own_sources_and_memory(tmp_path):
    # docs/hardware.md's example: the overridden float32 peak showed rtx-3090's source, and a new mem_gib
    # kept rtx-3090's usable 23 GiB (an error: more than the 16 GiB the profile has)
    mine = write(tmp_path, "p.yaml", "profiles:\n  my-gpu:\n    extends: rtx-3090\n"
                 "    peak_tflops: {float32: 22.6}\n    mem_gib: 16\n    sources: {peak_tflops: vendor sheet}\n")
    gpu = get_profiles(["my-gpu"], [mine])[0]
    rows = {row[0]: row for row in profile_detail_rows(gpu)[1]}
    assert rows["peak_tflops.float32"][1:] == ["22.6", "vendor sheet"]
    assert rows["peak_tflops.float16"][2].startswith("from rtx-3090:")  # not overridden: the base's source
    assert gpu.usable_mem_bytes == gpu.mem_bytes == 16 * 2**30 and rows["usable_mem_gib"][2] == ""


def test_an_override_of_a_built_in_profile_drops_what_it_makes_stale(tmp_path):
    # an A100 40GB: the built-in's usable 79 GiB was kept and refused ("at most 40, got 79")
    smaller = write(tmp_path, "a.yaml", "profiles:\n  a100:\n    mem_gib: 40\n")
    a100 = load_profiles([smaller])["a100"]
    assert a100.mem_bytes == a100.usable_mem_bytes == 40 * 2**30
    # docs/hardware.md's example: 3.2 GiB usable kept the built-in's source, which described 2.5 GiB
    headless = write(tmp_path, "n.yaml", "profiles:\n  jetson-nano: {usable_mem_gib: 3.2}\n")
    nano = load_profiles([headless])["jetson-nano"]
    assert nano.usable_mem_bytes == int(3.2 * 2**30) and "usable_mem_gib" not in nano.sources  # bytes truncate
    assert "mem_gib" in nano.sources  # what the override did not touch keeps its source


def test_a_broken_profiles_file_is_an_error_even_without_a_profile_asked_for(tmp_path):
    result = CliRunner().invoke(app, ["analyze", "8x8x1|FC(2)", "--profiles", str(tmp_path / "nosuch.yaml")])
    assert result.exit_code == 1 and "does not exist" in result.output
    broken = write(tmp_path, "b.yaml", "profiles:\n  a: {mem_gib: 3\n  b: 2\n")
    result = CliRunner().invoke(app, ["profiles", "--profiles", str(broken)])
    assert result.exit_code == 1 and "not valid YAML at line 3" in result.output
    assert len(result.output.strip().splitlines()) == 2  # the message and its hint
    twice = write(tmp_path, "t.yaml", "profiles:\n  nano: {extends: jetson-nano}\n  nano: {mem_gib: 2}\n")
    with pytest.raises(SpecFileError, match="duplicate key 'nano'"):  # the second silently won
        load_profiles([twice])


def test_unknown_profile_suggests_the_near_name():
    with pytest.raises(CnnCalcError) as caught:
        get_profiles(["jetson-nanoo"])
    assert "did you mean 'jetson-nano'" in caught.value.render()
    assert "titan-x-maxwell" in caught.value.render()


@pytest.mark.parametrize(("typed", "meant"), [
    ("TITAN-X-MAXWELL", "'titan-x-maxwell'"),  # case: no suggestion before
    ("nano", "'jetson-nano' or 'jetson-orin-nano'"),  # part of a name: no suggestion before
    ("titan", "'titan-x-maxwell' or 'titan-x-pascal'"),
])
def test_unknown_profile_suggests_by_case_and_part_of_the_name(typed, meant):
    with pytest.raises(CnnCalcError) as caught:
        get_profiles([typed])
    assert f"did you mean {meant}?" in caught.value.render()


def test_extends_with_a_typo_suggests_the_base(tmp_path):
    path = write(tmp_path, "p.yaml", "profiles:\n  gpu: {extends: jetson_nano}\n")
    with pytest.raises(SpecFileError) as caught:
        load_profiles([path])
    assert "did you mean 'jetson-nano'?" in caught.value.render()


BAD_FILES = [
    # (file text, what the message must name besides the file and the profile)
    ("profiles:\n  gpu: {peak_tflops: {float32: 1}, mem_gib: 8}\n", "'mem_gb_per_s' is missing"),
    ("profiles:\n  gpu: {peak_tflops: {float32: 1}, mem_gb_per_s: -5, mem_gib: 8}\n", "'mem_gb_per_s' must be"),
    ("profiles:\n  gpu: {peak_tflops: {fp16: 1}, mem_gb_per_s: 5, mem_gib: 8}\n",
     "'peak_tflops' has unknown dtype 'fp16'"),
    ("profiles:\n  gpu: {peak_tflops: {float32: 1}, mem_gb_per_s: 5, mem_gib: 8, usable_mem_gib: 9}\n",
     "'usable_mem_gib' must be"),
    ("profiles:\n  gpu: {peak_tflops: {float32: 1}, mem_gb_per_s: fast, mem_gib: 8}\n",
     "'mem_gb_per_s' must be a number"),
    ("profiles:\n  gpu: {peak_tflop: {float32: 1}, mem_gb_per_s: 5, mem_gib: 8}\n", "unknown field 'peak_tflop'"),
    ("profiles:\n  gpu: {extends: titan-x, mem_gib: 8}\n", "'extends' names unknown profile 'titan-x'"),
    ("profiles:\n  gpu: {extends: a100, efficiency: {convv: 0.5}}\n", "unknown kernel class 'convv'"),
    ("profiles:\n  gpu: {extends: a100, mem_efficiency: 1.5}\n", "'mem_efficiency' must be"),
    ("profiles:\n  gpu: {extends: [a100]}\n", "'extends' must be one profile name, got ['a100']"),
    ("profiles:\n  gpu: {extends: gpu}\n", "'extends' makes a cycle"),
    ("profiles:\n  gpu: {extends: a100, fused: elementwise}\n", "'fused' must be a list"),
    # a conv folded into a neighbour would cost nothing: no runtime does that, so a profile may not say it
    ("profiles:\n  gpu: {extends: a100, fused: [elementwise, conv]}\n", "'fused' must be a list of classes a runtime"),
    # a unit slip gives a range error with the unit, not an absurd device: the Titan X's 6.14 TFLOPS written
    # in FLOP/s (YAML 1.1 reads 6.14e12 as text), its 336.5 GB/s in B/s, its 12 GiB in bytes
    ("profiles:\n  gpu: {peak_tflops: {float32: 6.14e12}, mem_gb_per_s: 336.5, mem_gib: 12}\n",
     "'peak_tflops.float32' is 6.14e+12, outside"),
    ("profiles:\n  gpu: {peak_tflops: {float32: 6.14}, mem_gb_per_s: 336500000000, mem_gib: 12}\n",
     "'mem_gb_per_s' is 3.365e+11, outside"),
    ("profiles:\n  gpu: {peak_tflops: {float32: 6.14}, mem_gb_per_s: 336.5, mem_gib: 12884901888}\n",
     "'mem_gib' is 1.28849e+10, outside"),
    # an efficiency is a fraction: 85 means 85%, not 85x the peak
    ("profiles:\n  gpu: {extends: a100, efficiency: {conv: 85}}\n", "'efficiency.conv' is 85, outside 0 to 2"),
    ("profiles:\n  gpu: {extends: a100, efficiency_scale: 50}\n", "'efficiency_scale' is 50, outside"),
    # an integer too large for a float was an internal OverflowError
    ("profiles:\n  gpu: {extends: a100, mem_gib: 1" + "0" * 400 + "}\n", "'mem_gib' is inf, outside"),
]


@pytest.mark.parametrize(("text", "problem"), BAD_FILES)
def test_bad_profile_file_names_file_profile_and_field(tmp_path, text, problem):
    path = write(tmp_path, "bad.yaml", text)
    with pytest.raises(SpecFileError) as caught:
        load_profiles([path])
    message = caught.value.render()
    assert str(path) in message and "'gpu'" in message and problem in message


def test_unit_hints_and_numbers_written_as_text(tmp_path):
    # the hint of a dotted field explains its head (it was empty: "efficiency.conv: ")
    path = write(tmp_path, "p.yaml", "profiles:\n  gpu: {extends: a100, efficiency: {conv: 0}}\n")
    with pytest.raises(SpecFileError) as caught:
        load_profiles([path])
    assert "fraction of peak reached per kernel class" in caught.value.render()
    # 2.0e1 with no dot in the mantissa is YAML text; it is the number it spells
    path = write(tmp_path, "q.yaml", "profiles:\n  gpu: {peak_tflops: {float32: 2e1}, mem_gb_per_s: 1e3, mem_gib: 8}\n")
    gpu = load_profiles([path])["gpu"]
    assert gpu.peak_flops_per_s["float32"] == 20e12 and gpu.mem_bytes_per_s == 1000e9


def test_unreadable_profile_files(tmp_path):
    with pytest.raises(SpecFileError, match="does not exist"):
        load_profiles([tmp_path / "missing.yaml"])
    with pytest.raises(SpecFileError, match="not valid YAML"):
        load_profiles([write(tmp_path, "broken.yaml", "profiles: {gpu: [\n")])
    with pytest.raises(SpecFileError, match="only the built-in file sets `defaults`"):
        load_profiles([write(tmp_path, "defaults.yaml", "defaults: {mem_efficiency: 1}\n")])


# ---- calibration -----------------------------------------------------------------------
def test_calibrate_saves_a_host_profile_that_loads(tmp_path):
    config = tmp_path / "config"
    config.mkdir()
    write(config, "profiles.yaml", "profiles:\n  other: {extends: a100}\n")
    host = calibrate_host(matmul_n=32, copy_mib=1, conv_size=4, repeats=1)
    assert host.peak_flops_per_s["float32"] > 0 and host.mem_bytes_per_s > 0
    assert 0 < host.efficiency["conv"] <= 1 and host.launch_overhead_s > 0
    path = save_host_profile(host)
    assert path == config / "profiles.yaml"
    loaded = load_profiles()
    assert "other" in loaded  # the file's other profiles are kept
    assert loaded["host"].peak_flops_per_s["float32"] == pytest.approx(host.peak_flops_per_s["float32"], rel=1e-3)
    cost = analyze(parse(TINY), profiles=[loaded["host"]]).costs["host"]
    assert cost.latency_s > 0


# ---- the CLI ---------------------------------------------------------------------------
def test_cli_profiles_list_show_and_unknown():
    listing = runner.invoke(app, ["profiles"])
    assert listing.exit_code == 0, listing.output
    for name in ("titan-x-maxwell", "titan-x-pascal", "jetson-nano", "jetson-orin-nano", "rtx-3090", "a100", "h100"):
        assert name in listing.stdout
    shown = runner.invoke(app, ["profiles", "jetson-nano"])
    assert shown.exit_code == 0 and "25.6 GB/s" in shown.stdout and "usable_mem_gib" in shown.stdout
    data = json.loads(runner.invoke(app, ["profiles", "a100", "--format", "json"]).stdout)
    assert data["a100"]["mem_bytes_per_s"] == 2039e9
    missing = runner.invoke(app, ["profiles", "jetson-nanoo"])
    assert missing.exit_code == 1 and "did you mean 'jetson-nano'" in missing.output


def test_cli_analyze_with_profiles_json(tmp_path):
    extra = write(tmp_path, "toy.yaml", TOY)
    result = runner.invoke(app, ["analyze", str(ROOT / "specs" / "titan_x_vs_jetson_nano.yaml"), "-p", "toy",
                                 "-p", "jetson-nano", "--profiles", str(extra), "--format", "json"])
    assert result.exit_code == 0, result.output
    networks = json.loads(result.stdout)["networks"]
    assert [n["name"] for n in networks] == ["full-res-then-pool", "strided"]
    for network in networks:
        assert set(network["profiles"]) == {"toy", "jetson-nano"}
        summary = network["profiles"]["jetson-nano"]
        assert set(summary) >= {"latency_ms", "throughput_per_s", "train_step_ms", "bound", "max_batch_inference",
                                "max_batch_training"}
        assert set(summary["max_batch_training"]) == {"sgd", "sgd-momentum", "adam"}
        assert all(set(layer["time_ms"]) == {"toy", "jetson-nano"} for layer in network["layers"])


def test_cli_calibrate_quick_writes_the_config(tmp_path):
    result = runner.invoke(app, ["calibrate", "--quick"])
    assert result.exit_code == 0, result.output
    assert "peak_tflops.float32" in result.stdout
    assert (tmp_path / "config" / "profiles.yaml").is_file()
    assert "host" in runner.invoke(app, ["profiles"]).stdout


def _no_measuring(**_: object) -> None:
    raise AssertionError("measured although the profile could not be saved")


def test_cli_calibrate_refuses_a_config_folder_that_is_a_file_before_measuring(tmp_path, monkeypatch):
    # CNNCALC_CONFIG_DIR naming a file: mkdir raised FileExistsError after the measuring ('internal error')
    import cnncalc.hardware

    (tmp_path / "config").write_text("not a folder\n")
    monkeypatch.setattr(cnncalc.hardware, "calibrate_host", _no_measuring)
    result = runner.invoke(app, ["calibrate"])
    assert result.exit_code == 1, result.output
    assert "internal error" not in result.output
    assert f"{tmp_path / 'config'} is a file, not a folder" in " ".join(result.output.split())
    assert (tmp_path / "config").read_text() == "not a folder\n"  # untouched


def test_cli_calibrate_refuses_a_broken_config_file_before_measuring(tmp_path, monkeypatch):
    import cnncalc.hardware

    (tmp_path / "config").mkdir()
    write(tmp_path / "config", "profiles.yaml", "profiles: [a, b]\n")
    monkeypatch.setattr(cnncalc.hardware, "calibrate_host", _no_measuring)
    result = runner.invoke(app, ["calibrate"])
    assert result.exit_code == 1 and "`profiles` must map profile names" in result.output


def test_saving_into_an_empty_profiles_section(tmp_path):
    # `profiles:` with nothing under it is None in YAML: saving raised TypeError
    config = tmp_path / "config"
    config.mkdir()
    write(config, "profiles.yaml", "profiles:\n")
    assert "a100" in load_profiles()  # an empty section is no profile, not an error for every command
    save_host_profile(dataclasses.replace(get_profiles(["a100"])[0], name="host"))
    assert list(load_profiles())[-1] == "host"
    assert (config / "profiles.yaml").read_text().startswith("profiles:\n  host:\n")


# ---- the published measurements ----------------------------------------------------------
def _benchmark_module():
    path = ROOT / "benchmarks" / "cost_model_vs_published.py"
    spec = importlib.util.spec_from_file_location("cost_model_vs_published", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_published_set_within_the_acceptance_bounds():
    bench = _benchmark_module()
    cases = bench.published_cases()
    # every pair of benchmarks/published_measurements.yaml (jcjohnson/cnn-benchmarks, torch2trt) is judged
    assert len(cases) == 21
    errors = bench.errors_pct(cases, bench.Predictor(cases), load_profiles())
    for group in ("Titan X forward", "Titan X forward+backward", "Jetson Nano TensorRT fp16"):
        chosen = [abs(e) for c, e in zip(cases, errors, strict=True) if c.group == group]
        assert statistics.median(chosen) <= 20, group
        assert max(chosen) <= 40, group


def test_unknown_profile_listed_in_a_spec_file_names_the_file(tmp_path):
    # the user never typed the name: the error must say where it comes from
    spec = write(tmp_path, "net.yaml", "input: 8x8x1\nnetwork: FC(2)\nprofiles: [jetson-nan]\n")
    result = runner.invoke(app, ["analyze", str(spec)])
    assert result.exit_code == 1
    assert f"{spec}: `profiles:` unknown hardware profile 'jetson-nan'" in result.output
    assert "did you mean 'jetson-nano'?" in result.output


def test_profiles_list_shows_a_terabyte_host_in_whole_gib(tmp_path):
    # 1.5 TiB of memory is 1536 GiB, printed '1.54e+03' before; 1400 usable of them
    extra = write(tmp_path, "big.yaml", "big: {peak_tflops: {float32: 4}, mem_gb_per_s: 300, mem_gib: 1536, "
                                        "usable_mem_gib: 1400}\n")
    result = runner.invoke(app, ["profiles", "--profiles", str(extra)])
    assert result.exit_code == 0, result.output
    row = next(line.split() for line in result.stdout.splitlines() if line.startswith("big "))
    assert row[-2:] == ["1,536", "1,400"]


@pytest.mark.parametrize(("key", "shown"), [("null", "None"), ("yes", "True")])
def test_a_profile_name_yaml_reads_as_null_or_true_is_refused(tmp_path, key, shown):
    extra = write(tmp_path, "odd.yaml", f"profiles:\n  {key}: {{extends: a100}}\n")
    with pytest.raises(SpecFileError, match=f"{shown} is not a profile name"):
        load_profiles([extra])
