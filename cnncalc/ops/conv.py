"""Conv: 2-D convolution, written `KhxKwxCinxCout(p=.., s=.., d=.., g=.. | dw, b=0)` in a spec."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
else:
    from .._numpy import np

from ..errors import ShapeError, UnsupportedOpError
from ._windows import add_windows, crop_pads, im2col, pad_images, phase_planes, window_view
from .base import Example, Forward, Op, Shape, SpecArgs, WeightSpec, Window, execution, pair_text, spatial, window_out

#: im2col columns larger than this (about the development machine's last-level cache) are built and
#: multiplied COLUMN_CHUNK_BYTES at a time (at least one sample) in inference; when a batch is split
#: over threads, each part gets its share of both (ResNet-18 and ResNet-50 at batch 8 split in two ran
#: 1-2% faster with 16 and 4 MiB per part than with 32 and 8)
COLUMNS_CHUNKED_ABOVE = 32 * 2**20
COLUMN_CHUNK_BYTES = 8 * 2**20
#: depthwise convs make their kh*kw multiply-add passes over about this many bytes of output channels at a
#: time, so that the passes hit the cache instead of memory: MobileNetV2 at batch 8 ran 14-19% faster with
#: 256 KiB to 2 MiB blocks than in whole-batch passes (in-process A/Bs, 30 pairs each); at batch 1, -1 to +2%
DEPTHWISE_BLOCK_BYTES = 2**20
#: depthwise convs (one output channel per input channel) with at most this many output pixels (N*Ho*Wo)
#: run channels-last; see `_depthwise_channels_last`
DEPTHWISE_CHANNELS_LAST_MAX_PIXELS = 784


@dataclass(frozen=True)
class Conv(Op):
    """Convolution with ONNX attribute names; Cin is the full input channel count, also with groups."""

    kernel_shape: tuple[int, int]
    in_channels: int
    out_channels: int
    strides: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)  # top, left, bottom, right
    dilations: tuple[int, int] = (1, 1)
    group: int = 1
    bias: bool = True

    spec_names = ("Conv",)
    cost_class = "conv"

    # ---- construction --------------------------------------------------------
    @classmethod
    def from_spec(cls, args: SpecArgs, in_shapes: list[Shape]) -> Op:
        kh, kw, cin, cout = args.dims
        strides = args.pair("s", "stride", default=(1, 1))  # `s=2` or per axis `s=2x1` (height x width)
        dilations = args.pair("d", "dilation", default=(1, 1))
        depthwise = args.flag("dw", "depthwise")
        group = cin if depthwise else args.integer("g", "groups", "group", default=1, minimum=1)
        bias = args.switch("b", "bias", default=True, meaning="bias")
        pads = read_pads(args, in_shapes, (kh, kw), strides, dilations, "conv")
        if "bias" in args.defaults and args.raw("b", "bias") is None:
            bias = bool(args.defaults["bias"])
        args.finish("Conv", "p (int or same), s and d (2 or 2x1), g or dw, b (0 or 1)")
        if kh < 1 or kw < 1 or cin < 1 or cout < 1:
            raise args.error(None, f"conv {kh}x{kw}x{cin}x{cout} has a zero size",
                             hint="every size is at least 1")
        return cls((kh, kw), cin, cout, strides, pads, dilations, group, bias)

    @classmethod
    def from_onnx(cls, attrs: dict[str, Any], in_shapes: list[Shape], weight_shapes: list[Shape]) -> Op:
        w = weight_shapes[0]
        kernel = tuple(attrs.get("kernel_shape", w[2:]))
        strides = tuple(attrs.get("strides", (1, 1)))
        dilations = tuple(attrs.get("dilations", (1, 1)))
        for name, values, count in (("kernel_shape", kernel, 2), ("strides", strides, 2), ("dilations", dilations, 2),
                                    ("pads", tuple(attrs.get("pads", (0, 0, 0, 0))), 4)):
            if len(values) != count:  # a 2-D conv has one per spatial axis, pads one per side
                raise UnsupportedOpError(f"Conv {name} {list(values)} must have {count} values for a 2-D conv",
                                         hint="the file is damaged, or the conv is not 2-D")
        auto_pad = attrs.get("auto_pad", "NOTSET")
        if isinstance(auto_pad, bytes):
            auto_pad = auto_pad.decode()
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            pads = same_pads(in_shapes[0], kernel, strides, dilations, upper=auto_pad == "SAME_UPPER")  # type: ignore[arg-type]
        else:
            pads = tuple(attrs.get("pads", (0, 0, 0, 0)))
        return cls(kernel, in_shapes[0][0], w[0], strides, pads, dilations,  # type: ignore[arg-type]
                   int(attrs.get("group", 1)), len(weight_shapes) > 1)

    def onnx_attributes(self) -> dict[str, Any]:
        return {"kernel_shape": list(self.kernel_shape), "strides": list(self.strides),
                "pads": list(self.pads), "dilations": list(self.dilations), "group": self.group}

    def describe(self) -> str:
        kh, kw = self.kernel_shape
        options = []
        top, left, bottom, right = self.pads
        if self.pads != (0, 0, 0, 0):
            options.append(f"p={top}" if len(set(self.pads)) == 1 else f"p={top},{left},{bottom},{right}")
        if self.strides != (1, 1):
            options.append(f"s={pair_text(self.strides)}")
        if self.dilations != (1, 1):
            options.append(f"d={pair_text(self.dilations)}")
        if self.group == self.in_channels and self.group > 1:
            options.append("dw")
        elif self.group != 1:
            options.append(f"g={self.group}")
        if not self.bias:
            options.append("b=0")
        suffix = f"({','.join(options)})" if options else ""
        return f"{kh}x{kw}x{self.in_channels}x{self.out_channels}{suffix}"

    def spec_name(self) -> str:
        return "DWConv" if self.group == self.in_channels and self.group > 1 else "Conv"

    def variations(self) -> Iterator[tuple[str, Op]]:
        """Padding changes first (cheapest to accept), then stride changes."""
        kh = self.kernel_shape[0]
        for p in range(0, kh + 1):
            if (p, p, p, p) != self.pads:
                yield f"p={p}", dataclasses.replace(self, pads=(p, p, p, p))
        for s in (1, 2, 3, 4):
            if (s, s) != self.strides:
                yield f"s={s}", dataclasses.replace(self, strides=(s, s))
        for s in (1, 2, 3, 4):
            for p in range(0, kh + 1):
                yield f"p={p},s={s}", dataclasses.replace(self, pads=(p, p, p, p), strides=(s, s))

    # ---- analysis ------------------------------------------------------------
    def output_shape(self, in_shapes: list[Shape]) -> Shape:
        c, h, w = spatial(in_shapes[0], "Conv")
        if c != self.in_channels:
            raise ShapeError(
                f"conv {self.describe()} expects Cin={self.in_channels} "
                f"but the incoming tensor has {c} channels",
                hint=f"write {self.kernel_shape[0]}x{self.kernel_shape[1]}x{c}x{self.out_channels}",
            )
        if min(*self.kernel_shape, *self.strides, *self.dilations, self.group) < 1 or min(self.pads) < 0:
            raise ShapeError(f"conv {self.describe()} has a kernel, stride, dilation or group below 1, "
                             "or a negative pad",
                             hint="kernel, stride, dilation and group are at least 1, pads 0 or more")
        if self.in_channels % self.group or self.out_channels % self.group:
            raise ShapeError(
                f"groups g={self.group} must divide Cin={self.in_channels} and Cout={self.out_channels}",
                hint="choose g as a common divisor of both channel counts",
            )
        top, left, bottom, right = self.pads
        kh_eff, kw_eff = self._effective_kernel()
        if kh_eff > h + top + bottom or kw_eff > w + left + right:
            raise ShapeError(
                f"conv kernel {kh_eff}x{kw_eff} is larger than its padded input "
                f"{h + top + bottom}x{w + left + right}",
                hint="use a smaller kernel, more padding, or fewer downsampling layers before it",
            )
        ho = window_out(h, kh_eff, self.strides[0], top, bottom)
        wo = window_out(w, kw_eff, self.strides[1], left, right)
        return (self.out_channels, ho, wo)

    def _effective_kernel(self) -> tuple[int, int]:
        # k_eff = d * (k - 1) + 1
        return tuple(d * (k - 1) + 1 for k, d in zip(self.kernel_shape, self.dilations, strict=False))  # type: ignore[return-value]

    def weights(self, in_shapes: list[Shape]) -> list[WeightSpec]:
        kh, kw = self.kernel_shape
        specs = [WeightSpec("W", (self.out_channels, self.in_channels // self.group, kh, kw), init="he")]
        if self.bias:
            specs.append(WeightSpec("B", (self.out_channels,)))
        return specs

    def macs(self, in_shapes: list[Shape], out_shape: Shape) -> int:
        # Cout * Ho * Wo outputs, each (Cin / g) * Kh * Kw multiply-accumulates
        kh, kw = self.kernel_shape
        cout, ho, wo = out_shape
        return cout * ho * wo * (self.in_channels // self.group) * kh * kw

    def flops(self, in_shapes: list[Shape], out_shape: Shape) -> int:
        # 2 per MAC, plus one add per output for the bias
        bias_adds = out_shape[0] * out_shape[1] * out_shape[2] if self.bias else 0
        return 2 * self.macs(in_shapes, out_shape) + bias_adds

    def window(self, in_shapes: list[Shape]) -> Window | None:
        return Window(self._effective_kernel(), self.strides, (self.pads[0], self.pads[1]))

    def kernel_class(self) -> str:
        """What libraries run: Winograd for 3x3 stride-1 dense convs, a memory-bound kernel for depthwise."""
        if self.group == self.in_channels and self.group > 1:
            return "depthwise"
        if self.kernel_shape == (3, 3) and self.strides == (1, 1) and self.dilations == (1, 1) and self.group == 1:
            return "conv_winograd"
        return "conv"

    # ---- NumPy ---------------------------------------------------------------
    def forward(self, inputs: list[np.ndarray], training: bool = False,
                rng: np.random.Generator | None = None) -> Forward:
        """im2col through a strided view, then one BLAS matmul per group; depthwise as kh*kw multiply-adds."""
        x, w = inputs[0], inputs[1]
        n = x.shape[0]
        _, ho, wo = self.output_shape([tuple(x.shape[1:])])
        if self.in_channels == self.group and self.group > 1:
            if self.out_channels == self.group and n * ho * wo <= DEPTHWISE_CHANNELS_LAST_MAX_PIXELS:
                y, cache, macs = self._depthwise_channels_last(x, w, (ho, wo))
            else:
                y, cache, macs = self._depthwise_forward(x, w, (ho, wo))
        else:
            per_sample = self.in_channels * self.kernel_shape[0] * self.kernel_shape[1] * ho * wo * x.itemsize
            samples = n  # the whole batch in one BLAS call per group, its columns kept for backward
            share = execution.parts  # parts of a split batch running at once share the cache
            if not training and per_sample * n > COLUMNS_CHUNKED_ABOVE // share and not self._columns_are_a_view():
                # columns larger than the cache: a few samples at a time
                samples = max(1, COLUMN_CHUNK_BYTES // share // per_sample)
            w_cols = w.reshape(self.group, self.out_channels // self.group, -1)  # (g, og, K)
            out, macs, columns = self._matmul_by_chunks(x, w_cols, (ho, wo), samples)
            cache = columns if samples >= n else None  # chunked: backward recomputes the columns
            # NCHW indexing over channel-major memory: no copy; the next conv reads it as columns for free
            y = out.reshape(self.out_channels, n, ho, wo).transpose(1, 0, 2, 3)
        if self.bias:
            y += inputs[2].reshape(1, -1, 1, 1)  # y is the kernel's own new array
        return Forward(y, cache=cache, macs=macs)

    def _columns_are_a_view(self) -> bool:
        """A 1x1 stride-1 unpadded conv reads its input as columns without copying (see `im2col`)."""
        return self.kernel_shape == (1, 1) and self.strides == (1, 1) and not any(self.pads)

    def _matmul_by_chunks(self, x: np.ndarray, w_cols: np.ndarray, out_hw: tuple[int, int],
                          samples: int) -> tuple[np.ndarray, int, tuple[np.ndarray, tuple[int, ...]]]:
        """im2col and one matmul per group for `samples` samples at a time, each product written into its slice.

        Returns the (g, og, N*Ho*Wo) product, the MACs, and the last chunk's columns and padded shape
        (the whole batch's when one chunk covers it). At batch 8 the columns of ResNet's 56x56 layers
        take 58 MiB, more than the last-level cache, so one copy for the whole batch goes to memory and
        back; per sample (7 MiB) they stay in cache for the matmul: ResNet-18 at batch 8 ran 3-8% faster.
        """
        n = x.shape[0]
        g, og, _ = w_cols.shape  # (g, og, K), K = Cin/g * kh * kw
        hw = out_hw[0] * out_hw[1]
        out = np.empty((g, og, n * hw), dtype=x.dtype)
        macs = 0
        for first in range(0, n, samples):
            last = min(n, first + samples)
            cols, padded_shape = im2col(x[first:last], self.kernel_shape, self.strides, self.dilations, self.pads,
                                        out_hw)
            cols = cols.reshape(g, -1, (last - first) * hw)  # (g, K, n*Ho*Wo)
            np.matmul(w_cols, cols, out=out[:, :, first * hw : last * hw])
            # g matrix products of (og x K) by (K x n*Ho*Wo)
            macs += cols.shape[0] * og * cols.shape[1] * cols.shape[2]
        return out, macs, (cols, padded_shape)

    def _depthwise_channels_last(self, x: np.ndarray, w: np.ndarray,
                                 out_hw: tuple[int, int]) -> tuple[np.ndarray, Any, int]:
        """Depthwise on small maps with the channels innermost: per kernel position, one multiply-add of
        every window by a contiguous row of one weight per channel.

        NumPy multiplies by a scalar broadcast along each channel's run without its vector loops (about
        2-3x slower than a contiguous pass on cached data); with the channels last both operands are
        contiguous. Copying into and out of that layout costs a pass each, which the small maps of
        MobileNetV2's later blocks (28x28 and below at batch 1) more than earn back.
        """
        n, c = x.shape[:2]
        (kh, kw), (sh, sw), (dh, dw), (ho, wo) = self.kernel_shape, self.strides, self.dilations, out_hw
        xp = pad_images(x, self.pads)  # kept for backward, as `_depthwise_forward` keeps it
        last = np.ascontiguousarray(xp.transpose(0, 2, 3, 1))  # (N, Hp, Wp, C)
        taps = np.ascontiguousarray(w.reshape(c, kh * kw).T)  # (kh*kw, C): one row per kernel position
        total = np.empty((n, ho, wo, c), dtype=x.dtype)
        term = np.empty_like(total)
        for k in range(kh * kw):
            i, j = divmod(k, kw)
            windows = last[:, i * dh : i * dh + (ho - 1) * sh + 1 : sh, j * dw : j * dw + (wo - 1) * sw + 1 : sw]
            if k == 0:
                np.multiply(windows, taps[0], out=total)
            else:
                np.multiply(windows, taps[k], out=term)
                total += term
        out = np.empty((n, c, ho, wo), dtype=x.dtype)
        out[...] = total.transpose(0, 3, 1, 2)
        return out, (xp,), kh * kw * out.size

    def _depthwise_forward(self, x: np.ndarray, w: np.ndarray,
                           out_hw: tuple[int, int]) -> tuple[np.ndarray, Any, int]:
        """One input channel per group: per kernel position, one multiply-add over the whole batch and every channel.

        The padded image is split into its stride phases (`phase_planes`), so that each kernel position
        reads one long contiguous run of every channel's phase plane; the outputs are computed on the
        plane's full width. NumPy is several times faster on long contiguous runs than on the short
        strided rows of a window view. The kh*kw passes run over blocks of about `DEPTHWISE_BLOCK_BYTES`
        of output, which stay in cache between passes and until the block, its columns past Wo dropped,
        is copied into the result.
        """
        n, g = x.shape[0], self.group
        og = self.out_channels // g
        (kh, kw), (sh, sw), (dh, dw) = self.kernel_shape, self.strides, self.dilations
        ho, wo = out_hw
        planes, xp, (_, wq) = phase_planes(x, self.pads, self.strides)  # each (N, C, Hq * Wq); xp: the padded batch
        length = (ho - 1) * wq + wo  # the flat run that covers every output of a plane
        taps = w.reshape(g, og, kh, kw)
        out = np.empty((n, g * og, ho, wo), dtype=x.dtype)
        groups = max(1, DEPTHWISE_BLOCK_BYTES // (n * og * ho * wq * x.itemsize))
        y_buffer = np.empty((n, min(groups, g), og, ho * wq), dtype=x.dtype)  # a block's outputs on the planes' width
        term_buffer = np.empty((n, min(groups, g), og, length), dtype=x.dtype)
        for first in range(0, g, groups):
            block = slice(first, min(g, first + groups))
            y_block, term = y_buffer[:, : block.stop - first], term_buffer[:, : block.stop - first]
            for i in range(kh):
                for j in range(kw):
                    # tap (i, j) reads padded pixel (r*sh + i*dh, c*sw + j*dw): phase (i*dh % sh, j*dw % sw), shifted
                    plane = planes[(i * dh) % sh, (j * dw) % sw][:, block]
                    start = (i * dh // sh) * wq + j * dw // sw
                    target = y_block[..., :length] if (i, j) == (0, 0) else term
                    np.multiply(plane[:, :, None, start : start + length], taps[None, block, :, i, j, None], out=target)
                    if target is term:
                        y_block[..., :length] += term
            out[:, first * og : block.stop * og] = y_block.reshape(n, -1, ho, wq)[..., :wo]
        macs = kh * kw * out.size  # one multiply-add per kernel position for each output (dropped columns not counted)
        return out, (xp,), macs


    def backward(self, grad_out: np.ndarray, inputs: list[np.ndarray], fwd: Forward) -> list[np.ndarray | None]:
        w = inputs[1]
        if self.in_channels == self.group and self.group > 1:
            grad_x, grad_w = self._depthwise_backward(grad_out, w, fwd.cache[0])
        else:
            n, cout, ho, wo = grad_out.shape
            if fwd.cache is None:  # the forward ran in chunks and kept no columns: build them once here
                cols, padded_shape = im2col(inputs[0], self.kernel_shape, self.strides, self.dilations, self.pads,
                                            (ho, wo))
            else:
                cols, padded_shape = fwd.cache
            cols = cols.reshape(self.group, -1, n * ho * wo)
            g, cin = self.group, self.in_channels
            cg, og = cin // g, cout // g
            kh, kw = self.kernel_shape
            grads = grad_out.transpose(1, 0, 2, 3).reshape(g, og, n * ho * wo)  # channel-major, as the output
            w_cols = w.reshape(g, og, cg * kh * kw)
            # dW = grad (og x N*HoWo) @ cols^T (N*HoWo x K), per group
            grad_w = np.matmul(grads, cols.transpose(0, 2, 1)).reshape(w.shape)
            grad_cols = np.matmul(w_cols.transpose(0, 2, 1), grads)  # (g, K, N*Ho*Wo)
            grad_windows = grad_cols.reshape(cin, kh, kw, n, ho, wo).transpose(3, 0, 4, 5, 1, 2)
            grad_xp = add_windows(grad_windows, (padded_shape[2], padded_shape[3]), self.strides, self.dilations)
            grad_x = crop_pads(grad_xp, self.pads)
        result: list[np.ndarray | None] = [grad_x, grad_w]
        if self.bias:
            result.append(grad_out.sum(axis=(0, 2, 3)))
        return result

    def _depthwise_backward(self, grad_out: np.ndarray, w: np.ndarray,
                            xp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per kernel position: dW from the slice it read, dX by adding the weighted gradient back onto it."""
        n, _, ho, wo = grad_out.shape
        g, og = self.group, self.out_channels // self.group
        kh, kw = self.kernel_shape
        grads = grad_out.reshape(n, g, og, ho, wo)
        taps = w.reshape(g, og, kh, kw)
        view = window_view(xp, self.kernel_shape, self.strides, self.dilations, (ho, wo))
        grad_w = np.empty((g, og, kh, kw), dtype=grad_out.dtype)
        grad_windows = np.empty((n, g, ho, wo, kh, kw), dtype=grad_out.dtype)
        for i in range(kh):
            for j in range(kw):
                grad_w[:, :, i, j] = np.einsum("ngohw,nghw->go", grads, view[:, :, :, :, i, j])
                grad_windows[:, :, :, :, i, j] = np.einsum("ngohw,go->nghw", grads, taps[:, :, i, j])
        grad_xp = add_windows(grad_windows, xp.shape[2:], self.strides, self.dilations)
        return crop_pads(grad_xp, self.pads), grad_w.reshape(w.shape)


def read_pads(args: SpecArgs, in_shapes: list[Shape], kernel: tuple[int, int], strides: tuple[int, int],
              dilations: tuple[int, int], op_name: str) -> tuple[int, int, int, int]:
    """`p=1`, `p=same` or `p=top,left,bottom,right` (convs and pools read padding alike)."""
    found = args.raw("p", "pad", "padding")
    if found is None:
        return (0, 0, 0, 0)
    value, index = found
    if value.lower() == "same":
        spatial(in_shapes[0], op_name)
        return same_pads(in_shapes[0], kernel, strides, dilations)
    try:
        numbers = [int(part) for part in value.split(",")]
    except ValueError:
        raise args.error(index, f"padding p={value!r} is not a whole number or 'same'",
                         hint="write p=1 or p=same") from None
    if len(numbers) not in (1, 4) or min(numbers) < 0:
        raise args.error(index, f"padding p={value!r} must be one or four whole numbers of at least 0",
                         hint="write p=1, p=same or p=top,left,bottom,right")
    return (numbers[0],) * 4 if len(numbers) == 1 else tuple(numbers)  # type: ignore[return-value]


def same_pads(in_shape: Shape, kernel: tuple[int, ...], strides: tuple[int, ...], dilations: tuple[int, ...],
              upper: bool = True) -> tuple[int, int, int, int]:
    """Pads that give ceil(n / s) outputs per axis (TensorFlow/ONNX SAME); the odd pixel goes at the end."""
    begins, ends = [], []
    for size, k, s, d in zip(in_shape[1:3], kernel, strides, dilations, strict=False):
        out = -(-size // s)
        total = max((out - 1) * s + d * (k - 1) + 1 - size, 0)
        small, large = total // 2, total - total // 2
        begins.append(small if upper else large)
        ends.append(large if upper else small)
    return (begins[0], begins[1], ends[0], ends[1])


Conv.examples = (
    Example(Conv((3, 3), 3, 4, pads=(1, 1, 1, 1)), ((3, 6, 6),), "3x3 same padding"),
    Example(Conv((3, 3), 4, 6, strides=(2, 2), pads=(1, 1, 1, 1), group=2, bias=False), ((4, 7, 7),),
            "grouped, strided"),
    Example(Conv((3, 3), 4, 4, dilations=(2, 2), group=4), ((4, 8, 8),), "depthwise, dilated"),
    Example(Conv((1, 2), 2, 3, strides=(1, 2), pads=(0, 1, 0, 0)), ((2, 3, 5),),
            "asymmetric kernel and pads"),
)
