"""YAML data files validated by pydantic, with every error located at ``file:line: field``.

Scenario files and target profiles are both user-written YAML; both are loaded here so a typo
reads the same everywhere::

    my_app.yaml:7: frames[1].kind: Input should be 'token', 'end', 'error', ...

Pure: text in, a model (or a :class:`DataFileError` listing every problem) out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from scenarios.errors import HarnessError

__all__ = ["DataFileError", "Located", "Problem", "load_located", "read_text", "validate"]

Problem = tuple[int | None, str, str]  # (1-based line or None, dotted field, message)
Path_ = tuple[str | int, ...]
M = TypeVar("M", bound=BaseModel)


class DataFileError(HarnessError):
    """A data file that cannot be used; ``problems`` lists every (line, field, message)."""

    def __init__(self, path: str, problems: Sequence[Problem]) -> None:
        self.path = path
        self.problems = list(problems)
        super().__init__("\n".join(self.lines()))

    def lines(self) -> list[str]:
        out = []
        for line, field, message in self.problems:
            where = f"{self.path}:{line}" if line is not None else self.path
            out.append(f"{where}: {field}: {message}" if field else f"{where}: {message}")
        return out


@dataclass(frozen=True)
class Located:
    data: Any
    lines: dict[Path_, int]  # path -> 1-based line of its key or item

    def line_of(self, loc: Sequence[str | int]) -> int | None:
        """The line of ``loc``, or of its nearest ancestor present in the file."""
        path = tuple(loc)
        while True:
            if path in self.lines:
                return self.lines[path]
            if not path:
                return None
            path = path[:-1]


def read_text(path: Path, error: Callable[[str, Sequence[Problem]], DataFileError]) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise error(str(path), [(None, "", f"cannot read: {exc.strerror}")]) from None
    except UnicodeDecodeError as exc:
        raise error(str(path), [(None, "", f"not UTF-8 text: {exc.reason}")]) from None


def load_located(
    text: str, path: str, error: Callable[[str, Sequence[Problem]], DataFileError]
) -> Located:
    """Parse YAML keeping each key's line; duplicate keys are problems (PyYAML keeps the last
    of two equal keys silently, so a copy-pasted typo would change a file without a word)."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise error(path, [(line, "", f"invalid YAML: {problem}")]) from None
    lines: dict[Path_, int] = {}
    problems: list[Problem] = []
    if node is not None:
        _walk(node, (), lines, problems)
    if problems:
        raise error(path, problems)
    return Located(data, lines)


def validate(
    model: type[M],
    located: Located,
    path: str,
    error: Callable[[str, Sequence[Problem]], DataFileError],
    *,
    clean: Callable[[Sequence[str | int]], list[str | int]] | None = None,
    message: Callable[[Mapping[str, Any]], str | None] | None = None,
) -> M:
    """``model.model_validate(data)``, its errors turned into located problems.

    ``clean`` drops pydantic's own parts of an error location (union members, discriminator
    tags) beyond the generic ones; ``message`` may rewrite an error's text (None: keep it).
    """
    try:
        return model.model_validate(located.data)
    except ValidationError as exc:
        problems: list[Problem] = []
        for err in exc.errors():
            loc = _clean_loc(err["loc"])
            if clean is not None:
                loc = clean(loc)
            text = (message(err) if message is not None else None) or _message(err)
            problems.append((located.line_of(loc), dotted(loc), text))
        raise error(path, problems) from None


def dotted(path: Sequence[str | int]) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _message(err: Mapping[str, Any]) -> str:
    if err["type"] == "extra_forbidden":
        return "unknown field"
    return str(err["msg"]).removeprefix("Value error, ")


_TYPE_NAMES = frozenset(
    {"str", "int", "float", "bool", "list", "dict", "dict[str,str]", "dict[str,int]", "none"}
)


def _clean_loc(loc: Sequence[str | int]) -> list[str | int]:
    # pydantic puts union members in `loc` ("str", "function-after[...]", "list[str]"...):
    # they are not fields of the file.
    return [
        part for part in loc if not (isinstance(part, str) and ("[" in part or part in _TYPE_NAMES))
    ]


def _walk(node: yaml.Node, path: Path_, lines: dict[Path_, int], problems: list[Problem]) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            child = (*path, key)
            if key in seen:
                problems.append((key_node.start_mark.line + 1, dotted(child), "duplicate key"))
            seen.add(key)
            lines[child] = key_node.start_mark.line + 1
            _walk(value_node, child, lines, problems)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, (*path, i), lines, problems)
