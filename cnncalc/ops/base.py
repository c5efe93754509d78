"""The operator contract and the registry.

Every operator is one frozen dataclass in `cnncalc/ops/<name>.py`, named as its ONNX
op type, with fields named as ONNX names its attributes. Defining the class registers
it. The class says everything about the operator: how the spec language writes it,
its output shape, its weights, MACs and FLOPs, its window for the receptive field,
its ONNX attributes (out and back in), and its NumPy forward and backward.

Shapes are per sample, without the batch: (C, H, W) for images, (F,) for vectors.
Nothing outside `ops/` branches on the type of an op; it asks the op.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import numpy as np
else:
    from .._numpy import np

from ..errors import ShapeError, SpecError

Shape = tuple[int, ...]

#: ONNX op type -> operator class
OPS: dict[str, type[Op]] = {}
#: lower-case spec name or alias -> operator class
SPEC_NAMES: dict[str, type[Op]] = {}
#: spec keyword that joins branches (`res`, `cat`) -> the operator that joins them
JOINS: dict[str, type[Op]] = {}


@dataclass(frozen=True)
class WeightSpec:
    """One weight input of an op, in ONNX input order after the activations."""

    name: str  # ONNX role: "W", "B", "scale", "mean", "var"
    shape: Shape
    trainable: bool = True
    init: str = "zeros"  # "he" (Kaiming normal, fan_in = prod(shape[1:])), "zeros", "ones", "const:<value>"
    broadcast: bool = False  # an ONNX file may give one value for all of it (Gemm's C broadcasts to the output)

    @property
    def constant(self) -> float | None:
        """The value of a fixed operand such as Clip's min/max (init "const:<value>"), else None."""
        return float(self.init[6:]) if self.init.startswith("const:") else None


@dataclass(frozen=True)
class Window:
    """A sliding window per spatial axis, for the receptive-field recursion."""

    kernel: tuple[int, int]  # effective kernel, dilation included: d * (k - 1) + 1
    stride: tuple[int, int]
    pad: tuple[int, int]  # padding before the first element (top, left)


@dataclass
class Forward:
    """What a forward kernel produced: the output, what backward needs, and the work done."""

    out: np.ndarray
    cache: Any = None
    macs: int = 0  # multiply-accumulates the kernel performed, counted from the arrays it used


class _Execution(threading.local):
    """Per thread: how many parts of a split batch run at once (see `Runtime.parallel_parts`).

    Kernels that size their working set by the last-level cache (conv's column chunks) give each
    part its share of it, since the parts run on cores that share the cache.
    """

    parts = 1


execution = _Execution()


@dataclass(frozen=True)
class Example:
    """A small configuration the contract tests run every check on."""

    op: Op
    in_shapes: tuple[Shape, ...]
    note: str = ""


class SpecArgs:
    """The options of one spec token, e.g. `(3, s=2, p=1)`, read by the op with positions for errors."""

    def __init__(
        self,
        items: Sequence[tuple[str | None, str, int]],
        text: str = "",
        pos: int = 0,
        dims: tuple[int, ...] = (),
        defaults: dict[str, Any] | None = None,
    ) -> None:
        self.items = list(items)  # (key or None for positional, raw value, offset in text)
        self.text = text
        self.pos = pos  # offset of the token's name
        self.dims = dims  # leading integers of the token: KhxKwxCinxCout for a conv
        self.defaults = defaults or {}
        self._used: set[int] = set()

    def _find(self, keys: tuple[str, ...], positional: int | None) -> int | None:
        for i, (key, _value, _pos) in enumerate(self.items):
            if key is not None and key.lower() in keys:
                return i
        if positional is not None:
            positionals = [i for i, (key, _v, _p) in enumerate(self.items) if key is None]
            if positional < len(positionals):
                return positionals[positional]
        return None

    def error(self, index: int | None, message: str, hint: str | None = None) -> SpecError:
        """A SpecError pointing at option `index`, or at the token when None."""
        pos = self.items[index][2] if index is not None else self.pos
        length = len(self.items[index][1]) if index is not None else 1
        return SpecError(message, self.text, pos, hint=hint, length=length)

    def raw(self, *keys: str, positional: int | None = None) -> tuple[str, int] | None:
        """The raw text of an option and its index, marking it used."""
        index = self._find(tuple(k.lower() for k in keys), positional)
        if index is None:
            return None
        self._used.add(index)
        return self.items[index][1], index

    def integer(self, *keys: str, default: int, positional: int | None = None, minimum: int = 0) -> int:
        """An integer option (first key is the canonical name)."""
        found = self.raw(*keys, positional=positional)
        if found is None:
            return int(self.defaults.get(keys[0], default))
        value, index = found
        try:
            number = int(value)
        except ValueError:
            raise self.error(index, f"option {keys[0]}={value!r} is not a whole number",
                             hint=f"write {keys[0]}=1") from None
        if number < minimum:
            raise self.error(index, f"option {keys[0]}={number} must be at least {minimum}")
        return number

    def real(self, *keys: str, default: float, positional: int | None = None,
              low: float = float("-inf"), high: float = float("inf"), finite: bool = False) -> float:
        """A real-valued option, checked to lie in [low, high]; `finite` refuses inf where only Clip's
        unbounded sides make sense of it (an infinite slope or epsilon gives inf or 0 everywhere)."""
        found = self.raw(*keys, positional=positional)
        if found is None:
            return float(self.defaults.get(keys[0], default))
        value, index = found
        try:
            number = float(value)
        except ValueError:
            raise self.error(index, f"option {keys[0]}={value!r} is not a number") from None
        if not (low <= number <= high) or number != number:
            raise self.error(index, f"option {keys[0]}={value} must lie in [{low}, {high}]")
        if finite and number in (float("inf"), float("-inf")):
            raise self.error(index, f"option {keys[0]}={value} must be a finite number",
                             hint=f"write {keys[0]}={number_text(default)} (the default) or another finite value")
        return number

    def switch(self, *keys: str, default: bool, meaning: str) -> bool:
        """An on/off option written 0 or 1; any other number is a typo, not a stronger "on"."""
        found = self.raw(*keys)
        if found is None:
            return bool(self.defaults.get(keys[0], default))
        value, index = found
        if value not in ("0", "1"):
            key = self.items[index][0] or keys[0]
            raise self.error(index, f"option {key}={value} must be 0 or 1 ({meaning} off or on)",
                             hint=f"write {key}=1 to turn {meaning} on, {key}=0 to turn it off")
        return value == "1"

    def pair(self, *keys: str, default: tuple[int, int], positional: int | None = None) -> tuple[int, int]:
        """A per-axis option written `3` or `3x2` (height x width), each at least 1: kernels, strides, dilations."""
        found = self.raw(*keys, positional=positional)
        if found is None:
            return default
        value, index = found
        try:
            numbers = [int(part) for part in value.lower().split("x")]
        except ValueError:
            raise self.error(index, f"option {keys[0]}={value!r} is not a whole number",
                             hint=f"write {keys[0]}=3 or {keys[0]}=3x2") from None
        if len(numbers) not in (1, 2) or min(numbers) < 1:
            raise self.error(index, f"option {keys[0]}={value!r} must be one or two whole numbers of at least 1",
                             hint=f"write {keys[0]}=3 or {keys[0]}=3x2")
        return (numbers[0], numbers[-1])

    def flag(self, *keys: str) -> bool:
        """A bare flag such as `dw`."""
        for i, (key, value, _pos) in enumerate(self.items):
            if key is None and value.lower() in keys:
                self._used.add(i)
                return True
        return False

    def finish(self, op_name: str, known: str) -> None:
        """Fail on any option the op did not read."""
        for i, (key, value, _pos) in enumerate(self.items):
            if i not in self._used:
                shown = f"{key}={value}" if key is not None else value
                raise self.error(i, f"{op_name} has no option {shown!r}", hint=f"{op_name} takes {known}")


def number_text(value: float) -> str:
    """A float option as spec text that reads back to the same value (`:g` kept 6 digits: 0.123456789 became
    0.123457); whole numbers without `.0`."""
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def pair_text(pair: tuple[int, int]) -> str:
    """`3` for (3, 3), `3x2` for (3, 2): how SpecArgs.pair reads it back."""
    return str(pair[0]) if pair[0] == pair[1] else f"{pair[0]}x{pair[1]}"


class Op:
    """Base of every operator. Subclasses are frozen dataclasses and register on definition."""

    op_type: ClassVar[str] = ""  # ONNX op type; set from the class name
    spec_names: ClassVar[tuple[str, ...]] = ()  # canonical spec name first, then aliases
    n_inputs: ClassVar[int] = 1  # activation inputs (weights come after them); 0 = any number >= 2
    cost_class: ClassVar[str] = "elementwise"  # what kind of kernel real libraries run for it
    spec_join: ClassVar[str] = ""  # the spec keyword whose branches this op joins: "res" (Add), "cat" (Concat)
    batch_statistics: ClassVar[bool] = False  # training normalizes with each channel's mean and variance over the batch
    examples: ClassVar[tuple[Example, ...]] = ()  # filled after the class, for the contract tests

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__name__.startswith("_"):
            return
        cls.op_type = cls.__name__
        OPS[cls.op_type] = cls
        for name in cls.spec_names:
            SPEC_NAMES[name.lower()] = cls
        if cls.spec_join:
            JOINS[cls.spec_join] = cls

    # ---- construction --------------------------------------------------------
    @classmethod
    def from_spec(cls, args: SpecArgs, in_shapes: list[Shape]) -> Op:
        """Build from a spec token's options; the default takes no options."""
        args.finish(cls.spec_names[0], "no options")
        return cls()

    @classmethod
    def from_onnx(cls, attrs: dict[str, Any], in_shapes: list[Shape], weight_shapes: list[Shape]) -> Op:
        """Build from an ONNX node's attributes and the shapes of its inputs and initializers."""
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in attrs.items() if k in names})

    def onnx_attributes(self) -> dict[str, Any]:
        """The ONNX node's attributes; the default is every dataclass field."""
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    def export_attributes(self, in_shapes: list[Shape]) -> dict[str, Any]:
        """The attributes written to an ONNX file for inputs of these shapes; most ops need only their own."""
        return self.onnx_attributes()

    def min_opset(self) -> int:
        """The first ONNX opset that has this instance's attributes (0: any opset cnncalc writes)."""
        return 0

    def spec_name(self) -> str:
        """Canonical spec-language name of this instance, e.g. `ReLU6`."""
        return self.spec_names[0] if self.spec_names else self.op_type

    def describe(self) -> str:
        """This op written back in the spec language."""
        return self.spec_name()

    def variations(self) -> Iterator[tuple[str, Op]]:
        """Nearby option changes, tried in order when a shape checkpoint fails."""
        return iter(())

    # ---- analysis ------------------------------------------------------------
    def output_shape(self, in_shapes: list[Shape]) -> Shape:
        """Output shape from input shapes; raise ShapeError with a hint when they don't fit."""
        return in_shapes[0]

    def weights(self, in_shapes: list[Shape]) -> list[WeightSpec]:
        """Weight inputs in ONNX order; params, memory, initializers all derive from this."""
        return []

    def macs(self, in_shapes: list[Shape], out_shape: Shape) -> int:
        """Multiply-accumulates per sample (conv and FC only)."""
        return 0

    def flops(self, in_shapes: list[Shape], out_shape: Shape) -> int:
        """Floating-point operations per sample under the documented convention."""
        return 0

    def window(self, in_shapes: list[Shape]) -> Window | None:
        """The spatial window for the receptive field; None for a pointwise op."""
        return None

    # ---- NumPy ---------------------------------------------------------------
    def forward(self, inputs: list[np.ndarray], training: bool = False,
                rng: np.random.Generator | None = None) -> Forward:
        """Output for a batch; inputs are activations then weights, in ONNX order.

        `training` switches BN to batch statistics and turns Dropout on (drawing from `rng`).
        """
        raise NotImplementedError(f"{self.op_type}.forward")

    def backward(self, grad_out: np.ndarray, inputs: list[np.ndarray],
                 fwd: Forward) -> list[np.ndarray | None]:
        """One gradient per input (weights included); None for non-trainable inputs."""
        raise NotImplementedError(f"{self.op_type}.backward")

    def updated_state(self, inputs: list[np.ndarray], fwd: Forward,
                      momentum: float | None = None) -> dict[int, np.ndarray]:
        """New values of non-trainable inputs after a training forward (BN running stats), by input index.

        `momentum` overrides the op's own (None keeps the op's).
        """
        return {}


def numel(shape: Shape) -> int:
    """Number of elements of a shape."""
    total = 1
    for dim in shape:
        total *= dim
    return total


def onnx_float(value: float) -> float:
    """A float ONNX attribute (stored as float32) as the shortest decimal rounding to it: 0.01 stays 0.01."""
    return float(str(np.float32(value)))


def spatial(shape: Shape, op_name: str) -> tuple[int, int, int]:
    """(C, H, W) of an image shape, or a ShapeError saying the op needs one."""
    if len(shape) != 3:
        raise ShapeError(
            f"{op_name} needs an HxWxC input but gets a flat vector of {numel(shape)}",
            hint="put spatial layers before Flatten / FC",
        )
    return shape[0], shape[1], shape[2]


def window_out(size: int, kernel_eff: int, stride: int, pad_begin: int, pad_end: int,
               ceil_mode: bool = False) -> int:
    """Output length of a sliding window: floor((n + pads - k_eff) / s) + 1 (ceil with ceil_mode)."""
    span = size + pad_begin + pad_end - kernel_eff
    if not ceil_mode:
        return span // stride + 1
    out = -(-span // stride) + 1
    # as PyTorch and ONNX: the last window must start inside the input or the left padding
    if (out - 1) * stride >= size + pad_begin:
        out -= 1
    return out
