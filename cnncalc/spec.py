"""Spec text -> ir.Graph: the chain language people already write in their notes, parsed with positions.

Grammar (recursive descent; whitespace, newlines included, is ignored between tokens; names, `x` and
the keywords `res` and `cat` are case-insensitive):

    chain    := item ( "|" item )*
    item     := primary ( "*" COUNT )*               COUNT copies in a row (counts multiply)
    primary  := SIZES [ options ]                    3 sizes HxWxC: the input (first item of the spec)
                                                     or a shape checkpoint; 4 sizes KhxKwxCinxCout: a conv
              | "res" "[" chain [ ";" chain ] "]"    main(x) + x, or main(x) + shortcut(x): an Add node
              | "cat" "[" chain ( ";" chain )+ "]"   branches on one input joined on channels: a Concat node
              | "[" chain "]"                        a group: a sub-chain used as one item
              | NAME [ options ]                     an operator name or alias (ops.SPEC_NAMES), or a block
    SIZES    := INT ( "x" INT )*
    options  := "(" [ option ( "," option )* ] ")"
    option   := KEY "=" VALUE ( "," INT )*           a keyword; whole numbers after it extend it: p=1,0,1,0
              | VALUE                                a positional value (FC(10)) or a bare flag (dw)
    NAME     := [A-Za-z_][A-Za-z0-9_-]*      KEY := [A-Za-z_][A-Za-z0-9_]*      INT := [0-9]+
    VALUE    := text without , ( ) [ ] | ; =

The parser never looks at what an operator is beyond the syntactic forms: it asks the registry for the
class, the class for its options and output shape, and inserts a Flatten where an op accepts the
flattened vector of an image but not the image itself (FC on HxWxC). Every error is a SpecError with a
caret under the offending token. The user reference is docs/spec-language.md.
"""

from __future__ import annotations

import difflib
import operator
import re
import sys
import unicodedata
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from .errors import CnnCalcError, ShapeError, SpecError
from .ir import DTYPE_BYTES, Graph, Node, dtype_hint, show_shape, to_hwc, whole_batch
from .ops import OPS, SPEC_NAMES, Op, Shape, SpecArgs
from .ops.base import JOINS, numel
from .spec_text import to_spec

MAX_DIM = 1_000_000  # largest height, width or channel count, written or computed
MAX_ELEMENTS = 10**12  # largest tensor (elements per sample), e.g. a flattened image
MAX_LAYERS = 10_000  # nodes a spec may expand to
MAX_STEPS = 100_000  # items instantiated (checkpoints and groups included), bounds the work of repeats
MAX_REPEAT = 10_000  # largest `*N`
MAX_DEPTH = 50  # brackets nested in one text (`[`, `res[`, `cat[`)
MAX_BLOCK_DEPTH = 16  # blocks used inside blocks
MAX_TEXT = 1_000_000  # characters of spec text
MAX_CONV_LOOKING_KERNEL = 11  # a failing checkpoint KxKxC (K up to this, C the incoming channels) may be a conv
#: Python frames the builder may need: up to 5 per bracket (a repeated res: item, repeat, item, branches, chain)
#: in each of the texts along a chain of blocks (the spec's and MAX_BLOCK_DEPTH blocks'), and 5 per block use
BUILD_FRAMES = (MAX_BLOCK_DEPTH + 1) * (5 * MAX_DEPTH + 5) + 200
_ELEMENTS_HINT = f"cnncalc analyses tensors up to {MAX_ELEMENTS:,} elements: use a smaller input"
KEYWORDS = ("res", "cat")
#: names the YAML `defaults:` mapping may use -> the option key the ops read
DEFAULT_KEYS = {"bias": "b"}

_SIZES = re.compile(r"[0-9]+(?:\s*[xX]\s*[0-9]+)*")
_NUMBER = re.compile(r"[0-9]+")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_INT = re.compile(r"\s*[0-9]+\s*\Z")
_PUNCT = "|[];*"
_CLOSERS = "|])"
#: characters pasted from documents that look like the ASCII the language uses (full-width forms such as
#: '３' or '（' are handled by NFKC); '×' between a name or ']' and a count is taken for '*' instead
_LOOKALIKES = {
    **dict.fromkeys("×✕✖⨯хХ", "x"),
    **dict.fromkeys("‐‑‒–—―−", "-"),
    **dict.fromkeys("│┃ǀ∣", "|"),
    **dict.fromkeys("∗⁎", "*"),
    **dict.fromkeys("【〔", "["),
    **dict.fromkeys("】〕", "]"),
}


# ---- tokens ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Source:
    """One text being parsed, and what to call it in messages."""

    text: str
    label: str | None = None


@dataclass(frozen=True)
class _Token:
    kind: str  # "sizes", "name", "options", one of "|[];*", or "end"
    pos: int
    end: int
    sizes: tuple[int, ...] = ()
    size_pos: tuple[int, ...] = ()
    name: str = ""
    options: tuple[tuple[str | None, str, int], ...] = ()


def _fail(src: _Source, message: str, pos: int, length: int = 1, hint: str | None = None) -> SpecError:
    return SpecError(message, src.text, pos, hint=hint, length=length, source=src.label)


def _tokenize(src: _Source) -> list[_Token]:
    """Split the text into tokens, each with its offset."""
    _check_ascii(src)
    text, tokens, i = src.text, [], 0
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if i >= len(text):
            tokens.append(_Token("end", len(text), len(text)))
            return tokens
        ch = text[i]
        if ch in _PUNCT:
            tokens.append(_Token(ch, i, i + 1))
            i += 1
        elif "0" <= ch <= "9":
            tokens.append(_lex_sizes(src, i))
            i = tokens[-1].end
        elif ch.isascii() and (ch.isalpha() or ch == "_"):
            match = _NAME.match(text, i)
            assert match is not None
            tokens.append(_Token("name", i, match.end(), name=match.group()))
            i = match.end()
        elif ch == "(":
            tokens.append(_lex_options(src, i))
            i = tokens[-1].end
        elif ch == ")":
            raise _fail(src, "unmatched ')'", i, hint="remove it, or open the options with '(' after a name")
        else:
            raise _fail(src, f"unexpected character {ch!r}", i,
                        hint="items are separated by '|', e.g. 224x224x3 | 3x3x3x16(p=1) | ReLU")


def _check_ascii(src: _Source) -> None:
    """Spec text is ASCII apart from whitespace: name the first other character and what to type instead.

    Specs are often pasted from documents that turned 'x' into '×', '-' into '–' or digits into full-width
    ones; Python's int() and float() would even read '３' as 3. Checked before any token, so a lookalike
    inside options or sizes gets this message too, not a puzzling one about what surrounds it.
    """
    text = src.text
    if text.isascii():  # the usual case, checked in C rather than a character at a time
        return
    for i, ch in enumerate(text):
        if ch.isascii() or ch.isspace():
            continue
        code = f"U+{ord(ch):04X}"
        name = unicodedata.name(ch, "")
        described = f"{ch!r} ({code} {name})" if name else f"{ch!r} ({code})"
        ascii_char = _ascii_lookalike(text, i)
        if ascii_char is not None:
            fixed = "".join(_ascii_lookalike(text, j) or c for j, c in enumerate(text))
            example = f": {' '.join(fixed.split())}" if len(fixed) <= 80 else ""
            hint = f"type the ASCII {ascii_char!r} instead{example}"
        elif unicodedata.category(ch) in ("Cf", "Mn", "Me"):
            hint = "it is invisible, probably pasted with the spec: delete it"
        else:
            hint = "spec text is ASCII: delete it or type what it stands for"
        raise _fail(src, f"unexpected character {described}", i, hint=hint)


def _ascii_lookalike(text: str, i: int) -> str | None:
    """The ASCII character text[i] passes for, or None (also for an ASCII one)."""
    ch = text[i]
    if ch.isascii():
        return None
    if ch in "×✕✖⨯":  # a multiplication sign: 'x' in sizes, '*' for a repeat count after an item
        before = text[:i].rstrip()
        return "*" if before and (before[-1].isalpha() or before[-1] in "])") else "x"
    if ch in _LOOKALIKES:
        return _LOOKALIKES[ch]
    folded = unicodedata.normalize("NFKC", ch)
    return folded if len(folded) == 1 and folded.isascii() and not folded.isspace() else None


def _lex_sizes(src: _Source, start: int) -> _Token:
    """`224x224x3`, `3x3x32x64` or a lone count such as the 3 of `*3`."""
    match = _SIZES.match(src.text, start)
    assert match is not None
    end = match.end()
    if end < len(src.text) and src.text[end] in "xX":
        raise _fail(src, f"a size is missing after {src.text[start:end + 1]!r}", end,
                    hint="write HxWxC for a shape or KhxKwxCinxCout for a convolution")
    sizes, size_pos = [], []
    for number in _NUMBER.finditer(src.text, start, end):
        if len(number.group()) > 9:
            raise _fail(src, f"the number {number.group()[:12]}... is far too large", number.start(),
                        len(number.group()), hint=f"sizes go up to {MAX_DIM:,}")
        sizes.append(int(number.group()))
        size_pos.append(number.start())
    return _Token("sizes", start, end, sizes=tuple(sizes), size_pos=tuple(size_pos))


def _lex_options(src: _Source, start: int) -> _Token:
    """`(3, s=2, p=1)` -> (key or None, raw value, offset of the value) per option."""
    text = src.text
    close = start + 1
    while close < len(text) and text[close] not in ")([]|;":
        close += 1
    if close >= len(text) or text[close] != ")":
        raise _fail(src, "unclosed '('", start, hint="close the options with ')'")
    options: list[tuple[str | None, str, int]] = []
    if not text[start + 1:close].strip():
        return _Token("options", start, close + 1)
    piece_start = start + 1
    seen: set[str] = set()
    while piece_start <= close:
        comma = text.find(",", piece_start, close)
        piece_end = close if comma == -1 else comma
        piece = text[piece_start:piece_end]
        at = piece_start + len(piece) - len(piece.lstrip())
        if not piece.strip():
            raise _fail(src, "empty option", min(piece_end, close), hint="remove the extra ','")
        if "=" in piece:
            key_text, _, value_text = piece.partition("=")
            key = key_text.strip()
            value_at = piece_start + len(key_text) + 1
            value_at += len(value_text) - len(value_text.lstrip())
            value = value_text.strip()
            if not key:
                raise _fail(src, "an option has no name before '='", at, hint="write key=value, e.g. s=2")
            if not _KEY.match(key):
                raise _fail(src, f"option name {key!r} is not a name", at, len(key),
                            hint="write key=value, e.g. s=2")
            if not value:
                raise _fail(src, f"option {key}= has no value", piece_start + len(key_text),
                            hint=f"write {key}=1")
            if "=" in value:
                raise _fail(src, f"option {key} has two '='", value_at + value.index("="),
                            hint="write one key=value per option, separated by ','")
            if key.lower() in seen:
                raise _fail(src, f"option {key} is given twice", at, len(key), hint="keep one of them")
            seen.add(key.lower())
            options.append((key, value, value_at))
        elif options and options[-1][0] is not None and _INT.match(piece):
            # a whole number after key=value continues that value: p=1,0,1,0
            previous_key, _value, value_at = options[-1]
            options[-1] = (previous_key, text[value_at:piece_end].strip(), value_at)
        else:
            options.append((None, piece.strip(), at))
        piece_start = piece_end + 1
    return _Token("options", start, close + 1, options=tuple(options))


# ---- syntax tree -----------------------------------------------------------------------------------
@dataclass
class _Item:
    src: _Source
    pos: int
    end: int
    index: int  # 1-based place in its chain

    @property
    def label(self) -> str:
        """The item's source text, whitespace runs collapsed."""
        return " ".join(self.src.text[self.pos:self.end].split())


@dataclass
class _Chain:
    items: list[_Item]
    pos: int
    end: int


@dataclass
class _Sizes(_Item):
    sizes: tuple[int, ...] = ()  # HxWxC as written
    options: tuple[tuple[str | None, str, int], ...] = ()  # for a convolution


@dataclass
class _Named(_Item):
    name: str = ""
    options: tuple[tuple[str | None, str, int], ...] | None = None
    options_pos: int = 0


@dataclass
class _Group(_Item):
    chain: _Chain | None = None


@dataclass
class _Branches(_Item):
    keyword: str = ""  # "res" or "cat"
    branches: list[_Chain] = field(default_factory=list)


@dataclass
class _Repeat(_Item):
    inner: _Item | None = None
    count: int = 1
    star_pos: int = 0


class _Parser:
    """Recursive descent over the tokens of one text."""

    def __init__(self, src: _Source, empty: tuple[str, str] | None = None) -> None:
        self.src = src
        self.empty = empty or ("the spec is empty",
                               "write the input shape, then layers: 224x224x3 | 3x3x3x16(p=1) | ReLU")
        self.tokens = _tokenize(src)
        self.at = 0
        self.depth = 0

    def peek(self) -> _Token:
        return self.tokens[self.at]

    def advance(self) -> _Token:
        token = self.tokens[self.at]
        self.at += 1
        return token

    def fail(self, message: str, token: _Token, hint: str | None = None) -> SpecError:
        return _fail(self.src, message, token.pos, max(1, token.end - token.pos), hint)

    def parse(self) -> _Chain:
        if self.peek().kind == "end":
            # no text and caret: under blank text a caret shows nothing
            raise SpecError(self.empty[0], hint=self.empty[1], source=self.src.label)
        chain = self.chain(opener=None)
        token = self.peek()
        if token.kind == "]":
            raise self.fail("unmatched ']'", token, hint="remove it, or open a group with '['")
        if token.kind == ";":
            raise self.fail("';' separates branches only inside res[...] or cat[...]", token,
                            hint="use '|' between items")
        return chain

    def chain(self, opener: _Token | None) -> _Chain:
        items: list[_Item] = []
        start = self.peek().pos
        while True:
            token = self.peek()
            if token.kind in ("|", "]", ";", "end"):
                raise self.empty_item(token, opener, items)
            items.append(self.item(len(items) + 1))
            token = self.peek()
            if token.kind == "|":
                self.advance()
                continue
            if token.kind in ("]", ";", "end"):
                if token.kind == "end" and opener is not None:
                    raise self.fail(f"unclosed '{self.src.text[opener.pos:opener.end]}'", opener,
                                    hint="close it with ']'")
                return _Chain(items, start, items[-1].end)
            raise self.fail(f"expected '|' between items, got {self.src.text[token.pos:token.end]!r}",
                            token, hint="separate items with '|'")

    def empty_item(self, token: _Token, opener: _Token | None, items: list[_Item]) -> SpecError:
        """The clearest message for a place where an item is missing."""
        if token.kind == "end" and opener is not None:
            return self.fail("unclosed '['", opener, hint="close it with ']'")
        previous = self.tokens[self.at - 1] if self.at > 0 else None
        if token.kind == "end" and previous is not None and previous.kind == "|":
            return self.fail("nothing after the last '|'", previous, hint="remove the trailing '|'")
        if previous is not None and previous.kind == "|":
            return self.fail("empty item between '|' and "
                             f"{self.src.text[token.pos:token.end] or 'the end'!r}", previous,
                             hint="remove the extra '|'")
        if token.kind == "|":
            return self.fail("empty item before '|'", token, hint="remove the leading '|'")
        if previous is not None and previous.kind == "[":
            return self.fail("empty brackets: a group or branch needs at least one item", previous,
                             hint="put a chain inside, e.g. [3x3x64x64(p=1) | ReLU]")
        if previous is not None and previous.kind == ";":
            return self.fail("empty branch after ';'", previous, hint="remove the ';' or write the branch")
        return self.fail("an item is missing here", token)

    def item(self, index: int) -> _Item:
        start = self.peek().pos
        primary = self.primary(index)
        if self.peek().kind != "*":
            return primary
        star = self.peek()
        count = 1
        while self.peek().kind == "*":
            mark = self.advance()
            number = self.peek()
            if number.kind != "sizes" or len(number.sizes) != 1:
                raise self.fail("'*' needs a repeat count", mark, hint="write item*3")
            self.advance()
            if number.sizes[0] < 1:
                raise self.fail(f"*{number.sizes[0]} repeats the item zero times", number,
                                hint="remove the item, or repeat it at least once")
            count *= number.sizes[0]
            if count > MAX_REPEAT:
                raise self.fail(f"repeat count {count:,} is above the limit of {MAX_REPEAT:,}", number,
                                hint=f"cnncalc analyses up to {MAX_LAYERS:,} layers")
        end = self.tokens[self.at - 1].end
        return _Repeat(self.src, start, end, index, inner=primary, count=count, star_pos=star.pos)

    def options(self) -> _Token | None:
        return self.advance() if self.peek().kind == "options" else None

    def primary(self, index: int) -> _Item:
        token = self.peek()
        if token.kind == "sizes":
            return self.sizes(index)
        if token.kind == "name" and token.name.lower() in KEYWORDS:
            return self.branches(index)
        if token.kind == "name":
            self.advance()
            opts = self.options()
            end = opts.end if opts else token.end
            return _Named(self.src, token.pos, end, index, name=token.name,
                          options=opts.options if opts else None, options_pos=opts.pos if opts else 0)
        if token.kind == "[":
            self.open_bracket(token)
            chain = self.chain(opener=token)
            self.depth -= 1
            close = self.peek()
            if close.kind == ";":
                raise self.fail("a group [...] holds one chain; ';' separates branches", close,
                                hint="write cat[a ; b] for branches joined on channels, res[main ; shortcut] "
                                     "for a residual")
            self.advance()
            self.after_bracket()
            return _Group(self.src, token.pos, close.end, index, chain=chain)
        if token.kind == "options":
            raise self.fail("options must follow an operator name or a convolution", token,
                            hint="e.g. MP(3, s=2) or 3x3x64x64(p=1)")
        if token.kind == "*":
            raise self.fail("'*' must follow an item", token, hint="write item*3")
        raise self.fail("an item is missing here", token)

    def open_bracket(self, opener: _Token) -> None:
        """Step into a `[`; the limit counts brackets only, so `[` * MAX_DEPTH is the deepest accepted."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.fail(f"brackets are nested deeper than {MAX_DEPTH} levels", opener,
                            hint="use fewer brackets, or YAML blocks")
        self.advance()

    def after_bracket(self) -> None:
        if self.peek().kind == "options":
            raise self.fail("options must follow an operator name or a convolution, not ']'", self.peek())

    def sizes(self, index: int) -> _Item:
        token = self.advance()
        opts = self.options()
        end = opts.end if opts else token.end
        text = self.src.text[token.pos:token.end]
        if len(token.sizes) not in (3, 4):
            hint = "write HxWxC for a shape or KhxKwxCinxCout for a convolution"
            if len(token.sizes) == 1:
                hint = "to repeat an item write item*3; a shape is HxWxC"
            plural = "s" if len(token.sizes) > 1 else ""
            raise self.fail(f"{text!r} has {len(token.sizes)} size{plural}", token, hint)
        for size, pos in zip(token.sizes, token.size_pos, strict=True):
            if size < 1:
                raise _fail(self.src, f"a size of 0 in {text!r}", pos, hint="every size is at least 1")
            if size > MAX_DIM:
                raise _fail(self.src, f"size {size:,} is above the limit of {MAX_DIM:,}", pos,
                            len(str(size)), hint="cnncalc handles sizes and channel counts up to 1,000,000")
        if len(token.sizes) == 3 and opts is not None:
            raise self.fail("a shape HxWxC takes no options", opts,
                            hint="a convolution has four sizes: KhxKwxCinxCout(p=1)")
        return _Sizes(self.src, token.pos, end, index, sizes=token.sizes,
                      options=opts.options if opts else ())

    def branches(self, index: int) -> _Item:
        keyword_token = self.advance()
        keyword = keyword_token.name.lower()
        usage = "res[main] or res[main ; shortcut]" if keyword == "res" else "cat[a ; b ; ...]"
        opener = self.peek()
        if opener.kind != "[":
            raise self.fail(f"{keyword} needs its branches in brackets", keyword_token, hint=f"write {usage}")
        self.open_bracket(opener)
        branches = [self.chain(opener=opener)]
        while self.peek().kind == ";":
            separator = self.advance()
            if keyword == "res" and len(branches) == 2:
                raise self.fail("res takes at most two branches: main and shortcut", separator,
                                hint="write res[main ; shortcut], or cat[...] to join more branches")
            branches.append(self.chain(opener=opener))
        self.depth -= 1
        close = self.advance()  # chain() stops only at "]", ";" or an error
        if keyword == "cat" and len(branches) < 2:
            raise self.fail("cat needs at least two branches separated by ';'", keyword_token,
                            hint="write cat[a ; b]; a single chain is a group [a]")
        self.after_bracket()
        return _Branches(self.src, keyword_token.pos, close.end, index, keyword=keyword, branches=branches)


# ---- building the graph ------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Context:
    """Where an item sits: the block path for display, and the blocks it is inside of."""

    path: str = ""
    uses: tuple[str, ...] = ()  # "in block fire, used at item 5", innermost last
    active: frozenset[str] = frozenset()  # blocks being expanded, to catch a block that uses itself
    prefix: str = ""  # item numbers inside a group: "3." makes its items 3.1, 3.2, ...
    anchor: int | None = None  # inside a block: offset of the block's use in the spec text

    def within(self, part: str) -> _Context:
        return _Context(f"{self.path}/{part}" if self.path else part, self.uses, self.active, "", self.anchor)

    def inside_group(self, index: int) -> _Context:
        return _Context(self.path, self.uses, self.active, f"{self.prefix}{index}.", self.anchor)

    @property
    def suffix(self) -> str:
        return f" ({'; '.join(reversed(self.uses))})" if self.uses else ""


@dataclass
class _Block:
    name: str
    chain: _Chain


class _Builder:
    """Walks the syntax tree, asking each op for its shape, and collects the nodes."""

    def __init__(self, input_shape: Shape, input_where: str, blocks: dict[str, _Block],
                 defaults: dict[str, Any]) -> None:
        self.nodes: list[Node] = []
        self.shapes: dict[str, Shape] = {"input": input_shape}
        self.where: dict[str, str] = {"input": input_where}  # tensor -> "item 3, 3x3x32x64(p=1)"
        self.channels_from: dict[str, str] = {"input": "input"}  # tensor -> tensor that set its channels
        self.size_from: dict[str, str] = {"input": "input"}  # tensor -> tensor that set its HxW
        self.blocks = blocks
        self.defaults = defaults
        self.counters: dict[str, int] = {}
        self.steps = 0

    # ---- walking -------------------------------------------------------------
    def chain(self, chain: _Chain, x: str, ctx: _Context) -> str:
        for item in chain.items:
            x = self.item(item, x, ctx)
        return x

    def item(self, item: _Item, x: str, ctx: _Context) -> str:
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise self.error(item, ctx, f"the spec expands to more than {MAX_STEPS:,} items",
                             hint="lower the repeat counts")
        if isinstance(item, _Repeat):
            return self.repeat(item, x, ctx)
        if isinstance(item, _Sizes):
            if len(item.sizes) == 3:
                self.checkpoint(item, x, ctx)
                return x
            conv = OPS.get("Conv")
            if conv is None:
                raise self.error(item, ctx, "this build of cnncalc has no Conv operator")
            return self.op(conv, item, [x], ctx, item.sizes, item.options)
        if isinstance(item, _Named):
            return self.named(item, x, ctx)
        if isinstance(item, _Group):
            assert item.chain is not None
            return self.chain(item.chain, x, ctx.inside_group(item.index))
        if isinstance(item, _Branches):
            return self.branches(item, x, ctx)
        raise AssertionError(f"unknown item {item!r}")

    def repeat(self, item: _Repeat, x: str, ctx: _Context) -> str:
        assert item.inner is not None
        in_shape = self.shapes[x]
        x = self.item(item.inner, x, ctx)
        if item.count > 1 and self.shapes[x] != in_shape:
            raise SpecError(
                f"{self.at(item, ctx)}: {item.inner.label} turns {show_shape(in_shape)} into "
                f"{show_shape(self.shapes[x])}, so it cannot be repeated {item.count} times{ctx.suffix}",
                item.src.text, item.star_pos, length=item.end - item.star_pos, source=item.src.label,
                hint="only an item that keeps its shape can repeat: write the shape-changing copy on its "
                     f"own, then repeat one that keeps {show_shape(self.shapes[x])}")
        for _ in range(item.count - 1):
            x = self.item(item.inner, x, ctx)
        return x

    def named(self, item: _Named, x: str, ctx: _Context) -> str:
        key = item.name.lower()
        if key in self.blocks:
            return self.block(item, x, ctx)
        cls = SPEC_NAMES.get(key)
        if cls is None:
            known = sorted({*SPEC_NAMES, *self.blocks, *KEYWORDS})
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.5)
            shown = self.display_name(close[0]) if close else None
            hint = f"did you mean {shown}?" if shown else "see docs/spec-language.md for the operators"
            raise SpecError(f"{self.at(item, ctx)}: unknown name {item.name!r}{ctx.suffix}", item.src.text,
                            item.pos, hint=hint, length=len(item.name), source=item.src.label)
        if cls is OPS.get("Conv"):
            raise self.error(item, ctx, f"{item.name} is written with its sizes",
                             hint="write a convolution as KhxKwxCinxCout(options), e.g. 3x3x64x64(p=1)")
        if cls.n_inputs != 1:
            raise self.error(item, ctx, f"{item.name} joins branches and is not written as an item",
                             hint="write res[main ; shortcut] for a sum, cat[a ; b] for a concatenation")
        return self.op(cls, item, [x], ctx, (), item.options or ())

    def display_name(self, key: str) -> str:
        """A registry key or block name as users write it (canonical capitalisation)."""
        if key in self.blocks:
            return self.blocks[key].name
        cls = SPEC_NAMES.get(key)
        if cls is None:
            return key
        return next((name for name in cls.spec_names if name.lower() == key), key)

    def block(self, item: _Named, x: str, ctx: _Context) -> str:
        key = item.name.lower()
        block = self.blocks[key]
        if item.options is not None:
            raise SpecError(f"{self.at(item, ctx)}: block {block.name} takes no options{ctx.suffix}",
                            item.src.text, item.options_pos, length=item.end - item.options_pos,
                            source=item.src.label, hint="a block is a fixed sub-chain; define another block")
        if key in ctx.active:
            raise self.error(item, ctx, f"block {block.name} uses itself",
                             hint="a block may use other blocks, not itself")
        if len(ctx.active) >= MAX_BLOCK_DEPTH:
            raise self.error(item, ctx, f"blocks are nested more than {MAX_BLOCK_DEPTH} deep")
        instance = self.count(f"block:{key}")
        part = block.name if instance == 1 else f"{block.name}#{instance}"
        inner = _Context(f"{ctx.path}/{part}" if ctx.path else part,
                         (*ctx.uses, f"in block {block.name}, used at {self.at(item, ctx)}"),
                         ctx.active | {key}, "", item.pos if ctx.anchor is None else ctx.anchor)
        return self.chain(block.chain, x, inner)

    def branches(self, item: _Branches, x: str, ctx: _Context) -> str:
        number = self.count(item.keyword)
        here = ctx.within(f"{item.keyword}{number}")
        outputs = []
        for i, branch in enumerate(item.branches):
            if item.keyword == "res":
                part = "main" if i == 0 else "shortcut"
            else:
                part = f"branch{i + 1}"
            outputs.append(self.chain(branch, x, here.within(part)))
        if item.keyword == "res" and len(outputs) == 1:
            outputs.append(x)  # the identity shortcut
        merge = JOINS.get(item.keyword)
        if merge is None:
            raise self.error(item, ctx, f"this build of cnncalc has no operator for {item.keyword}[...]")
        return self.op(merge, item, outputs, ctx, (), (), block=here.path)

    # ---- one operator --------------------------------------------------------
    def op(self, cls: type[Op], item: _Item, inputs: list[str], ctx: _Context, dims: tuple[int, ...],
           options: tuple[tuple[str | None, str, int], ...], block: str | None = None) -> str:
        """Build an op from the item, infer its output shape, and add its node (after a Flatten if needed)."""
        in_shapes = [self.shapes[name] for name in inputs]
        flatten = OPS.get("Flatten")
        image_in = len(inputs) == 1 and len(in_shapes[0]) == 3 and flatten is not None
        if image_in and getattr(cls, "needs_vector_input", False):
            inputs = [self.flatten(item, inputs[0], ctx)]
            in_shapes = [self.shapes[inputs[0]]]
        try:
            op, out = self.construct(cls, item, in_shapes, dims, options, ctx)
        except ShapeError as exc:
            # an op that takes the flattened vector of an image but not the image itself: FC on HxWxC
            if not image_in or getattr(cls, "needs_vector_input", False):
                raise self.shape_error(exc, item, inputs, ctx) from None
            assert flatten is not None
            flat_shape = (numel(in_shapes[0]),)
            try:
                op, out = self.construct(cls, item, [flat_shape], dims, options, ctx)
            except CnnCalcError:
                raise self.shape_error(exc, item, inputs, ctx) from None
            inputs = [self.flatten(item, inputs[0], ctx)]
        return self.add_node(op, out, inputs, item, ctx, block)

    def construct(self, cls: type[Op], item: _Item, in_shapes: list[Shape], dims: tuple[int, ...],
                  options: tuple[tuple[str | None, str, int], ...], ctx: _Context) -> tuple[Op, Shape]:
        """cls.from_spec and output_shape; option errors come back located, with the item's place."""
        args = SpecArgs(options, item.src.text, item.pos, dims, self.defaults)
        try:
            op = cls.from_spec(args, in_shapes)
            out = tuple(op.output_shape(in_shapes))
        except SpecError as exc:
            raise SpecError(f"{self.at(item, ctx)}: {exc.message}{ctx.suffix}", item.src.text,
                            exc.pos if exc.pos is not None else item.pos, hint=exc.hint,
                            length=exc.length, source=item.src.label) from None
        except ShapeError:
            raise
        except CnnCalcError as exc:
            raise ShapeError(exc.message, exc.hint) from None
        except Exception as exc:  # a bug in an operator must still not reach the user as a traceback
            raise self.error(item, ctx, f"internal error in operator {cls.__name__}: "
                             f"{type(exc).__name__}: {exc}", hint="this is a bug in cnncalc; please report it"
                             ) from None
        return op, out

    def flatten(self, item: _Item, x: str, ctx: _Context) -> str:
        """The implicit Flatten before an op that needs a vector."""
        cls = OPS["Flatten"]
        try:
            op, out = self.construct(cls, item, [self.shapes[x]], (), (), ctx)
        except ShapeError as exc:
            raise self.shape_error(exc, item, [x], ctx) from None
        name = self.add_node(op, out, [x], item, ctx, None, implicit=True)
        self.where[name] = f"the Flatten before {self.at(item, ctx)}"
        return name

    def add_node(self, op: Op, out: Shape, inputs: list[str], item: _Item, ctx: _Context,
                 block: str | None, implicit: bool = False) -> str:
        if len(self.nodes) >= MAX_LAYERS:
            raise self.error(item, ctx, f"the spec expands to more than {MAX_LAYERS:,} layers",
                             hint="cnncalc analyses networks up to 10,000 layers; lower the repeat counts")
        self.check_size(out, item, ctx)
        name = self.node_name(op)
        label = op.spec_name() if implicit else item.label
        pos = item.pos if ctx.anchor is None else ctx.anchor  # offsets index the spec text, not a block's
        self.nodes.append(Node(name, op, tuple(inputs), label=label, pos=pos,
                               block=ctx.path if block is None else block, implicit=implicit))
        self.shapes[name] = out
        self.where[name] = f"{self.at(item, ctx)}, {item.label}"
        first = self.shapes[inputs[0]]
        same_channels = len(out) == len(first) and out[0] == first[0]
        same_size = len(out) == len(first) and tuple(out[1:]) == tuple(first[1:])
        self.channels_from[name] = self.channels_from[inputs[0]] if same_channels else name
        self.size_from[name] = self.size_from[inputs[0]] if same_size else name
        return name

    def check_size(self, out: Shape, item: _Item, ctx: _Context) -> None:
        if any(dim < 1 for dim in out):
            raise self.error(item, ctx, f"the output {show_shape(out)} has a size below 1",
                             hint="use padding, a smaller kernel or stride, or fewer downsampling layers")
        image_dims = out if len(out) == 3 else ()
        if any(dim > MAX_DIM for dim in image_dims) or numel(out) > MAX_ELEMENTS:
            raise self.error(item, ctx, f"the output {show_shape(out)} is beyond cnncalc's limits",
                             hint=f"sizes and channels go up to {MAX_DIM:,}, tensors up to {MAX_ELEMENTS:,} "
                                  "elements")

    def node_name(self, op: Op) -> str:
        """conv1, relu2, ...: the op's canonical spec name in lower case and a counter."""
        prefix = re.sub(r"[^a-z0-9_]", "", op.spec_name().lower()) or "node"
        if prefix[-1].isdigit():
            prefix += "_"
        while True:
            name = f"{prefix}{self.count('node:' + prefix)}"
            if name not in self.shapes:
                return name

    def count(self, key: str) -> int:
        self.counters[key] = self.counters.get(key, 0) + 1
        return self.counters[key]

    # ---- checkpoints and errors ----------------------------------------------
    def checkpoint(self, item: _Sizes, x: str, ctx: _Context) -> None:
        """A written HxWxC must equal the computed shape; else say which layer to change and how."""
        want = list(item.sizes)
        got = to_hwc(self.shapes[x])
        if got == want:
            return
        wanted, actual = "x".join(map(str, want)), show_shape(self.shapes[x])
        message = f"{self.at(item, ctx)}: checkpoint {wanted} does not hold: the tensor here is {actual}"
        size_differs = got[:2] != want[:2]
        changer = self.size_from[x] if size_differs else self.channels_from[x]
        hint = None
        if x == "input":
            message += " (the input)"
        elif changer == "input":  # layers ran, but none changed what differs: the input is where it comes from
            kept = f"{got[0]}x{got[1]}" if size_differs else f"{got[2]} channels"
            message += f"; the layers since {self.where['input']} keep its {kept}"
        else:
            message += f"; {self.where[changer]}, gives {show_shape(self.shapes[changer])}"
            hint = self.suggest(changer, x, want)
        if hint is None:
            hint = f"if {actual} is what you meant, write {actual} here"
            if want[2] == got[2] and max(want[:2]) <= MAX_CONV_LOOKING_KERNEL:
                # 3x3x64 after a 64-channel tensor reads as a conv whose Cout was left out, not a checkpoint
                hint = (f"a convolution has four sizes KhxKwxCinxCout, e.g. {wanted}x{2 * want[2]}; {hint}")
        raise SpecError(message + ctx.suffix, item.src.text, item.pos, hint=hint,
                        length=item.end - item.pos, source=item.src.label)

    def suggest(self, changer: str, x: str, want: list[int]) -> str | None:
        """The first of the changer's own variations that makes the checkpoint hold."""
        index = next(i for i, node in enumerate(self.nodes) if node.name == changer)
        try:
            for tries, (change, op) in enumerate(self.nodes[index].op.variations()):
                if tries >= 500:
                    break
                shapes = self.reinfer(index, op)
                if shapes is not None and to_hwc(shapes[x]) == want:
                    return f"{change} makes it hold: write {op.describe()}"
        except Exception:  # a hint is optional; a faulty variation must not hide the real error
            return None
        return None

    def reinfer(self, index: int, replacement: Op) -> dict[str, Shape] | None:
        """Shapes after swapping the op of node `index`, or None when a later node rejects them."""
        shapes = dict(self.shapes)
        for i, node in enumerate(self.nodes[index:], start=index):
            op = replacement if i == index else node.op
            try:
                shapes[node.name] = tuple(op.output_shape([shapes[name] for name in node.inputs]))
            except Exception:
                return None
        return shapes

    def shape_error(self, exc: ShapeError, item: _Item, inputs: list[str], ctx: _Context) -> SpecError:
        """An op's ShapeError, placed at the item, with where the incoming tensor came from."""
        message = f"{self.at(item, ctx)}: {exc.message}"
        if isinstance(item, _Branches):
            if item.keyword == "res":
                parts = ["main", "shortcut"]
            else:
                parts = [f"branch {i + 1}" for i in range(len(inputs))]
            shown = ", ".join(f"{part} gives {show_shape(self.shapes[name])}"
                              for part, name in zip(parts, inputs, strict=True))
            message += f" ({shown})"
        elif "channel" in exc.message.lower() or "cin" in exc.message.lower():
            source = self.channels_from[inputs[0]]
            channels = to_hwc(self.shapes[inputs[0]])[2]
            message += f"; the incoming {channels} channels come from {self.where[source]}"
        return SpecError(message + ctx.suffix, item.src.text, item.pos, hint=exc.hint,
                         length=item.end - item.pos, source=item.src.label)

    def error(self, item: _Item, ctx: _Context, message: str, hint: str | None = None) -> SpecError:
        return SpecError(f"{self.at(item, ctx)}: {message}{ctx.suffix}", item.src.text, item.pos, hint=hint,
                         length=item.end - item.pos, source=item.src.label)

    @staticmethod
    def at(item: _Item, ctx: _Context) -> str:
        """`item 3`, `item 3.2` (the second item of the group that is item 3) or `item 2 of res1/main`."""
        number = f"item {ctx.prefix}{item.index}"
        return f"{number} of {ctx.path}" if ctx.path else number


# ---- public entry points -----------------------------------------------------------------------------
def parse(
    text: str,
    *,
    name: str = "network",
    input_shape: Shape | str | None = None,
    blocks: Mapping[str, str] | None = None,
    defaults: Mapping[str, Any] | None = None,
    dtype: str = "float32",
    batch: int = 1,
    source: str | None = None,
) -> Graph:
    """Spec text -> Graph; every mistake becomes a SpecError pointing into the text.

    `input_shape` (C, H, W) or "HxWxC" replaces the leading input item (then a leading shape is a
    checkpoint); `blocks` are named sub-chains usable as items; `defaults` such as {"bias": False}
    apply to every op that reads the option; `source` names the text in messages ("net.yaml: network").
    """
    if not isinstance(text, str):
        raise SpecError(f"a spec is text, not {type(text).__name__}", source=source)
    if len(text) > MAX_TEXT:
        raise SpecError(f"the spec has {len(text):,} characters, above the limit of {MAX_TEXT:,}",
                        source=source)
    if dtype not in DTYPE_BYTES:
        raise CnnCalcError(f"unknown dtype {dtype!r}", hint=dtype_hint(dtype))
    batch = whole_batch(batch)  # NumPy integers from a sweep are whole numbers too
    if batch < 1:
        raise CnnCalcError(f"batch must be a whole number of at least 1, got {batch!r}")
    src = _Source(text, source)
    # with the input given elsewhere (a YAML file's input:), the text holds only layers: say that
    empty = None if input_shape is None else ("the network is empty", "write its layers, e.g. 3x3x3x16(p=1) | ReLU")
    chain = _Parser(src, empty).parse()
    parsed_blocks = _parse_blocks(blocks or {}, source)
    items = chain.items
    if input_shape is None:
        first = items[0]
        if not (isinstance(first, _Sizes) and len(first.sizes) == 3):
            raise _fail(src, "a spec starts with its input shape HxWxC", first.pos, first.end - first.pos,
                        hint="e.g. 224x224x3 | 3x3x3x16(p=1) | ReLU, or give input: in a YAML file")
        h, w, c = first.sizes
        shape: Shape = (c, h, w)
        if numel(shape) > MAX_ELEMENTS:
            raise _fail(src, _too_many_elements(shape), first.pos, first.end - first.pos, hint=_ELEMENTS_HINT)
        items = items[1:]
        input_where = f"the input {h}x{w}x{c}"
    else:
        shape = _as_shape(input_shape, source)
        input_where = f"the input {show_shape(shape)}"
    builder = _Builder(shape, input_where, parsed_blocks, _spec_defaults(defaults or {}))
    with _recursion_room(BUILD_FRAMES):
        output = builder.chain(_Chain(items, chain.pos, chain.end), "input", _Context())
    return Graph(name=name, input_shape=shape, nodes=tuple(builder.nodes), output=output, text=text,
                 dtype=dtype, batch=batch, shapes=dict(builder.shapes))


def standalone_text(graph: Graph) -> str:
    """Spec text that alone parses to this network, for output a user may feed back to cnncalc.

    A YAML network's own text lacks the file's `input:`, `blocks:` and `defaults:`, so it may not parse
    alone, or parse to another network (convs with biases). In order: the text as written when it gives
    the same layers; the input shape put before it when that is all it lacks (checkpoints and the
    user's wording kept); else the chain rebuilt from the graph; "" when no chain can write the graph.
    """
    if graph.text:
        for text in (graph.text, f"{show_shape(graph.input_shape)} | {graph.text}"):
            try:
                again = parse(text)
            except CnnCalcError:
                continue
            if (again.input_shape == graph.input_shape
                    and [(n.op, n.inputs) for n in again.nodes] == [(n.op, n.inputs) for n in graph.nodes]):
                return text
    try:
        return to_spec(graph)
    except CnnCalcError:
        return ""


@contextmanager
def _recursion_room(frames: int) -> Iterator[None]:
    """Raise Python's recursion limit by `frames` for a while: the documented limits nest deeper than its 1,000."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(limit + frames)
    try:
        yield
    finally:
        sys.setrecursionlimit(limit)


def parse_shape(text: str, source: str | None = None) -> Shape:
    """"HxWxC" -> (C, H, W), with a SpecError for anything else."""
    src = _Source(text, source)
    tokens = _tokenize(src)
    if len(tokens) != 2 or tokens[0].kind != "sizes" or len(tokens[0].sizes) != 3:
        raise _fail(src, f"{text.strip()!r} is not a shape HxWxC", 0, max(1, len(text)),
                    hint="write e.g. 224x224x3 (height x width x channels)")
    h, w, c = tokens[0].sizes
    try:
        return _as_shape((c, h, w), source)
    except SpecError as exc:  # the same checks, pointing into the text
        raise _fail(src, exc.message, tokens[0].pos, tokens[0].end - tokens[0].pos, hint=exc.hint) from None


def _as_shape(shape: Shape | str, source: str | None) -> Shape:
    """A checked (C, H, W) from a tuple or an HxWxC string."""
    if isinstance(shape, str):
        return parse_shape(shape, source)
    if (not isinstance(shape, (tuple, list)) or len(shape) != 3
            or not all(hasattr(type(d), "__index__") and not isinstance(d, bool) for d in shape)):
        raise SpecError(f"an input shape is (C, H, W) or 'HxWxC', not {shape!r}", source=source)
    shape = tuple(operator.index(d) for d in shape)  # NumPy integers (e.g. from x.shape) become ints
    if not all(1 <= d <= MAX_DIM for d in shape):
        raise SpecError(f"input shape {shape!r} has a size outside 1..{MAX_DIM:,}", source=source)
    if numel(shape) > MAX_ELEMENTS:
        raise SpecError(_too_many_elements(tuple(shape)), source=source, hint=_ELEMENTS_HINT)
    return tuple(shape)


def _too_many_elements(shape: Shape) -> str:
    """The input obeys the element limit of every other tensor, so an input-only spec cannot dodge it."""
    return f"the input {show_shape(shape)} has {numel(shape):,} elements, above the limit of {MAX_ELEMENTS:,}"


def _block_source(source: str | None, name: str) -> str:
    """'net.yaml: variants.fast' -> 'net.yaml: blocks.fire'."""
    file = source.split(": ", 1)[0] if source else ""
    return f"{file}: blocks.{name}" if file else f"blocks.{name}"


def _parse_blocks(blocks: Mapping[str, str], source: str | None) -> dict[str, _Block]:
    """Parse every block's text once (syntax only; shapes depend on where a block is used)."""
    parsed: dict[str, _Block] = {}
    for name, text in blocks.items():
        where = _block_source(source, str(name))
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise SpecError(f"block name {name!r} is not a name", source=where,
                            hint="use letters, digits, '_' and '-', starting with a letter")
        key = name.lower()
        if key in SPEC_NAMES or key in KEYWORDS:
            raise SpecError(f"block name {name!r} is already an operator or keyword", source=where,
                            hint="choose another name, e.g. my_" + name)
        if key in parsed:
            raise SpecError(f"two blocks are named {name!r} (names ignore case)", source=where)
        if not isinstance(text, str):
            raise SpecError(f"block {name} must be chain text, not {type(text).__name__}", source=where)
        empty = (f"block {name} is empty", "write its layers, e.g. 3x3x64x64(p=1) | ReLU; a block has no input shape")
        parsed[key] = _Block(name, _Parser(_Source(text, where), empty).parse())
    return parsed


def _spec_defaults(defaults: Mapping[str, Any]) -> dict[str, Any]:
    """YAML names (bias) -> the option keys the ops read (b); booleans become 0/1."""
    result: dict[str, Any] = {}
    for key, value in defaults.items():
        option = DEFAULT_KEYS.get(str(key).lower(), str(key))
        if option in DEFAULT_KEYS.values() and value not in (0, 1):  # on/off, as the option itself (b=0 or 1)
            raise CnnCalcError(f"defaults {key}={value!r} must be true or false",
                               hint=f"write defaults={{{key!r}: False}}")
        result[option] = int(value) if isinstance(value, bool) else value
    return result
