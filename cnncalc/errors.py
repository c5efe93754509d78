"""Errors a user can cause. Each one says what is wrong, where, and how to fix it.

The CLI turns any `CnnCalcError` into a red message and exit code 1; anything else
reaching the CLI is a bug in cnncalc.
"""

from __future__ import annotations


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
            line_start = self.text.rfind("\n", 0, self.pos) + 1
            line_end = self.text.find("\n", self.pos)
            line_end = len(self.text) if line_end == -1 else line_end
            line = self.text[line_start:line_end]
            col = self.pos - line_start
            carets = "^" * max(1, min(self.length, len(line) - col))
            lines.append(f"  {line}")
            lines.append(f"  {' ' * col}{carets}")
        if self.hint:
            lines.append(f"  hint: {self.hint}")
        return "\n".join(lines)


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
