"""Reading an untrusted ONNX file: its size checked before parsing, every parse failure an
OnnxFileError naming the file, and the small lookups on the parsed model the importer needs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import onnx
from onnx import helper

from ..errors import OnnxFileError
from ..fileio import missing_file_hint
from .constants import DEFAULT_OPSET, MAX_FILE_BYTES, MAX_OPSET


def read_model(source: str | Path | bytes) -> tuple[onnx.ModelProto, str, Path | None]:
    """Parse the bytes of a model after checking its size; the folder is where external data may live."""
    if isinstance(source, bytes):
        data, label, folder = source, "ONNX bytes", None
    else:
        path = Path(source)
        label = str(path)
        try:
            if not path.exists():
                raise OnnxFileError(f"{path} does not exist", hint=missing_file_hint(path))
            if not path.is_file():
                raise OnnxFileError(f"{path} is not a file", hint="give the path of an .onnx model file")
            size = path.stat().st_size
            if size > MAX_FILE_BYTES:
                raise OnnxFileError(f"{path} is {size} bytes, more than one ONNX file can hold",
                                    hint="large models keep their weights in external data files")
            data = path.read_bytes()
        except OSError as error:
            raise OnnxFileError(f"cannot read {path}: {error.strerror or error}") from None
        folder = path.parent
    if len(data) > MAX_FILE_BYTES:
        raise OnnxFileError(f"{label} is {len(data)} bytes, more than one ONNX file can hold")
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except Exception as error:  # noqa: BLE001 - protobuf raises several types for damaged input
        raise OnnxFileError(f"{label} is not an ONNX model (it cannot be parsed: {type(error).__name__})",
                            hint="give a .onnx file written by an ONNX exporter") from None
    if not model.HasField("graph") or not model.graph.node:
        raise OnnxFileError(f"{label} is not an ONNX model with a graph (no nodes found)",
                            hint="give a .onnx file written by an ONNX exporter")
    return model, label, folder


def inline_functions(model: onnx.ModelProto, label: str) -> onnx.ModelProto:
    """The model with its model-local functions inlined: PyTorch's dynamo exporter (torch 2.1 to 2.4) wraps
    each module in one, so a ResNet reads as a few nodes of domain `pkg.torch...` whose bodies are plain ops."""
    if not model.functions:
        return model
    try:
        import onnx.inliner  # onnx 1.16 and later
    except ImportError:
        return model  # the calls are then listed as ops from another domain
    try:
        return onnx.inliner.inline_local_functions(model)
    except Exception as error:  # noqa: BLE001 - a recursive or malformed function in an untrusted file
        raise OnnxFileError(f"{label}: its model-local functions cannot be inlined: {str(error)[:200]}",
                            hint="export the model without local functions (inline them with onnx.inliner)") from None


def check_names(graph: onnx.GraphProto, label: str) -> None:
    """Every name the importer reads is text; protobuf hands over bytes when a file's string is not UTF-8."""
    names: list[Any] = [value.name for value in [*graph.input, *graph.output, *graph.initializer]]
    for node in graph.node:
        names += [node.name, node.op_type, node.domain, *node.input, *node.output]
        names += [attr.name for attr in node.attribute]
    for tensor in graph.initializer:
        names += [entry.key for entry in tensor.external_data] + [entry.value for entry in tensor.external_data]
    if any(not isinstance(name, str) for name in names):
        raise OnnxFileError(f"{label} has names that are not valid UTF-8 text", hint="the file is damaged")


def default_opset(model: onnx.ModelProto) -> int:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    return DEFAULT_OPSET


def attribute_value(attr: onnx.AttributeProto) -> Any:
    """An attribute's value with strings decoded and tensors kept as TensorProto."""
    value = helper.get_attribute_value(attr)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, list) and value and isinstance(value[0], bytes):
        return [item.decode("utf-8", errors="replace") for item in value]
    return value


def schema_input_names(op_type: str, opset: int) -> list[str]:
    """The ONNX schema's names for a node's inputs ("input", "min", "max" for Clip), or none if unknown."""
    try:
        schema = onnx.defs.get_schema(op_type, max(1, min(opset, MAX_OPSET)), "")
    except Exception:  # noqa: BLE001 - an op type onnx does not define
        return []
    return [formal.name for formal in schema.inputs]
