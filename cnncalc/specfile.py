"""YAML spec files (one network, or variants to compare, with shared blocks) -> Graphs.

`load` also takes an .onnx path (imported into the same IR) or a chain string, so every command can
accept any of the three; an argument that looks like a path but names nothing is "no such file", not spec
text. YAML is read with a safe loader only (`safe_load_unique_keys`), which also refuses a key given twice.
The keys are described in docs/spec-language.md; a mistake in a file is a SpecFileError naming the file,
the key and what is expected, and a mistake in a chain inside it is a SpecError whose source says where
("f.yaml: network").
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import CnnCalcError, SpecError, SpecFileError
from .fileio import looks_like_path, missing_file_hint
from .ir import DTYPE_BYTES, Graph, dtype_hint
from .spec import DEFAULT_KEYS, parse, parse_shape

KEYS = ("name", "description", "input", "network", "variants", "profiles", "defaults", "dtype", "batch",
        "blocks")
MAX_FILE_BYTES = 10_000_000  # a spec file is text written by a person
MAX_NESTING = 32  # lists inside lists in a network
MAX_CHAIN_CHARS = 1_000_000  # chain text a YAML network may expand to (aliases can multiply it)


@dataclass
class SpecFile:
    """What one argument names: a file's networks (variants in order) and its default profiles."""

    name: str
    description: str = ""
    networks: list[Graph] = field(default_factory=list)
    profiles: list[str] = field(default_factory=list)
    path: str | None = None


def load(arg: str | os.PathLike[str], *, allow_unsupported: bool = False) -> SpecFile:
    """A .yaml/.yml file, an .onnx model (either as a str or a Path), or a chain string -> SpecFile.

    `allow_unsupported` is passed to the ONNX importer (skip ops cnncalc does not know).
    """
    if not isinstance(arg, (str, os.PathLike)):
        raise SpecFileError(f"cannot load a {type(arg).__name__}: give a file name (str or Path) or spec text")
    arg = os.fspath(arg)  # a pathlib.Path from a notebook names a file just as its text does
    lower = arg.lower()
    if lower.endswith((".yaml", ".yml")):
        return _load_yaml(arg)
    if lower.endswith(".onnx"):
        from .onnx_io import import_onnx  # ONNX import is only needed for .onnx arguments

        graph = import_onnx(arg, allow_unsupported=allow_unsupported)
        return SpecFile(name=graph.name, description=graph.description, networks=[graph], path=arg)
    if os.path.isfile(arg) and not any(ch in arg for ch in "|["):
        raise SpecFileError(f"{arg}: cnncalc cannot read this kind of file",
                            hint="give a .yaml or .yml spec file, an .onnx model, or a chain string")
    check_not_a_missing_path(arg)
    try:
        graph = parse(arg)
    except SpecError:
        if os.path.isdir(arg):  # only now: a folder may happen to share its name with valid spec text
            raise SpecFileError(f"{arg}: is a directory, not a spec file",
                                hint=f"give a .yaml file in it, e.g. {_example_spec(arg)}") from None
        raise
    return SpecFile(name="network", networks=[graph])


def check_not_a_missing_path(arg: str) -> None:
    """Refuse an argument meant as a file that does not exist: `specs/lenet5.yam` is a path typo, and
    parsing it as spec text would only say "unexpected character '/'"."""
    if os.path.exists(arg) or not looks_like_path(arg):
        return
    raise SpecFileError(f"{arg}: no such file", hint=f"{missing_file_hint(arg)} (spec files end in .yaml or .yml, "
                                                      "models in .onnx)")


def _example_spec(folder: str) -> str:
    """A spec file in the folder to name in a hint, or a made-up one."""
    found = sorted(Path(folder).glob("*.y*ml"))[:1]
    return str(found[0]) if found else os.path.join(folder, "net.yaml")


def load_many(args: Iterable[str | os.PathLike[str]], *, allow_unsupported: bool = False) -> list[SpecFile]:
    """`load` for each argument, in order."""
    return [load(arg, allow_unsupported=allow_unsupported) for arg in args]


# ---- YAML ---------------------------------------------------------------------------------------------
def _load_yaml(path: str) -> SpecFile:
    """Read, check and build every network of one YAML file."""
    data = _read_yaml(path)
    unknown = [key for key in data if key not in KEYS]
    for key in unknown:
        close = difflib.get_close_matches(str(key), KEYS, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}?" if close else f"the keys are {', '.join(KEYS)}"
        raise SpecFileError(f"{path}: unknown key {key!r}", hint=hint)
    name = _string(data, "name", path, default=Path(path).stem)
    description = _string(data, "description", path, default="")
    if "network" in data and "variants" in data:
        raise SpecFileError(f"{path}: has both network: and variants:",
                            hint="use network: for one net, variants: (name -> network) to compare several")
    if "network" not in data and "variants" not in data:
        raise SpecFileError(f"{path}: has neither network: nor variants:",
                            hint='add network: "224x224x3 | 3x3x3x16(p=1) | ReLU", '
                                 'or variants: (name -> network)')
    input_shape, blocks, defaults = _input(data, path), _blocks(data, path), _defaults(data, path)
    dtype, batch = _dtype(data, path), _batch(data, path)
    if "network" in data:
        networks = {name: (_chain_text(data["network"], path, "network"), "network")}
    else:
        networks = _variants(data["variants"], path)
    graphs = []
    for variant, (text, key) in networks.items():
        graph = parse(text, name=variant, input_shape=input_shape, blocks=blocks, defaults=defaults,
                      dtype=dtype, batch=batch, source=f"{path}: {key}")
        graphs.append(dataclasses.replace(graph, description=description) if description else graph)
    return SpecFile(name=name, description=description, networks=graphs, profiles=_profiles(data, path),
                    path=path)


def _read_yaml(path: str) -> dict[str, Any]:
    """The file's top-level mapping, or a SpecFileError saying why there is none."""
    try:
        size = os.path.getsize(path)
        if size > MAX_FILE_BYTES:
            raise SpecFileError(f"{path}: {size:,} bytes is too large for a spec file",
                                hint=f"spec files are up to {MAX_FILE_BYTES:,} bytes")
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        raise SpecFileError(f"{path}: no such file", hint=missing_file_hint(path)) from None
    except IsADirectoryError:
        raise SpecFileError(f"{path}: is a directory, not a spec file") from None
    except UnicodeDecodeError:
        raise SpecFileError(f"{path}: is not UTF-8 text", hint="save the spec file as UTF-8") from None
    except OSError as exc:
        raise SpecFileError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    try:
        data = safe_load_unique_keys(text)
    except DuplicateKeyError as exc:
        raise SpecFileError(f"{path}: duplicate key {exc.key!r} at {exc.place} (first at {exc.first_place})",
                            hint="keep one of them: YAML would silently use only the last") from None
    except yaml.YAMLError as exc:
        raise SpecFileError(f"{path}: is not valid YAML{yaml_problem(exc, 'invalid YAML')}",
                            hint="check the indentation and quote chain strings that contain ':' or '#'"
                            ) from None
    except RecursionError:
        raise SpecFileError(f"{path}: YAML nested too deeply") from None
    if data is None:
        raise SpecFileError(f"{path}: is empty", hint='write at least network: "224x224x3 | ..."')
    if not isinstance(data, dict):
        raise SpecFileError(f"{path}: must be a mapping of keys (name:, network:, ...), not a "
                            f"{_kind(data)}", hint='e.g. network: "224x224x3 | 3x3x3x16(p=1) | ReLU"')
    return data


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A key given twice in one mapping; a YAMLError, so a loader's generic handler still names the place."""

    def __init__(self, key: Any, first: yaml.Node, again: yaml.Node) -> None:
        self.key = key
        same_line = first.start_mark.line == again.start_mark.line  # {bias: false, bias: true}: columns tell
        self.place, self.first_place = (_place(node.start_mark, same_line) for node in (again, first))
        super().__init__(problem=f"duplicate key {key!r} (first at {self.first_place})", problem_mark=again.start_mark)


def _place(mark: yaml.Mark, with_column: bool) -> str:
    return f"line {mark.line + 1}" + (f", column {mark.column + 1}" if with_column else "")


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader refusing duplicate keys: PyYAML keeps the last silently, so a second `network:`
    would replace the first without a word."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base` may be overridden: that is its purpose
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                if key in seen:
                    raise DuplicateKeyError(key, seen[key], key_node)
                seen[key] = key_node
            except TypeError:  # an unhashable key: the base constructor says so
                continue
        return super().construct_mapping(node, deep=deep)


def yaml_problem(error: yaml.YAMLError, fallback: str) -> str:
    """` at line L, column C: what is wrong`, for a one-line error (PyYAML's own text spans several lines)."""
    mark = getattr(error, "problem_mark", None)
    place = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{place}: {getattr(error, 'problem', None) or fallback}"


def safe_load_unique_keys(text: str) -> Any:
    """yaml.safe_load, but a key given twice in one mapping is a DuplicateKeyError (a yaml.YAMLError)."""
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass


def _kind(value: Any) -> str:
    """What a YAML value is, in YAML's words."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "mapping"
    if value is None:
        return "null (empty) value"  # read after "not a"
    return type(value).__name__


def _string(data: dict[str, Any], key: str, path: str, default: str) -> str:
    if key not in data:
        return default
    value = data[key]
    if not isinstance(value, str):
        raise SpecFileError(f"{path}: {key}: must be a string, not a {_kind(value)}")
    return value


def _input(data: dict[str, Any], path: str) -> tuple[int, ...] | None:
    """`input: 224x224x3` (or [224, 224, 3]) -> (C, H, W)."""
    if "input" not in data:
        return None
    value = data["input"]
    if isinstance(value, list) and len(value) == 3 and all(type(v) is int for v in value):
        value = "x".join(str(v) for v in value)
    if not isinstance(value, str):
        raise SpecFileError(f"{path}: input: must be a shape HxWxC such as 224x224x3, not a {_kind(value)}")
    try:
        return parse_shape(value)
    except CnnCalcError as exc:
        raise SpecFileError(f"{path}: input: {exc.message}", hint=exc.hint) from None


def _dtype(data: dict[str, Any], path: str) -> str:
    value = data.get("dtype", "float32")
    if not isinstance(value, str) or value not in DTYPE_BYTES:
        raise SpecFileError(f"{path}: dtype: {value!r} is not a known dtype",
                            hint=dtype_hint(value))
    return value


def _batch(data: dict[str, Any], path: str) -> int:
    value = data.get("batch", 1)
    if type(value) is not int or value < 1:
        raise SpecFileError(f"{path}: batch: must be a whole number of at least 1, not {value!r}")
    return value


def _profiles(data: dict[str, Any], path: str) -> list[str]:
    """`profiles: [titan-x-maxwell, jetson-nano]` or one name."""
    value = data.get("profiles", [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise SpecFileError(f"{path}: profiles: must be a list of profile names",
                            hint="e.g. profiles: [titan-x-maxwell, jetson-nano]")
    return list(value)


def _defaults(data: dict[str, Any], path: str) -> dict[str, Any]:
    """`defaults: {bias: false}`: option values every layer gets unless it says otherwise."""
    value = data.get("defaults", {})
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SpecFileError(f"{path}: defaults: must be a mapping such as {{bias: false}}, "
                            f"not a {_kind(value)}")
    for key, setting in value.items():
        if key not in DEFAULT_KEYS:
            close = difflib.get_close_matches(str(key), DEFAULT_KEYS, n=1, cutoff=0.5)
            hint = f"did you mean {close[0]!r}?" if close else f"the keys are {', '.join(DEFAULT_KEYS)}"
            raise SpecFileError(f"{path}: defaults: unknown key {key!r}", hint=hint)
        if not (isinstance(setting, bool) or setting in (0, 1)):
            raise SpecFileError(f"{path}: defaults.{key}: must be true or false, not {setting!r}")
    return dict(value)


def _blocks(data: dict[str, Any], path: str) -> dict[str, str]:
    """`blocks:` name -> chain (string or list), as chain text."""
    value = data.get("blocks", {})
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SpecFileError(f"{path}: blocks: must be a mapping of name -> chain, not a {_kind(value)}")
    blocks = {}
    for name, chain in value.items():
        if not isinstance(name, str):
            raise SpecFileError(f"{path}: blocks: the name {name!r} must be text",
                                hint="block names are words such as basic, fire2, bottleneck")
        blocks[name] = _chain_text(chain, path, f"blocks.{name}")
    return blocks


def _variants(value: Any, path: str) -> dict[str, tuple[str, str]]:
    """`variants:` name -> network, in file order, as (chain text, key for messages)."""
    if not isinstance(value, dict) or not value:
        raise SpecFileError(f"{path}: variants: must be a non-empty mapping of name -> network",
                            hint='e.g. variants: {strided: "3x3x32x64(p=1,s=2)"}')
    variants = {}
    for name, network in value.items():
        if not isinstance(name, str):
            raise SpecFileError(f"{path}: variants: the name {name!r} must be text",
                                hint="quote it, e.g. \"1\": ...")
        variants[name] = (_chain_text(network, path, f"variants.{name}"), f"variants.{name}")
    return variants


def _chain_text(value: Any, path: str, key: str) -> str:
    """A network as one chain text: a string as it is; a list one item per line."""
    budget = [MAX_CHAIN_CHARS]
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        if not value:
            raise SpecFileError(f"{path}: {key}: is an empty list", hint="list one layer per line")
        return " |\n".join(_item_text(item, path, f"{key}[{i}]", 1, budget) for i, item in enumerate(value))
    raise SpecFileError(f"{path}: {key}: must be a chain string or a list of items, not a {_kind(value)}",
                        hint='e.g. "224x224x3 | 3x3x3x16(p=1) | ReLU"')


def _item_text(value: Any, path: str, key: str, depth: int, budget: list[int]) -> str:
    """One list item: a chain string, a nested list (a group), or {res: ...} / {cat: [...]}."""
    if depth > MAX_NESTING:
        raise SpecFileError(f"{path}: {key}: lists are nested more than {MAX_NESTING} deep")
    if isinstance(value, str):
        text = value
    elif isinstance(value, list):
        if not value:
            raise SpecFileError(f"{path}: {key}: is an empty list")
        text = "[" + " | ".join(_item_text(v, path, f"{key}[{i}]", depth + 1, budget)
                                for i, v in enumerate(value)) + "]"
    elif isinstance(value, dict):
        text = _mapping_text(value, path, key, depth, budget)
    else:
        raise SpecFileError(f"{path}: {key}: expected a chain string, a list, or a {{res: ...}} / "
                            f"{{cat: [...]}} mapping, not a {_kind(value)}",
                            hint="quote layer text, e.g. - \"FC(10)\"")
    budget[0] -= len(text)
    if budget[0] < 0:
        raise SpecFileError(f"{path}: {key}: the network expands to more than {MAX_CHAIN_CHARS:,} characters")
    return text


def _mapping_text(value: dict[Any, Any], path: str, key: str, depth: int, budget: list[int]) -> str:
    """{res: main}, {res: [main, shortcut]} or {cat: [a, b, ...]} as res[...] / cat[...] text."""
    if len(value) != 1 or next(iter(value)) not in ("res", "cat"):
        raise SpecFileError(f"{path}: {key}: a mapping item is {{res: ...}} or {{cat: [...]}}, "
                            f"not one with keys {', '.join(map(repr, value))}",
                            hint="e.g. - res: [\"3x3x64x64(p=1) | BN | ReLU | 3x3x64x64(p=1) | BN\"]")
    keyword, body = next(iter(value.items()))
    where = f"{key}.{keyword}"
    if keyword == "res":
        branches = [body] if isinstance(body, str) else body
        if not isinstance(branches, list) or len(branches) not in (1, 2):
            raise SpecFileError(f"{path}: {where}: must be main, [main] or [main, shortcut]",
                                hint="write each branch as a chain string or a list of layers")
    else:
        branches = body
        if not isinstance(branches, list) or len(branches) < 2:
            raise SpecFileError(f"{path}: {where}: must be a list of at least two branches",
                                hint="e.g. cat: [\"1x1x192x64\", \"1x1x192x96 | 3x3x96x128(p=1)\"]")
    texts = []
    for i, branch in enumerate(branches):
        if isinstance(branch, list):
            if not branch:
                raise SpecFileError(f"{path}: {where}[{i}]: is an empty list")
            texts.append(" | ".join(_item_text(v, path, f"{where}[{i}][{j}]", depth + 1, budget)
                                    for j, v in enumerate(branch)))
        else:
            texts.append(_item_text(branch, path, f"{where}[{i}]", depth + 1, budget))
    return f"{keyword}[" + " ; ".join(texts) + "]"

