"""Rules from a file (``--rules FILE``): read, parsed, and errors that locate without quoting.

``--rules`` takes any path, so whatever it names may be a file that is not ours to show
(``--rules /etc/shadow``). An error names the file, the line (and column) and the problem,
and quotes no line of a file that did not parse: the YAML or JSON parser's own account of the
problem is kept (cut to :data:`PROBLEM_CHARS`), its excerpt of the file is not. A file that
parses but is no rules document says so without quoting it; a rule that is wrong is reported
with the line it starts on and a short excerpt of the value at fault (``excerpt``).
Strings go through the same checks as a request body (``strictjson.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import yaml

from mockllm.errors import InvalidJSON, RuleError, excerpt
from mockllm.rules import Rule, parse_rule, parse_rules
from mockllm.strictjson import check_value, parse_json

__all__ = ["MAX_FILE_BYTES", "MAX_VALUES", "PROBLEM_CHARS", "load_rules_file"]

#: A rules file larger than this is refused before it is parsed (``--rules /dev/zero``).
MAX_FILE_BYTES: Final = 16 * 1024 * 1024
#: The parser's description of a syntax error is cut to this many characters.
PROBLEM_CHARS: Final = 80
#: Most values (strings, numbers, lists, mappings) a rules file may hold, aliases expanded.
MAX_VALUES: Final = 1_000_000

_RULE_KEYS = frozenset({"id", "match", "respond", "times"})


def _read(path: Path) -> str:
    name = str(path)
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise RuleError(f"Cannot read rules file {name!r}: {exc.strerror}.") from None
    if len(raw) > MAX_FILE_BYTES:
        raise RuleError(
            f"Rules file {name!r} is larger than {MAX_FILE_BYTES} bytes; is it the right file?"
        )
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise RuleError(
            f"Rules file {name!r}, line {line}: not UTF-8 text (byte {exc.start}); a rules "
            "file is YAML or JSON."
        ) from None


def _yaml_document(name: str, text: str) -> tuple[Any, yaml.Node | None]:
    """The decoded document and its node tree (for the lines the rules start on)."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = excerpt(exc.problem or exc.context or "syntax error", PROBLEM_CHARS, quote=False)
        raise RuleError(f"Rules file {name!r}{where}: not valid YAML: {problem}.") from None
    except yaml.YAMLError as exc:
        problem = excerpt(type(exc).__name__, PROBLEM_CHARS, quote=False)
        raise RuleError(f"Rules file {name!r}: not valid YAML: {problem}.") from None
    finally:
        loader.dispose()
    return data, node


def _json_document(name: str, text: str) -> tuple[Any, yaml.Node | None]:
    try:
        data = parse_json(text)
    except InvalidJSON as exc:
        raise RuleError(f"Rules file {name!r}: {exc.message}") from None
    # JSON is YAML's flow style: the same node tree gives the lines rules start on.
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        node = None
    return data, node


def _rule_lines(node: yaml.Node | None) -> list[int]:
    """1-based start line of each rule, in document order ([] when unknown)."""
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == "rules":
                node = value
                break
        else:
            return [node.start_mark.line + 1]  # a single rule
    if isinstance(node, yaml.SequenceNode):
        return [item.start_mark.line + 1 for item in node.value]
    return []


def _not_rules(name: str, data: Any) -> RuleError | None:
    """Why a decoded document is no rules file at all, or None (then rules are checked)."""
    expected = "a list of rules, {rules: [...]} or one rule"
    if isinstance(data, list):
        return None
    if isinstance(data, dict):
        if "rules" in data or set(data) & _RULE_KEYS:
            return None
        return RuleError(
            f"Rules file {name!r} is not a rules file: its top level is a mapping with none of "
            f"the keys rules, id, match, respond, times (expected {expected})."
        )
    return RuleError(
        f"Rules file {name!r} is not a rules file: it is a single {type(data).__name__} "
        f"(expected {expected})."
    )


def load_rules_file(path: str | Path) -> list[Rule]:
    """Rules from a ``.json`` file, or YAML (any other name); raises RuleError naming the
    file, the line and the problem."""
    path = Path(path)
    name = str(path)
    text = _read(path)
    if path.suffix == ".json":
        data, node = _json_document(name, text)
    else:
        data, node = _yaml_document(name, text)
    if data is None:  # empty, or comments only
        return []
    problem = _not_rules(name, data)
    if problem is not None:
        raise problem
    try:
        # The budget stops a YAML "billion laughs": aliases that expand to a huge document.
        check_value(data, max_values=MAX_VALUES)
    except InvalidJSON as exc:
        raise RuleError(f"Rules file {name!r}: {exc.message}", param=exc.param) from None
    lines = _rule_lines(node)
    items = data["rules"] if isinstance(data, dict) and set(data) == {"rules"} else data
    if isinstance(items, dict):
        items = [items]
    if isinstance(items, list):
        # Rule by rule first, so that an error can say which line the rule starts on.
        for index, item in enumerate(items):
            try:
                parse_rule(item, default_id=f"rule-{index + 1}")
            except RuleError as exc:
                line = f", line {lines[index]}" if index < len(lines) else ""
                raise RuleError(
                    f"Rules file {name!r}{line} (rule {index + 1}): {exc.message}",
                    param=exc.param,
                ) from None
    try:
        return parse_rules(data)
    except RuleError as exc:
        raise RuleError(f"Rules file {name!r}: {exc.message}", param=exc.param) from None
