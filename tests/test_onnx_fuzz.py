"""Truncated and mutated ONNX bytes fed to the importer: always a model or a clean CnnCalcError.

The seeds are small PyTorch-layout models (tests/data/make_models.py) with few weight bytes, so most
mutations land in the graph's structure (names, op types, attributes, shapes), not in weight values.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cnncalc import onnx_io
from cnncalc.analysis import analyze
from cnncalc.errors import CnnCalcError
from cnncalc.ir import Graph

DATA = Path(__file__).resolve().parent / "data"
_spec = importlib.util.spec_from_file_location("make_models", DATA / "make_models.py")
mm = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mm)  # type: ignore[union-attr]

SEEDS = [mm.tiny_cnn(width=2, size=8).SerializeToString(), mm.tiny_unsupported().SerializeToString()]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A seed cut short, with bytes overwritten, or with a chunk deleted or repeated."""
    data = bytearray(SEEDS[draw(st.integers(0, len(SEEDS) - 1))])
    kind = draw(st.sampled_from(["truncate", "overwrite", "delete", "repeat"]))
    if kind == "truncate":
        return bytes(data[: draw(st.integers(0, len(data) - 1))])
    if kind == "overwrite":
        for _ in range(draw(st.integers(1, 8))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        return bytes(data)
    start = draw(st.integers(0, len(data) - 1))
    end = min(len(data), start + draw(st.integers(1, 64)))
    if kind == "delete":
        return bytes(data[:start] + data[end:])
    return bytes(data[:end] + data[start:end] + data[end:])


def test_seeds_load():
    # the fuzzing only means something if the unmutated seeds are read
    assert onnx_io.load_model(SEEDS[0]).graph.nodes
    assert onnx_io.load_model(SEEDS[1], allow_unsupported=True).graph.unsupported


@given(mutated())
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
def test_mutated_bytes_give_a_model_or_a_clean_error(data):
    for allow_unsupported in (False, True):
        try:
            result = onnx_io.load_model(data, allow_unsupported=allow_unsupported)
        except CnnCalcError as error:
            assert error.render()  # a message a person can read
            continue
        assert isinstance(result.graph, Graph)
        analyze(result.graph)  # whatever was read can be analysed
