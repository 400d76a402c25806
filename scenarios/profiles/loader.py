"""Finding and loading target profiles: a built-in name or a YAML file.

A file may start from another profile with ``extends: NAME`` (a built-in name, or a path
relative to the file); its own top-level keys replace the base's (``frames`` as a whole list,
``headers`` merged key by key). Errors name the file, the line and the field::

    my_app.yaml:9: frames[0].kind: Input should be 'token', 'end', 'error', 'cancelled' or ...

Errors (one root)::

    ProfileError            a profile file that cannot be used (every problem, located)
    └── UnknownProfileError a name that is neither a built-in profile nor an existing file
"""

from __future__ import annotations

import difflib
from functools import cache
from pathlib import Path
from typing import Any

from scenarios.profiles.schema import Profile
from scenarios.yamlfile import DataFileError, Problem, load_located, read_text, validate

__all__ = [
    "BUILTIN_DIR",
    "ProfileError",
    "UnknownProfileError",
    "builtin_names",
    "load_profile",
    "parse_profile",
]

BUILTIN_DIR = Path(__file__).with_name("builtin")
_MAX_EXTENDS = 8


class ProfileError(DataFileError):
    """A target profile that cannot be used."""


class UnknownProfileError(ProfileError):
    def __init__(self, name: str) -> None:
        known = builtin_names()
        close = difflib.get_close_matches(name, known, n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        super().__init__(
            name,
            [
                (
                    None,
                    "",
                    f"not a built-in profile nor a file ({hint}built-in: {', '.join(known)})",
                )
            ],
        )


def builtin_names() -> list[str]:
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.yaml"))


def load_profile(spec: str | Path) -> Profile:
    """A built-in profile by name, or a profile file by path."""
    text = str(spec)
    if isinstance(spec, str) and text in builtin_names():
        return _builtin(text)
    path = Path(spec)
    if not path.is_file():
        raise UnknownProfileError(text)
    return _load_file(path, depth=0)


@cache
def _builtin(name: str) -> Profile:
    return _load_file(BUILTIN_DIR / f"{name}.yaml", depth=0)


def parse_profile(text: str, path: str = "<string>", *, base_dir: Path | None = None) -> Profile:
    """Validate one profile document (``extends`` resolved against ``base_dir``)."""
    return _parse(text, path, base_dir or Path.cwd(), depth=0)


def _load_file(path: Path, depth: int) -> Profile:
    return _parse(read_text(path, ProfileError), str(path), path.parent, depth, stem=path.stem)


def _parse(text: str, path: str, base_dir: Path, depth: int, stem: str | None = None) -> Profile:
    located = load_located(text, path, ProfileError)
    data = located.data
    if not isinstance(data, dict):
        raise ProfileError(path, [(1, "", "a profile file must be a YAML mapping")])
    data = dict(data)
    if stem is not None:
        data.setdefault("name", stem)
    if "extends" in data:
        base_name = data.pop("extends")
        line = located.lines.get(("extends",))
        base = _base(base_name, base_dir, depth, path, line)
        data = _merge(base.model_dump(exclude_defaults=True), data)
    return validate(Profile, type(located)(data, located.lines), path, ProfileError)


def _base(name: Any, base_dir: Path, depth: int, path: str, line: int | None) -> Profile:
    problem: list[Problem]
    if not isinstance(name, str):
        problem = [(line, "extends", "must be a profile name or a file path")]
        raise ProfileError(path, problem)
    if depth >= _MAX_EXTENDS:
        raise ProfileError(path, [(line, "extends", f"more than {_MAX_EXTENDS} levels (a loop?)")])
    if name in builtin_names():
        return _builtin(name)
    file = base_dir / name
    if not file.is_file():
        known = ", ".join(builtin_names())
        problem = [(line, "extends", f"{name!r} is not a built-in profile ({known}) nor a file")]
        raise ProfileError(path, problem)
    return _load_file(file, depth + 1)


def _merge(base: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    # The request is one thing: a file that gives text (or a body, or a GET) replaces the
    # base's request rather than adding a second one.
    if "text" in own or own.get("method") == "GET":
        out.pop("body", None)
    if "body" in own or own.get("method") == "GET":
        out.pop("text", None)
    for key, value in own.items():
        if key == "headers" and isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out
