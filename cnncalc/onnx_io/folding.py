"""Constant folding at import: the shape arithmetic exporters emit around Reshape, e.g.
x.view(x.size(0), -1), computed from known values instead of becoming nodes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from onnx import TensorProto, helper

from ..ops.base import Shape

SYMBOLIC_BATCH = -(2**62)  # the batch size inside folded shape arithmetic when the file leaves it symbolic


@dataclass
class Const:
    """A tensor whose value is known without running the model: an initializer or a folded constant."""

    shape: Shape
    proto: TensorProto | None = None
    array: np.ndarray | None = None  # None with no proto: value unknown (made by an unsupported op)


def _fold_shape(values: list[np.ndarray], attrs: dict[str, Any], act_shape: list[int] | None) -> np.ndarray:
    """Shape(x): the input's full shape, batch first, sliced by start/end (opset 15); of a constant, its shape."""
    shape = act_shape if act_shape is not None else list(values[0].shape)
    return np.array(shape, dtype=np.int64)[attrs.get("start", 0):attrs.get("end", None)]


def _fold_gather(values: list[np.ndarray], attrs: dict[str, Any], act_shape: list[int] | None) -> np.ndarray:
    return np.take(values[0], values[1], axis=int(attrs.get("axis", 0)))


def _fold_unsqueeze(values: list[np.ndarray], attrs: dict[str, Any], act_shape: list[int] | None) -> np.ndarray:
    axes = values[1] if len(values) > 1 else attrs.get("axes", [])
    result = values[0]
    for axis in sorted(int(a) for a in np.atleast_1d(axes)):
        result = np.expand_dims(result, axis)
    return result


def _fold_squeeze(values: list[np.ndarray], attrs: dict[str, Any], act_shape: list[int] | None) -> np.ndarray:
    axes = values[1] if len(values) > 1 else attrs.get("axes")
    return np.squeeze(values[0]) if axes is None else np.squeeze(values[0], tuple(int(a) for a in axes))


def _fold_concat(values: list[np.ndarray], attrs: dict[str, Any], act_shape: list[int] | None) -> np.ndarray:
    return np.concatenate([np.atleast_1d(v) for v in values], axis=int(attrs.get("axis", 0)))


def _fold_cast(values: list[np.ndarray], attrs: dict[str, Any], act_shape: list[int] | None) -> np.ndarray:
    return values[0].astype(helper.tensor_dtype_to_np_dtype(int(attrs["to"])))


# shape arithmetic that exporters emit around Reshape, e.g. x.view(x.size(0), -1), folded at import
FOLDS: dict[str, Callable[[list[np.ndarray], dict[str, Any], list[int] | None], np.ndarray]] = {
    "Shape": _fold_shape, "Gather": _fold_gather, "Unsqueeze": _fold_unsqueeze, "Squeeze": _fold_squeeze,
    "Concat": _fold_concat, "Cast": _fold_cast, "Identity": lambda values, attrs, shape: values[0],
}
