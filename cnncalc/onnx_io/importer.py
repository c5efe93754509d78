"""ONNX -> Graph: each node built by its op class, graph-level patterns (constants, shape
arithmetic, MatMul+Add, Reshape/Squeeze as flatten) folded here; the file treated as untrusted."""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..errors import CnnCalcError, OnnxFileError, UnsupportedOpError
from ..ir import Graph, Node, show_shape
from ..ops import OPS
from ..ops.base import Op, Shape, WeightSpec, numel, onnx_float
from ..ops.unsupported import Unsupported
from ..weights import Weights
from .constants import DTYPES, ELEM_TYPES, MAX_DIM, MAX_ELEMENTS, SPEC_KEY
from .export import contiguous, spec_or_empty
from .folding import FOLDS, SYMBOLIC_BATCH, Const
from .reading import attribute_value, check_names, default_opset, inline_functions, read_model, schema_input_names


@dataclass
class ImportedModel:
    """An ONNX model read into the IR, with its weights (node name -> arrays in the op's WeightSpec order)."""

    graph: Graph
    weights: Weights = field(default_factory=dict)


def load_model(path_or_bytes: str | Path | bytes, *, allow_unsupported: bool = False,
               name: str | None = None) -> ImportedModel:
    """Read an ONNX model (file or bytes) into a Graph plus its weights."""
    return _Importer(path_or_bytes, allow_unsupported, name, read_weights=True).run()


def import_onnx(path: str | Path | bytes, *, allow_unsupported: bool = False) -> Graph:
    """Read an ONNX model into a Graph for analysis; weight values are not loaded."""
    return _Importer(path, allow_unsupported, None, read_weights=False).run().graph


_PATTERNS = ("Identity", "Reshape", "Squeeze", "MatMul")  # read by the _pattern_<name> methods below


class _Importer:
    """One pass over an ONNX graph in topological order, building IR nodes as it goes."""

    def __init__(self, source: str | Path | bytes, allow_unsupported: bool, name: str | None,
                 read_weights: bool) -> None:
        self.allow_unsupported = allow_unsupported
        self.read_weights = read_weights
        self.model, self.label, self.folder = read_model(source)
        self.model = inline_functions(self.model, self.label)
        self.name = name or (Path(source).stem if not isinstance(source, bytes) else "") or "onnx-model"
        self.opset = default_opset(self.model)
        self.tensors: dict[str, str] = {}  # ONNX tensor name -> IR tensor name (activations)
        self.shapes: dict[str, Shape] = {}  # IR tensor name -> per-sample shape
        self.consts: dict[str, Const] = {}
        self.unknown: set[str] = set()  # ONNX tensors downstream of an unsupported op (listing mode)
        self.nodes: list[Node] = []
        self.weights: Weights = {}
        self.unsupported: dict[str, list[str]] = {}
        self.skipped: set[int] = set()  # ONNX nodes folded into an earlier IR node (the Add of MatMul+Add)
        self.used_names: set[str] = set()
        self._inferred: dict[str, onnx.ValueInfoProto] | None = None
        self.graph_outputs = {value.name for value in self.model.graph.output}
        self.consumers: dict[str, list[tuple[int, onnx.NodeProto]]] = {}

    # ---- driver ------------------------------------------------------------------------------
    def run(self) -> ImportedModel:
        """The whole import; anything a damaged file makes go wrong becomes an OnnxFileError naming it."""
        try:
            return self._run()
        except CnnCalcError:
            raise
        except Exception as error:  # noqa: BLE001 - the last guard between an untrusted file and a traceback
            raise OnnxFileError(f"{self.label} cannot be read: {type(error).__name__}: {str(error)[:200]}",
                                hint="the file is damaged or was not written by an ONNX exporter") from None

    def _run(self) -> ImportedModel:
        graph_proto = self.model.graph
        check_names(graph_proto, self.label)
        for tensor in graph_proto.initializer:
            self.consts[tensor.name] = Const(self._checked_dims(tensor.dims, f"initializer {tensor.name!r}"),
                                             proto=tensor)
            self._check_external(tensor)
        self._read_input()
        ordered = self._topological_order()
        self.consumers = _consumers(ordered, graph_proto)
        for index, node in ordered:
            if index not in self.skipped:
                self._convert(index, node)
        if self.unsupported and not self.allow_unsupported:
            raise self._unsupported_error()
        return ImportedModel(self._graph(), self.weights)

    def _graph(self) -> Graph:
        outputs = [value.name for value in self.model.graph.output]
        if len(outputs) != 1:
            raise OnnxFileError(f"{self.label}: cnncalc analyses models with one output; this one has "
                                f"{len(outputs)} ({', '.join(outputs[:5])})",
                                hint="export the model with a single output tensor")
        output = self.tensors.get(outputs[0])
        if output is None or output == self.input_name:
            raise OnnxFileError(f"{self.label}: the output {outputs[0]!r} is not computed by any layer cnncalc reads",
                                hint="the model must compute its output from its input")
        # the graph's own doc string describes it; a model's doc string may be cnncalc's stored spec text instead
        stored_spec = {prop.key: prop.value for prop in self.model.metadata_props}.get(SPEC_KEY)
        model_text = self.model.doc_string if self.model.doc_string != stored_spec else ""
        description = self.model.graph.doc_string or model_text
        unsupported = tuple(f"{op_type} at {where}" for op_type, places in self.unsupported.items()
                            for where in places)
        nodes = self._reaching(output)
        try:
            graph = Graph(self.name, self.input_shape, nodes, output, input_name=self.input_name,
                          dtype=self.dtype, batch=self.batch, description=description[:2000],
                          unsupported=unsupported)
        except CnnCalcError as error:
            raise OnnxFileError(f"{self.label}: {error.message}", hint=error.hint) from None
        # the equivalent spec chain, so that JSON and Markdown reports of an imported model show it too
        text = spec_or_empty(graph)
        return replace(graph, text=text) if text else graph

    def _reaching(self, output: str) -> tuple[Node, ...]:
        """The layers the output depends on: others cost nothing at run time (onnxruntime drops them too)."""
        needed = {output}
        for node in reversed(self.nodes):
            if node.name in needed:
                needed.update(node.inputs)
        for node in self.nodes:
            if node.name not in needed:
                self.weights.pop(node.name, None)
        return tuple(node for node in self.nodes if node.name in needed)

    # ---- file-level checks ---------------------------------------------------------------------
    def _checked_dims(self, dims: Iterable[int], what: str) -> Shape:
        """Dimensions from the file, refused when negative or absurd before anything is allocated."""
        shape = tuple(int(d) for d in dims)
        if any(d < 0 or d > MAX_DIM for d in shape) or numel(shape) > MAX_ELEMENTS:
            raise OnnxFileError(f"{self.label}: {what} has dimensions {list(shape)[:8]} outside what cnncalc accepts "
                                f"(each 0 to {MAX_DIM}, at most 2**40 elements)",
                                hint="the file is damaged or not a CNN cnncalc can analyse")
        return shape

    def _check_external(self, tensor: TensorProto) -> Path | None:
        """The external data file of a tensor, if it has one, after checking it stays in the model's folder."""
        if tensor.data_location != TensorProto.EXTERNAL:
            return None
        info = {entry.key: entry.value for entry in tensor.external_data}
        location = info.get("location", "")
        what = f"{self.label}: initializer {tensor.name!r} keeps its data in {location!r}"
        if self.folder is None:
            raise OnnxFileError(f"{what}, but the model was given as bytes",
                                hint="load the model from its file so its external data can be found")
        posix, windows = PurePosixPath(location), PureWindowsPath(location)
        if (not location or posix.is_absolute() or windows.is_absolute() or windows.drive
                or ".." in posix.parts or ".." in windows.parts):
            raise OnnxFileError(f"{what}, a path that is not inside the model's folder",
                                hint="external data must be a relative path next to the .onnx file")
        folder = self.folder.resolve()
        path = (folder / location).resolve()  # follows symlinks, so a link out of the folder is caught here
        if folder not in path.parents:
            raise OnnxFileError(f"{what}, which resolves outside the model's folder {folder}",
                                hint="external data must stay in the model's folder (no symlinks out)")
        if not path.is_file():
            raise OnnxFileError(f"{what}, which does not exist", hint="copy the data file next to the model")
        return path

    def _read_input(self) -> None:
        """The one activation input: its shape, batch (fixed or symbolic) and element type."""
        graph = self.model.graph
        initializers = {tensor.name for tensor in graph.initializer}
        inputs = [value for value in graph.input if value.name not in initializers]
        if len(inputs) != 1:
            raise OnnxFileError(f"{self.label}: cnncalc analyses models with one input; this one has {len(inputs)}",
                                hint="export the model with a single image input")
        value = inputs[0]
        tensor_type = value.type.tensor_type
        if not value.type.HasField("tensor_type") or not tensor_type.HasField("shape"):
            raise OnnxFileError(f"{self.label}: input {value.name!r} has no tensor shape",
                                hint="export the model with a fixed input shape, e.g. 1x3x224x224")
        if tensor_type.elem_type not in DTYPES:
            known = tensor_type.elem_type in TensorProto.DataType.values()
            kind = TensorProto.DataType.Name(tensor_type.elem_type) if known else str(tensor_type.elem_type)
            raise OnnxFileError(f"{self.label}: input {value.name!r} has element type {kind}",
                                hint="cnncalc reads float32, float16 and float64 models")
        self.dtype = DTYPES[tensor_type.elem_type]
        dims = list(tensor_type.shape.dim)
        if len(dims) not in (2, 4):
            raise OnnxFileError(f"{self.label}: input {value.name!r} has rank {len(dims)}; cnncalc reads NCHW images "
                                "(rank 4) or NxF vectors (rank 2)", hint="export a 2-D CNN with input N x C x H x W")
        sizes = []
        for axis, dim in enumerate(dims[1:], start=1):
            if not dim.HasField("dim_value") or dim.dim_value < 1:
                raise OnnxFileError(f"{self.label}: input {value.name!r} axis {axis} has no fixed size "
                                    f"({dim.dim_param or '?'})",
                                    hint="export with a fixed input size, e.g. 3x224x224")
            sizes.append(dim.dim_value)
        self.input_shape = self._checked_dims(sizes, f"input {value.name!r}")
        self.symbolic_batch = not dims[0].HasField("dim_value") or dims[0].dim_value < 1
        self.batch = 1 if self.symbolic_batch else self._checked_dims([dims[0].dim_value], "the batch")[0]
        self.input_name = self._unique(value.name or "input")
        self.tensors[value.name] = self.input_name
        self.shapes[self.input_name] = self.input_shape

    def _topological_order(self) -> list[tuple[int, onnx.NodeProto]]:
        """Nodes in an order where every input is computed first: the file's own order when it already is."""
        nodes = list(self.model.graph.node)
        available = set(self.consts) | set(self.tensors) | {""}
        producer = {value: index for index, node in enumerate(nodes) for value in node.output if value}
        if len(producer) != sum(1 for node in nodes for value in node.output if value):
            raise OnnxFileError(f"{self.label}: two nodes write the same tensor", hint="the file is damaged")
        waiting = [0] * len(nodes)  # inputs each node still waits for
        readers: dict[int, list[int]] = {}
        for index, node in enumerate(nodes):
            for value in node.input:
                if value in available:
                    continue
                if value not in producer:
                    raise OnnxFileError(f"{self.label}: node {node.name or node.op_type!r} reads {value!r}, "
                                        "which nothing computes", hint="the file is damaged or incomplete")
                waiting[index] += 1
                readers.setdefault(producer[value], []).append(index)
        ready = [index for index, count in enumerate(waiting) if count == 0]
        heapq.heapify(ready)
        order = []
        while ready:
            index = heapq.heappop(ready)  # lowest index first keeps the file's order
            order.append((index, nodes[index]))
            for reader in readers.get(index, []):
                waiting[reader] -= 1
                if waiting[reader] == 0:
                    heapq.heappush(ready, reader)
        if len(order) != len(nodes):
            raise OnnxFileError(f"{self.label}: the graph has a cycle", hint="the file is damaged")
        return order

    # ---- one node ------------------------------------------------------------------------------
    def _convert(self, index: int, node: onnx.NodeProto) -> None:
        name = self._unique(node.name.lstrip("/") or (node.output[0] if node.output else "") or f"node{index}")
        if not node.output or not node.output[0]:
            raise OnnxFileError(f"{self.label}: node {name} ({node.op_type}) has no output")
        if any(value in self.unknown for value in node.input if value):
            self._note_unknown(node, name)
            return
        try:
            attrs = {attr.name: attribute_value(attr) for attr in node.attribute}
        except Exception as error:  # noqa: BLE001 - anything a damaged attribute throws
            raise OnnxFileError(f"{self.label}: node {name} ({node.op_type}) has an unreadable attribute: {error}",
                                hint="the file is damaged") from None
        if node.domain not in ("", "ai.onnx"):
            self._unsupported(node, name, f"from domain {node.domain!r}")
            return
        try:
            self._dispatch(index, node, name, attrs)
        except UnsupportedOpError as error:
            self._unsupported(node, name, error.message)
        except OnnxFileError:
            raise
        except CnnCalcError as error:
            raise OnnxFileError(f"{self.label}: node {name} ({node.op_type}): {error.message}",
                                hint=error.hint) from None
        except Exception as error:  # noqa: BLE001 - a damaged node must give an error, not a traceback
            raise OnnxFileError(f"{self.label}: node {name} ({node.op_type}) cannot be read: "
                                f"{type(error).__name__}: {error}", hint="the file is damaged or malformed") from None

    def _dispatch(self, index: int, node: onnx.NodeProto, name: str, attrs: dict[str, Any]) -> None:
        present = [value for value in node.input if value]
        if node.op_type == "Constant":
            self._constant(node, attrs)
        elif node.op_type == "Shape" or (present and all(value in self.consts for value in present)):
            self._fold(node, attrs)
        elif node.op_type in _PATTERNS:
            getattr(self, f"_pattern_{node.op_type.lower()}")(index, node, name, attrs)
        else:
            self._registry(node, name, attrs)

    def _registry(self, node: onnx.NodeProto, name: str, attrs: dict[str, Any],
                  op_cls: type[Op] | None = None) -> None:
        """The general case: the op class registered for the ONNX op type builds itself."""
        op_cls = op_cls or OPS.get(node.op_type)
        if op_cls is None:
            raise UnsupportedOpError(f"{node.op_type} is not an op cnncalc knows")
        self._check_extra_outputs(node)
        activations, weights = self._split_inputs(node, attrs)
        n_inputs = op_cls.n_inputs  # 0: any number from 2
        if (n_inputs and len(activations) != n_inputs) or (not n_inputs and len(activations) < 2):
            raise UnsupportedOpError(f"{node.op_type} with {len(activations)} activation inputs is not supported")
        in_shapes = [self.shapes[self.tensors[value]] for value in activations]
        weight_shapes = [self.consts[value].shape for value in weights]
        if node.op_type in ("Softmax", "LogSoftmax") and self.opset < 13:
            attrs = _softmax_before_opset_13(node.op_type, attrs, in_shapes[0], self.opset)
        op = op_cls.from_onnx(attrs, in_shapes, weight_shapes)
        self._add(name, op, [self.tensors[value] for value in activations], node.output[0], weights)

    def _add(self, name: str, op: Op, inputs: list[str], output: str, weight_inputs: list[str]) -> None:
        """Append an IR node after checking its shape and its weights against what the op asks for."""
        in_shapes = [self.shapes[value] for value in inputs]
        out_shape = tuple(op.output_shape(in_shapes))
        if any(d < 1 for d in out_shape) or numel(out_shape) > MAX_ELEMENTS:
            raise OnnxFileError(f"{self.label}: layer {name} computes the shape {list(out_shape)[:8]}",
                                hint="the file is damaged or its dimensions are absurd")
        specs = op.weights(in_shapes)
        file_weights = [value for value in weight_inputs if value in self.consts]
        arrays = self._weight_arrays(name, op.op_type, specs, file_weights)
        block = name.rsplit("/", 2)[0] if name.count("/") >= 2 else ""
        self.nodes.append(Node(name, op, tuple(inputs), label=op.describe(), block=block))
        self.shapes[name] = out_shape
        self.tensors[output] = name
        if self.read_weights:
            self.weights[name] = arrays

    def _weight_arrays(self, name: str, op_type: str, specs: list[WeightSpec], inputs: list[str]) -> list[np.ndarray]:
        """The file's initializers matched to the op's WeightSpecs; constant operands come from the op.
        A weight that broadcasts (Gemm's C) may be a single value, every feature's."""
        np_dtype = helper.tensor_dtype_to_np_dtype(ELEM_TYPES[self.dtype])
        arrays = []
        for position, spec in enumerate(specs):
            if spec.constant is not None:
                if self.read_weights:
                    arrays.append(np.full(spec.shape, spec.constant, dtype=np_dtype))
                continue
            if position >= len(inputs):
                raise OnnxFileError(f"{self.label}: layer {name} lacks its weight {spec.name!r}",
                                    hint="the file is damaged or uses a layout cnncalc does not know")
            const = self.consts[inputs[position]]
            if spec.broadcast and numel(const.shape) == 1 and numel(spec.shape) > 1:
                if self.read_weights:
                    arrays.append(np.full(spec.shape, self._value(inputs[position]).reshape(-1)[0], dtype=np_dtype))
                continue
            if spec.broadcast and len(const.shape) == 2 and const.shape[0] != 1:
                raise UnsupportedOpError(f"{op_type} bias of shape {list(const.shape)} varies over the batch, "
                                         "not only over the features", hint="cnncalc reads a bias per output feature")
            if numel(const.shape) != numel(spec.shape):
                raise OnnxFileError(f"{self.label}: layer {name} weight {spec.name!r} has shape {list(const.shape)}, "
                                    f"the layer needs {list(spec.shape)}", hint="the file is damaged")
            if self.read_weights:
                arrays.append(contiguous(self._value(inputs[position]).reshape(spec.shape), np_dtype))
        extra = [value for value in inputs[len(specs):] if numel(self.consts[value].shape) > 1]
        if extra:
            raise UnsupportedOpError(f"{len(extra)} more weight inputs than cnncalc's layer has ({extra[0]!r})")
        return arrays

    def _split_inputs(self, node: onnx.NodeProto, attrs: dict[str, Any]) -> tuple[list[str], list[str]]:
        """Activation inputs first, then constants; scalar constants become attributes by their schema name."""
        activations: list[str] = []
        weights: list[str] = []
        names = schema_input_names(node.op_type, self.opset)
        for position, value in enumerate(node.input):
            if not value:
                continue
            if value in self.tensors:
                if weights:
                    raise UnsupportedOpError(f"{node.op_type} with a constant before an activation input")
                activations.append(value)
            elif value in self.consts:
                weights.append(value)
                const = self.consts[value]
                role = names[position] if position < len(names) else ""
                if numel(const.shape) == 1 and role and role not in attrs and self._known(value):
                    scalar = self._value(value).reshape(-1)[0]
                    # a float32 0.2 reads back as 0.2, not 0.200000003
                    single = scalar.dtype.kind == "f" and scalar.dtype.itemsize <= 4
                    attrs[role] = onnx_float(scalar) if single else scalar.item()
            else:
                raise OnnxFileError(f"{self.label}: {node.op_type} reads {value!r}, which nothing computes")
        return activations, weights

    # ---- graph-level patterns ------------------------------------------------------------------
    def _constant(self, node: onnx.NodeProto, attrs: dict[str, Any]) -> None:
        """A Constant node: its value is known now, like an initializer."""
        if "value" in attrs:
            tensor = attrs["value"]
            shape = self._checked_dims(tensor.dims, f"constant {node.output[0]!r}")
            if tensor.data_location == TensorProto.EXTERNAL:
                raise OnnxFileError(f"{self.label}: constant {node.output[0]!r} keeps its value in an external file",
                                    hint="cnncalc reads external data for initializers only")
            self.consts[node.output[0]] = Const(shape, proto=tensor)
            return
        for key in ("value_float", "value_floats", "value_int", "value_ints"):
            if key in attrs:
                array = np.asarray(attrs[key], dtype=np.float32 if "float" in key else np.int64)
                self.consts[node.output[0]] = Const(array.shape, array=array)
                return
        raise UnsupportedOpError(f"Constant with {', '.join(attrs) or 'no value'} is not supported")

    def _fold(self, node: onnx.NodeProto, attrs: dict[str, Any]) -> None:
        """Shape arithmetic on constants (and Shape of an activation), computed at import."""
        fold = FOLDS.get(node.op_type)
        if fold is None and node.op_type not in OPS:
            raise UnsupportedOpError(f"{node.op_type} is not an op cnncalc knows")
        if fold is None:
            raise UnsupportedOpError(f"{node.op_type} on constants only is not supported")
        values, act_shape = [], None
        for value in node.input:
            if not value:
                continue
            if value in self.tensors:
                batch = SYMBOLIC_BATCH if self.symbolic_batch else self.batch
                act_shape = [batch, *self.shapes[self.tensors[value]]]
            else:
                if not self._known(value):
                    raise UnsupportedOpError(f"{node.op_type} of a value an unsupported op computes")
                values.append(self._value(value))
        result = np.asarray(fold(values, attrs, act_shape))
        self._checked_dims(result.shape, f"the result of {node.op_type}")
        self.consts[node.output[0]] = Const(result.shape, array=result)

    def _pattern_identity(self, index: int, node: onnx.NodeProto, name: str, attrs: dict[str, Any]) -> None:
        """Identity on an activation is a pass-through: its output is its input."""
        self._check_extra_outputs(node)
        self.tensors[node.output[0]] = self.tensors[node.input[0]]

    def _pattern_reshape(self, index: int, node: onnx.NodeProto, name: str, attrs: dict[str, Any]) -> None:
        """Reshape to (batch, -1) or (batch, C*H*W) is a flatten; to the same shape, a pass-through."""
        source = self.tensors[node.input[0]]
        shape = self.shapes[source]
        if len(node.input) < 2 or node.input[1] not in self.consts or not self._known(node.input[1]):
            raise UnsupportedOpError("Reshape to a shape that is not a constant is not supported")
        target = [int(v) for v in self._value(node.input[1]).reshape(-1)]
        # 0 copies the batch, -1 infers it; a fixed batch may also be written out
        batch_values = {0, SYMBOLIC_BATCH} | (set() if self.symbolic_batch else {self.batch})
        if target[1:] == list(shape) and (target[0] in batch_values or target[0] == -1):
            self.tensors[node.output[0]] = source  # a reshape to the same shape changes nothing
            return
        flat = len(target) == 2 and ((target[0] in batch_values and target[1] in (-1, numel(shape)))
                                     or target == [-1, numel(shape)])
        if not flat:
            raise UnsupportedOpError(f"Reshape of {show_shape(shape)} to {target} is not a flatten")
        self._flatten(node, name, source)

    def _pattern_squeeze(self, index: int, node: onnx.NodeProto, name: str, attrs: dict[str, Any]) -> None:
        """Squeeze of the 1x1 spatial axes after a global pool is a flatten."""
        source = self.tensors[node.input[0]]
        shape = self.shapes[source]
        if len(node.input) > 1 and node.input[1]:
            axes = [int(a) for a in self._value(node.input[1]).reshape(-1)]
        else:
            axes = [int(a) for a in attrs.get("axes", [])]
        rank = len(shape) + 1
        normal = sorted(a + rank if a < 0 else a for a in axes)
        if len(shape) == 3 and shape[1:] == (1, 1) and normal == [2, 3]:
            self._flatten(node, name, source)
            return
        raise UnsupportedOpError(f"Squeeze of axes {axes} on {show_shape(shape)} is not a flatten")

    def _flatten(self, node: onnx.NodeProto, name: str, source: str) -> None:
        op = OPS["Flatten"].from_onnx({"axis": 1}, [self.shapes[source]], [])
        self._add(name, op, [source], node.output[0], [])

    def _pattern_matmul(self, index: int, node: onnx.NodeProto, name: str, attrs: dict[str, Any]) -> None:
        """x @ W (+ b in the next node) on a vector is a fully connected layer: Gemm with transB=0."""
        if len(node.input) != 2 or node.input[0] not in self.tensors or node.input[1] not in self.consts:
            raise UnsupportedOpError("MatMul that is not activation @ constant weight is not supported")
        source = self.tensors[node.input[0]]
        w_shape = self.consts[node.input[1]].shape
        if len(self.shapes[source]) != 1 or len(w_shape) != 2:
            raise UnsupportedOpError(f"MatMul of {list(self.shapes[source])} by {list(w_shape)} is not a "
                                     "fully connected layer")
        self._check_extra_outputs(node)
        weights, output = [node.input[1]], node.output[0]
        readers = self.consumers.get(output, [])
        if len(readers) == 1 and output not in self.graph_outputs:
            add_index, add = readers[0]
            others = [value for value in add.input if value != output]
            if (add.op_type == "Add" and add.domain in ("", "ai.onnx") and len(add.input) == 2 and len(others) == 1
                    and others[0] in self.consts
                    and tuple(self.consts[others[0]].shape) in ((w_shape[1],), (1, w_shape[1]))):
                # only a bias along the features: a (n, 1) one would broadcast the output to (n, n)
                weights.append(others[0])
                output = add.output[0]
                self.skipped.add(add_index)
        op = OPS["Gemm"].from_onnx({"transB": 0}, [self.shapes[source]], [self.consts[w].shape for w in weights])
        self._add(name, op, [source], output, weights)

    # ---- unsupported ops -------------------------------------------------------------------------
    def _unsupported(self, node: onnx.NodeProto, name: str, reason: str) -> None:
        """Record an op cnncalc cannot count; with allow_unsupported keep it as a zero-cost placeholder."""
        where = name if reason.endswith("not an op cnncalc knows") else f"{name} ({reason})"
        self.unsupported.setdefault(node.op_type, []).append(where)
        if not self.allow_unsupported:
            self.unknown.update(value for value in node.output if value)
            return
        outputs = [value for value in node.output if value]
        used = [value for value in outputs[1:] if value in self.consumers or value in self.graph_outputs]
        activations = [self.tensors[value] for value in node.input if value in self.tensors]
        dims = self._inferred_dims(outputs[0])
        # a placeholder needs every axis after the batch; a constant (no activation input) every axis
        if used or dims is None or None in (dims[1:] if activations else dims):
            raise OnnxFileError(f"{self.label}: cannot continue past {node.op_type} at {name}: "
                                + (f"its extra output {used[0]!r} is used" if used else
                                   "ONNX shape inference gives no fixed shape for its output"),
                                hint="cnncalc can skip an unknown op only when its output shape is known")
        sizes = [d or 1 for d in dims]
        if not activations:  # computed from constants only: a constant of unknown value, e.g. dequantized weights
            self.consts[outputs[0]] = Const(self._checked_dims(sizes, f"the output {outputs[0]!r}"))
            return
        if len(sizes) not in (2, 4):
            raise OnnxFileError(f"{self.label}: cannot continue past {node.op_type} at {name}: its output has "
                                f"rank {len(sizes)}", hint="cnncalc reads NCHW images and NxF vectors")
        shape = self._checked_dims(sizes[1:], f"the output {outputs[0]!r}")
        self._add(name, Unsupported(node.op_type, shape, name), activations, outputs[0], [])

    def _note_unknown(self, node: onnx.NodeProto, name: str) -> None:
        """Downstream of an unsupported op (when failing anyway): only list ops cnncalc would not know either."""
        known = node.op_type in OPS or node.op_type in FOLDS or node.op_type in _PATTERNS or \
            node.op_type == "Constant"
        if not known:
            self.unsupported.setdefault(node.op_type, []).append(name)
        self.unknown.update(value for value in node.output if value)

    def _unsupported_error(self) -> UnsupportedOpError:
        lines = [f"{op_type} ({len(places)}x): {', '.join(places[:5])}{' ...' if len(places) > 5 else ''}"
                 for op_type, places in self.unsupported.items()]
        return UnsupportedOpError(
            f"{self.label} uses ops cnncalc does not know:\n    " + "\n    ".join(lines),
            ops=self.unsupported,
            hint="analyze, diff, plot and report take --allow-unsupported to analyse the rest (totals become "
                 "lower bounds); run, export, train and verify need a kernel for every op",
        )

    def _inferred_dims(self, output: str) -> tuple[int | None, ...] | None:
        """A tensor's dims from ONNX shape inference (None for a symbolic axis), or None when it has none."""
        if self._inferred is None:
            self._inferred = {}
            try:
                inferred = onnx.shape_inference.infer_shapes(self.model)
                for value in [*inferred.graph.value_info, *inferred.graph.output]:
                    self._inferred[value.name] = value
            except Exception:  # noqa: BLE001 - inference is best effort; a missing shape is reported by the caller
                pass
        value = self._inferred.get(output)
        if value is None or not value.type.tensor_type.HasField("shape"):
            return None
        return tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
                     for d in value.type.tensor_type.shape.dim)

    # ---- helpers -----------------------------------------------------------------------------------
    def _check_extra_outputs(self, node: onnx.NodeProto) -> None:
        used = [value for value in node.output[1:] if value and (value in self.consumers or
                                                                 value in self.graph_outputs)]
        if used:
            raise UnsupportedOpError(f"{node.op_type} whose extra output {used[0]!r} is used")


    def _known(self, value: str) -> bool:
        const = self.consts[value]
        return const.proto is not None or const.array is not None

    def _value(self, value: str) -> np.ndarray:
        """A constant's value, read from the file (embedded or external) on first use."""
        const = self.consts[value]
        if const.array is None:
            if const.proto is None:
                raise UnsupportedOpError(f"the value of {value!r} is computed by an unsupported op")
            const.array = self._tensor_array(const.proto)
        return const.array

    def _tensor_array(self, tensor: TensorProto) -> np.ndarray:
        """A TensorProto's values; external data only from the checked path inside the model's folder."""
        try:
            shape = self._checked_dims(tensor.dims, f"initializer {tensor.name!r}")
            if tensor.data_location != TensorProto.EXTERNAL:
                return numpy_helper.to_array(tensor).reshape(shape)
            path = self._check_external(tensor)
            assert path is not None
            info = {entry.key: entry.value for entry in tensor.external_data}
            dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tensor.data_type)).newbyteorder("<")
            expected = numel(shape) * dtype.itemsize
            offset = int(info.get("offset", 0))
            length = int(info.get("length", expected))
            if offset < 0 or length != expected or offset + length > path.stat().st_size:
                raise OnnxFileError(f"{self.label}: initializer {tensor.name!r} wants {length} bytes at offset "
                                    f"{offset} of {path.name}, which does not fit its shape or the file",
                                    hint="the external data file is damaged or does not belong to this model")
            with open(path, "rb") as handle:
                handle.seek(offset)
                data = handle.read(length)
            return np.frombuffer(data, dtype=dtype).reshape(shape)
        except CnnCalcError:
            raise
        except Exception as error:  # noqa: BLE001 - a damaged tensor must give an error, not a traceback
            raise OnnxFileError(f"{self.label}: initializer {tensor.name!r} cannot be read: {error}",
                                hint="the file is damaged") from None

    def _unique(self, name: str) -> str:
        """An IR tensor name not used yet (ONNX node names may repeat or be empty)."""
        candidate, count = name, 1
        while candidate in self.used_names:
            count += 1
            candidate = f"{name}_{count}"
        self.used_names.add(candidate)
        return candidate


def _softmax_before_opset_13(op_type: str, attrs: dict[str, Any], in_shape: Shape, opset: int) -> dict[str, Any]:
    """Old Softmax as today's: before opset 13 it flattened the input to 2-D at `axis` (default 1).

    Each row of that 2-D view was normalized, so on NCHW input with axis 1 it normalized over C x H x W
    together; that is today's channel Softmax only when nothing but the channels follows the axis.
    """
    rank = len(in_shape) + 1  # with the batch axis
    axis = int(attrs.get("axis", 1))
    axis = axis + rank if axis < 0 else axis
    if axis != 1 or numel(in_shape) != in_shape[0]:
        grouped = " x ".join(str(d) for d in in_shape) if axis == 1 else f"the axes from {axis} on"
        raise UnsupportedOpError(  # the unsupported-op list keeps only the message: the remedy goes in it
            f"{op_type} in opset {opset} normalizes over {grouped} together (the input flattened from axis {axis}), "
            f"not over channels as cnncalc's does; export with opset 13 or later",
            hint="export with opset 13 or later, or flatten the tensor before the softmax")
    return {**attrs, "axis": 1}


def _consumers(order: list[tuple[int, onnx.NodeProto]], graph: onnx.GraphProto) -> dict[str, list[tuple[int, Any]]]:
    """ONNX tensor name -> the nodes that read it."""
    readers: dict[str, list[tuple[int, Any]]] = {}
    for index, node in order:
        for value in node.input:
            if value:
                readers.setdefault(value, []).append((index, node))
    return readers
