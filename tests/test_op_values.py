"""Known values per operator, derived by hand (the arithmetic is in each comment) or from a named source."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cnncalc.ops import OPS, SPEC_NAMES, SpecArgs, Window
from cnncalc.ops.base import numel

Conv, Gemm, MaxPool, AveragePool, LpPool = (OPS["Conv"], OPS["Gemm"], OPS["MaxPool"], OPS["AveragePool"],
                                          OPS["LpPool"])
BN = OPS["BatchNormalization"]


def args(*items: tuple[str | None, str]) -> SpecArgs:
    return SpecArgs([(key, value, i) for i, (key, value) in enumerate(items)], "spec")


def count(op, in_shapes):
    """(output shape, trainable params, state params, MACs, FLOPs) of an op on per-sample shapes."""
    out = op.output_shape(in_shapes)
    weights = op.weights(in_shapes)
    trainable = sum(numel(w.shape) for w in weights if w.trainable)
    state = sum(numel(w.shape) for w in weights if not w.trainable and w.constant is None)
    return out, trainable, state, op.macs(in_shapes, out), op.flops(in_shapes, out)


# (op, input shapes (C, H, W) or (F,), output, trainable params, state params, MACs, FLOPs)
TABLE = [
    # torchvision ResNet stem conv1 7x7x3x64(s=2,p=3,b=0) on 224x224x3: (224 + 6 - 7) // 2 + 1 = 112;
    # weight 64*3*7*7 = 9,408 (resnet18's conv1.weight); MACs 112*112*64 * 147 = 118,013,952; FLOPs 2 * MACs
    pytest.param(Conv((7, 7), 3, 64, (2, 2), (3, 3, 3, 3), bias=False), [(3, 224, 224)], (64, 112, 112),
                 9_408, 0, 118_013_952, 236_027_904, id="ResNet stem conv"),
    # grouped 3x3x64x128(p=1,g=2) on 56x56x64: W 128 * (64/2) * 9 = 36,864 + B 128 = 36,992;
    # MACs 56*56*128 * 32*9 = 3,136 * 128 * 288 = 115,605,504; FLOPs 2 * MACs + 56*56*128 bias adds = 401,408
    pytest.param(Conv((3, 3), 64, 128, pads=(1, 1, 1, 1), group=2), [(64, 56, 56)], (128, 56, 56),
                 36_992, 0, 115_605_504, 231_211_008 + 401_408, id="grouped conv g=2"),
    # dilated 3x3x8x8(d=2) on 16x16x8: k_eff = 2*(3-1) + 1 = 5 -> 16 - 5 + 1 = 12; params 8*8*9 + 8 = 584;
    # MACs 12*12*8 * 72 = 82,944 (dilation spreads taps, it does not add any); FLOPs 165,888 + 1,152
    pytest.param(Conv((3, 3), 8, 8, dilations=(2, 2)), [(8, 16, 16)], (8, 12, 12), 584, 0, 82_944, 167_040,
                 id="dilated conv d=2"),
    # depthwise with multiplier 2, 3x3x32x64(g=32,s=2,p=1,b=0) on 112x112x32: (112 + 2 - 3) // 2 + 1 = 56;
    # W 64 * 1 * 9 = 576; MACs 56*56*64 * 9 = 1,806,336; FLOPs 2 * MACs
    pytest.param(Conv((3, 3), 32, 64, (2, 2), (1, 1, 1, 1), group=32, bias=False), [(32, 112, 112)],
                 (64, 56, 56), 576, 0, 1_806_336, 3_612_672, id="depthwise x2 stride 2"),
    # non-square 1x7 conv (Inception-v3 style) 1x7x16x16(p=0,3,0,3) on 17x17x16 keeps 17x17;
    # params 16*16*7 + 16 = 1,808; MACs 17*17*16 * 112 = 517,888; FLOPs 1,035,776 + 4,624
    pytest.param(Conv((1, 7), 16, 16, pads=(0, 3, 0, 3)), [(16, 17, 17)], (16, 17, 17), 1_808, 0, 517_888,
                 1_040_400, id="1x7 conv"),
    # FC(10) on 1x1x512: W 10*512 = 5120 + B 10 = 5130 params; MACs 512*10 = 5120; FLOPs 2*5120 + 10 = 10250
    pytest.param(Gemm(512, 10), [(512,)], (10,), 5130, 0, 5120, 10250, id="FC(10) on 512"),
    # FC(10,b=0): no bias, FLOPs 2*5120 = 10240
    pytest.param(Gemm(512, 10, bias=False), [(512,)], (10,), 5120, 0, 5120, 10240, id="FC(10,b=0) on 512"),
    # LeNet-5 layer F6: 120 -> 84 has 10,164 trainable parameters (LeCun et al. 1998, Sec. II.B); MACs 120*84
    pytest.param(Gemm(120, 84), [(120,)], (84,), 10164, 0, 10080, 2 * 10080 + 84, id="LeNet-5 F6"),
    # VGG-16 fc6: 7*7*512 = 25088 -> 4096; 25088*4096 + 4096 = 102,764,544 params (Simonyan & Zisserman 2015)
    pytest.param(Gemm(25088, 4096), [(25088,)], (4096,), 102_764_544, 0, 102_760_448,
                 2 * 102_760_448 + 4096, id="VGG-16 fc6"),
    # MP(3,s=2,p=1) on 112x112x64: floor((112 + 2 - 3) / 2) + 1 = 56; FLOPs 56*56*64 * (9 - 1) = 1,605,632
    pytest.param(MaxPool((3, 3), (2, 2), (1, 1, 1, 1)), [(64, 112, 112)], (64, 56, 56), 0, 0, 0, 1_605_632,
                 id="MP(3,s=2,p=1) on 112x112x64"),
    # MP default on 224x224x64: 224 / 2 = 112; FLOPs 112*112*64 * 3 = 2,408,448
    pytest.param(MaxPool(), [(64, 224, 224)], (64, 112, 112), 0, 0, 0, 2_408_448, id="MP on 224x224x64"),
    # GoogLeNet's 3x3/2 max pool (ceil mode) on 112x112x64 gives 56x56x64 (Szegedy et al. 2015, Table 1):
    # ceil((112 - 3) / 2) + 1 = ceil(54.5) + 1 = 56 (floor would give 55); FLOPs 56*56*64 * 8
    pytest.param(MaxPool((3, 3), (2, 2), ceil_mode=1), [(64, 112, 112)], (64, 56, 56), 0, 0, 0, 1_605_632,
                 id="MP(3,s=2,ceil) GoogLeNet"),
    # MP(k=2,s=2,p=1,ceil) on 5x5: ceil((5 + 2 - 2) / 2) + 1 = 4, but window 4 would start at padded
    # index 6 = 5 + 1, inside the right padding, so it is dropped: 3 (floor also gives 5 // 2 + 1 = 3)
    pytest.param(MaxPool((2, 2), (2, 2), (1, 1, 1, 1), ceil_mode=1), [(1, 5, 5)], (1, 3, 3), 0, 0, 0, 9 * 3,
                 id="MP ceil drops a window in the padding"),
    # AP(2) on 8x8x3 -> 4x4x3; FLOPs 4*4*3 outputs * 4 = 192
    pytest.param(AveragePool(), [(3, 8, 8)], (3, 4, 4), 0, 0, 0, 192, id="AP on 8x8x3"),
    # AP(k=3,s=1,p=1) keeps 14x14x8; FLOPs 14*14*8 * 9 = 14,112
    pytest.param(AveragePool((3, 3), (1, 1), (1, 1, 1, 1)), [(8, 14, 14)], (8, 14, 14), 0, 0, 0, 14_112,
                 id="AP(3,s=1,p=1) same size"),
    # LP(2) on 4x4x1 -> 2x2x1; FLOPs 4 outputs * 2 * 4 = 32
    pytest.param(LpPool(), [(1, 4, 4)], (1, 2, 2), 0, 0, 0, 32, id="LP on 4x4x1"),
    # GAP on 7x7x512: FLOPs 7*7*512 = 25,088; GMP 512 * (49 - 1) = 24,576
    pytest.param(OPS["GlobalAveragePool"](), [(512, 7, 7)], (512, 1, 1), 0, 0, 0, 25_088, id="GAP 7x7x512"),
    pytest.param(OPS["GlobalMaxPool"](), [(512, 7, 7)], (512, 1, 1), 0, 0, 0, 24_576, id="GMP 7x7x512"),
    # BN on 56x56x64: scale + B = 2*64 = 128 trainable, mean + var = 128 state; FLOPs 2 * 56*56*64 = 401,408
    pytest.param(BN(), [(64, 56, 56)], (64, 56, 56), 128, 128, 0, 401_408, id="BN 64 channels"),
    # BN on a vector of 100: 200 trainable + 200 state; FLOPs 2 * 100
    pytest.param(BN(), [(100,)], (100,), 200, 200, 0, 200, id="BN on a vector"),
    # element-wise ops on 4x4x8 = 128 elements, at 1, 2, 2, 4, 4 FLOPs per element
    pytest.param(OPS["Relu"](), [(8, 4, 4)], (8, 4, 4), 0, 0, 0, 128, id="ReLU"),
    pytest.param(OPS["Clip"](), [(8, 4, 4)], (8, 4, 4), 0, 0, 0, 256, id="ReLU6 (min/max are constants)"),
    pytest.param(OPS["LeakyRelu"](), [(8, 4, 4)], (8, 4, 4), 0, 0, 0, 256, id="LReLU"),
    pytest.param(OPS["Sigmoid"](), [(8, 4, 4)], (8, 4, 4), 0, 0, 0, 512, id="Sigmoid"),
    pytest.param(OPS["Tanh"](), [(8, 4, 4)], (8, 4, 4), 0, 0, 0, 512, id="Tanh"),
    # Softmax / LogSoftmax over 10 classes: 3 * 10
    pytest.param(OPS["Softmax"](), [(10,)], (10,), 0, 0, 0, 30, id="Softmax 10"),
    pytest.param(OPS["LogSoftmax"](), [(10,)], (10,), 0, 0, 0, 30, id="LogSoftmax 10"),
    # Add of two 4x4x8: one add per output element = 128
    pytest.param(OPS["Add"](), [(8, 4, 4), (8, 4, 4)], (8, 4, 4), 0, 0, 0, 128, id="Add"),
    # Flatten of 7x7x512: 7*7*512 = 25,088 features, no work
    pytest.param(OPS["Flatten"](), [(512, 7, 7)], (25_088,), 0, 0, 0, 0, id="Flatten 7x7x512"),
    pytest.param(OPS["Identity"](), [(8, 4, 4)], (8, 4, 4), 0, 0, 0, 0, id="Identity"),
    pytest.param(OPS["Dropout"](0.5), [(4096,)], (4096,), 0, 0, 0, 0, id="DO(0.5)"),
    # GoogLeNet inception (3a) joins 64 + 128 + 32 + 32 = 256 channels at 28x28 (Szegedy et al. 2015, Table 1)
    pytest.param(OPS["Concat"](), [(64, 28, 28), (128, 28, 28), (32, 28, 28), (32, 28, 28)], (256, 28, 28),
                 0, 0, 0, 0, id="Concat inception 3a"),
]


@pytest.mark.parametrize(("op", "in_shapes", "out", "trainable", "state", "macs", "flops"), TABLE)
def test_known_counts(op, in_shapes, out, trainable, state, macs, flops) -> None:
    assert count(op, in_shapes) == (out, trainable, state, macs, flops)


# ---- cost classes and windows --------------------------------------------------
@pytest.mark.parametrize(("op_type", "cost_class"), [
    ("Gemm", "gemm"), ("MaxPool", "pool"), ("AveragePool", "pool"), ("LpPool", "pool"),
    ("GlobalAveragePool", "pool"), ("GlobalMaxPool", "pool"),
    ("Relu", "elementwise"), ("Clip", "elementwise"),
    ("LeakyRelu", "elementwise"), ("Sigmoid", "elementwise"), ("Tanh", "elementwise"),
    ("Softmax", "elementwise"), ("LogSoftmax", "elementwise"), ("BatchNormalization", "elementwise"),
    ("Add", "elementwise"), ("Flatten", "reshape"), ("Identity", "reshape"), ("Dropout", "reshape"),
    ("Concat", "concat"),
])
def test_cost_class(op_type: str, cost_class: str) -> None:
    assert OPS[op_type].cost_class == cost_class


def test_windows() -> None:
    # a pool's window is its kernel, stride and leading pads
    assert MaxPool((3, 3), (2, 2), (1, 1, 1, 1)).window([(64, 112, 112)]) == Window((3, 3), (2, 2), (1, 1))
    # global pools and Flatten see the whole HxW
    assert OPS["GlobalAveragePool"]().window([(512, 7, 5)]) == Window((7, 5), (1, 1), (0, 0))
    assert OPS["Flatten"]().window([(512, 7, 5)]) == Window((7, 5), (1, 1), (0, 0))
    # an FC's input is already a vector, element-wise ops have no window
    assert Gemm(10, 2).window([(10,)]) is None
    assert OPS["Relu"]().window([(3, 8, 8)]) is None


# ---- same padding and spec options -------------------------------------------
def test_same_padding() -> None:
    # 7x7, k=3, s=2: out = ceil(7 / 2) = 4; total pad = (4 - 1) * 2 + 3 - 7 = 2 -> 1 before, 1 after
    mp = SPEC_NAMES["mp"].from_spec(args(("k", "3"), ("s", "2"), ("p", "same")), [(8, 7, 7)])
    assert mp.pads == (1, 1, 1, 1) and mp.output_shape([(8, 7, 7)]) == (8, 4, 4)
    # 8x8, k=3, s=2: out = 4; total pad = 3 * 2 + 3 - 8 = 1 -> 0 before, 1 after (the odd pixel at the end)
    mp = SPEC_NAMES["mp"].from_spec(args(("k", "3"), ("s", "2"), ("p", "same")), [(8, 8, 8)])
    assert mp.pads == (0, 0, 1, 1) and mp.output_shape([(8, 8, 8)]) == (8, 4, 4)


@pytest.mark.parametrize(("op", "text"), [
    (MaxPool(), "MP"),
    (MaxPool((3, 3), (2, 2), (1, 1, 1, 1)), "MP(k=3,s=2,p=1)"),
    (MaxPool((3, 3), (3, 3)), "MP(k=3)"),
    (AveragePool((2, 2), (1, 1), ceil_mode=1, count_include_pad=1), "AP(s=1,ceil=1,cip=1)"),
    (LpPool(), "LP"),
    (Gemm(512, 10), "FC(10)"),
    (Gemm(512, 10, bias=False), "FC(10,b=0)"),
    (OPS["LeakyRelu"](0.1), "LReLU(a=0.1)"),
    (OPS["LeakyRelu"](), "LReLU"),
    (OPS["Dropout"](0.5), "DO(0.5)"),
    (OPS["Clip"](), "ReLU6"),
    (OPS["Clip"](-1.0, 1.0), "Clip(min=-1,max=1)"),
    (BN(), "BN"),
    (OPS["GlobalAveragePool"](), "GAP"),
    (OPS["Identity"](), "ID"),
])
def test_describe(op, text: str) -> None:
    assert op.describe() == text


# ---- values computed by hand ----------------------------------------------------
def test_average_pool_divisors() -> None:
    """AP(k=3,s=1,p=1) on 3x3 ones: a corner window holds 4 real pixels of 9, an edge 6, the centre 9."""
    x = np.ones((1, 1, 3, 3))
    exclude = AveragePool((3, 3), (1, 1), (1, 1, 1, 1)).forward([x]).out
    np.testing.assert_allclose(exclude, np.ones((1, 1, 3, 3)))  # count_include_pad=0: 4/4, 6/6, 9/9
    include = AveragePool((3, 3), (1, 1), (1, 1, 1, 1), count_include_pad=1).forward([x]).out
    expected = np.array([[4, 6, 4], [6, 9, 6], [4, 6, 4]]) / 9  # count_include_pad=1: divide by 9 everywhere
    np.testing.assert_allclose(include[0, 0], expected)


def test_average_pool_divisors_are_worked_out_once_and_shared_read_only() -> None:
    pool = AveragePool((3, 3), (1, 1), (1, 1, 1, 1))
    first = pool.forward([np.ones((1, 1, 3, 3), np.float32)]).cache[0]
    again = pool.forward([np.full((2, 4, 3, 3), 5, np.float32)]).cache[0]
    assert again is first and not first.flags.writeable
    np.testing.assert_array_equal(first[0, 0], [[4, 6, 4], [6, 9, 6], [4, 6, 4]])  # real pixels per window
    other_size = pool.forward([np.ones((1, 1, 4, 4), np.float32)]).cache[0]
    assert other_size.shape == (1, 1, 4, 4) and other_size is not first


def test_small_forward_values() -> None:
    image = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    assert MaxPool().forward([image]).out.item() == 4.0
    assert AveragePool().forward([image]).out.item() == 2.5  # (1 + 2 + 3 + 4) / 4
    assert LpPool().forward([image]).out.item() == pytest.approx(math.sqrt(30))  # 1 + 4 + 9 + 16 = 30
    assert OPS["GlobalMaxPool"]().forward([image]).out.item() == 4.0
    # softmax of [0, ln 3] = [1, 3] / 4; log-softmax = [ln 1/4, ln 3/4]
    logits = np.array([[0.0, math.log(3.0)]])
    np.testing.assert_allclose(OPS["Softmax"]().forward([logits]).out, [[0.25, 0.75]])
    np.testing.assert_allclose(OPS["LogSoftmax"]().forward([logits]).out, [[math.log(0.25), math.log(0.75)]])
    values = np.array([[-2.0, 0.0, 3.0, 7.0]])
    np.testing.assert_allclose(OPS["LeakyRelu"](0.1).forward([values]).out, [[-0.2, 0.0, 3.0, 7.0]])
    np.testing.assert_allclose(OPS["Clip"]().forward([values]).out, [[0.0, 0.0, 3.0, 6.0]])
    assert OPS["Sigmoid"]().forward([np.zeros((1, 1))]).out.item() == 0.5
    # BN with mean 1, var 4 (std 2), scale 2, B 3, epsilon 0: 2 * (5 - 1) / 2 + 3 = 7
    bn_inputs = [np.array([[5.0]]), np.array([2.0]), np.array([3.0]), np.array([1.0]), np.array([4.0])]
    assert BN(epsilon=0.0).forward(bn_inputs).out.item() == 7.0


def test_batchnorm_running_stats_by_hand() -> None:
    """Batch [1, 3]: mean 2, population variance 1; momentum 0.9 from running (0, 1) -> (0.2, 1.0)."""
    inputs = [np.array([[1.0], [3.0]]), np.ones(1), np.zeros(1), np.zeros(1), np.ones(1)]
    op = BN()
    fwd = op.forward(inputs, training=True)
    np.testing.assert_allclose(fwd.out[:, 0], [-1 / math.sqrt(1 + 1e-5), 1 / math.sqrt(1 + 1e-5)])
    state = op.updated_state(inputs, fwd, 0.9)
    np.testing.assert_allclose(state[3], [0.9 * 0 + 0.1 * 2])  # 0.2
    np.testing.assert_allclose(state[4], [0.9 * 1 + 0.1 * 1])  # 1.0


def test_gemm_forward_by_hand() -> None:
    # [1, 2] @ [[1, 0], [0, 1], [1, 1]]^T + [0, 0, 10] = [1, 2, 13]; 1 sample * 2 inputs * 3 outputs = 6 MACs
    fwd = Gemm(2, 3).forward([np.array([[1.0, 2.0]]), np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]),
                              np.array([0.0, 0.0, 10.0])])
    np.testing.assert_allclose(fwd.out, [[1.0, 2.0, 13.0]])
    assert fwd.macs == 6
