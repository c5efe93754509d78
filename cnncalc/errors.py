"""Errors a user can cause. Each one says what is wrong, where, and how to fix it.

The CLI turns any `CnnCalcError` into a red message and exit code 1; anything else
reaching the CLI is a bug in cnncalc.
"""

from __future__ import annotations

import unicodedata

#: display columns of spec text shown around the caret; a longer line is cut to a window around it
SHOWN_COLUMNS = 100


class CnnCalcError(Exception):
    """Base of every error caused by user input (spec, file, flag, data)."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def render(self) -> str:
        """The full text shown to the user: message, then the fix if one is known."""
        text = self.message
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text

    def __str__(self) -> str:
        return self.render()


class ShapeError(CnnCalcError):
    """An operator cannot accept the shapes it is given (raised by ops, located by the parser)."""


class SpecError(CnnCalcError):
    """A mistake in spec text, with the text and the offset of the offending token."""

    def __init__(
        self,
        message: str,
        text: str = "",
        pos: int | None = None,
        hint: str | None = None,
        length: int = 1,
        source: str | None = None,
    ) -> None:
        super().__init__(message, hint)
        self.text = text
        self.pos = pos
        self.length = max(1, length)
        self.source = source

    def render(self) -> str:
        """Message, the spec text with a caret under the offending token, then the hint."""
        where = f"{self.source}: " if self.source else ""
        lines = [f"{where}{self.message}"]
        if self.text and self.pos is not None:
            lines.extend(caret_lines(self.text, self.pos, self.length))
        if self.hint:
            lines.append(f"  hint: {self.hint}")
        return "\n".join(lines)


def caret_lines(text: str, pos: int, length: int = 1) -> list[str]:
    """The line of `text` holding `pos` and a caret line under `length` characters from it, both indented.

    The caret must stay under its token as a terminal shows the line: a tab before it is copied (so both
    lines reach the same tab stop), a wide character (CJK, full-width) takes two spaces and a combining or
    invisible one none; a line longer than SHOWN_COLUMNS is cut to a window around the token, marked '...',
    so a long spec gives a readable message rather than one wrapped over many screen lines.
    """
    line_start = text.rfind("\n", 0, pos) + 1
    line_end = text.find("\n", pos)
    line_end = len(text) if line_end == -1 else line_end
    col = pos - line_start
    token_end = col + max(1, min(length, line_end - pos))
    line = text[line_start:line_end]
    start, end = 0, len(line)
    if _columns(line) > SHOWN_COLUMNS:
        token_end = min(token_end, col + SHOWN_COLUMNS // 2)  # a very long token: its start is what matters
        context = max(0, (SHOWN_COLUMNS - _columns(line[col:token_end])) // 2)
        start = max(0, col - context)
        end = min(len(line), token_end + context)
    before = "..." if start > 0 else ""
    after = "..." if end < len(line) else ""
    shown = before + line[start:end] + after
    under = before.replace(".", " ") + "".join("\t" if ch == "\t" else " " * _width(ch) for ch in line[start:col])
    carets = "^" * max(1, _columns(line[col:token_end]))
    return [f"  {shown}", f"  {under}{carets}"]


def _width(ch: str) -> int:
    """Terminal columns of one character: 2 for wide (East Asian wide and full-width), 0 for combining
    marks and format characters such as a zero-width space, else 1."""
    if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def _columns(text: str) -> int:
    """Terminal columns of a text without tabs (a tab counts as one: only the caret's prefix copies them)."""
    return sum(_width(ch) for ch in text)


class SpecFileError(CnnCalcError):
    """A YAML spec or profile file that is malformed; names the file and the key."""


class UnsupportedOpError(CnnCalcError):
    """An ONNX model uses operators cnncalc does not know; lists them and where they occur."""

    def __init__(self, message: str, ops: dict[str, list[str]] | None = None, hint: str | None = None):
        super().__init__(message, hint)
        self.ops = ops or {}


class OnnxFileError(CnnCalcError):
    """An ONNX file that cannot be read, is unsafe, or is not a model cnncalc can use."""


class RuntimeInputError(CnnCalcError):
    """Inputs or data given to the NumPy backend that do not fit the model."""
