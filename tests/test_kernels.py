"""The shared window kernels against their definitions, written out as plain loops."""

from __future__ import annotations

import numpy as np
import pytest

from cnncalc.ops import OPS, _windows
from cnncalc.ops._windows import _im2col_by_shifted_runs, im2col, pad_images


def columns_by_definition(x, kernel, strides, dilations, pads, out_hw):
    """cols[(c, i, j), (n, r, q)] = padded[n, c, r*sh + i*dh, q*sw + j*dw], one element at a time."""
    n, c = x.shape[:2]
    (kh, kw), (sh, sw), (dh, dw), (ho, wo) = kernel, strides, dilations, out_hw
    xp = pad_images(x, pads)
    cols = np.zeros((c * kh * kw, n * ho * wo), dtype=x.dtype)
    for ci in range(c):
        for i in range(kh):
            for j in range(kw):
                for s in range(n):
                    for r in range(ho):
                        for q in range(wo):
                            row, col = (ci * kh + i) * kw + j, (s * ho + r) * wo + q
                            cols[row, col] = xp[s, ci, r * sh + i * dh, q * sw + j * dw]
    return cols


@pytest.mark.parametrize(("kernel", "strides", "dilations", "pads"), [
    ((7, 7), (2, 2), (1, 1), (3, 3, 3, 3)),  # the ResNet stem: 49 taps over 4 stride phases (the phase path)
    ((5, 3), (2, 1), (1, 2), (2, 0, 1, 2)),  # unequal kernel, stride, dilation and pads (phase path: 15 >= 8)
    ((3, 3), (2, 2), (1, 1), (1, 1, 1, 1)),  # 9 taps < 4 * 4: one block copy per tap
    ((3, 3), (1, 1), (1, 1), (1, 1, 1, 1)),  # stride 1: per tap
    ((3, 2), (1, 3), (3, 1), (0, 2, 4, 1)),  # dilated, uneven stride and pads: per tap
    ((3, 3), (1, 1), (1, 1), (5, 0, 0, 6)),  # pads wider than the kernel reaches: some taps read only padding
    ((1, 1), (1, 1), (1, 1), (1, 1, 1, 1)),  # 1x1 with padding: per tap, a zero frame around the image
    ((1, 1), (2, 2), (1, 1), (0, 0, 0, 0)),  # 1x1 stride 2: a strided pick, no window at all
    # output as large as the input (channel-major or one sample: shifted runs, see below)
    ((3, 3), (1, 1), (2, 2), (2, 2, 2, 2)),  # dilated
    ((3, 2), (1, 1), (1, 1), (1, 0, 1, 1)),  # uneven kernel and pads
    ((13, 1), (1, 1), (1, 1), (12, 0, 0, 0)),  # kernel row 0 reads only padding for every output
])
# conv outputs are channel-major views; one sample in NCHW is laid out the same
@pytest.mark.parametrize(("batch", "channel_major"), [(2, False), (2, True), (1, False)])
# these maps are tiny: by default every per-position copy is a single strided copy; 0 forces the former
@pytest.mark.parametrize("window_copy_max", [_windows.WINDOW_COPY_MAX_TAP_VALUES, 0])
def test_im2col_matches_its_definition(monkeypatch, kernel, strides, dilations, pads, batch,
                                       channel_major, window_copy_max) -> None:
    shifted_runs, window_copies = [], []

    def counted_shifted_runs(*args):
        shifted_runs.append(args)
        return _im2col_by_shifted_runs(*args)

    def counted_window_copy(*args):
        window_copies.append(args)
        return window_copy(*args)

    window_copy = _windows._im2col_by_window_copy
    monkeypatch.setattr(_windows, "_im2col_by_shifted_runs", counted_shifted_runs)
    monkeypatch.setattr(_windows, "_im2col_by_window_copy", counted_window_copy)
    monkeypatch.setattr(_windows, "WINDOW_COPY_MAX_TAP_VALUES", window_copy_max)
    x = np.random.default_rng(1).standard_normal((batch, 3, 11, 12)).astype(np.float32)
    if channel_major:
        x = np.ascontiguousarray(x.transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3)
    (kh, kw), (sh, sw), (dh, dw) = kernel, strides, dilations
    ho = (11 + pads[0] + pads[2] - dh * (kh - 1) - 1) // sh + 1
    wo = (12 + pads[1] + pads[3] - dw * (kw - 1) - 1) // sw + 1
    cols, padded_shape = im2col(x, kernel, strides, dilations, pads, (ho, wo))
    assert padded_shape == (batch, 3, 11 + pads[0] + pads[2], 12 + pads[1] + pads[3])
    np.testing.assert_array_equal(cols, columns_by_definition(x, kernel, strides, dilations, pads, (ho, wo)))
    # same-size stride-1 outputs from one contiguous run per channel take the shifted-run copies
    assert bool(shifted_runs) == (strides == (1, 1) and (ho, wo) == (11, 12) and (channel_major or batch == 1))
    by_phase = kh * kw >= 4 * sh * sw > 4
    one_by_one = (kh, kw) == (1, 1) and not any(pads)
    assert bool(window_copies) == (window_copy_max > 0 and not (shifted_runs or by_phase or one_by_one))


def test_relu_keeps_nan_and_infinities() -> None:
    # ONNX Relu is max(0, x): NaN stays NaN, -inf -> 0, +inf stays, negatives -> 0
    x = np.array([np.nan, -np.inf, np.inf, -2.5, 0.0, 3.0], dtype=np.float32)
    y = OPS["Relu"]().forward([x]).out
    np.testing.assert_array_equal(y, np.array([np.nan, 0, np.inf, 0, 0, 3.0], dtype=np.float32))
    assert y.dtype == np.float32


@pytest.mark.parametrize(("kernel", "strides", "pads", "ceil_mode"), [
    ((3, 3), (2, 2), (1, 1, 1, 1), 0),  # the ResNet stem's pool
    ((2, 2), (2, 2), (0, 0, 0, 0), 0),  # plain 2x2
    ((3, 2), (2, 3), (0, 1, 2, 0), 1),  # uneven kernel, stride and pads; ceil_mode adds overhanging windows
    ((3, 3), (1, 1), (2, 0, 0, 2), 0),  # pads on two sides only: windows near them read mostly padding
])
@pytest.mark.parametrize("channel_major", [False, True])  # conv outputs are channel-major views
@pytest.mark.parametrize("block_bytes", [None, 1500])  # 1500: blocks of 2 channels (720 bytes each), then 1
def test_max_pool_matches_its_definition(monkeypatch, kernel, strides, pads, ceil_mode, channel_major,
                                         block_bytes) -> None:
    """out[n, c, r, q] = max over the window at (r*sh - top, q*sw - left), padding counting as -inf."""
    from cnncalc.ops import _windows

    if block_bytes is not None:
        monkeypatch.setattr(_windows, "WINDOW_MAX_BLOCK_BYTES", block_bytes)
    x = np.random.default_rng(2).standard_normal((2, 3, 9, 10)).astype(np.float32)
    if channel_major:
        x = np.ascontiguousarray(x.transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3)
    op = OPS["MaxPool"](kernel, strides, pads, ceil_mode=ceil_mode)
    got = op.forward([x]).out
    # the output keeps the input's memory order (the next conv reads channel-major memory faster)
    assert (got.strides[1] > got.strides[0]) == channel_major
    (kh, kw), (sh, sw), (top, left) = kernel, strides, pads[:2]
    expected = np.full(got.shape, -np.inf, dtype=np.float32)
    for r in range(got.shape[2]):
        for q in range(got.shape[3]):
            for i in range(kh):
                for j in range(kw):
                    row, col = r * sh + i - top, q * sw + j - left
                    if 0 <= row < 9 and 0 <= col < 10:
                        expected[:, :, r, q] = np.maximum(expected[:, :, r, q], x[:, :, row, col])
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("group", [1, 2])
def test_conv_in_sample_chunks_matches_the_whole_batch(monkeypatch, group) -> None:
    """Large columns are built a few samples at a time; output, MACs and gradients must not change."""
    from cnncalc.ops import conv as conv_module

    op = OPS["Conv"]((3, 3), 4, 6, strides=(1, 1), pads=(1, 1, 1, 1), group=group, bias=True)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 4, 7, 7))
    w = rng.standard_normal((6, 4 // group, 3, 3))
    b = rng.standard_normal(6)
    whole = op.forward([x, w, b])
    grad_out = rng.standard_normal(whole.out.shape)
    expected_grads = op.backward(grad_out, [x, w, b], whole)
    # one sample's columns: 4 * 9 * 49 float64 = 14,112 bytes; chunks of 2 samples, then 1 left over
    monkeypatch.setattr(conv_module, "COLUMNS_CHUNKED_ABOVE", 0)
    monkeypatch.setattr(conv_module, "COLUMN_CHUNK_BYTES", 2 * 14_112)
    chunked = op.forward([x, w, b])
    assert chunked.cache is None  # the chunked path ran (it keeps no columns)
    np.testing.assert_allclose(chunked.out, whole.out, rtol=1e-12)
    # N x Cout x Ho*Wo x (Cin/g) * 9, as the analysis counts
    assert chunked.macs == whole.macs == 5 * 6 * 49 * (4 // group) * 9
    for got, want in zip(op.backward(grad_out, [x, w, b], chunked), expected_grads, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12)


@pytest.mark.parametrize(("strides", "dilations", "pads"), [
    ((1, 1), (1, 1), (1, 1, 1, 1)),  # MobileNetV2's stride-1 depthwise
    ((2, 2), (1, 1), (0, 1, 1, 0)),  # stride 2 with TF-style uneven "same" pads: two phases per axis
    ((2, 1), (2, 1), (2, 0, 1, 2)),  # dilated rows, uneven stride and pads
])
# 1: a block per group; 6000: blocks of 2, 2, 1 groups in the first case (2880 bytes of output per group),
# of 4 and 1 in the third (1280)
@pytest.mark.parametrize("block_bytes", [None, 1, 6000])
# multiplier 1 on these small maps runs channels-last unless that path is switched off (max pixels 0)
@pytest.mark.parametrize(("multiplier", "channels_last_max"), [(2, None), (1, None), (1, 0)])
def test_depthwise_conv_matches_its_definition(monkeypatch, strides, dilations, pads, block_bytes, multiplier,
                                               channels_last_max) -> None:
    """y[n, g*m + k, r, q] = sum over (i, j) of w[g*m + k, 0, i, j] * padded x[n, g, r*sh + i*dh, q*sw + j*dw]."""
    from cnncalc.ops import conv as conv_module

    if block_bytes is not None:
        monkeypatch.setattr(conv_module, "DEPTHWISE_BLOCK_BYTES", block_bytes)
    if channels_last_max is not None:
        monkeypatch.setattr(conv_module, "DEPTHWISE_CHANNELS_LAST_MAX_PIXELS", channels_last_max)
    channels_last = []
    original = conv_module.Conv._depthwise_channels_last

    def counted(self, *args):
        channels_last.append(args)
        return original(self, *args)

    monkeypatch.setattr(conv_module.Conv, "_depthwise_channels_last", counted)
    groups = 5
    op = OPS["Conv"]((3, 3), groups, groups * multiplier, strides=strides, dilations=dilations, pads=pads,
                     group=groups, bias=False)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, groups, 9, 8))
    w = rng.standard_normal((groups * multiplier, 1, 3, 3))
    got = op.forward([x, w])
    (sh, sw), (dh, dw) = strides, dilations
    xp = pad_images(x, pads)
    ho = (xp.shape[2] - 2 * dh - 1) // sh + 1
    wo = (xp.shape[3] - 2 * dw - 1) // sw + 1
    expected = np.zeros((2, groups * multiplier, ho, wo))
    for out_channel in range(groups * multiplier):
        for r in range(ho):
            for q in range(wo):
                window = xp[:, out_channel // multiplier, r * sh : r * sh + 2 * dh + 1 : dh,
                            q * sw : q * sw + 2 * dw + 1 : dw]
                expected[:, out_channel, r, q] = (window * w[out_channel, 0]).sum(axis=(1, 2))
    np.testing.assert_allclose(got.out, expected, rtol=1e-12, atol=1e-12)
    assert got.macs == expected.size * 9  # one multiply-add per kernel position and output, as the analysis counts
    assert bool(channels_last) == (multiplier == 1 and channels_last_max is None)  # 2 * Ho * Wo <= 784 pixels


def test_depthwise_backward_is_the_same_after_a_channels_last_forward(monkeypatch) -> None:
    # backward reads the padded input the forward kept; both forward paths must keep the same one
    from cnncalc.ops import conv as conv_module

    op = OPS["Conv"]((3, 3), 6, 6, strides=(2, 2), pads=(1, 0, 1, 1), group=6, bias=False)
    rng = np.random.default_rng(5)
    x, w = rng.standard_normal((2, 6, 9, 8)), rng.standard_normal((6, 1, 3, 3))
    grad_out = rng.standard_normal(op.forward([x, w]).out.shape)
    grads = {}
    for limit in (784, 0):  # channels-last, then the blocked path
        monkeypatch.setattr(conv_module, "DEPTHWISE_CHANNELS_LAST_MAX_PIXELS", limit)
        grads[limit] = op.backward(grad_out, [x, w], op.forward([x, w]))
    for last, blocked in zip(grads[784], grads[0], strict=True):
        np.testing.assert_array_equal(last, blocked)
