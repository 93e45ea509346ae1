"""Map key paths of a TOML document to the lines that define them (tomllib keeps no positions).

The scanner walks the document's structure only (headers, keys, where values start and end),
so ``[`` or ``=`` inside strings and comments cannot fool it. Each recorded path is checked
against the parsed document; if any disagrees, the locator forgets everything: an unknown
line is better than a wrong one.
"""

from __future__ import annotations

import bisect
import re
import tomllib
from collections.abc import Mapping, Sequence
from typing import Any

KeyPath = tuple[str | int, ...]

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_SCALAR_END = frozenset(",]}#\r\n")


class _ScanError(Exception):
    """The scanner met something it does not understand."""


class TomlLocator:
    """Line numbers (1-based) of the keys, tables and array items of one TOML text."""

    def __init__(self, text: str, data: Mapping[str, Any] | None = None) -> None:
        try:
            lines = _Scanner(text).run()
        except _ScanError:
            lines = {}
        if data is not None and not all(_resolves(data, p) for p in lines):
            lines = {}  # the scan disagrees with the parsed document
        self._lines = lines

    def line(self, path: Sequence[str | int]) -> int | None:
        """Line where ``path`` is defined: its key, its ``[table]`` header, or its array item."""
        return self._lines.get(tuple(path))


def _resolves(data: Any, path: KeyPath) -> bool:
    node = data
    for part in path:
        if isinstance(part, int):
            if not isinstance(node, list) or not 0 <= part < len(node):
                return False
        elif not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.newlines = [i for i, c in enumerate(text) if c == "\n"]
        self.lines: dict[KeyPath, int] = {}
        self.aot_len: dict[KeyPath, int] = {}  # arrays of tables seen so far, by path

    # -- driver -------------------------------------------------------------------------

    def run(self) -> dict[KeyPath, int]:
        table: KeyPath = ()
        while True:
            self.skip_blank(newlines=True)
            if self.eof():
                return self.lines
            if self.text.startswith("[", self.pos):
                table = self.header()
            else:
                self.keyval(table)
            self.end_of_line()

    def header(self) -> KeyPath:
        line = self.line()
        array = self.text.startswith("[[", self.pos)
        self.pos += 2 if array else 1
        keys = self.key()
        self.expect("]]" if array else "]")
        path: list[str | int] = []
        for i, key in enumerate(keys):
            path.append(key)
            here = tuple(path)
            if array and i == len(keys) - 1:
                index = self.aot_len.get(here, 0)
                self.aot_len[here] = index + 1
                self.record(here, line)
                path.append(index)
            elif here in self.aot_len:  # a header walks through the last item of an array
                path.append(self.aot_len[here] - 1)
        self.record(tuple(path), line)
        return tuple(path)

    def keyval(self, table: KeyPath) -> None:
        line = self.line()
        keys = self.key()
        for i in range(len(keys)):
            self.record((*table, *keys[: i + 1]), line)
        self.skip_blank()
        self.expect("=")
        self.skip_blank()
        self.value((*table, *keys))

    # -- values -------------------------------------------------------------------------

    def value(self, path: KeyPath) -> None:
        text, pos = self.text, self.pos
        if text.startswith('"""', pos):
            self.multiline_string('"""', escapes=True)
        elif text.startswith("'''", pos):
            self.multiline_string("'''", escapes=False)
        elif text.startswith('"', pos):
            self.string('"', escapes=True)
        elif text.startswith("'", pos):
            self.string("'", escapes=False)
        elif text.startswith("[", pos):
            self.array(path)
        elif text.startswith("{", pos):
            self.inline_table(path)
        else:
            start = pos
            while pos < len(text) and text[pos] not in _SCALAR_END:
                pos += 1
            if pos == start:
                raise _ScanError(f"no value at offset {start}")
            self.pos = pos

    def array(self, path: KeyPath) -> None:
        self.pos += 1
        index = 0
        while True:
            self.skip_blank(newlines=True, comments=True)
            if self.take("]"):
                return
            self.record((*path, index), self.line())
            self.value((*path, index))
            index += 1
            self.skip_blank(newlines=True, comments=True)
            if self.take("]"):
                return
            self.expect(",")

    def inline_table(self, path: KeyPath) -> None:
        self.pos += 1
        while True:
            self.skip_blank(newlines=True, comments=True)
            if self.take("}"):
                return
            self.keyval(path)
            self.skip_blank(newlines=True, comments=True)
            if self.take("}"):
                return
            self.expect(",")

    def string(self, quote: str, *, escapes: bool) -> str:
        start = self.pos
        pos = start + 1
        text = self.text
        while pos < len(text) and text[pos] != quote:
            if text[pos] == "\n":
                raise _ScanError(f"newline in a string at offset {pos}")
            pos += 2 if escapes and text[pos] == "\\" else 1
        if pos >= len(text):
            raise _ScanError("unterminated string")
        self.pos = pos + 1
        return text[start : self.pos]

    def multiline_string(self, delim: str, *, escapes: bool) -> None:
        text = self.text
        pos = self.pos + 3
        while not text.startswith(delim, pos):
            if pos >= len(text):
                raise _ScanError("unterminated multi-line string")
            pos += 2 if escapes and text[pos] == "\\" else 1
        pos += 3
        for _ in range(2):  # up to two quotes right before the closing delimiter belong to the text
            if text.startswith(delim[0], pos):
                pos += 1
        self.pos = pos

    # -- keys ---------------------------------------------------------------------------

    def key(self) -> list[str]:
        parts: list[str] = []
        while True:
            self.skip_blank()
            if self.text.startswith('"', self.pos):
                raw = self.string('"', escapes=True)
                parts.append(str(tomllib.loads(f"k = {raw}")["k"]))
            elif self.text.startswith("'", self.pos):
                parts.append(self.string("'", escapes=False)[1:-1])
            else:
                match = _BARE_KEY.match(self.text, self.pos)
                if match is None:
                    raise _ScanError(f"no key at offset {self.pos}")
                parts.append(match.group())
                self.pos = match.end()
            self.skip_blank()
            if not self.take("."):
                return parts

    # -- low level ----------------------------------------------------------------------

    def record(self, path: KeyPath, line: int) -> None:
        self.lines.setdefault(path, line)

    def line(self) -> int:
        return bisect.bisect_left(self.newlines, self.pos) + 1

    def eof(self) -> bool:
        return self.pos >= len(self.text)

    def take(self, token: str) -> bool:
        if self.text.startswith(token, self.pos):
            self.pos += len(token)
            return True
        return False

    def expect(self, token: str) -> None:
        self.skip_blank()
        if not self.take(token):
            raise _ScanError(f"expected {token!r} at offset {self.pos}")

    def skip_blank(self, *, newlines: bool = False, comments: bool = False) -> None:
        text = self.text
        while self.pos < len(text):
            c = text[self.pos]
            if c in " \t" or (newlines and c in "\r\n"):
                self.pos += 1
            elif c == "#" and (comments or newlines):
                end = text.find("\n", self.pos)
                self.pos = len(text) if end < 0 else end
            else:
                return

    def end_of_line(self) -> None:
        self.skip_blank(comments=True)
        self.take("\r")
        if not (self.eof() or self.take("\n")):
            raise _ScanError(f"expected end of line at offset {self.pos}")
