"""Strided window views shared by convolution and pooling kernels (no Python loops over pixels)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

Pads = tuple[int, int, int, int]  # ONNX order: top, left, bottom, right


def pad_images(x: np.ndarray, pads: Pads, value: float = 0.0) -> np.ndarray:
    """Pad the two spatial axes of an NCHW batch; returns x itself when there is nothing to pad."""
    top, left, bottom, right = pads
    if not (top or left or bottom or right):
        return x
    return np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=value)


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
    view = sliding_window_view(xp, (span_h, span_w), axis=(2, 3))
    return view[:, :, ::sh, ::sw, ::dh, ::dw][:, :, : out_hw[0], : out_hw[1]]


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
