"""Rules: "when a request matches, respond like this", from a YAML/JSON file or the admin API.

A rule::

    {"id": "rate-limit-first",            # optional; generated when absent
     "match": {"model": "gpt-4o-mini",     # exact name, or a glob such as "mock-*"
               "prompt": "weather",        # regex searched in the last user message
               "nth": 1},                  # only the nth matching request (int or list)
     "times": 3,                           # optional: apply at most this many times
     "respond": {"fault": "status=429;retry_after=0", "text": "...", "itl_ms": 20, ...}}

Rules are tried in order; the first that matches and is still eligible wins. Every rule whose
``model``/``prompt`` match counts the request, so ``nth`` means "the nth request of this kind"
whichever rule answered the earlier ones.
"""

from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mockllm.control import coerce
from mockllm.errors import RuleError

__all__ = ["Rule", "RuleBook", "load_rules_file", "parse_rule", "parse_rules"]

_RULE_KEYS = {"id", "match", "respond", "times"}
_MATCH_KEYS = {"model", "prompt", "nth"}


@dataclass(frozen=True)
class Rule:
    id: str
    respond: dict[str, Any]
    model: str | None = None
    prompt: re.Pattern[str] | None = None
    nth: frozenset[int] | None = None
    times: int | None = None

    def matches(self, model: str, prompt: str) -> bool:
        if self.model is not None and not fnmatch.fnmatchcase(model, self.model):
            return False
        return self.prompt is None or self.prompt.search(prompt) is not None

    def to_json(self) -> dict[str, Any]:
        match: dict[str, Any] = {}
        if self.model is not None:
            match["model"] = self.model
        if self.prompt is not None:
            match["prompt"] = self.prompt.pattern
        if self.nth is not None:
            match["nth"] = sorted(self.nth)
        out: dict[str, Any] = {"id": self.id, "match": match, "respond": dict(self.respond)}
        if self.times is not None:
            out["times"] = self.times
        return out


def _positive_int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RuleError(f"{where} must be an integer >= 1, got {value!r}.", param=where)
    return value


def parse_rule(raw: Any, *, default_id: str) -> Rule:
    if not isinstance(raw, dict):
        raise RuleError(f"A rule must be an object, got {type(raw).__name__}.", param="rules")
    unknown = set(raw) - _RULE_KEYS
    if unknown:
        raise RuleError(
            f"Unknown rule field(s) {sorted(unknown)}; a rule has {sorted(_RULE_KEYS)}.",
            param="rules",
        )
    rule_id = raw.get("id", default_id)
    if not isinstance(rule_id, str) or not rule_id:
        raise RuleError("Rule 'id' must be a non-empty string.", param="id")
    match = raw.get("match", {}) or {}
    if not isinstance(match, dict):
        raise RuleError(f"Rule {rule_id!r}: 'match' must be an object.", param="match")
    unknown = set(match) - _MATCH_KEYS
    if unknown:
        raise RuleError(
            f"Rule {rule_id!r}: unknown match field(s) {sorted(unknown)}; "
            f"known: {sorted(_MATCH_KEYS)}.",
            param="match",
        )
    model = match.get("model")
    if model is not None and not isinstance(model, str):
        raise RuleError(f"Rule {rule_id!r}: match.model must be a string.", param="match.model")
    prompt = match.get("prompt")
    pattern = None
    if prompt is not None:
        if not isinstance(prompt, str):
            raise RuleError(f"Rule {rule_id!r}: match.prompt must be a string.", param="prompt")
        try:
            pattern = re.compile(prompt)
        except re.error as exc:
            raise RuleError(
                f"Rule {rule_id!r}: match.prompt is not a valid regex: {exc}.", param="prompt"
            ) from None
    nth = match.get("nth")
    nth_set = None
    if nth is not None:
        values = nth if isinstance(nth, list) else [nth]
        nth_set = frozenset(_positive_int(v, f"rule {rule_id!r} match.nth") for v in values)
    times = raw.get("times")
    if times is not None:
        times = _positive_int(times, f"rule {rule_id!r} times")
    respond = raw.get("respond", {}) or {}
    if not isinstance(respond, dict):
        raise RuleError(f"Rule {rule_id!r}: 'respond' must be an object.", param="respond")
    try:
        checked = {
            str(key): coerce(str(key), value, f"rule {rule_id!r} respond.{key}")
            for key, value in respond.items()
        }
    except RuleError:
        raise
    except Exception as exc:  # InvalidRequest from coerce: re-raise as a rule problem
        message = getattr(exc, "message", str(exc))
        raise RuleError(message, param="respond") from None
    return Rule(rule_id, checked, model, pattern, nth_set, times)


def parse_rules(raw: Any, *, first_index: int = 1) -> list[Rule]:
    """Rules from a decoded document: a list of rules, ``{"rules": [...]}`` or one rule."""
    if isinstance(raw, dict) and "rules" in raw and set(raw) == {"rules"}:
        raw = raw["rules"]
    if isinstance(raw, dict):
        raw = [raw]
    if not isinstance(raw, list):
        raise RuleError("Expected a list of rules or {'rules': [...]}.", param="rules")
    rules = [parse_rule(item, default_id=f"rule-{first_index + i}") for i, item in enumerate(raw)]
    ids = [rule.id for rule in rules]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise RuleError(f"Duplicate rule id(s): {duplicates}.", param="id")
    return rules


def load_rules_file(path: str | Path) -> list[Rule]:
    """Read rules from a ``.yaml``/``.yml``/``.json`` file; raises RuleError naming the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RuleError(f"Cannot read rules file {str(path)!r}: {exc.strerror}.") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise RuleError(f"Rules file {str(path)!r} is not valid YAML/JSON: {exc}") from None
    if data is None:
        return []
    try:
        return parse_rules(data)
    except RuleError as exc:
        raise RuleError(f"Rules file {str(path)!r}: {exc.message}", param=exc.param) from None


@dataclass
class RuleBook:
    """Rules in order, with per-rule counters for ``nth`` and ``times``."""

    rules: list[Rule] = field(default_factory=list)
    seen: dict[str, int] = field(default_factory=dict)
    applied: dict[str, int] = field(default_factory=dict)
    _next: int = 1

    def add(self, rules: list[Rule]) -> list[Rule]:
        existing = {rule.id for rule in self.rules}
        clash = sorted(existing & {rule.id for rule in rules})
        if clash:
            raise RuleError(f"Rule id(s) already exist: {clash}.", param="id")
        self.rules.extend(rules)
        self._next += len(rules)
        return rules

    def next_index(self) -> int:
        return self._next

    def remove(self, rule_id: str) -> bool:
        before = len(self.rules)
        self.rules = [rule for rule in self.rules if rule.id != rule_id]
        self.seen.pop(rule_id, None)
        self.applied.pop(rule_id, None)
        return len(self.rules) != before

    def clear(self) -> None:
        self.rules.clear()
        self.seen.clear()
        self.applied.clear()

    def select(self, model: str, prompt: str, *, commit: bool) -> Rule | None:
        """The rule that answers this request; ``commit`` advances the counters."""
        chosen = None
        for rule in self.rules:
            if not rule.matches(model, prompt):
                continue
            count = self.seen.get(rule.id, 0) + 1
            if commit:
                self.seen[rule.id] = count
            if chosen is not None:
                continue
            if rule.nth is not None and count not in rule.nth:
                continue
            if rule.times is not None and self.applied.get(rule.id, 0) >= rule.times:
                continue
            chosen = rule
            if commit:
                self.applied[rule.id] = self.applied.get(rule.id, 0) + 1
        return chosen

    def to_json(self) -> list[dict[str, Any]]:
        return [
            {
                **rule.to_json(),
                "seen": self.seen.get(rule.id, 0),
                "applied": self.applied.get(rule.id, 0),
            }
            for rule in self.rules
        ]
