"""Analysis passes on graphs built by hand; every expected figure is derived in a comment."""

from __future__ import annotations

import pytest

from cnncalc import analysis
from cnncalc.analysis import analyze, peak_activation_bytes
from cnncalc.ir import Graph, Node
from cnncalc.ops.add import Add
from cnncalc.ops.conv import Conv
from cnncalc.ops.flatten import Flatten
from cnncalc.ops.gemm import Gemm
from cnncalc.ops.maxpool import MaxPool
from cnncalc.ops.relu import Relu
from cnncalc.spec import parse


def chain(input_shape, *ops, name="net", **kwargs) -> Graph:
    """A straight chain of ops, named op0, op1, ..."""
    nodes, previous = [], "input"
    for i, op in enumerate(ops):
        nodes.append(Node(f"op{i}", op, (previous,)))
        previous = f"op{i}"
    return Graph(name, input_shape, tuple(nodes), previous, **kwargs)


def design_one() -> Graph:
    # the notes' first design: 224x224x32 | 3x3x32x64(p=1) | MP | -> 112x112x64
    return chain((32, 224, 224), Conv((3, 3), 32, 64, pads=(1, 1, 1, 1)), MaxPool())


def test_notes_first_design_figures():
    report = analyze(design_one())
    assert report.output == [112, 112, 64]
    # params: 3*3*32*64 weights + 64 biases = 18,432 + 64
    assert report.totals.params == 18_496
    # MACs: 224*224 outputs * 64 channels * (3*3*32) per output = 50,176 * 64 * 288
    assert report.totals.macs == 924_844_032
    # FLOPs: conv 2*MACs + 224*224*64 bias adds = 1,849,688,064 + 3,211,264;
    # MP: (2*2 - 1) comparisons per output * 112*112*64 = 3 * 802,816 = 2,408,448
    assert report.totals.flops == 1_849_688_064 + 3_211_264 + 2_408_448
    # receptive field: conv r=3, j=1; MP r = 3 + (2-1)*1 = 4, j = 2
    assert report.totals.receptive_field.size == (4, 4)
    assert report.totals.receptive_field.jump == (2, 2)
    # effective padding: conv p=1 at j=1 -> 1; MP p=0 -> 1
    assert report.totals.receptive_field.padding == (1, 1)


def test_notes_strided_design_needs_a_quarter_of_the_macs():
    strided = chain((32, 224, 224), Conv((3, 3), 32, 64, strides=(2, 2), pads=(1, 1, 1, 1)))
    report = analyze(strided)
    assert report.output == [112, 112, 64]
    # 112*112*64 outputs * 288 MACs = 231,211,008 = 924,844,032 / 4
    assert report.totals.macs == 924_844_032 // 4


def test_peak_activation_memory_frees_tensors_after_last_use():
    # float32: input 224*224*32*4 = 6,422,528 B; conv out 224*224*64*4 = 12,845,056 B;
    # at the conv both are live: 19,267,584 B; then the input is freed and MP adds
    # 112*112*64*4 = 3,211,264 B on top of 12,845,056 -> 16,056,320 B (below the peak)
    graph = design_one()
    assert peak_activation_bytes(graph) == 19_267_584
    report = analyze(graph, batch=2, dtype="float16")
    # batch 2 doubles, float16 halves: the same number of bytes
    assert report.totals.peak_activation_bytes == 19_267_584


def test_peak_keeps_the_residual_input_alive():
    # res block on 8x8x4, float32, batch 1: each tensor 8*8*4*4 = 1,024 B
    # input live (1,024); conv a: +1,024 = 2,048; input still needed by Add;
    # relu: +1,024 = 3,072, conv a freed -> 2,048; conv b: +1,024 = 3,072, relu freed -> 2,048;
    # add: +1,024 = 3,072, then input and conv b freed -> 1,024. Peak 3,072.
    nodes = (
        Node("a", Conv((3, 3), 4, 4, pads=(1, 1, 1, 1)), ("input",)),
        Node("r", Relu(), ("a",)),
        Node("b", Conv((3, 3), 4, 4, pads=(1, 1, 1, 1)), ("r",)),
        Node("sum", Add(), ("b", "input")),
    )
    graph = Graph("res", (4, 8, 8), nodes, "sum")
    assert peak_activation_bytes(graph) == 3_072
    report = analyze(graph)
    # the field is the larger branch: two 3x3 convs -> 5
    assert report.totals.receptive_field.size == (5, 5)


def test_training_memory_by_hand():
    # FC(10) on a 1x1x16 vector after Flatten: params 16*10 + 10 = 170
    graph = chain((16, 1, 1), Flatten(), Gemm(16, 10))
    report = analyze(graph, batch=4)
    totals = report.totals
    assert totals.params == 170
    # float32 weights: 170 * 4 = 680 B
    assert totals.weight_bytes == 680
    # kept activations: input 4*16*4 = 256, flatten 256, fc 4*10*4 = 160 -> 672 B
    # SGD: weights 680 + grads 680 + 0 + 672 = 2,032; momentum +680 = 2,712; Adam +1,360 = 3,392
    assert totals.training_bytes == {"sgd": 2_032, "sgd-momentum": 2_712, "adam": 3_392}


def test_vgg_style_receptive_field_by_hand():
    # VGG-16 features: 2,2,3,3,3 3x3 p=1 convs with 2x2 pools between.
    # Hand recursion: after pool5 r = 212, j = 32, effective padding 90
    # (padding: 2*1 + 2*2 + 3*4 + 3*8 + 3*16 = 90). Published by google-research/receptive_field.
    ops, channels = [], 3
    for convs, width in ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512)):
        for _ in range(convs):
            ops += [Conv((3, 3), channels, width, pads=(1, 1, 1, 1)), Relu()]
            channels = width
        ops.append(MaxPool())
    report = analyze(chain((3, 224, 224), *ops))
    field = report.totals.receptive_field
    assert (field.size, field.jump, field.padding) == ((212, 212), (32, 32), (90, 90))
    assert report.output == [7, 7, 512]


def test_branches_merge_their_receptive_fields_axis_by_axis():
    # by hand: a 1x3 and a 3x1 branch (stride 1) joined by cat see 3x3; a 3x3 conv on top adds 2 per axis: 5x5.
    # Taking one whole branch gave 3x1 and then 5x3. The same holds for res.
    for joined in ("cat[1x3x3x4(p=0,1,0,1);3x1x3x4(p=1,0,1,0)]", "res[1x3x3x3(p=0,1,0,1);3x1x3x3(p=1,0,1,0)]"):
        report = analyze(parse(f"8x8x3|{joined}|3x3x{8 if joined.startswith('cat') else 3}x8(p=1)"))
        join, top = report.layers[-2], report.layers[-1]
        assert join.receptive_field.size == (3, 3) and top.receptive_field.size == (5, 5), joined
        # both branches pad 1 on the axis they span, so their first windows stay centred on the first pixel
        assert join.receptive_field.start == analysis.INPUT_FIELD.start and join.receptive_field.padding == (1, 1)


def test_diagnostics_flag_the_notes_smells():
    # MP | MP adjacent, then FC holding most params after a pool
    graph = chain((3, 32, 32), Conv((3, 3), 3, 8, strides=(2, 2), pads=(1, 1, 1, 1)), MaxPool(), MaxPool(),
                  Flatten(), Gemm(8 * 4 * 4, 10))
    codes = {d.code for d in analyze(graph).diagnostics}
    assert {"strided-conv", "adjacent-pools", "pool-before-classifier", "fc-params"} <= codes
    clean = chain((3, 8, 8), Conv((3, 3), 3, 8, pads=(1, 1, 1, 1)), Relu(), Conv((3, 3), 8, 8, pads=(1, 1, 1, 1)),
                  Conv((3, 3), 8, 8, pads=(1, 1, 1, 1)), Conv((3, 3), 8, 8, pads=(1, 1, 1, 1)))
    # four 3x3 convs: r = 9 >= 8, nothing to say
    assert analyze(clean).diagnostics == []


def test_deep_chain_is_analysed_without_recursion_limits():
    # 10,000 layers: every pass is a loop, so depth must not hit Python's recursion limit.
    # (How fast it is lives in benchmarks/analysis_speed.py, not in a timed test.)
    depth = 10_000
    graph = chain((8, 16, 16), *[Relu() for _ in range(depth)])
    report = analyze(graph)
    assert len(report.layers) == depth
    # ReLU: 1 FLOP per element of 16*16*8 = 2,048 elements, per layer
    assert report.totals.flops == depth * 2_048


def _last_spatial_layer(spec_name: str):
    """The last layer whose output still has a spatial extent (pool5 / layer4 of the bundled nets)."""
    from pathlib import Path

    from cnncalc.specfile import load

    path = Path(__file__).resolve().parent.parent / "specs" / f"{spec_name}.yaml"
    report = analyze(load(str(path)).networks[0])
    return [layer for layer in report.layers if layer.output[0] > 1][-1]


@pytest.mark.parametrize(("spec", "size", "stride", "padding"), [
    # google-research/receptive_field published values (README table) for these torchvision-style nets
    ("vgg16", 212, 32, 90),      # after pool5
    ("alexnet", 195, 32, None),  # after the last max-pool (torchvision AlexNet)
    ("resnet50", 427, 32, None),  # after layer4 (torchvision ResNet-50, stride on the 3x3)
])
def test_bundled_receptive_fields_match_published(spec, size, stride, padding):
    field = _last_spatial_layer(spec).receptive_field
    assert field.size == (size, size)
    assert field.jump == (stride, stride)
    if padding is not None:
        assert field.padding == (padding, padding)


# (spec, per layer: (size, jump, effective padding, start) as (H, W) pairs), all derived by hand with
# Araujo et al. (Distill 2019): r_out = r_in + (k - 1) j_in; j_out = j_in s; p_out = p_in + p j_in;
# start_out = start_in + ((k - 1) / 2 - p) j_in, where start is the centre of the first output's field
# and the first input pixel's centre is 0.5. Kernels and strides differ between H and W, and the jump
# exceeds 1 before the later layers, so a swapped axis or a dropped j_in changes some figure.
FIELD_TABLE = [
    pytest.param("12x12x1|3x1x1x2|MP(k=3x2)|3x3x2x2", [
        # conv 3x1: r (3, 1); start 0.5 + (1, 0) = (1.5, 0.5)
        ((3, 1), (1, 1), (0, 0), (1.5, 0.5)),
        # MP k=3x2 (s defaults to k): r (3 + 2, 1 + 1) = (5, 2); j (3, 2); start (1.5 + 1, 0.5 + 0.5) = (2.5, 1.0)
        ((5, 2), (3, 2), (0, 0), (2.5, 1.0)),
        # 3x3 at j (3, 2): r (5 + 2*3, 2 + 2*2) = (11, 6); start (2.5 + 1*3, 1.0 + 1*2) = (5.5, 3.0):
        # its first output sees input rows 0..10 (centre 5.5) and columns 0..5 (centre 3.0)
        ((11, 6), (3, 2), (0, 0), (5.5, 3.0)),
    ], id="non-square, no padding"),
    pytest.param("16x16x1|3x3x1x4(s=2)|3x3x4x4|MP", [
        # conv s=2: r 3, j 2, start 0.5 + 1 = 1.5 (the first window covers pixels 0..2)
        ((3, 3), (2, 2), (0, 0), (1.5, 1.5)),
        # 3x3 at j 2: r 3 + 2*2 = 7; start 1.5 + 1*2 = 3.5 (centres 1.5, 3.5, 5.5 of the three inputs it reads)
        ((7, 7), (2, 2), (0, 0), (3.5, 3.5)),
        # MP 2x2 at j 2: r 7 + 1*2 = 9 (pixels 0..8); j 4; start 3.5 + 0.5*2 = 4.5
        ((9, 9), (4, 4), (0, 0), (4.5, 4.5)),
    ], id="strided, no padding"),
    pytest.param("16x16x1|3x3x1x4(s=2,p=1)|5x5x4x4(p=2)|3x3x4x4(p=0,1,0,1)", [
        # conv p=1: r 3, j 2, p 1, start 0.5 + (1 - 1) = 0.5 (the first window is centred on pixel 0)
        ((3, 3), (2, 2), (1, 1), (0.5, 0.5)),
        # 5x5 p=2 at j 2: r 3 + 4*2 = 11; p 1 + 2*2 = 5; start 0.5 + (2 - 2)*2 = 0.5
        ((11, 11), (2, 2), (5, 5), (0.5, 0.5)),
        # 3x3 padded on W only at j 2: r 11 + 2*2 = 15; p (5, 5 + 2) = (5, 7);
        # start (0.5 + 1*2, 0.5 + 0*2) = (2.5, 0.5)
        ((15, 15), (2, 2), (5, 7), (2.5, 0.5)),
    ], id="strided and padded, padding on one axis"),
]


@pytest.mark.parametrize(("text", "expected"), FIELD_TABLE)
def test_receptive_field_per_layer_by_hand(text, expected):
    fields = [layer.receptive_field for layer in analyze(parse(text)).layers]
    assert [(f.size, f.jump, f.padding, f.start) for f in fields] == expected


def test_branches_with_different_strides_merge_to_the_larger_jump():
    # on 5x5: branch a 3x3 p=0 s=1 -> 3x3 (r 3, j 1); branch b 3x3 p=1 s=2 -> (5 + 2 - 3) // 2 + 1 = 3 (r 3, j 2).
    # Neighbouring join positions are 2 input pixels apart through b, so the 3x3 on top sees
    # 3 + 2*2 = 7 pixels, not 3 + 2*1 = 5; effective padding max(0, 1) = 1; start is b's 0.5, then + 1*2 = 2.5
    report = analyze(parse("5x5x1|cat[3x3x1x2;3x3x1x2(s=2,p=1)]|3x3x4x1"))
    join, top = report.layers[-2].receptive_field, report.layers[-1].receptive_field
    assert (join.size, join.jump, join.padding, join.start) == ((3, 3), (2, 2), (1, 1), (0.5, 0.5))
    assert (top.size, top.jump, top.padding, top.start) == ((7, 7), (2, 2), (1, 1), (2.5, 2.5))


def test_peak_drops_an_output_nobody_reads_at_once():
    # 4x4x2 input, float32, batch 1: input 4*4*2*4 = 128 B; each conv/relu output 4*4*2*4 = 128 B.
    # dead = ReLU(input), read by no one; then conv on the input; the graph's output is the conv.
    # dead: input 128 + dead 128 = 256, dead dropped at once -> 128;
    # conv: 128 + 128 = 256, input freed -> 128. Peak 256. Keeping the dead tensor would make it 384.
    nodes = (
        Node("dead", Relu(), ("input",)),
        Node("conv", Conv((1, 1), 2, 2), ("input",)),
    )
    graph = Graph("dead-branch", (2, 4, 4), nodes, "conv")
    assert peak_activation_bytes(graph) == 256
