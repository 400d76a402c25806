r"""Rules: "when a request matches, respond like this", from a YAML/JSON file or the admin API.

A rule::

    {"id": "rate-limit-first",            # optional; generated when absent
     "match": {"model": "gpt-4o-mini",     # exact name, or a glob such as "mock-*"
               "prompt": "weather",        # regex searched in the last user message
               "nth": 1,                   # only the nth matching request (int or list)
               "turn": 0,                  # conversation state (conversation.py): the turn,
               "tool_result_for": "f"},    # the tool results it ends with, the tools offered
     "times": 3,                           # optional: apply at most this many times
     "respond": {"fault": "status=429;retry_after=0", "text": "...", "itl_ms": 20, ...}}

Rules are tried in order; the first that matches and is still eligible wins. Every rule whose
``model``/``prompt`` and conversation conditions match counts the request, so ``nth`` means
"the nth request of this kind" whichever rule answered the earlier ones.

A ``prompt`` is an RE2 pattern (google-re2): matching takes time linear in the prompt whatever
the pattern, so no rule can stall the event loop with catastrophic backtracking (``(a+)+$``).
RE2 has no backreferences or look-around, and spells Python's ``\Z`` as ``\z``; a pattern it
refuses, or one longer than :data:`MAX_PATTERN_CHARS` or compiling to more than
:data:`MAX_PROGRAM_SIZE` instructions, is a :class:`~mockllm.errors.RuleError`. Linear still
means "bytes times program size" in the worst case, so :meth:`RuleBook.match_cost` lets the
caller search a long prompt off the event loop (``chat.py``). Loading rules from a file is
``rulesfile.py``.
"""

from __future__ import annotations

import contextlib
import fnmatch
import re
from collections.abc import MutableMapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import re2

from mockllm.control import coerce
from mockllm.conversation import CONDITION_KEYS, Condition, Conversation, parse_condition
from mockllm.errors import InvalidRequest, RuleError, excerpt
from mockllm.shared import MAX_RULE_SLOTS, SharedCounters, SlotCounts

__all__ = [
    "MAX_PATTERN_CHARS",
    "MAX_PROGRAM_SIZE",
    "Pattern",
    "Rule",
    "RuleBook",
    "compile_prompt",
    "parse_rule",
    "parse_rules",
]

#: Longest ``match.prompt`` accepted, in characters.
MAX_PATTERN_CHARS: Final = 1000
#: Largest compiled ``match.prompt`` accepted, in RE2 program instructions (``a{1000}`` is
#: about 1,000; a counted repetition multiplies, which is what this bounds).
MAX_PROGRAM_SIZE: Final = 5000


class Pattern(Protocol):
    """What a rule needs of a compiled RE2 pattern (google-re2 ships no type hints)."""

    @property
    def pattern(self) -> str: ...

    @property
    def programsize(self) -> int: ...

    def search(self, text: str) -> object | None: ...


def _re2_options() -> Any:
    options = re2.Options()
    options.log_errors = False  # RE2 would print every refused pattern to stderr
    options.never_capture = True  # a yes/no answer lets RE2 use its fastest engine
    return options


_OPTIONS: Final = _re2_options()


def compile_prompt(source: str, where: str) -> Pattern:
    """Compile a rule's ``match.prompt``; raises RuleError saying what RE2 or a limit refused."""
    if len(source) > MAX_PATTERN_CHARS:
        raise RuleError(
            f"{where} is {len(source)} characters long; the limit is {MAX_PATTERN_CHARS}.",
            param="prompt",
        )
    try:
        pattern: Pattern = re2.compile(source, _OPTIONS)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else ""
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise RuleError(
            f"{where} is not a valid RE2 regex: {excerpt(reason, 120, quote=False)}. RE2 has "
            "no backreferences or look-around and writes \\Z as \\z "
            "(https://github.com/google/re2/wiki/Syntax).",
            param="prompt",
        ) from None
    if pattern.programsize > MAX_PROGRAM_SIZE:
        raise RuleError(
            f"{where} compiles to {pattern.programsize} RE2 instructions; the limit is "
            f"{MAX_PROGRAM_SIZE} (use fewer or smaller counted repetitions such as {{1000}}).",
            param="prompt",
        )
    return pattern


_RULE_KEYS = {"id", "match", "respond", "times"}
_MATCH_KEYS = {"model", "prompt", "nth", *CONDITION_KEYS}
_NO_CONVERSATION = Conversation()
_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,39}\Z")


def _key(key: Any) -> str:
    return excerpt(key, 40, quote=False)


def _names(keys: set[Any]) -> str:
    """Unknown field names for a message. Only names that look like field names are quoted
    (a typo such as ``respnd``): a rule may come from any file, whose lines YAML may have
    read as keys (``--rules /etc/shadow``)."""
    shown = sorted(repr(k) for k in keys if isinstance(k, str) and _FIELD_NAME.match(k))
    others = len(keys) - len(shown)
    if others:
        shown.append(f"{others} other key(s) that are not field names")
    return "[" + ", ".join(shown) + "]"


def _ids(ids: set[str]) -> str:
    return "[" + ", ".join(sorted(excerpt(i, 40) for i in ids)) + "]"


@dataclass(frozen=True)
class Rule:
    id: str
    respond: dict[str, Any]
    model: str | None = None
    prompt: Pattern | None = None
    nth: frozenset[int] | None = None
    times: int | None = None
    condition: Condition = field(default_factory=Condition)

    def matches(
        self, model: str, prompt: str, conversation: Conversation = _NO_CONVERSATION
    ) -> bool:
        if self.model is not None and not fnmatch.fnmatchcase(model, self.model):
            return False
        if not self.condition.empty and not self.condition.matches(conversation):
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
        match.update(self.condition.to_json())
        out: dict[str, Any] = {"id": self.id, "match": match, "respond": dict(self.respond)}
        if self.times is not None:
            out["times"] = self.times
        return out


def _mismatches(rule: Rule, model: str, prompt: str, conversation: Conversation) -> list[str]:
    """The rule's ``model``, ``prompt`` and conversation conditions this request fails, in
    words."""
    reasons = []
    if rule.model is not None and not fnmatch.fnmatchcase(model, rule.model):
        glob = any(c in rule.model for c in "*?[")
        verb = "does not match" if glob else "!="
        reasons.append(f"model {excerpt(model, 60)} {verb} {excerpt(rule.model, 60)}")
    if rule.prompt is not None and rule.prompt.search(prompt) is None:
        pattern = excerpt(rule.prompt.pattern, 60, quote=False)
        reasons.append(f"prompt {excerpt(prompt, 60)} does not match /{pattern}/")
    reasons += rule.condition.mismatches(conversation)
    return reasons


def _positive_int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RuleError(f"{where} must be an integer >= 1, got {excerpt(value)}.", param=where)
    return value


def parse_rule(raw: Any, *, default_id: str) -> Rule:
    if not isinstance(raw, dict):
        raise RuleError(f"A rule must be an object, got {type(raw).__name__}.", param="rules")
    unknown = set(raw) - _RULE_KEYS
    if unknown:
        raise RuleError(
            f"Unknown rule field(s) {_names(unknown)}; a rule has {sorted(_RULE_KEYS)}.",
            param="rules",
        )
    rule_id = raw.get("id", default_id)
    if not isinstance(rule_id, str) or not rule_id:
        raise RuleError("Rule 'id' must be a non-empty string.", param="id")
    shown = excerpt(rule_id)
    match = raw.get("match", {}) or {}
    if not isinstance(match, dict):
        raise RuleError(f"Rule {shown}: 'match' must be an object.", param="match")
    unknown = set(match) - _MATCH_KEYS
    if unknown:
        raise RuleError(
            f"Rule {shown}: unknown match field(s) {_names(unknown)}; "
            f"known: {sorted(_MATCH_KEYS)}.",
            param="match",
        )
    model = match.get("model")
    if model is not None and not isinstance(model, str):
        raise RuleError(f"Rule {shown}: match.model must be a string.", param="match.model")
    prompt = match.get("prompt")
    pattern = None
    if prompt is not None:
        if not isinstance(prompt, str):
            raise RuleError(f"Rule {shown}: match.prompt must be a string.", param="prompt")
        pattern = compile_prompt(prompt, f"Rule {shown}: match.prompt")
    nth = match.get("nth")
    nth_set = None
    if nth is not None:
        values = nth if isinstance(nth, list) else [nth]
        nth_set = frozenset(_positive_int(v, f"rule {shown} match.nth") for v in values)
    try:
        condition = parse_condition(match, f"Rule {shown}: match.")
    except InvalidRequest as exc:
        raise RuleError(exc.message, param="match") from None
    times = raw.get("times")
    if times is not None:
        times = _positive_int(times, f"rule {shown} times")
    respond = raw.get("respond", {}) or {}
    if not isinstance(respond, dict):
        raise RuleError(f"Rule {shown}: 'respond' must be an object.", param="respond")
    if "when" in respond:
        raise RuleError(
            f"Rule {shown}: respond.when is for headers and directives; a rule's conditions "
            f"go in its match ({', '.join(CONDITION_KEYS)}).",
            param="respond",
        )
    try:
        checked = {
            str(key): coerce(
                str(key), value, f"rule {shown} respond.{excerpt(key, 40, quote=False)}"
            )
            for key, value in respond.items()
        }
    except RuleError:
        raise
    except Exception as exc:  # InvalidRequest from coerce: re-raise as a rule problem
        message = getattr(exc, "message", str(exc))
        raise RuleError(message, param="respond") from None
    return Rule(rule_id, checked, model, pattern, nth_set, times, condition)


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
    duplicates = {i for i in ids if ids.count(i) > 1}
    if duplicates:
        raise RuleError(f"Duplicate rule id(s): {_ids(duplicates)}.", param="id")
    return rules


def _unguarded() -> AbstractContextManager[Any]:
    return contextlib.nullcontext()


@dataclass
class RuleBook:
    """Rules in order, with per-rule counters for ``nth`` and ``times``.

    One process keeps the counters in dicts; the workers of ``--workers N`` keep them in
    shared memory (:meth:`shared`), each rule in a slot that every worker assigns alike.
    """

    rules: list[Rule] = field(default_factory=list)
    seen: MutableMapping[str, int] = field(default_factory=dict)
    applied: MutableMapping[str, int] = field(default_factory=dict)
    _next: int = 1
    # rule id -> its counters' slot in shared memory; None in one process
    slots: dict[str, int] | None = None
    # held while a request's rule is chosen (a cross-process lock with several workers)
    guard: Any = _unguarded

    @classmethod
    def shared(cls, counters: SharedCounters) -> RuleBook:
        slots: dict[str, int] = {}
        return cls(
            seen=SlotCounts(counters, applied=False, slots=slots),
            applied=SlotCounts(counters, applied=True, slots=slots),
            slots=slots,
            guard=counters.guard,
        )

    def check_new(self, rules: list[Rule]) -> None:
        """Raise RuleError if ``rules`` cannot be added (an id clash, no free slot)."""
        existing = {rule.id for rule in self.rules}
        clash = sorted(existing & {rule.id for rule in rules})
        if clash:
            raise RuleError(f"Rule id(s) already exist: {clash}.", param="id")
        self.free_slots(len(rules))

    def free_slots(self, count: int) -> list[int]:
        """The lowest ``count`` slots no rule holds ([] in one process)."""
        if self.slots is None:
            return []
        taken = set(self.slots.values())
        free = [slot for slot in range(MAX_RULE_SLOTS) if slot not in taken][:count]
        if len(free) < count:
            raise RuleError(
                f"At most {MAX_RULE_SLOTS} rules can exist at once with several workers; "
                "delete some (DELETE /_mock/rules/{id}) first.",
                param="rules",
            )
        return free

    def add(self, rules: list[Rule], slots: list[int] | None = None) -> list[Rule]:
        """Append ``rules``; with shared counters each takes a slot (``slots``, as the
        coordinating worker chose and zeroed them, or else the lowest free ones)."""
        self.check_new(rules)
        if self.slots is not None:
            chosen = self.free_slots(len(rules)) if slots is None else slots
            for rule, slot in zip(rules, chosen, strict=True):
                self.slots[rule.id] = slot
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
        if self.slots is not None:
            self.slots.pop(rule_id, None)
        return len(self.rules) != before

    def clear(self) -> None:
        self.rules.clear()
        self.seen.clear()
        self.applied.clear()
        if self.slots is not None:
            self.slots.clear()

    def match_cost(self, prompt: str) -> int:
        """Worst-case work of :meth:`matching` (prompt length times the prompt patterns' RE2
        program sizes): RE2 is linear, but a pattern whose automaton outgrows its memory
        budget runs at about 7 ns per byte and instruction."""
        size = sum(rule.prompt.programsize for rule in self.rules if rule.prompt is not None)
        return len(prompt) * size if size else 0

    def matching(
        self, model: str, prompt: str, conversation: Conversation = _NO_CONVERSATION
    ) -> list[Rule]:
        """The rules whose ``model``, ``prompt`` and conversation conditions match, in order.
        Reads the rules and nothing else, so it may run in a worker thread (RE2 releases the
        GIL). ``conversation`` is the request's (``conversation.summarize``)."""
        return [rule for rule in tuple(self.rules) if rule.matches(model, prompt, conversation)]

    def select(
        self,
        model: str,
        prompt: str,
        *,
        commit: bool,
        conversation: Conversation = _NO_CONVERSATION,
    ) -> Rule | None:
        """The rule that answers this request; ``commit`` advances the counters."""
        return self.choose(self.matching(model, prompt, conversation), commit=commit)

    def choose(self, matched: list[Rule], *, commit: bool) -> Rule | None:
        """:meth:`select` given :meth:`matching`'s answer. A rule removed since that answer
        was computed is skipped."""
        if commit and matched:
            with self.guard():
                return self._choose(matched, commit=True)
        return self._choose(matched, commit=commit)

    def _choose(self, matched: list[Rule], *, commit: bool) -> Rule | None:
        current = {id(rule) for rule in self.rules}
        chosen = None
        for rule in matched:
            if id(rule) not in current:
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

    def near_miss(
        self,
        model: str,
        prompt: str,
        matched: list[Rule],
        *,
        committed: bool,
        conversation: Conversation = _NO_CONVERSATION,
    ) -> str | None:
        """Why no rule answered this request: the closest rule and each of its conditions the
        request failed (``"rule 'r1': model 'gpt-4o' != 'gpt-4o-mini'"``), or None when there
        are no rules. Call it after :meth:`choose` chose nothing, with the same ``matched``;
        ``committed`` says whether that call advanced the counters. The closest rule is the
        one with the fewest failed conditions, the first in order on a tie. It searches the
        prompt once per rule, so it costs what :meth:`matching` costs (:meth:`match_cost`)."""
        best: tuple[int, Rule, list[str]] | None = None
        fully = {id(rule) for rule in matched}
        for rule in tuple(self.rules):
            reasons = (
                self._ineligible(rule, committed=committed)
                if id(rule) in fully
                else _mismatches(rule, model, prompt, conversation)
            )
            if best is None or len(reasons) < best[0]:
                best = (len(reasons), rule, reasons)
        if best is None:
            return None
        _, rule, reasons = best
        return f"rule {excerpt(rule.id, 40)}: " + "; ".join(reasons or ["removed meanwhile"])

    def _ineligible(self, rule: Rule, *, committed: bool) -> list[str]:
        """Why a rule whose other conditions match did not answer (its ``nth`` or ``times``)."""
        count = self.seen.get(rule.id, 0) + (0 if committed else 1)
        reasons = []
        if rule.nth is not None and count not in rule.nth:
            reasons.append(f"nth {sorted(rule.nth)}, but this is request {count} of its kind")
        if rule.times is not None and self.applied.get(rule.id, 0) >= rule.times:
            reasons.append(f"times {rule.times} already used")
        return reasons

    def to_json(self) -> list[dict[str, Any]]:
        return [
            {
                **rule.to_json(),
                "seen": self.seen.get(rule.id, 0),
                "applied": self.applied.get(rule.id, 0),
            }
            for rule in self.rules
        ]
