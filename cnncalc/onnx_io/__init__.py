"""ONNX in and out: a Graph becomes a runnable ONNX model, and ONNX files become Graphs.

Both directions ask the ops. Export writes one node per IR node, of type `op.op_type` with
`op.onnx_attributes()`, whose inputs are the activations and then one initializer per
`op.weights()` entry, named f"{node}.{weight}". Import builds each node with
`OPS[op_type].from_onnx`. Only graph-level patterns live in `importer.py`: Constant nodes and
the shape arithmetic that feeds Reshape, constant operands such as Clip's bounds, MatMul+Add
read as Gemm, Reshape and Squeeze used as flatten, and Identity as a pass-through.

`export.py` writes models; `importer.py` reads them, with `reading.py` (parsing the untrusted
file) and `folding.py` (the constant shape arithmetic); `constants.py` holds the opsets and limits both
directions share. `cnncalc/spec_text.py` turns a Graph back into a spec chain: it lives outside this
package so that `analyze --format json` can write a chain without importing onnx.

ONNX files are untrusted: their size is checked before parsing, every parse failure becomes
an OnnxFileError naming the file, external data may not leave the model's folder, and
absurd dimensions are refused before anything is allocated.
"""

from ..spec_text import to_spec
from .constants import BATCH_PARAM, DEFAULT_OPSET, MAX_DIM, MAX_ELEMENTS, MAX_FILE_BYTES, MAX_OPSET, MIN_OPSET, SPEC_KEY
from .export import check_file_size, check_opset, export_targets, save_model, to_onnx
from .importer import ImportedModel, import_onnx, load_model

__all__ = ["BATCH_PARAM", "DEFAULT_OPSET", "MAX_DIM", "MAX_ELEMENTS", "MAX_FILE_BYTES", "MAX_OPSET", "MIN_OPSET",
           "SPEC_KEY", "ImportedModel", "check_file_size", "check_opset", "export_targets", "import_onnx", "load_model",
           "save_model", "to_onnx", "to_spec"]
