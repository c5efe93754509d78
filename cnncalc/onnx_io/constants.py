"""Opsets, limits on untrusted files, and the element types both directions share."""

from __future__ import annotations

import onnx
from onnx import TensorProto

DEFAULT_OPSET = 17
MIN_OPSET = 13  # Softmax over one axis, Clip bounds and Dropout ratio as inputs: the semantics the ops assume
MAX_OPSET = onnx.defs.onnx_opset_version()  # the newest the installed onnx package knows
BATCH_PARAM = "batch"  # name of the symbolic batch dimension in exported models
MAX_FILE_BYTES = 2**31 - 1  # protobuf cannot hold a larger message
MAX_DIM = 10**6  # largest single dimension accepted from a file
MAX_ELEMENTS = 2**40  # largest tensor accepted from a file or computed from one
SPEC_KEY = "cnncalc.spec"  # metadata key holding the spec text

ELEM_TYPES = {"float32": TensorProto.FLOAT, "float16": TensorProto.FLOAT16,
               "float64": TensorProto.DOUBLE, "int8": TensorProto.FLOAT}  # int8 sizes memory only: stored as float32
DTYPES = {TensorProto.FLOAT: "float32", TensorProto.FLOAT16: "float16", TensorProto.DOUBLE: "float64"}
