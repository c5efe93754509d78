"""Graph -> ONNX: one node per IR node, asked of its op; initializers from the weights; saving files."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

from .. import __version__
from ..errors import CnnCalcError, UnsupportedOpError
from ..ir import Graph, Node
from ..ops.base import WeightSpec, numel
from ..spec_text import to_spec
from ..weights import Weights, init_weights
from .constants import BATCH_PARAM, DEFAULT_OPSET, ELEM_TYPES, MAX_DIM, MAX_FILE_BYTES, MAX_OPSET, MIN_OPSET, SPEC_KEY


def check_opset(opset: int) -> int:
    """The opset, or a clear error when it is outside the range cnncalc writes."""
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise CnnCalcError(f"opset {opset} is outside the range cnncalc exports ({MIN_OPSET} to {MAX_OPSET})",
                           hint=f"use --opset {DEFAULT_OPSET} (the default)")
    return opset


def needed_opset(graph: Graph, opset: int | None) -> int:
    """`opset`, or when None the default or the first opset that has every layer's attributes."""
    needing = max(graph.nodes, key=lambda node: node.op.min_opset(), default=None)
    first = needing.op.min_opset() if needing is not None else 0
    if opset is None:
        return max(DEFAULT_OPSET, first)
    if needing is not None and opset < first:
        raise CnnCalcError(f"layer {needing.name} ({needing.op.describe()}) needs ONNX opset {first} or newer: "
                           f"{needing.op.op_type} has these attributes only from opset {first}, not in {opset}",
                           hint=f"use --opset {first}, or leave --opset out to get it")
    return opset


def to_onnx(graph: Graph, weights: Weights | None = None, *, seed: int = 0, opset: int | None = None,
            batch: int | None = None, dynamic_batch: bool = True) -> onnx.ModelProto:
    """The graph as an ONNX model with real weights (He init from `seed` unless given), ready to run or train.

    The opset is DEFAULT_OPSET unless a layer's attributes need a later one (`Op.min_opset`); an opset
    asked for that lacks them is refused, since the file would fail the checker. The batch dimension is
    fixed to `batch` when given, else symbolic ("batch") with `dynamic_batch`, else the graph's own batch.
    """
    opset = check_opset(needed_opset(graph, opset))
    if graph.unsupported:
        raise UnsupportedOpError(f"cannot export {graph.name}: it has ops cnncalc does not know "
                                 f"({', '.join(graph.unsupported)})", hint="export the original model instead")
    if batch is not None and not 1 <= batch <= MAX_DIM:
        raise CnnCalcError(f"batch {batch} is outside 1 to {MAX_DIM}", hint="use --batch 1 or --dynamic-batch")
    check_file_size(graph)
    seeded = weights is None
    if weights is None:
        weights = init_weights(graph, seed)
    elem = ELEM_TYPES[graph.dtype]
    np_dtype = helper.tensor_dtype_to_np_dtype(elem)
    batch_dim: int | str = batch if batch is not None else (BATCH_PARAM if dynamic_batch else graph.batch)
    nodes, initializers = [], []
    taken = {graph.input_name, *(node.name for node in graph.nodes)}  # tensor names: ONNX wants each once
    for node in graph.nodes:
        specs = node.op.weights([graph.shapes[name] for name in node.inputs])
        arrays = _node_arrays(node, specs, weights, np_dtype)
        names = [_free_name(f"{node.name}.{spec.name}", taken) for spec in specs]
        initializers += [_tensor(array, name) for array, name in zip(arrays, names, strict=True)]
        in_shapes = [graph.shapes[name] for name in node.inputs]
        attributes = {key: value for key, value in node.op.export_attributes(in_shapes).items() if value is not None}
        nodes.append(helper.make_node(node.op.op_type, [*node.inputs, *names], [node.name], name=node.name,
                                      doc_string=node.label or node.op.describe(), **attributes))
    inputs = [helper.make_tensor_value_info(graph.input_name, elem, [batch_dim, *graph.input_shape])]
    outputs = [helper.make_tensor_value_info(graph.output, elem, [batch_dim, *graph.shapes[graph.output]])]
    body = helper.make_graph(nodes, graph.name, inputs, outputs, initializers, doc_string=graph.description)
    model = helper.make_model(body, opset_imports=[helper.make_opsetid("", opset)], producer_name="cnncalc",
                              producer_version=__version__)
    model.ir_version = helper.find_min_ir_version_for(list(model.opset_import))
    text = stored_spec(graph)
    model.doc_string = text
    trainable = sum(numel(spec.shape) for node in graph.nodes
                    for spec in node.op.weights([graph.shapes[n] for n in node.inputs]) if spec.trainable)
    props = {SPEC_KEY: text, "cnncalc.name": graph.name, "cnncalc.dtype": graph.dtype, "cnncalc.params": str(trainable)}
    if seeded:
        props["cnncalc.seed"] = str(seed)
    helper.set_model_props(model, props)
    return model


def _free_name(name: str, taken: set[str]) -> str:
    """`name`, or `name_2`, `name_3`... when a layer is already called that: an imported model may have a
    layer named `conv.W` beside a layer `conv`, and a tensor written twice makes the file invalid."""
    candidate, count = name, 1
    while candidate in taken:
        count += 1
        candidate = f"{name}_{count}"
    taken.add(candidate)
    return candidate


def check_file_size(graph: Graph) -> None:
    """Refuse a model whose weights alone exceed what protobuf can serialize, before any weight is drawn:
    drawing and serializing 2 GiB takes half a minute, only for protobuf to fail at the end."""
    itemsize = np.dtype(helper.tensor_dtype_to_np_dtype(ELEM_TYPES[graph.dtype])).itemsize
    layer_bytes = {node.name: itemsize * sum(numel(spec.shape) for spec in
                                             node.op.weights([graph.shapes[name] for name in node.inputs]))
                   for node in graph.nodes}
    total = sum(layer_bytes.values())
    if total > MAX_FILE_BYTES:
        largest = max(layer_bytes, key=lambda name: layer_bytes[name])
        raise CnnCalcError(f"{graph.name} is too large for one ONNX file: its weights take {total:,} bytes "
                           f"({total / 2**30:.1f} GiB in {graph.dtype}), protobuf holds at most 2 GiB",
                           hint=f"make the largest layers smaller ({largest} alone holds "
                                f"{layer_bytes[largest]:,} bytes)")


def _node_arrays(node: Node, specs: list[WeightSpec], weights: Weights, np_dtype: Any) -> list[np.ndarray]:
    """The node's weight arrays in WeightSpec order, checked against the shapes the op asks for."""
    arrays = weights.get(node.name, [])
    if len(arrays) != len(specs):
        raise CnnCalcError(f"layer {node.name} needs {len(specs)} weight arrays "
                           f"({', '.join(s.name for s in specs) or 'none'}) but {len(arrays)} were given")
    checked = []
    for spec, array in zip(specs, arrays, strict=True):
        array = np.asarray(array)
        if tuple(array.shape) != tuple(spec.shape):
            raise CnnCalcError(f"weight {node.name}.{spec.name} has shape {list(array.shape)}, "
                               f"the layer needs {list(spec.shape)}")
        checked.append(contiguous(array, np_dtype))
    return checked


def _tensor(array: np.ndarray, name: str) -> TensorProto:
    """An initializer holding the array's bytes (little-endian raw data, as ONNX stores them)."""
    tensor = TensorProto(name=name, data_type=helper.np_dtype_to_tensor_dtype(array.dtype), dims=array.shape)
    tensor.raw_data = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
    return tensor


def contiguous(array: np.ndarray, np_dtype: Any) -> np.ndarray:
    """The array in C order and the model's dtype, copied only when needed (scalars stay 0-D)."""
    if array.ndim == 0:
        return np.array(array, dtype=np_dtype)
    return np.ascontiguousarray(array, dtype=np_dtype)


def stored_spec(graph: Graph) -> str:
    """The spec text a file keeps: one that parses alone to this network (spec.standalone_text), else the
    text as written."""
    from ..spec import standalone_text

    return standalone_text(graph) or graph.text


def spec_or_empty(graph: Graph) -> str:
    """The graph's spec text for the doc string, or nothing when it cannot be written as a spec."""
    try:
        return to_spec(graph)
    except CnnCalcError:
        return ""


def save_model(model: onnx.ModelProto, path: str | Path, *, force: bool = False) -> None:
    """Write the model atomically (temp file beside it, then rename); never overwrite without force."""
    from google.protobuf.message import EncodeError

    from ..fileio import write_atomic

    try:
        data = model.SerializeToString()
    except (ValueError, EncodeError) as error:  # protobuf refuses messages over 2 GiB (upb: EncodeError)
        raise CnnCalcError(f"cannot write {path}: the model is too large for one ONNX file ({error})",
                           hint="protobuf holds at most 2 GiB; make the largest layers smaller") from None
    write_atomic(path, data, force=force)


def export_targets(output: str | Path | None, names: list[str], *, force: bool = False) -> list[Path]:
    """Where each network goes: `output` (default <name>.onnx) for one, <stem>-<name>.onnx for several.

    Every target is checked before anything is written, so a refusal leaves no partial set of files.
    """
    from ..fileio import check_writable, would_overwrite

    safe = [re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "network" for name in names]
    if output is None:
        targets = [Path(f"{name}.onnx") for name in safe]
    elif len(names) == 1:
        targets = [Path(output)]
    else:
        base = Path(output)
        targets = [base.with_name(f"{base.stem}-{name}{base.suffix or '.onnx'}") for name in safe]
    if len(set(targets)) != len(targets):
        raise CnnCalcError("two networks would be written to the same file", hint="give the variants distinct names")
    for target in targets:
        if target.is_dir():  # '... is a directory' with a file inside it as the example; --force cannot help
            check_writable(target, force=True)
    existing = [str(target) for target in targets if would_overwrite(target)]  # not /dev/null, a pipe
    if existing and not force:
        raise CnnCalcError(f"{', '.join(existing)} already exist{'s' if len(existing) == 1 else ''}",
                           hint="pass --force to overwrite, or choose another --output")
    return targets
