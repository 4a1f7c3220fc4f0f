"""Declarative config schemas: what each stage's config section accepts, checked before any work.

Why: a typo or a wrong type in a config (``cam.flip=maybe``, ``cam.scales=0.5``, ``trian_cls.iters=5``) used to
end in a traceback minutes into a run, or pass silently and make other artifacts than the user meant. Every
section a stage reads is described next to that stage by a :class:`Schema`, and all sections of a pipeline are
checked at start-up, so a wrong value is one line naming the key, the value and what is allowed.

A schema is built from the section's ``DEFAULTS`` dict (which the stage keeps anyway): each key's type comes from
its default (``bool`` -> true/false, ``int`` -> an integer, ``float`` -> a number, ``str`` -> a string, a list of
numbers -> a list of numbers, ``None`` -> anything), and ``rules`` add ranges and allowed values::

    SCHEMA = Schema("cam", DEFAULTS,
                    rules=dict(scales=Rule(gt=0, nonempty=True), batch_size=Rule(min=1)),
                    runtime=("batch_size", "num_workers"),     # speed only: never part of the artifact identity
                    evaluation=("bg_threshold", "evaluate"))   # the stage's report only: not part of it either

Adding a key to a stage is one line in its ``DEFAULTS`` (plus a rule when a range matters). The identity of a
stage's artifacts (:meth:`Schema.identity`) is the resolved section minus its ``runtime`` and ``evaluation`` keys.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from numbers import Real
from typing import Any, Iterable, Mapping, Sequence

from wsss.errors import ConfigError

#: Top-level keys every config may have, whatever its stages (configs/_base_/default_runtime.py, the runner).
RUNTIME_TOP_LEVEL = ("work_dir", "seed", "device", "ops_backend", "pipeline", "data", "dist_timeout_min")


@dataclass(frozen=True)
class Rule:
    """Constraints on one key beyond the type its default implies.

    ``kind`` overrides the inferred type: 'bool', 'int', 'number', 'str', 'list', 'list[number]', 'list[int]',
    'list[str]', 'dict', 'any'. ``nullable`` allows None (keys whose default is None are nullable anyway).
    ``min`` / ``max`` (inclusive) and ``gt`` (exclusive) bound a number, or each element of a list of numbers;
    ``choices`` lists the allowed values; ``nonempty`` refuses an empty list.
    """

    kind: str | None = None
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    gt: float | None = None
    choices: tuple | None = None
    nonempty: bool = False


def _infer_kind(default: Any) -> str:
    if isinstance(default, bool):
        return "bool"
    if isinstance(default, int):
        return "int"
    if isinstance(default, float):
        return "number"
    if isinstance(default, str):
        return "str"
    if isinstance(default, (list, tuple)):
        if default and all(isinstance(v, bool) for v in default):
            return "list"
        if default and all(isinstance(v, int) for v in default):
            return "list[int]"
        if default and all(isinstance(v, Real) and not isinstance(v, bool) for v in default):
            return "list[number]"
        if default and all(isinstance(v, str) for v in default):
            return "list[str]"
        return "list"
    if isinstance(default, Mapping):
        return "dict"
    return "any"


def _is_number(v: Any) -> bool:
    return isinstance(v, Real) and not isinstance(v, bool)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


_KIND_TEXT = {"bool": "true or false", "int": "an integer", "number": "a number", "str": "a string",
              "list": "a list", "list[number]": "a list of numbers, e.g. [1.0, 0.5]",
              "list[int]": "a list of integers", "list[str]": "a list of strings", "dict": "a dict"}


def _bounds_text(rule: Rule) -> str:
    parts = []
    if rule.gt is not None:
        parts.append(f"> {rule.gt:g}")
    if rule.min is not None:
        parts.append(f">= {rule.min:g}")
    if rule.max is not None:
        parts.append(f"<= {rule.max:g}")
    return " and ".join(parts)


def _in_bounds(v: float, rule: Rule) -> bool:
    return ((rule.gt is None or v > rule.gt) and (rule.min is None or v >= rule.min)
            and (rule.max is None or v <= rule.max))


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """'; did you mean 'x'?' for the closest known name, or ''."""
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


class Schema:
    """The keys of one config section: defaults, types, ranges, and which keys are runtime / evaluation only."""

    def __init__(self, section: str, defaults: Mapping[str, Any], rules: Mapping[str, Rule] | None = None,
                 runtime: Sequence[str] = (), evaluation: Sequence[str] = (), open_keys: bool = False) -> None:
        self.section = section
        self.defaults = defaults  # the stage's own dict, by reference: keys added to it later are seen here
        self.rules = dict(rules or {})
        self.runtime = tuple(runtime)
        self.evaluation = tuple(evaluation)
        self.open_keys = open_keys  # True: keys beyond the declared ones are passed through unchecked

    def _rule(self, key: str) -> tuple[str, Rule]:
        rule = self.rules.get(key, Rule())
        kind = rule.kind or _infer_kind(self.defaults.get(key))
        return kind, rule

    def check_value(self, key: str, value: Any) -> None:
        """Raise a one-line ConfigError when ``value`` is not allowed for ``key``."""
        kind, rule = self._rule(key)
        name = f"{self.section}.{key}"
        if value is None:
            if rule.nullable or self.defaults.get(key) is None or kind == "any":
                return
            raise ConfigError(f"config {name}=None: must be {self._allowed(kind, rule)}")
        ok = True
        if kind == "bool":
            ok = isinstance(value, bool)
        elif kind == "int":
            ok = _is_int(value) and _in_bounds(value, rule)
        elif kind == "number":
            ok = _is_number(value) and _in_bounds(float(value), rule)
        elif kind == "str":
            ok = isinstance(value, str)
        elif kind.startswith("list"):
            ok = isinstance(value, (list, tuple)) and not (rule.nonempty and len(value) == 0)
            if ok and kind == "list[number]":
                ok = all(_is_number(v) and _in_bounds(float(v), rule) for v in value)
            elif ok and kind == "list[int]":
                ok = all(_is_int(v) and _in_bounds(v, rule) for v in value)
            elif ok and kind == "list[str]":
                ok = all(isinstance(v, str) for v in value)
        elif kind == "dict":
            ok = isinstance(value, Mapping)
        if ok and rule.choices is not None:
            ok = value in rule.choices
        if not ok:
            raise ConfigError(f"config {name}={value!r}: must be {self._allowed(kind, rule)}")

    def _allowed(self, kind: str, rule: Rule) -> str:
        if rule.choices is not None:
            text = "one of " + ", ".join(repr(c) for c in rule.choices)
        else:
            text = _KIND_TEXT.get(kind, "any value")
            bounds = _bounds_text(rule)
            if bounds:
                text += (", each " if kind.startswith("list") else " ") + bounds
            if rule.nonempty:
                text = "a non-empty " + text.removeprefix("a ")
        if rule.nullable:
            text += " (or None)"
        return text

    def resolve(self, section: Mapping[str, Any] | None) -> dict[str, Any]:
        """Defaults filled in and every key checked; unknown keys are an error with a did-you-mean."""
        sec = dict(section or {})
        if not self.open_keys:
            unknown = sorted(set(sec) - set(self.defaults))
            if unknown:
                k = unknown[0]
                raise ConfigError(f"config {self.section}.{k}: unknown key{did_you_mean(k, self.defaults)} "
                                  f"(known: {', '.join(sorted(self.defaults))})")
        out = {**self.defaults, **sec}
        for k in sec:
            if k in self.defaults or k in self.rules:
                self.check_value(k, out[k])
        return out

    def check(self, section: Mapping[str, Any] | None) -> dict[str, Any]:
        """Like :meth:`resolve` but without filling in defaults: for stages whose section comes complete from a
        ``_base_`` file and whose code tells an absent key from a default one."""
        sec = dict(section or {})
        resolved = self.resolve(sec)
        return {k: resolved[k] for k in sec}

    def identity(self, resolved: Mapping[str, Any]) -> dict[str, Any]:
        """The keys that decide the artifacts: the resolved section minus runtime and evaluation keys."""
        drop = set(self.runtime) | set(self.evaluation)
        return {k: v for k, v in resolved.items() if k not in drop}


def check_top_level(cfg: Mapping[str, Any], known_sections: Iterable[str]) -> None:
    """Refuse a top-level section no stage reads (a misspelt ``trian_cls`` would otherwise be ignored)."""
    known = set(known_sections) | set(RUNTIME_TOP_LEVEL)
    for key in sorted(cfg.keys()):
        if str(key).startswith("_") or key in known:
            continue
        raise ConfigError(f"config has unknown top-level section '{key}'{did_you_mean(str(key), known)} "
                          f"(no stage reads it)")
