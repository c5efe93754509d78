"""The example specs in specs/ against published figures (params exactly, MACs to the published precision)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cnncalc.ir import Graph, show_shape
from cnncalc.ops.base import numel
from cnncalc.specfile import load

SPECS = Path(__file__).resolve().parent.parent / "specs"


def params_and_macs(graph: Graph) -> tuple[int, int]:
    """Trainable parameters (what torchvision and papers publish) and conv/FC multiply-accumulates."""
    params = macs = 0
    for node in graph.nodes:
        in_shapes = [graph.shapes[name] for name in node.inputs]
        params += sum(numel(w.shape) for w in node.op.weights(in_shapes) if w.trainable)
        macs += node.op.macs(in_shapes, graph.shapes[node.name])
    return params, macs


# Published figures: torchvision's model documentation (the "Params" and "GFLOPS" columns of the
# ImageNet classification weights table, pytorch.org/vision/stable/models.html). Its GFLOPS count
# conv/FC multiply-adds, which is our MACs column.
PUBLISHED = [
    # file, params, GMACs as published
    ("vgg16.yaml", 138_357_544, 15.47),
    ("resnet18.yaml", 11_689_512, 1.81),
    ("resnet50.yaml", 25_557_032, 4.09),
    ("mobilenet_v2.yaml", 3_504_872, 0.30),
    ("alexnet.yaml", 61_100_840, 0.71),
    ("squeezenet1_1.yaml", 1_235_496, 0.35),
]


@pytest.mark.parametrize(("file", "published_params", "published_gmacs"), PUBLISHED)
def test_torchvision_published_params_and_macs(file, published_params, published_gmacs):
    (graph,) = load(str(SPECS / file)).networks
    params, macs = params_and_macs(graph)
    assert params == published_params
    # within 0.5%, or within half a unit of the last published digit (0.005 G): AlexNet's
    # 0.714 G is published rounded to 0.71, which is 0.6% away
    tolerance = max(0.005 * published_gmacs, 0.005)
    assert abs(macs / 1e9 - published_gmacs) <= tolerance, macs
    assert show_shape(graph.shapes[graph.output]) == "1x1x1000"


def test_lenet5_params_and_macs_by_hand():
    (graph,) = load(str(SPECS / "lenet5.yaml")).networks
    params, macs = params_and_macs(graph)
    # C1 5*5*1*6 + 6 = 156; C3 5*5*6*16 + 16 = 2,416; C5 400*120 + 120 = 48,120;
    # F6 120*84 + 84 = 10,164; output 84*10 + 10 = 850; total 61,706
    assert params == 156 + 2_416 + 48_120 + 10_164 + 850 == 61_706
    # C1 28*28*6*25 = 117,600; C3 10*10*16*150 = 240,000; FCs 48,000 + 10,080 + 840
    assert macs == 117_600 + 240_000 + 48_000 + 10_080 + 840
    assert show_shape(graph.shapes[graph.output]) == "1x1x10"


def test_inception_block_by_hand():
    (graph,) = load(str(SPECS / "inception_block.yaml")).networks
    params, macs = params_and_macs(graph)
    # conv weights (no bias) + BN scale and shift (2 per channel), per branch:
    # 1x1 192->64: 12,288 + 128; 1x1 192->96: 18,432 + 192, 3x3 96->128: 110,592 + 256;
    # 1x1 192->16: 3,072 + 32, 3x3 16->32: 4,608 + 64; pool, 1x1 192->32: 6,144 + 64
    assert params == 12_416 + 18_624 + 110_848 + 3_104 + 4_672 + 6_208 == 155_872
    # every conv at 28x28 = 784 positions: 784 * (192*64 + 192*96 + 9*96*128 + 192*16 + 9*16*32 + 192*32)
    assert macs == 784 * (12_288 + 18_432 + 110_592 + 3_072 + 4_608 + 6_144) == 121_626_624
    assert show_shape(graph.shapes[graph.output]) == "28x28x256"


def test_titan_x_vs_jetson_nano_is_the_design_example():
    spec_file = load(str(SPECS / "titan_x_vs_jetson_nano.yaml"))
    assert spec_file.name == "titan-x-vs-jetson-nano"
    assert spec_file.profiles == ["titan-x-maxwell", "jetson-nano"]
    assert [graph.name for graph in spec_file.networks] == ["full-res-then-pool", "strided"]
    full, strided = spec_file.networks
    assert show_shape(full.shapes[full.output]) == show_shape(strided.shapes[strided.output]) == "112x112x64"
    # the full-resolution conv does 224*224*64*(3*3*32) MACs, the strided one a quarter: 112*112*64*288
    assert params_and_macs(full)[1] == 224 * 224 * 64 * 288
    assert params_and_macs(strided)[1] == 112 * 112 * 64 * 288


def test_every_bundled_spec_loads():
    files = sorted(SPECS.glob("*.yaml"))
    assert len(files) >= 9
    for path in files:
        assert load(str(path)).networks
