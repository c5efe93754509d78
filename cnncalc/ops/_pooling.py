"""What MaxPool, AveragePool and LpPool share: options, output shape, window, and padded window views."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import numpy as np
else:
    from .._numpy import np

from ..errors import ShapeError, UnsupportedOpError
from ._windows import kernel_slices, pad_images
from .base import Op, Shape, SpecArgs, Window, numel, pair_text, spatial, window_out
from .conv import read_pads, same_pads

Pads = tuple[int, int, int, int]


@dataclass(frozen=True)
class _Pool(Op):
    """A 2-D sliding-window reduction with ONNX pooling attributes; default is a 2x2 window, stride 2."""

    kernel_shape: tuple[int, int] = (2, 2)
    strides: tuple[int, int] = (2, 2)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)  # top, left, bottom, right
    ceil_mode: int = 0

    cost_class = "pool"
    pad_value: ClassVar[float] = 0.0  # what padded positions hold in the window view
    extra_options: ClassVar[str] = ""  # options beyond k, s, p, ceil, for the error text

    # ---- construction --------------------------------------------------------
    @classmethod
    def from_spec(cls, args: SpecArgs, in_shapes: list[Shape]) -> Op:
        name = cls.spec_names[0]
        kernel = args.pair("k", "kernel", positional=0, default=(2, 2))
        strides = args.pair("s", "stride", "strides", default=kernel)
        pads = _read_pads(args, in_shapes, kernel, strides)
        ceil_mode = int(args.switch("ceil", "ceil_mode", default=False, meaning="ceil_mode"))
        extra = cls._extra_from_spec(args)
        args.finish(name, "k, s, p (int or same), ceil (0 or 1)" + cls.extra_options)
        return cls(kernel, strides, pads, ceil_mode, **extra)

    @classmethod
    def _extra_from_spec(cls, args: SpecArgs) -> dict[str, Any]:
        return {}

    @classmethod
    def from_onnx(cls, attrs: dict[str, Any], in_shapes: list[Shape], weight_shapes: list[Shape]) -> Op:
        if "kernel_shape" not in attrs or len(attrs["kernel_shape"]) != 2:
            raise UnsupportedOpError(
                f"{cls.op_type} needs a 2-D kernel_shape, got {attrs.get('kernel_shape')}",
                hint="cnncalc supports 2-D pooling on NCHW tensors")
        kernel = tuple(int(k) for k in attrs["kernel_shape"])
        strides = tuple(int(s) for s in attrs.get("strides", (1, 1)))
        if any(int(d) != 1 for d in attrs.get("dilations", (1, 1))):
            raise UnsupportedOpError(
                f"{cls.op_type} with dilations {list(attrs['dilations'])} is not supported",
                hint="cnncalc supports pooling without dilation")
        auto_pad = attrs.get("auto_pad", "NOTSET")
        if isinstance(auto_pad, bytes):
            auto_pad = auto_pad.decode()
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            pads = same_pads(in_shapes[0], kernel, strides, (1, 1), upper=auto_pad == "SAME_UPPER")
        else:
            pads = tuple(int(p) for p in attrs.get("pads", (0, 0, 0, 0)))  # type: ignore[assignment]
        extra = cls._extra_from_onnx(attrs)
        return cls(kernel, strides, pads, int(attrs.get("ceil_mode", 0)), **extra)  # type: ignore[arg-type]

    @classmethod
    def _extra_from_onnx(cls, attrs: dict[str, Any]) -> dict[str, Any]:
        return {}

    def onnx_attributes(self) -> dict[str, Any]:
        return {"kernel_shape": list(self.kernel_shape), "strides": list(self.strides),
                "pads": list(self.pads), "ceil_mode": self.ceil_mode}

    def export_attributes(self, in_shapes: list[Shape]) -> dict[str, Any]:
        """The file's pads, with an end pad cut where its last ceil-mode window would start in it.

        The ONNX spec, PyTorch and onnxruntime drop such a window, but onnx's shape inference (1.23) keeps it,
        so the file failed onnx.checker. Where the padding holds nothing the pool reads (max, L2, an average
        that counts only real pixels), the cut end pad gives the same windows and the same output.
        """
        attributes = self.onnx_attributes()
        if not self.ceil_mode or self._pads_count():
            return attributes
        _, h, w = spatial(in_shapes[0], self.spec_name())
        pads = list(self.pads)
        for axis, size in enumerate((h, w)):
            begin, k, s = pads[axis], self.kernel_shape[axis], self.strides[axis]
            out = window_out(size, k, s, begin, pads[axis + 2], True)
            while pads[axis + 2] > 0 and -(-(size + begin + pads[axis + 2] - k) // s) + 1 > out:
                pads[axis + 2] -= 1  # onnx's formula without the drop, until it gives the same count
        attributes["pads"] = pads
        return attributes

    def _pads_count(self) -> bool:
        """Whether padded positions change the result (an average that divides by them)."""
        return False

    def describe(self) -> str:
        options = []
        if self.kernel_shape != (2, 2):
            options.append(f"k={pair_text(self.kernel_shape)}")
        if self.strides != self.kernel_shape:
            options.append(f"s={pair_text(self.strides)}")
        if self.pads != (0, 0, 0, 0):
            top, left, bottom, right = self.pads
            options.append(f"p={top}" if len(set(self.pads)) == 1 else f"p={top},{left},{bottom},{right}")
        if self.ceil_mode:
            options.append("ceil=1")
        options += self._extra_describe()
        return f"{self.spec_name()}({','.join(options)})" if options else self.spec_name()

    def _extra_describe(self) -> list[str]:
        return []

    def variations(self) -> Iterator[tuple[str, Op]]:
        """Padding first, then stride, then kernel size, then kernel and stride together."""
        k = self.kernel_shape[0]
        for p in range(0, k):
            if (p, p, p, p) != self.pads:
                yield f"p={p}", dataclasses.replace(self, pads=(p, p, p, p))
        for s in (1, 2, 3, 4):
            if (s, s) != self.strides:
                yield f"s={s}", dataclasses.replace(self, strides=(s, s))
        for kk in (2, 3, 4, 5):
            if (kk, kk) != self.kernel_shape:
                yield f"k={kk}", dataclasses.replace(self, kernel_shape=(kk, kk))
        for kk in (2, 3, 4, 5):
            for s in (1, 2, 3, 4):
                for p in range(0, kk):
                    changed = dataclasses.replace(self, kernel_shape=(kk, kk), strides=(s, s),
                                                  pads=(p, p, p, p))
                    if changed != self:
                        yield f"k={kk},s={s},p={p}", changed

    # ---- analysis ------------------------------------------------------------
    def output_shape(self, in_shapes: list[Shape]) -> Shape:
        name = self.spec_name()
        c, h, w = spatial(in_shapes[0], name)
        kh, kw = self.kernel_shape
        top, left, bottom, right = self.pads
        if min(kh, kw, *self.strides) < 1 or min(self.pads) < 0:
            raise ShapeError(f"{self.describe()} has a kernel or stride below 1 or a negative pad",
                             hint="kernel and stride are at least 1, pads at least 0")
        if max(top, bottom) >= kh or max(left, right) >= kw:
            raise ShapeError(
                f"{self.describe()} pads {list(self.pads)} must be smaller than its kernel {kh}x{kw}",
                hint=f"use p={min(kh, kw) // 2} or less; a window of only padding has no value",
            )
        padded_h, padded_w = h + top + bottom, w + left + right
        if kh > padded_h or kw > padded_w:
            raise ShapeError(
                f"{name} kernel {kh}x{kw} is larger than its padded input {padded_h}x{padded_w}",
                hint="use a smaller kernel, more padding, or fewer downsampling layers before it",
            )
        ho = window_out(h, kh, self.strides[0], top, bottom, bool(self.ceil_mode))
        wo = window_out(w, kw, self.strides[1], left, right, bool(self.ceil_mode))
        return (c, ho, wo)

    def window(self, in_shapes: list[Shape]) -> Window | None:
        return Window(self.kernel_shape, self.strides, (self.pads[0], self.pads[1]))

    def _window_size(self) -> int:
        return self.kernel_shape[0] * self.kernel_shape[1]

    def _out_elements(self, out_shape: Shape) -> int:
        return numel(out_shape)

    # ---- NumPy helpers -------------------------------------------------------
    def _full_pads(self, in_hw: tuple[int, int], out_hw: tuple[int, int]) -> Pads:
        """The pads plus, under ceil_mode, the overhang of the last window past the bottom/right padding."""
        top, left, bottom, right = self.pads
        # last window ends at (out - 1) * s + k; anything past the padded input is overhang
        over_h = max(0, (out_hw[0] - 1) * self.strides[0] + self.kernel_shape[0] - (in_hw[0] + top + bottom))
        over_w = max(0, (out_hw[1] - 1) * self.strides[1] + self.kernel_shape[1] - (in_hw[1] + left + right))
        return (top, left, bottom + over_h, right + over_w)

    def _geometry(self, x: np.ndarray) -> tuple[Pads, tuple[int, int]]:
        """The pads a batch needs (ceil_mode overhang included) and the output's Ho, Wo."""
        _, ho, wo = self.output_shape([tuple(x.shape[1:])])
        return self._full_pads((x.shape[2], x.shape[3]), (ho, wo)), (ho, wo)

    def _padded(self, x: np.ndarray) -> tuple[np.ndarray, Pads, tuple[int, int]]:
        """The batch padded with `pad_value` (ceil_mode overhang included), the pads used, and Ho, Wo."""
        pads, out_hw = self._geometry(x)
        return pad_images(x, pads, value=self.pad_value), pads, out_hw

    def _slices(self, out_hw: tuple[int, int]) -> Iterator[tuple[slice, slice]]:
        """Per kernel position, the strided slice of the padded batch it reads (see `kernel_slices`)."""
        return kernel_slices(self.kernel_shape, self.strides, out_hw)


def _read_pads(args: SpecArgs, in_shapes: list[Shape], kernel: tuple[int, int],
               strides: tuple[int, int]) -> Pads:
    """Pools read `p` exactly as convs do."""
    return read_pads(args, in_shapes, kernel, strides, (1, 1), "pooling")
