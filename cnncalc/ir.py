"""The IR: a frozen, topologically ordered DAG of operator nodes.

Tensors are named by the node that produces them; the graph input has its own name.
Shapes inside are NCHW per sample, (C, H, W) or (F,); users see HxWxC.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import SupportsIndex

from .errors import CnnCalcError
from .ops.base import Op, Shape, numel

DTYPE_BYTES = {"float32": 4, "float16": 2, "int8": 1, "float64": 8}
#: other names people write for the dtypes; refused like any unknown name, but the hint names the one meant
DTYPE_ALIASES = {"fp32": "float32", "fp16": "float16", "half": "float16", "fp64": "float64", "double": "float64",
                 "i8": "int8"}


def dtype_hint(value: object) -> str:
    """How to fix an unknown dtype: the one an alias means (fp16 -> float16), else the list."""
    meant = DTYPE_ALIASES.get(value.lower()) if isinstance(value, str) else None
    return f"did you mean {meant!r}?" if meant else f"use one of {', '.join(DTYPE_BYTES)}"


@dataclass(frozen=True)
class Node:
    """One operator application; `inputs` name the tensors it reads (activations only)."""

    name: str
    op: Op
    inputs: tuple[str, ...]
    label: str = ""  # the spec text of the item, e.g. "3x3x32x64(p=1)"
    pos: int | None = None  # offset of that text in the spec
    block: str = ""  # enclosing block path for display, e.g. "res2/main"
    implicit: bool = False  # inserted by cnncalc, e.g. the Flatten before an FC on an image


#: the largest batch a network is analysed or run at (one dimension of a tensor; as ONNX import's MAX_DIM)
MAX_BATCH = 10**6


@dataclass(frozen=True)
class Graph:
    """A whole network: input, nodes in topological order, one output."""

    name: str
    input_shape: Shape
    nodes: tuple[Node, ...]
    output: str
    input_name: str = "input"
    text: str = ""  # the spec text the graph was built from
    dtype: str = "float32"
    batch: int = 1
    description: str = ""
    unsupported: tuple[str, ...] = ()  # ONNX ops skipped on import ("OpType at node_name"): totals are lower bounds
    shapes: dict[str, Shape] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if self.dtype not in DTYPE_BYTES:
            raise CnnCalcError(f"unknown dtype {self.dtype!r}", hint=dtype_hint(self.dtype))
        object.__setattr__(self, "batch", whole_batch(self.batch))
        if not 1 <= self.batch <= MAX_BATCH:
            raise CnnCalcError(f"batch must be 1 to {MAX_BATCH:,}, got {self.batch:,}",
                               hint="for the largest batch that fits, see the 'max batch' of a hardware profile (-p)")
        known = {self.input_name}
        for node in self.nodes:
            if node.name in known:
                raise CnnCalcError(f"two tensors are named {node.name!r}")
            missing = [name for name in node.inputs if name not in known]
            if missing:
                raise CnnCalcError(f"node {node.name!r} reads {missing} before they are computed")
            known.add(node.name)
        if self.output not in known:
            raise CnnCalcError(f"graph output {self.output!r} is not computed by any node")
        if not self.shapes:
            object.__setattr__(self, "shapes", infer_shapes(self))

    def __repr__(self) -> str:
        """One line for a notebook; the dataclass' own repr spells out every node."""
        out = show_shape(self.shapes[self.output]) if self.output in self.shapes else "?"
        return (f"<Graph {self.name!r}: {show_shape(self.input_shape)} -> {out}, {len(self.nodes)} nodes, "
                f"batch {self.batch}, {self.dtype}>")

    @property
    def dtype_bytes(self) -> int:
        return DTYPE_BYTES[self.dtype]

    def node(self, name: str) -> Node:
        """The node that produces tensor `name`."""
        for node in self.nodes:
            if node.name == name:
                return node
        import difflib

        close = difflib.get_close_matches(name, [node.name for node in self.nodes], n=1)
        what = "the network's input, not a node" if name == self.input_name else "no node of this network"
        raise CnnCalcError(f"{name!r} is {what}",
                           hint=f"did you mean {close[0]!r}?" if close else "node names: graph.nodes[i].name")

    def last_use(self) -> dict[str, int]:
        """For each tensor, the index of the last node that reads it (the output lives to the end)."""
        last: dict[str, int] = {self.input_name: -1}
        for index, node in enumerate(self.nodes):
            last.setdefault(node.name, index)
            for name in node.inputs:
                last[name] = index
        last[self.output] = len(self.nodes)
        return last


def whole_batch(batch: object) -> int:
    """`batch` as a Python int: a NumPy integer from a sweep counts, 2.5, "4" or True do not (they would
    slip through as a fractional batch or fail deep inside with a TypeError)."""
    if isinstance(batch, bool) or not isinstance(batch, SupportsIndex):
        raise CnnCalcError(f"batch must be a whole number, got {batch!r}", hint="e.g. batch=8")
    return operator.index(batch)


def infer_shapes(graph: Graph) -> dict[str, Shape]:
    """Per-sample shape of every tensor, asking each op."""
    shapes: dict[str, Shape] = {graph.input_name: tuple(graph.input_shape)}
    for node in graph.nodes:
        shapes[node.name] = node.op.output_shape([shapes[name] for name in node.inputs])
    return shapes


def show_shape(shape: Shape) -> str:
    """HxWxC as users write it; a vector of F shows as 1x1xF."""
    return "x".join(str(d) for d in to_hwc(shape))


def to_hwc(shape: Shape) -> list[int]:
    """(C, H, W) -> [H, W, C]; (F,) -> [1, 1, F]."""
    if len(shape) == 3:
        return [shape[1], shape[2], shape[0]]
    return [1, 1, numel(shape)]
