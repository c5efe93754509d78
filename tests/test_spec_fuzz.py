"""Any text and any YAML document gives a Graph or a CnnCalcError: never another exception."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cnncalc.errors import CnnCalcError
from cnncalc.spec import parse
from cnncalc.specfile import KEYS, load

SPECS = Path(__file__).resolve().parent.parent / "specs"
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

VALID = [
    "224x224x32|3x3x32x64(p=1)|224x224x64|MP|112x112x64",
    "224x224x32|3x3x32x64(p=0,s=2)|112x112x64",
    "32x32x3|3x3x3x16(p=1)|BN|ReLU|MP(3,s=2,p=1)|[res[3x3x16x16(p=1)|BN|ReLU|3x3x16x16(p=1)|BN]|ReLU]*2|GAP|FC(10)",
    "56x56x64|res[3x3x64x128(p=1,s=2,b=0)|BN;1x1x64x128(s=2)|BN]|ReLU|DO(0.5)|Flatten|Softmax",
    "28x28x192|cat[1x1x192x64;1x1x192x96|3x3x96x128(p=1);MP(3,s=1,p=1,ceil=1)|1x1x192x32]|28x28x256",
    "16x16x8|3x3x8x8(dw,p=same)|ReLU6|LReLU(0.1)|AP(2)|LP(k=2,s=1)|GMP|Dense(4)|Sigmoid|Tanh|LogSoftmax",
]
ALPHABET = "0123456789xX|[];*(),=. \nresatcpMPFCRLUBNDOGAPdwbkgsm6-_&"
TOKENS = ["224x224x3", "8x8x4", "3x3x4x4", "1x1x4x8", "3x3x3x16", "(p=1)", "(s=2)", "(p=same)", "(dw)",
          "(3)", "(k=3,s=2,p=1)", "(ceil=1)", "(b=0)", "|", "|", "|", "[", "]", ";", "*", "*2", "*0",
          "*10000", "res", "cat", "res[", "cat[", "ReLU", "relu6", "MP", "AP", "GAP", "FC(10)", "FC", "BN",
          "DO(0.5)", "Flatten", "Softmax", "ID", "Add", "Conv", "(", ")", ",", "=", "x", " ", "\n", "0",
          "999999", "1000000", "4x4x4", "1x1x1", "2x2x4"]


def outcome(call) -> object:
    """Run `call`; a CnnCalcError is a fine answer, as long as it renders and is not an internal error."""
    try:
        return call()
    except CnnCalcError as error:
        assert "internal error" not in error.message, error.render()
        assert error.render()
        return error


@FAST
@given(st.text(alphabet=ALPHABET, max_size=60))
def test_random_text(text):
    outcome(lambda: parse(text))


@FAST
@given(st.lists(st.sampled_from(TOKENS), max_size=25))
def test_token_soup(tokens):
    text = "".join(tokens)
    outcome(lambda: parse(text))
    outcome(lambda: parse(text, input_shape=(4, 8, 8), blocks={"blk": "ReLU|" + text[:20]}))


@st.composite
def mutated(draw, texts: list[str]) -> str:
    """A valid text with a few characters deleted, inserted, replaced or a slice duplicated."""
    text = draw(st.sampled_from(texts))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        kind = draw(st.sampled_from(["delete", "insert", "replace", "duplicate"]))
        char = draw(st.sampled_from(ALPHABET))
        if kind == "delete":
            text = text[:at] + text[at + 1:]
        elif kind == "insert":
            text = text[:at] + char + text[at:]
        elif kind == "replace":
            text = text[:at] + char + text[at + 1:]
        else:
            end = draw(st.integers(at, min(len(text), at + 12)))
            text = text[:end] + text[at:end] + text[end:]
    return text


@FAST
@given(mutated(VALID))
def test_mutated_valid_specs(text):
    outcome(lambda: parse(text))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


YAML_SCALARS = st.one_of(st.sampled_from(VALID + TOKENS + ["224x224x3", "float16", "int8", "jetson-nano"]),
                         st.integers(-3, 300), st.booleans(), st.none(), st.text(ALPHABET, max_size=12))
YAML_VALUES = st.recursive(
    YAML_SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(["res", "cat", "a", "b", "bias", "main"]), inner, max_size=3)),
    max_leaves=12)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from([*KEYS, "varaints", "bias"]), YAML_VALUES, max_size=6))
def test_random_yaml_documents(workdir, document):
    path = workdir / "doc.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    outcome(lambda: load(str(path)))


FILE_TEXTS = [path.read_text(encoding="utf-8") for path in sorted(SPECS.glob("*.yaml"))]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated(FILE_TEXTS or ["network: '4x4x1|ReLU'\n"]))
def test_mutated_spec_files(workdir, text):
    path = workdir / "mutated.yaml"
    path.write_text(text, encoding="utf-8")
    outcome(lambda: load(str(path)))
