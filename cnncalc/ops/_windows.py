"""Strided window views shared by convolution and pooling kernels (no Python loops over pixels)."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
else:
    from .._numpy import np

Pads = tuple[int, int, int, int]  # ONNX order: top, left, bottom, right


def pad_images(x: np.ndarray, pads: Pads, value: float = 0.0) -> np.ndarray:
    """Pad the two spatial axes of an NCHW batch; returns x itself when there is nothing to pad.

    Fills only the border and copies the image once (np.pad takes about a third longer on large batches).
    """
    top, left, bottom, right = pads
    if not (top or left or bottom or right):
        return x
    h, w = x.shape[2], x.shape[3]
    xp = empty_in_same_order(x, (h + top + bottom, w + left + right))  # channel-major stays so: im2col reads it faster
    xp[:, :, :top] = value
    xp[:, :, top + h :] = value
    xp[:, :, top : top + h, :left] = value
    xp[:, :, top : top + h, left + w :] = value
    xp[:, :, top : top + h, left : left + w] = x
    return xp


def empty_in_same_order(x: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """An empty NCHW batch of x's N and C with spatial size hw, laid out channel-major when x is (as Conv returns).

    Keeping the order lets the next kernel read long contiguous runs instead of a transposed view.
    """
    n, c = x.shape[0], x.shape[1]
    if x.strides[1] > x.strides[0]:
        return np.empty((c, n, *hw), dtype=x.dtype).transpose(1, 0, 2, 3)
    return np.empty((n, c, *hw), dtype=x.dtype)


def window_view(
    xp: np.ndarray,
    kernel: tuple[int, int],
    strides: tuple[int, int],
    dilations: tuple[int, int],
    out_hw: tuple[int, int],
) -> np.ndarray:
    """A read-only (N, C, Ho, Wo, kh, kw) view of every window of a padded batch, without copying."""
    (kh, kw), (sh, sw), (dh, dw) = kernel, strides, dilations
    span_h, span_w = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    view = np.lib.stride_tricks.sliding_window_view(xp, (span_h, span_w), axis=(2, 3))
    return view[:, :, ::sh, ::sw, ::dh, ::dw][:, :, : out_hw[0], : out_hw[1]]


def im2col(
    x: np.ndarray,
    kernel: tuple[int, int],
    strides: tuple[int, int],
    dilations: tuple[int, int],
    pads: Pads,
    out_hw: tuple[int, int],
) -> tuple[np.ndarray, tuple[int, ...]]:
    """Columns (C*kh*kw, N*Ho*Wo) of a batch for convolution as one matmul, and the padded shape.

    Rows run over (c, i, j) as a (Cout, Cin, kh, kw) weight flattens; columns over (n, ho, wo), so
    W(Cout, K) @ cols covers the whole batch in one BLAS call. A 1x1 stride-1 unpadded kernel needs
    no copy when the batch is laid out channel-major (as this kernel's own outputs are) or has one sample.
    Other kernels copy one block per kernel position (small same-size maps: one shifted run per channel;
    tiny batches: one strided copy of all the windows); strided kernels with many taps go by stride phase.
    """
    n, c, h, w = x.shape
    (ho, wo), (kh, kw) = out_hw, kernel
    if (kh, kw) == (1, 1) and not any(pads):
        # every pixel (or every s-th) is its own column
        picked = x[:, :, :: strides[0], :: strides[1]][:, :, :ho, :wo]
        return picked.transpose(1, 0, 2, 3).reshape(c, n * ho * wo), x.shape
    if kh * kw >= 4 * strides[0] * strides[1] > 4:
        return _im2col_by_phase(x, kernel, strides, dilations, pads, out_hw)
    if (strides == (1, 1) and (ho, wo) == (h, w) and w <= SHIFTED_RUNS_MAX_WIDTH
            and x.transpose(1, 0, 2, 3).flags.c_contiguous):
        return _im2col_by_shifted_runs(x, kernel, dilations, pads)
    if c * n * ho * wo <= WINDOW_COPY_MAX_TAP_VALUES:
        return _im2col_by_window_copy(x, kernel, strides, dilations, pads, out_hw)
    return _im2col_by_taps(x, kernel, strides, dilations, pads, out_hw)


#: Columns whose kernel positions copy at most this many values each come from one strided copy of the
#: padded batch instead of one copy per kernel position, where NumPy's per-call cost dominates: LeNet-5's
#: 5x5 convs (600-784 values per position at batch 1) took 22-27 us by position and 9-12 us in one copy,
#: 55-79 -> 40-64 us at batch 8; a 3x3 conv on 28x28x32 (25,000 per position) was slower (49 -> 66 us).
WINDOW_COPY_MAX_TAP_VALUES = 8192


#: Maps at most this wide get their columns by `_im2col_by_shifted_runs`. NumPy copies a block row by row,
#: and rows of 7-28 values are dominated by per-row overhead: at batch 8 the 3x3 layers' columns took
#: 1.1 -> 0.4 ms (7x7x512), 1.6 -> 0.9 ms (14x14x256), 2.9 -> 2.7 ms (28x28x128). At 56 the two were
#: even in isolation and the shifted runs 1-2% faster in ResNet-18 at batch 8; at VGG's 112 and 224
#: they were slower (VGG-16 at batch 1: 5% with no limit).
SHIFTED_RUNS_MAX_WIDTH = 56


def _im2col_by_shifted_runs(
    x: np.ndarray,
    kernel: tuple[int, int],
    dilations: tuple[int, int],
    pads: Pads,
) -> tuple[np.ndarray, tuple[int, ...]]:
    """im2col of a stride-1 kernel whose output has the input's size, from a channel-major batch.

    Output (n, r, q) of kernel position (i, j) reads input (n, r + di, q + dj), di = i*dh - top,
    dj = j*dw - left: in each channel's flat (n, h, w) run that is the same run shifted by di*W + dj,
    so every kernel position is one long copy per channel. Where a window reads padding the shift
    wraps into the neighbouring row or sample, or past either end of the batch; those outputs are
    exactly the zero frames of `_tap_plan`, written after the copies.
    """
    n, c, h, w = x.shape
    (kh, kw), (dh, dw) = kernel, dilations
    top, left, bottom, right = pads
    length = n * h * w
    flat_x = x.transpose(1, 0, 2, 3).reshape(c, length)  # a view: the caller checked the layout
    cols = np.empty((c, kh, kw, n, h, w), dtype=x.dtype)
    flat_cols = cols.reshape(c, kh, kw, length)
    for i in range(kh):
        for j in range(kw):
            shift = (i * dh - top) * w + j * dw - left
            lo, hi = max(0, -shift), min(length, length - shift)  # outputs that read inside the batch
            if hi > lo:
                flat_cols[:, i, j, lo:hi] = flat_x[:, lo + shift : hi + shift]
    zero_rows, zero_columns, _ = _tap_plan(h, w, kernel, (1, 1), dilations, pads, (h, w))
    for i, rows in zero_rows:
        cols[:, i, :, :, rows] = 0
    for j, columns in zero_columns:
        cols[:, :, j, :, :, columns] = 0
    return cols.reshape(c * kh * kw, length), (n, c, h + top + bottom, w + left + right)


def _im2col_by_window_copy(
    x: np.ndarray,
    kernel: tuple[int, int],
    strides: tuple[int, int],
    dilations: tuple[int, int],
    pads: Pads,
    out_hw: tuple[int, int],
) -> tuple[np.ndarray, tuple[int, ...]]:
    """im2col as one copy of a (C, kh, kw, N, Ho, Wo) strided view of the padded batch: few NumPy calls."""
    n, c = x.shape[:2]
    (kh, kw), (sh, sw), (dh, dw), (ho, wo) = kernel, strides, dilations, out_hw
    xp = pad_images(x, pads)
    step_n, step_c, step_h, step_w = xp.strides
    windows = np.lib.stride_tricks.as_strided(
        xp, (c, kh, kw, n, ho, wo), (step_c, dh * step_h, dw * step_w, step_n, sh * step_h, sw * step_w),
        writeable=False)
    return windows.reshape(c * kh * kw, n * ho * wo), xp.shape


def _im2col_by_taps(
    x: np.ndarray,
    kernel: tuple[int, int],
    strides: tuple[int, int],
    dilations: tuple[int, int],
    pads: Pads,
    out_hw: tuple[int, int],
) -> tuple[np.ndarray, tuple[int, ...]]:
    """im2col as one block copy per kernel position, straight from the unpadded batch.

    Kernel position (i, j) reads, for output (r, q), input pixel (r*sh + i*dh - top, q*sw + j*dw - left):
    one rectangle of outputs reads inside the image (a strided block of x) and the frame around it
    reads padding (zeros). Writing those rectangles skips the padded copy of the input that a window
    view needs; in the network this made ResNet-18 about 4% faster at batch 1 and 7-10% at batch 8
    than copying a window view.
    """
    n, c, h, w = x.shape
    (ho, wo), (kh, kw) = out_hw, kernel
    zero_rows, zero_columns, copies = _tap_plan(h, w, kernel, strides, dilations, pads, out_hw)
    cols = np.empty((c, kh, kw, n, ho, wo), dtype=x.dtype)
    for i, rows in zero_rows:  # outputs whose kernel row i falls in the top or bottom padding, for every j
        cols[:, i, :, :, rows] = 0
    for j, columns in zero_columns:  # ... whose kernel column j falls in the left or right padding, for every i
        cols[:, :, j, :, :, columns] = 0
    channel_major = x.transpose(1, 0, 2, 3)
    for i, j, out_rows, out_columns, in_rows, in_columns in copies:
        cols[:, i, j, :, out_rows, out_columns] = channel_major[:, :, in_rows, in_columns]
    top, left, bottom, right = pads
    return cols.reshape(c * kh * kw, n * ho * wo), (n, c, h + top + bottom, w + left + right)


TapCopy = tuple[int, int, slice, slice, slice, slice]


@functools.lru_cache(maxsize=512)
def _tap_plan(h: int, w: int, kernel: tuple[int, int], strides: tuple[int, int], dilations: tuple[int, int],
              pads: Pads, out_hw: tuple[int, int]
              ) -> tuple[list[tuple[int, slice]], list[tuple[int, slice]], list[TapCopy]]:
    """The slices `_im2col_by_taps` writes, worked out once per layer geometry (a network repeats them)."""
    (ho, wo), (kh, kw), (sh, sw), (dh, dw) = out_hw, kernel, strides, dilations
    top, left = pads[0], pads[1]
    row_ranges = [_inside(ho, h, i * dh - top, sh) for i in range(kh)]
    column_ranges = [_inside(wo, w, j * dw - left, sw) for j in range(kw)]
    zero_rows = [(i, part) for i, (r0, r1) in enumerate(row_ranges)
                 for part, empty in ((slice(0, r0), r0 == 0), (slice(r1, ho), r1 == ho)) if not empty]
    zero_columns = [(j, part) for j, (q0, q1) in enumerate(column_ranges)
                    for part, empty in ((slice(0, q0), q0 == 0), (slice(q1, wo), q1 == wo)) if not empty]
    copies = []
    for i, (r0, r1) in enumerate(row_ranges):
        for j, (q0, q1) in enumerate(column_ranges):
            if r1 > r0 and q1 > q0:
                first_row, first_column = r0 * sh + i * dh - top, q0 * sw + j * dw - left
                copies.append((i, j, slice(r0, r1), slice(q0, q1),
                               slice(first_row, first_row + (r1 - r0 - 1) * sh + 1, sh),
                               slice(first_column, first_column + (q1 - q0 - 1) * sw + 1, sw)))
    return zero_rows, zero_columns, copies


def _inside(out_len: int, in_len: int, offset: int, stride: int) -> tuple[int, int]:
    """The outputs o in [lo, hi) whose input index o * stride + offset lies inside [0, in_len)."""
    lo = min(out_len, max(0, -(offset // stride)))  # ceil(-offset / stride)
    hi = max(lo, min(out_len, -((offset - in_len) // stride)))  # ceil((in_len - offset) / stride)
    return lo, hi


def _im2col_by_phase(
    x: np.ndarray,
    kernel: tuple[int, int],
    strides: tuple[int, int],
    dilations: tuple[int, int],
    pads: Pads,
    out_hw: tuple[int, int],
) -> tuple[np.ndarray, tuple[int, ...]]:
    """im2col for a strided kernel that reads each pixel many times (a 7x7 stride-2 stem: 12 reads per pixel).

    The window view of a strided conv steps by the stride inside each row, and NumPy copies such rows
    far slower than contiguous ones; splitting the padded batch into its stride phases first (one copy
    of the input) makes every kernel position a block of contiguous rows. On the ResNet stem this
    halves the im2col time; for 3x3 stride 2 the extra copy costs more than it saves.
    """
    n, c = x.shape[0], x.shape[1]
    (ho, wo), (kh, kw), (sh, sw), (dh, dw) = out_hw, kernel, strides, dilations
    planes, xp, (hq, wq) = phase_planes(x, pads, strides)
    cols = np.empty((c, kh, kw, n, ho, wo), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            # kernel position (i, j) reads padded pixel (r*sh + i*dh, q*sw + j*dw): a phase at a fixed offset
            plane = planes[(i * dh) % sh, (j * dw) % sw].reshape(n, c, hq, wq)
            top, left = i * dh // sh, j * dw // sw
            cols[:, i, j] = plane[:, :, top : top + ho, left : left + wo].transpose(1, 0, 2, 3)
    return cols.reshape(c * kh * kw, n * ho * wo), xp.shape


def phase_planes(x: np.ndarray, pads: Pads,
                 strides: tuple[int, int]) -> tuple[dict[tuple[int, int], np.ndarray], np.ndarray, tuple[int, int]]:
    """The padded batch split into its sh * sw stride phases, each flattened per channel to (N, C, Hq * Wq).

    Phase (a, b) holds the padded rows a, a + sh, ... and columns b, b + sw, ...; the padding is extended
    at the bottom and right so that every phase is Hq x Wq. A strided window then reads, for each kernel
    position, one phase at a fixed offset. Also returns the padded batch itself (a view) for backward.
    """
    n, c, h, w = x.shape
    top, left, bottom, right = pads
    sh, sw = strides
    hp, wp = h + top + bottom, w + left + right
    hq, wq = -(-hp // sh), -(-wp // sw)  # ceil: the phase planes' size
    extended = pad_images(x, (top, left, bottom + hq * sh - hp, right + wq * sw - wp))
    if (sh, sw) == (1, 1):  # a view when each plane is contiguous, whatever the order of the planes
        planes = {(0, 0): extended.reshape(n, c, hq * wq)}
    else:  # one strided copy per phase, together the size of the input
        planes = {(a, b): np.ascontiguousarray(extended[:, :, a::sh, b::sw]).reshape(n, c, hq * wq)
                  for a in range(sh) for b in range(sw)}
    return planes, extended[:, :, :hp, :wp], (hq, wq)


#: MaxPool reduces its input a few channels at a time, about this many bytes of input per block, so that
#: the separable passes' intermediates stay in cache instead of going to memory and back. ResNet's stem
#: pool at batch 8 (25 MiB in) took 9.6-10.6 ms in one pass and 6.0-6.5 ms in 2 MiB blocks (128 KiB to
#: 1 MiB gave 6.3-7.2); at batch 1 (3 MiB in) blocks cost 0.02-0.05 ms of 0.43.
WINDOW_MAX_BLOCK_BYTES = 2 << 20


def window_max(x: np.ndarray, kernel: tuple[int, int], strides: tuple[int, int], pads: Pads,
               out_hw: tuple[int, int]) -> np.ndarray:
    """The max of every window of an NCHW batch padded with -inf, computed separably with long contiguous passes.

    Works through the channels in blocks of about `WINDOW_MAX_BLOCK_BYTES` of input (see `_block_max`).
    The result has the input's memory order, so that a channel-major conv output stays channel-major.
    """
    n, c, h, w = x.shape
    out = empty_in_same_order(x, out_hw)
    channels = max(1, WINDOW_MAX_BLOCK_BYTES // max(1, n * h * w * x.itemsize))
    for first in range(0, c, channels):
        block = slice(first, first + channels)
        _block_max(x[:, block], kernel, strides, pads, out[:, block])
    return out


def _block_max(x: np.ndarray, kernel: tuple[int, int], strides: tuple[int, int], pads: Pads,
               out: np.ndarray) -> None:
    """`window_max` of one block of channels, written into `out`.

    First the max over kh rows, only for the Ho rows where windows start, read in place from the
    unpadded batch (a kernel row that would read the top or bottom padding is skipped for those
    output rows). Then, on that result flattened to one vector, the max over kw neighbours is the max
    of kw shifted slices (a window running past a row's end gives a value no output reads), and one
    strided pick per window; the few output columns whose windows overlap the left or right padding
    are reduced on their own. NumPy loops over short strided rows are several times slower than these
    passes, and not padding the input saves a pass over it (ResNet's stem pool at batch 8: 23 -> 13 ms).
    """
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ho, wo) = kernel, strides, out.shape[2:]
    top, left = pads[0], pads[1]
    down = np.empty((n, c, ho, w), dtype=x.dtype)  # C order: written in place below
    filled = False
    for i in range(kh):
        r0, r1 = _inside(ho, h, i - top, sh)  # output rows whose kernel row i reads an image row
        if r1 == r0:
            continue
        rows = x[:, :, r0 * sh + i - top : (r1 - 1) * sh + i - top + 1 : sh]
        if filled:
            np.maximum(down[:, :, r0:r1], rows, out=down[:, :, r0:r1])
        else:  # the first kernel row that reads the image sets its rows; the rest (only padding) are -inf
            down[:, :, :r0] = -np.inf
            down[:, :, r1:] = -np.inf
            down[:, :, r0:r1] = rows
            filled = True
    if not filled:
        down[...] = -np.inf
    q0, q1 = _inside(wo, w - kw + 1, -left, sw)  # outputs whose whole window lies inside the image
    if q1 > q0:
        across = _shifted_max(down.reshape(-1), kw, 1).reshape(down.shape)
        first = q0 * sw - left
        out[..., q0:q1] = across[..., first : first + (q1 - q0 - 1) * sw + 1 : sw]
    for q in (*range(q0), *range(q1, wo)):  # windows that overlap the padding: max over their image columns
        begin, end = max(0, q * sw - left), min(w, q * sw - left + kw)
        if end > begin:
            out[..., q] = down[..., begin]
            for column in range(begin + 1, end):  # np.max over a short last axis is ~15x slower
                np.maximum(out[..., q], down[..., column], out=out[..., q])
        else:
            out[..., q] = -np.inf


def _shifted_max(v: np.ndarray, k: int, step: int) -> np.ndarray:
    """out[t] = max(v[t], v[t + step], ..., v[t + (k - 1) * step]) wherever all exist; the tail keeps v."""
    if k == 1:
        return v
    length = v.size - (k - 1) * step
    out = np.empty_like(v)
    out[length:] = v[length:]
    np.maximum(v[:length], v[step : step + length], out=out[:length])
    for i in range(2, k):
        np.maximum(out[:length], v[i * step : i * step + length], out=out[:length])
    return out


def add_windows(
    grad_windows: np.ndarray,
    padded_hw: tuple[int, int],
    strides: tuple[int, int],
    dilations: tuple[int, int],
) -> np.ndarray:
    """Inverse of `window_view` for gradients: sum each window's gradient back onto the padded image.

    Loops over kernel positions only (kh * kw slices), each a strided add over the whole batch.
    """
    n, c, ho, wo, kh, kw = grad_windows.shape
    (sh, sw), (dh, dw) = strides, dilations
    out = np.zeros((n, c, padded_hw[0], padded_hw[1]), dtype=grad_windows.dtype)
    for i in range(kh):
        for j in range(kw):
            top, left = i * dh, j * dw
            out[:, :, top : top + sh * (ho - 1) + 1 : sh, left : left + sw * (wo - 1) + 1 : sw] += (
                grad_windows[:, :, :, :, i, j]
            )
    return out


def crop_pads(xp: np.ndarray, pads: Pads) -> np.ndarray:
    """Remove padding added by `pad_images`."""
    top, left, bottom, right = pads
    h, w = xp.shape[2], xp.shape[3]
    return xp[:, :, top : h - bottom, left : w - right]


def kernel_slices(
    kernel: tuple[int, int], strides: tuple[int, int], out_hw: tuple[int, int]
) -> Iterator[tuple[slice, slice]]:
    """For each kernel position, the strided (rows, cols) slice of the padded image it reads in every window.

    Pooling kernels loop over these kh * kw slices, each a whole-batch array operation: cheaper than
    reducing a 6-D window view, and backward can add into the same slices.
    """
    (kh, kw), (sh, sw), (ho, wo) = kernel, strides, out_hw
    for i in range(kh):
        for j in range(kw):
            yield slice(i, i + sh * (ho - 1) + 1, sh), slice(j, j + sw * (wo - 1) + 1, sw)
