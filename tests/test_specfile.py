"""YAML spec files: every form of a network, the keys, and every error naming file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from cnncalc.errors import SpecError, SpecFileError
from cnncalc.ir import show_shape
from cnncalc.specfile import SpecFile, load, load_many


def write(tmp_path: Path, text: str, name: str = "net.yaml") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def output(spec_file: SpecFile, index: int = 0) -> str:
    graph = spec_file.networks[index]
    return show_shape(graph.shapes[graph.output])


def file_error(tmp_path: Path, text: str) -> SpecFileError:
    path = write(tmp_path, text)
    with pytest.raises(SpecFileError) as info:
        load(path)
    assert path in info.value.message  # every file error names the file
    return info.value


# ---- forms ------------------------------------------------------------------------------------------
def test_network_string_with_all_keys(tmp_path):
    spec_file = load(write(tmp_path, """
name: tiny
description: a small net
input: 8x8x3
network: "3x3x3x4(p=1) | ReLU | MP"
profiles: [jetson-nano]
dtype: float16
batch: 4
defaults: {bias: false}
"""))
    assert (spec_file.name, spec_file.description, spec_file.profiles) == ("tiny", "a small net", ["jetson-nano"])
    (graph,) = spec_file.networks
    assert (graph.name, graph.description, graph.dtype, graph.batch) == ("tiny", "a small net", "float16", 4)
    assert graph.nodes[0].op.bias is False
    assert output(spec_file) == "4x4x4"
    assert spec_file.path and spec_file.path.endswith("net.yaml")


def test_defaults_name_description_profiles(tmp_path):
    spec_file = load(write(tmp_path, 'network: "4x4x1 | ReLU"\nprofiles: jetson-nano\n', "my-net.yml"))
    assert (spec_file.name, spec_file.description, spec_file.profiles) == ("my-net", "", ["jetson-nano"])
    graph = spec_file.networks[0]
    assert (graph.dtype, graph.batch, graph.nodes[0].name) == ("float32", 1, "relu1")


def test_input_as_list(tmp_path):
    assert output(load(write(tmp_path, 'input: [6, 4, 2]\nnetwork: "MP"\n'))) == "3x2x2"


def test_variants_keep_file_order_and_share_input_and_blocks(tmp_path):
    spec_file = load(write(tmp_path, """
input: 224x224x32
blocks:
  pool: MP
variants:
  full-res-then-pool: "3x3x32x64(p=1) | 224x224x64 | pool | 112x112x64"
  strided:            "3x3x32x64(p=1,s=2) | 112x112x64"
  a-third: "1x1x32x8"
"""))
    assert [graph.name for graph in spec_file.networks] == ["full-res-then-pool", "strided", "a-third"]
    assert [output(spec_file, i) for i in range(3)] == ["112x112x64", "112x112x64", "224x224x8"]


def test_network_as_a_list_with_res_and_cat_mappings(tmp_path):
    # the example of docs/spec-language.md
    spec_file = load(write(tmp_path, """
input: 64x64x3
network:
  - 7x7x3x64(s=2,p=3,b=0) | BN | ReLU | MP(3,s=2,p=1)
  - res: "3x3x64x64(p=1) | BN | ReLU | 3x3x64x64(p=1) | BN"     # identity shortcut
  - ReLU
  - res:                                                         # [main, shortcut]
      - 3x3x64x128(s=2,p=1) | BN | ReLU | 3x3x128x128(p=1) | BN
      - 1x1x64x128(s=2) | BN
  - cat: ["1x1x128x32", "3x3x128x32(p=1)"]                      # two or more branches
  - GAP | FC(1000)
"""))
    graph = spec_file.networks[0]
    assert [node.op.op_type for node in graph.nodes if node.op.op_type in ("Add", "Concat")] == [
        "Add", "Add", "Concat"]
    assert graph.node("add1").inputs == ("bn3", "mp1")  # identity shortcut: the block's input
    assert graph.node("conv6").block == "res2/shortcut"  # conv1 stem, res1: 2, res2 main: 2
    # 64 -> 32 (stride 2) -> 16 (pool) -> 8 (strided res); cat: 32 + 32 channels
    assert show_shape(graph.shapes["concat1"]) == "8x8x64"
    assert output(spec_file) == "1x1x1000"
    # one list item per line of the chain text, so errors show one line
    assert graph.text.splitlines()[2] == "ReLU |"


def test_res_as_one_item_list_and_branches_as_lists(tmp_path):
    spec_file = load(write(tmp_path, """
input: 8x8x4
network:
  - res: [["3x3x4x4(p=1)", BN]]
  - res:
      - ["3x3x4x8(p=1,s=2)", BN]
      - ["1x1x4x8(s=2)"]
  - cat: [[ReLU, ID], [ID]]
  - [ReLU, [ID]]
"""))
    graph = spec_file.networks[0]
    assert graph.node("add1").inputs == ("bn1", "input")
    assert output(spec_file) == "4x4x16"


def test_blocks_as_lists_and_using_other_blocks(tmp_path):
    spec_file = load(write(tmp_path, """
input: 8x8x4
blocks:
  unit: ["3x3x4x4(p=1)", BN, ReLU]
  pair: unit | unit
network: "pair | UNIT"
"""))
    assert len(spec_file.networks[0].nodes) == 9


def test_chain_string_argument():
    spec_file = load("224x224x3|3x3x3x16(p=1)|ReLU|MP|FC(10)")
    assert (spec_file.name, spec_file.path, spec_file.profiles) == ("network", None, [])
    assert output(spec_file) == "1x1x10"


def test_onnx_argument_is_delegated_to_the_importer(monkeypatch):
    import cnncalc.onnx_io as onnx_io

    graph = load("4x4x1|ReLU").networks[0]
    seen = []
    monkeypatch.setattr(onnx_io, "import_onnx", lambda path, **kw: seen.append((path, kw)) or graph)
    spec_file = load("model.ONNX", allow_unsupported=True)
    assert seen == [("model.ONNX", {"allow_unsupported": True})]
    assert spec_file.networks == [graph] and spec_file.path == "model.ONNX"


def test_load_many(tmp_path):
    path = write(tmp_path, 'network: "4x4x1 | ReLU"\n')
    assert [spec_file.name for spec_file in load_many([path, "4x4x1|MP"])] == ["net", "network"]


# ---- errors -----------------------------------------------------------------------------------------
def test_missing_file(tmp_path):
    with pytest.raises(SpecFileError, match="no such file"):
        load(str(tmp_path / "missing.yaml"))


def test_a_directory(tmp_path):
    folder = tmp_path / "dir.yaml"
    folder.mkdir()
    with pytest.raises(SpecFileError, match="is a directory"):
        load(str(folder))


def test_unsupported_file_type(tmp_path):
    path = write(tmp_path, "whatever", "net.json")
    with pytest.raises(SpecFileError, match="cannot read this kind of file"):
        load(path)


def test_not_yaml_reports_line_and_column(tmp_path):
    error = file_error(tmp_path, 'name: x\nnetwork: "4x4x1\n  - [\n')
    assert "is not valid YAML at line" in error.message


def test_not_utf8(tmp_path):
    path = tmp_path / "bin.yaml"
    path.write_bytes(b"\xff\xfe\x00name")
    with pytest.raises(SpecFileError, match="UTF-8"):
        load(str(path))


@pytest.mark.parametrize(("text", "message", "hint"), [
    ("", "is empty", None),
    ("- a\n- b\n", "must be a mapping of keys", None),
    ("varients: {}\n", "unknown key 'varients'", "did you mean 'variants'?"),
    ("network: '4x4x1'\nprofile: [a]\n", "unknown key 'profile'", "did you mean 'profiles'?"),
    ("network: 'a'\nvariants: {b: 'c'}\n", "has both network: and variants:", None),
    ("name: x\n", "has neither network: nor variants:", None),
    ("name: [x]\nnetwork: '4x4x1'\n", "name: must be a string, not a list", None),
    ("description: 3\nnetwork: '4x4x1'\n", "description: must be a string, not a number", None),
    ("input: 7\nnetwork: 'ReLU'\n", "input: must be a shape HxWxC such as 224x224x3, not a number", None),
    ("input: 7x7\nnetwork: 'ReLU'\n", "input: '7x7' is not a shape HxWxC", None),
    ("input: 0x7x7\nnetwork: 'ReLU'\n", "input: input shape", None),
    ("dtype: float8\nnetwork: '4x4x1'\n", "dtype: 'float8' is not a known dtype", "float16"),
    ("batch: 0\nnetwork: '4x4x1'\n", "batch: must be a whole number of at least 1", None),
    ("batch: true\nnetwork: '4x4x1'\n", "batch: must be a whole number", None),
    ("batch: '8'\nnetwork: '4x4x1'\n", "batch: must be a whole number", None),
    ("profiles: 3\nnetwork: '4x4x1'\n", "profiles: must be a list of profile names", None),
    ("profiles: [a, 3]\nnetwork: '4x4x1'\n", "profiles: must be a list of profile names", None),
    ("defaults: [bias]\nnetwork: '4x4x1'\n", "defaults: must be a mapping", None),
    ("defaults: {bais: false}\nnetwork: '4x4x1'\n", "defaults: unknown key 'bais'", "did you mean 'bias'?"),
    ("defaults: {bias: maybe}\nnetwork: '4x4x1'\n", "defaults.bias: must be true or false", None),
    ("blocks: [a]\nnetwork: '4x4x1'\n", "blocks: must be a mapping of name -> chain", None),
    ("blocks: {1: ReLU}\nnetwork: '4x4x1'\n", "blocks: the name 1 must be text", None),
    ("blocks: {a: 3}\nnetwork: '4x4x1'\n", "blocks.a: must be a chain string or a list", None),
    ("variants: []\n", "variants: must be a non-empty mapping", None),
    ("variants: {}\n", "variants: must be a non-empty mapping", None),
    ("variants: {1: '4x4x1'}\n", "variants: the name 1 must be text", None),
    ("variants: {a: {b: c}}\n", "variants.a: must be a chain string or a list", None),
    ("network: 5\n", "network: must be a chain string or a list of items, not a number", None),
    ("network: []\n", "network: is an empty list", None),
    ("network: ['4x4x1', 7]\n", "network[1]: expected a chain string, a list, or a", None),
    ("network: ['4x4x1', []]\n", "network[1]: is an empty list", None),
    ("network: ['4x4x1', {rse: ReLU}]\n", "network[1]: a mapping item is {res: ...} or {cat: [...]}", None),
    ("network: ['4x4x1', {res: ReLU, cat: ReLU}]\n", "a mapping item is {res: ...}", None),
    ("network: ['4x4x1', {res: [a, b, c]}]\n", "network[1].res: must be main, [main] or [main, shortcut]", None),
    ("network: ['4x4x1', {res: 3}]\n", "network[1].res: must be main, [main] or [main, shortcut]", None),
    ("network: ['4x4x1', {res: [3]}]\n", "network[1].res[0]: expected a chain string", None),
    ("network: ['4x4x1', {cat: [ReLU]}]\n", "network[1].cat: must be a list of at least two branches", None),
    ("network: ['4x4x1', {cat: ReLU}]\n", "network[1].cat: must be a list of at least two branches", None),
    ("network: ['4x4x1', {cat: [[], ReLU]}]\n", "network[1].cat[0]: is an empty list", None),
])
def test_file_errors_name_the_key(tmp_path, text, message, hint):
    error = file_error(tmp_path, text)
    assert message in error.message, error.message
    if hint is not None:
        assert error.hint is not None and hint in error.hint


def test_deeply_nested_lists(tmp_path):
    text = "network: " + "[" * 40 + "ReLU" + "]" * 40 + "\n"
    assert "nested more than 32 deep" in file_error(tmp_path, text).message


def test_yaml_aliases_cannot_blow_up_the_text(tmp_path):
    # each level doubles the text: 2^30 copies without a limit
    lines = ["a0: &a0 ['4x4x1|ReLU']"]
    lines += [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}]" for i in range(1, 31)]
    error = file_error(tmp_path, "blocks:\n" + "\n".join("  " + line for line in lines) + "\nnetwork: '4x4x1'\n")
    assert "expands to more than 1,000,000 characters" in error.message


def test_chain_errors_in_a_file_say_where(tmp_path):
    path = write(tmp_path, """
input: 224x224x32
variants:
  fine: "3x3x32x64(p=1)"
  strided: "3x3x32x64(p=0,s=2) | 112x112x64"
""")
    with pytest.raises(SpecError) as info:
        load(path)
    error = info.value
    assert error.source == f"{path}: variants.strided"
    assert error.render().startswith(f"{path}: variants.strided: item 2: checkpoint 112x112x64 does not hold")
    assert error.hint == "p=1 makes it hold: write 3x3x32x64(p=1,s=2)"


def test_chain_error_in_a_list_network_shows_its_line(tmp_path):
    path = write(tmp_path, "network:\n  - 8x8x3\n  - 3x3x3x8(p=1)\n  - rleu\n  - MP\n")
    with pytest.raises(SpecError) as info:
        load(path)
    lines = info.value.render().splitlines()
    assert lines[0] == f"{path}: network: item 3: unknown name 'rleu'"
    assert lines[1:3] == ["  rleu |", "  ^^^^"]


def test_chain_errors_in_blocks_and_block_names(tmp_path):
    path = write(tmp_path, "blocks:\n  relu: ID\nnetwork: '4x4x1|relu'\n")
    with pytest.raises(SpecError, match="already an operator") as info:
        load(path)
    assert info.value.source == f"{path}: blocks.relu"
    path = write(tmp_path, "blocks:\n  x: 'ReLU|'\nnetwork: '4x4x1|x'\n")
    with pytest.raises(SpecError, match="nothing after the last") as info:
        load(path)
    assert info.value.source == f"{path}: blocks.x"


def test_missing_input_says_how_to_give_it(tmp_path):
    with pytest.raises(SpecError) as info:
        load(write(tmp_path, "network: 'ReLU'\n"))
    assert "input:" in info.value.hint


def test_safe_loader_only(tmp_path):
    error = file_error(tmp_path, "network: !!python/object/apply:os.system ['true']\n")
    assert "is not valid YAML" in error.message


# ---- duplicate keys -----------------------------------------------------------------------------------
def test_a_key_given_twice_is_refused_with_both_places(tmp_path):
    # PyYAML keeps the last silently: the second network: (line 3) used to replace the first (line 1)
    error = file_error(tmp_path, "network: '8x8x1|FC(2)'\nname: twice\nnetwork: '8x8x1|FC(3)'\n")
    assert "duplicate key 'network' at line 3 (first at line 1)" in error.message
    # nested, on one line: the columns tell them apart ({ is column 11, the first bias 12, the second 25)
    error = file_error(tmp_path, "network: '8x8x1|FC(2)'\ndefaults: {bias: false, bias: true}\n")
    assert "duplicate key 'bias' at line 2, column 25 (first at line 2, column 12)" in error.message
    error = file_error(tmp_path, "variants:\n  a: '8x8x1|FC(2)'\n  b: '8x8x1|FC(3)'\n  a: '8x8x1|FC(4)'\n")
    assert "duplicate key 'a' at line 4 (first at line 2)" in error.message


def test_a_merge_key_may_still_be_overridden(tmp_path):
    # `<<: *base` then a key of base is YAML's way to override, not a duplicate; a repeated key after it is
    shared = "blocks: &shared\n  a: '8x8x1|FC(2)'\n  b: '8x8x1|FC(3)'\nvariants:\n  <<: *shared\n  a: '8x8x1|FC(4)'\n"
    spec_file = load(write(tmp_path, shared))
    # a from the merge is replaced by the explicit FC(4); b comes from the merge
    assert [(graph.name, output(spec_file, i)) for i, graph in enumerate(spec_file.networks)] == \
        [("a", "1x1x4"), ("b", "1x1x3")]
    error = file_error(tmp_path, shared + "  a: '8x8x1|FC(5)'\n")
    assert "duplicate key 'a' at line 7 (first at line 6)" in error.message


def test_the_unique_key_loader_fails_as_a_yaml_error_for_other_readers():
    # hardware profiles read YAML too; their generic YAMLError handler gets the problem and its place
    import yaml

    from cnncalc.specfile import safe_load_unique_keys

    assert safe_load_unique_keys("a: 1\nb: {c: 2}\n") == {"a": 1, "b": {"c": 2}}
    with pytest.raises(yaml.YAMLError) as info:
        safe_load_unique_keys("profiles:\n  nano: {}\n  nano: {}\n")
    assert info.value.problem == "duplicate key 'nano' (first at line 2)"
    assert info.value.problem_mark.line + 1 == 3


# ---- a path that names nothing --------------------------------------------------------------------------
@pytest.mark.parametrize("typo", ["specs/lenet5.yam", "lenet5.yam", "nowhere/net", "specs/*.yam"])
def test_a_mistyped_path_is_a_missing_file_not_spec_text(typo, monkeypatch):
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    with pytest.raises(SpecFileError) as info:  # was "unexpected character '/'" (or '.')
        load(typo)
    assert info.value.message == f"{typo}: no such file"


def test_a_mistyped_path_gets_the_closest_name_and_chain_text_is_left_alone(monkeypatch):
    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(root)
    with pytest.raises(SpecFileError) as info:
        load("specs/lenet5.yam")
    assert (info.value.hint or "").startswith("did you mean specs/lenet5.yaml?")
    with pytest.raises(SpecFileError) as info:
        load("nowhere/net.yam")
    assert "there is no folder nowhere" in (info.value.hint or "")
    # '.', '/' and a suffix-like ending are path signs only outside (...): these stay chain text
    assert output(load("8x8x1|Dropout(0.5)|FC(2)")) == "1x1x2"
    with pytest.raises(SpecError, match="unexpected character"):
        load("8x8x1|FC(2)/")  # a '|' makes it chain text: its own error, with the caret


def test_an_existing_folder_given_as_spec_text_is_named_a_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nets").mkdir()
    (tmp_path / "nets" / "a.yaml").write_text("network: '8x8x1|FC(2)'\n")
    with pytest.raises(SpecFileError, match="nets: is a directory") as info:  # was "starts with its input shape"
        load("nets")
    assert info.value.hint == f"give a .yaml file in it, e.g. {Path('nets') / 'a.yaml'}"


def test_cli_path_typo_is_one_clean_line(monkeypatch):
    from typer.testing import CliRunner

    from cnncalc.cli import app

    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    result = CliRunner().invoke(app, ["analyze", "specs/lenet5.yam"])
    assert result.exit_code == 1 and "specs/lenet5.yam: no such file" in result.output
    assert "unexpected character" not in result.output and "Traceback" not in result.output
    onnx = CliRunner().invoke(app, ["analyze", "specs/lenet5.onnx"])
    assert onnx.exit_code == 1 and "specs/lenet5.onnx does not exist" in onnx.output
    assert "did you mean specs/lenet5.yaml?" in onnx.output


# ---- empty texts: the hint fits where the text is ---------------------------------------------------
def test_an_empty_block_is_not_told_to_write_an_input_shape(tmp_path):
    path = write(tmp_path, 'input: 8x8x3\nblocks:\n  stem: ""\nnetwork: "stem"\n')
    with pytest.raises(SpecError) as info:
        load(path)
    # a block has no input shape: the hint used to say "write the input shape, then layers"
    assert info.value.message == "block stem is empty"
    assert "input shape, then" not in info.value.render()


def test_an_empty_network_under_input_is_told_to_write_layers(tmp_path):
    path = write(tmp_path, 'input: 8x8x3\nnetwork: "  "\n')
    with pytest.raises(SpecError) as info:
        load(path)
    # the file gives the input, so only layers are missing; blank text gets no caret line (it would show nothing)
    assert info.value.message == "the network is empty"
    assert info.value.render().splitlines() == [f"{path}: network: the network is empty",
                                                "  hint: write its layers, e.g. 3x3x3x16(p=1) | ReLU"]


def test_a_null_value_reads_as_english(tmp_path):
    error = file_error(tmp_path, "input: 8x8x3\nblocks:\n  stem:\nnetwork: stem\n")
    assert "not a null (empty) value" in error.message  # was "not a empty value"
