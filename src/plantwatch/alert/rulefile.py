"""The alert rules file: YAML in, a validated :class:`RuleSet` out (schema: ``docs/alerts.md``).

The text is composed into YAML nodes (safe YAML only; nothing is constructed from tags) and
walked here, so every value keeps the line it was written on. Every problem of a file is
collected and raised together as one :class:`RulesFileError`, each naming its line and its
field (``rules[3].when.mean.above``; list indexes count from 0). ``${VAR}`` and
``${VAR:-default}`` in string values are expanded from the environment: secrets (SMTP
passwords, webhook URLs) come from there, never from the file.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import itertools
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any, TypeVar, cast

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import Resolver

from plantwatch.alert.notify.config import (
    ROOT_DEFAULTS,
    EscalationStep,
    Matcher,
    NotificationConfig,
    ReceiverConfig,
    Route,
)
from plantwatch.alert.rules import (
    HEALTH_CHECKS,
    SEVERITIES,
    SEVERITY_RANK,
    Condition,
    Health,
    HealthCheck,
    Level,
    Rule,
    RuleError,
    Selector,
    Source,
    Threshold,
)
from plantwatch.core.errors import ConfigError
from plantwatch.core.kinds import KIND_NAMES

__all__ = [
    "TEMPLATE_FIELDS",
    "RuleSet",
    "RulesFileError",
    "default_rule_set",
    "default_rules_path",
    "load_rules",
    "parse_rules",
]

#: the fields an annotation template may name, with the kind of value each gets
TEMPLATE_FIELDS: dict[str, type] = {
    **dict.fromkeys(("value", "limit", "score"), float),
    **dict.fromkeys(
        ("machine", "sensor", "kind", "unit", "machine_type", "line", "site", "rule", "severity"),
        str,
    ),
    "detector": str,
}
_SAMPLE = {k: 1.0 if t is float else "x" for k, t in TEMPLATE_FIELDS.items()}

_TOP_KEYS = ("version", "defaults", "rules", "notifications")
_DEFAULT_KEYS = ("for", "keep_firing_for", "severity", "labels", "annotations")
_RULE_KEYS = ("name", "select", "when", *_DEFAULT_KEYS)
_SELECT_KEYS = ("site", "line", "machine_type", "machine", "kind", "sensor", "labels")
_STATS = ("value", "mean", "min", "max", "last", "std", "rms", "count")
_WHEN_KEYS = (*_STATS, "rate", "anomaly", "health")
_LIMIT_KEYS = ("above", "below", "outside", "hysteresis")
_NOTIFY_KEYS = ("external_url", "receivers", "route")
_RECEIVER_KINDS = ("webhook", "slack", "teams", "email", "alertmanager", "log")
_REQUIRED_OPTIONS = {"email": ("host", "from", "to"), "log": ()}  # the others: url
_ROUTE_KEYS = (
    "receiver",
    "matchers",
    "group_by",
    "group_wait",
    "group_interval",
    "repeat_interval",
    "continue",
    "escalate",
    "routes",
)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ENV = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_DURATION_UNITS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|d|h|m|s)")
_DURATION = re.compile(r"-?\d+(\.\d+)?|-?(\d+(\.\d+)?(ms|d|h|m|s))+")
_DURATION_HINT = "write seconds (20) or 500ms, 20s, 5m, 2h, 1d, 1h30m"
_TAG = "tag:yaml.org,2002:"

T = TypeVar("T")
ErrorItem = tuple[int, str, str]  # line (1-based), field, message


class RulesFileError(ConfigError):
    """A rules file that cannot be used. ``errors`` holds every problem found, ordered by line;
    ``line``, ``field`` and ``message`` are the first one's. ``str()`` gives one
    ``source:line: field: message`` line per problem (line 0: the file as a whole)."""

    def __init__(self, source: str, errors: Sequence[ErrorItem]) -> None:
        if not errors:
            raise ValueError("RulesFileError needs at least one error")
        self.source = source
        self.errors: list[ErrorItem] = sorted(errors, key=lambda e: e[0])
        self.line, self.field, self.message = self.errors[0]
        super().__init__("\n".join(_format_error(source, *e) for e in self.errors))


def _format_error(source: str, line: int, field: str, message: str) -> str:
    return f"{source}:{line}: {field}: {message}" if line else f"{source}: {message}"


@dataclass(frozen=True)
class RuleSet:
    """The rules and notification settings of one rules file."""

    rules: tuple[Rule, ...]
    notifications: NotificationConfig = field(default_factory=NotificationConfig)
    source: str = "<string>"

    @property
    def machine_rules(self) -> tuple[str, ...]:
        """Names of the rules about what machines do (not about their sensors' health)."""
        return tuple(r.name for r in self.rules if r.category == "machine")


def load_rules(path: str | Path) -> RuleSet:
    """Read and validate a rules file; errors name ``path``, the line and the field."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RulesFileError(str(path), [(0, "", f"cannot read the rules file: {exc}")]) from exc
    return parse_rules(text, source=str(path))


def parse_rules(
    text: str, source: str = "<string>", env: Mapping[str, str] | None = None
) -> RuleSet:
    """Validate rules-file text. ``env`` expands ``${VAR}``; ``None`` means ``os.environ``."""
    p = _Parser(os.environ if env is None else env)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        raise RulesFileError(source, [_yaml_error(exc)]) from exc
    except yaml.YAMLError as exc:  # ReaderError: a character YAML does not allow
        pos = getattr(exc, "position", 0)
        raise RulesFileError(source, [(text.count("\n", 0, pos) + 1, "yaml", str(exc))]) from exc
    result = None
    if node is None:
        p.error(1, "version", "the file is empty; it needs at least `version: 1` and `rules:`")
    else:
        result = p.top(p.tree(node, "", node.start_mark.line + 1), source)
    if p.errors or result is None:
        raise RulesFileError(source, p.errors)
    return result


def parse_duration(text: str) -> float:
    """Seconds from ``20``, ``500ms``, ``20s``, ``5m``, ``2h``, ``1d``, ``1h30m`` (a leading ``-``
    is kept: callers check the sign). Raises ValueError saying how to write one."""
    s = text.strip()
    if not _DURATION.fullmatch(s):
        raise ValueError(f"{text!r} is not a duration; {_DURATION_HINT}")
    if _DURATION_PART.search(s) is None:
        return float(s)
    parts = _DURATION_PART.findall(s)
    ranks = [list(_DURATION_UNITS).index(u) for _, u in parts]
    if ranks != sorted(set(ranks)):
        raise ValueError(f"duration {s!r}: write each unit once, largest first (1h30m)")
    seconds = math.fsum(float(n) * _DURATION_UNITS[u] for n, u in parts)
    return -seconds if s.startswith("-") else seconds


def default_rules_path() -> Path:
    """The rules file shipped with plantwatch (the built-in behaviour)."""
    return Path(str(files("plantwatch.alert") / "default_rules.yaml"))


@functools.cache
def default_rule_set() -> RuleSet:
    """The shipped rules, parsed once. They name no environment variables."""
    path = default_rules_path()
    return parse_rules(path.read_text(encoding="utf-8"), source=str(path), env={})


def _yaml_error(exc: yaml.MarkedYAMLError) -> ErrorItem:
    mark = exc.problem_mark or exc.context_mark
    msg = exc.problem or "not valid YAML"
    if exc.context and exc.context_mark:
        msg = f"{exc.context} (line {exc.context_mark.line + 1}): {msg}"
    return (mark.line + 1 if mark else 1, "yaml", f"{msg}; check the indentation and quoting")


# ---------------------------------------------------------------------------------------------
# YAML nodes → values that know their line and path


@dataclass(slots=True)
class _Y:
    path: str
    line: int  # where the field is written: a mapping value's key line, a list item's line
    value: Any  # dict[str, _Y] | list[_Y] | str | int | float | bool | None
    text: str = ""  # a scalar as written, variables expanded
    bad: bool = False  # already reported (a missing variable): checks skip it silently
    key_lines: dict[str, int] = field(default_factory=dict)

    def describe(self) -> str:
        v = self.value
        if isinstance(v, dict):
            return "a mapping"
        if isinstance(v, list):
            return "a list"
        return "nothing" if v is None else repr(v)


class _FieldError(Exception):
    """One problem; the parser records it and goes on with the next field."""

    def __init__(self, y: _Y, message: str) -> None:
        self.line, self.path, self.message = y.line, y.path, message


class _ReportedError(Exception):
    """A value that was already reported."""


def _did_you_mean(word: str, options: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else f"; use one of: {', '.join(options)}"


def _items(y: _Y) -> list[_Y]:
    """A list's items, or a lone value as a list of one."""
    return list(y.value) if isinstance(y.value, list) else [y]


_NIL = _Y("", 0, None, bad=True)  # a missing required value (already reported)


@dataclass(frozen=True, slots=True)
class _Defaults:
    for_s: float = 0.0
    keep_firing_for_s: float = 0.0
    severity: str = "warning"
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)


class _Parser:
    """Walks the tree; every ``as_*`` raises :class:`_FieldError`, :meth:`attempt` records it."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.errors: list[ErrorItem] = []
        self.fails = 0  # problems met so far, reported now or before
        self._constructor = SafeConstructor()
        self._resolver = Resolver()
        self._merged: dict[int, int] = {}  # id(mapping node) → how many of its keys are merged

    def error(self, line: int, path: str, message: str) -> None:
        self.errors.append((line, path, message))
        self.fails += 1

    def attempt(self, fn: Callable[[_Y], T], y: _Y | None, default: T) -> T:
        """``fn(y)``; on a problem, record it and give ``default`` (also for a ``None`` y)."""
        if y is None:
            return default
        try:
            return fn(y)
        except _FieldError as f:
            self.error(f.line, f.path, f.message)
        except _ReportedError:
            self.fails += 1
        return default

    # -- YAML nodes → _Y ----------------------------------------------------------------------

    def tree(self, node: Node, path: str, line: int) -> _Y:
        if isinstance(node, MappingNode):
            return self._mapping(node, path, line)
        if isinstance(node, SequenceNode):
            items = [
                self.tree(n, f"{path}[{i}]", n.start_mark.line + 1)
                for i, n in enumerate(node.value)
            ]
            return _Y(path, line, items)
        assert isinstance(node, ScalarNode)
        return self._scalar(node, path, line)

    def _mapping(self, node: MappingNode, path: str, line: int) -> _Y:
        if id(node) not in self._merged:  # ``<<: *anchor`` merge keys: flattened to the front
            n_explicit = sum(1 for k, _ in node.value if k.tag != f"{_TAG}merge")
            try:
                self._constructor.flatten_mapping(node)
            except yaml.MarkedYAMLError as exc:
                self.error(*_yaml_error(exc))
            self._merged[id(node)] = len(node.value) - n_explicit
        merged = self._merged[id(node)]
        out: dict[str, _Y] = {}
        key_lines: dict[str, int] = {}
        explicit: set[str] = set()
        for i, (k, v) in enumerate(node.value):
            kline = k.start_mark.line + 1
            if not isinstance(k, ScalarNode):
                self.error(kline, path, "a key must be a plain name, not a list or a mapping")
                continue
            sub = f"{path}.{k.value}" if path else k.value
            if k.value in explicit:  # a merged key is overridden silently, as in YAML
                self.error(kline, sub, f"repeated key (first at line {key_lines[k.value]})")
                continue
            out[k.value] = self.tree(v, sub, kline)
            key_lines[k.value] = kline
            if i >= merged:
                explicit.add(k.value)
        return _Y(path, line, out, key_lines=key_lines)

    def _scalar(self, node: ScalarNode, path: str, line: int) -> _Y:
        tag, text = node.tag, node.value
        if tag == f"{_TAG}str" and "$" in text:
            expanded = self._expand(text, path, line)
            if expanded is None:
                return _Y(path, line, None, text, bad=True)
            if node.style is None and expanded != text:  # unquoted: typed as YAML would type it
                tag = self._resolver.resolve(ScalarNode, expanded, (True, False))  # type: ignore[no-untyped-call]
            text = expanded
        scalar = ScalarNode(tag, text)
        value: Any = text
        if tag == f"{_TAG}null":
            value = None
        elif tag == f"{_TAG}bool":
            value = self._constructor.construct_yaml_bool(scalar)
        elif tag == f"{_TAG}int":
            value = self._constructor.construct_yaml_int(scalar)
        elif tag == f"{_TAG}float":
            value = self._constructor.construct_yaml_float(scalar)
        elif tag not in (f"{_TAG}str", f"{_TAG}timestamp"):
            self.error(line, path, f"unsupported YAML tag {tag!r}; write a plain value")
            return _Y(path, line, None, text, bad=True)
        return _Y(path, line, value, text)

    def _expand(self, text: str, path: str, line: int) -> str | None:
        """``${VAR}``, ``${VAR:-default}`` (also when VAR is empty), ``$${`` for ``${``."""
        missing: list[str] = []

        def sub(m: re.Match[str]) -> str:
            if m.group(0) == "$${":
                return "${"
            name, default = m.group(1), m.group(2)
            value = self.env.get(name)
            if default is not None and not value:
                return default
            if value is None:
                missing.append(name)
                return ""
            return value

        out = _ENV.sub(sub, text)
        for name in missing:
            self.error(
                line,
                path,
                f"environment variable {name} is not set; set it, or give a default: "
                f"${{{name}:-default}}",
            )
        if "${" in _ENV.sub("", text):
            self.error(
                line, path, f"{text!r}: a variable is written ${{NAME}} or ${{NAME:-default}}"
            )
            return None
        return None if missing else out

    # -- leaf values --------------------------------------------------------------------------

    def required(self, m: Mapping[str, _Y], key: str, parent: _Y) -> _Y:
        """``m[key]``, or :data:`_NIL` after reporting that it is missing."""
        if key not in m:
            where = f"{parent.path}.{key}" if parent.path else key
            self.error(parent.line, where, "required, but missing")
            return _NIL
        return m[key]

    def as_map(self, y: _Y, keys: Sequence[str] | None = None) -> dict[str, _Y]:
        """A mapping (nothing: empty); unknown keys are reported and left out."""
        if y.bad:
            raise _ReportedError
        if y.value is None:
            return {}
        if not isinstance(y.value, dict):
            raise _FieldError(y, f"must be a mapping (key: value), got {y.describe()}")
        out: dict[str, _Y] = y.value
        for k in [k for k in out if keys is not None and k not in keys]:
            assert keys is not None
            self.error(y.key_lines[k], out[k].path, f"unknown key {k!r}{_did_you_mean(k, keys)}")
        return {k: v for k, v in out.items() if keys is None or k in keys}

    def items_of(self, y: _Y | None) -> list[_Y]:
        return self.attempt(self.as_list, y, list[_Y]())

    def as_list(self, y: _Y) -> list[_Y]:
        if y.bad:
            raise _ReportedError
        if y.value is None:
            return []
        if not isinstance(y.value, list):
            raise _FieldError(y, f"must be a list, got {y.describe()}")
        return list(y.value)

    def as_str(self, y: _Y) -> str:
        if y.bad:
            raise _ReportedError
        if y.value is None or isinstance(y.value, dict | list):
            raise _FieldError(y, f"must be a string, got {y.describe()}")
        return y.text

    def as_strs(self, y: _Y) -> tuple[str, ...]:
        """A string or a list of strings."""
        return tuple(self.as_str(i) for i in _items(y))

    def as_name(self, y: _Y) -> str:
        s = self.as_str(y)
        if not _NAME.fullmatch(s):
            raise _FieldError(
                y, f"{s!r} is not a label name: letters, digits and _, no leading digit"
            )
        return s

    def as_number(self, y: _Y) -> float:
        if y.bad:
            raise _ReportedError
        v = y.value
        if isinstance(v, str):  # YAML 1.1 reads 1e3 (no dot) as a string
            with contextlib.suppress(ValueError):
                v = float(v)
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise _FieldError(y, f"must be a number, got {y.describe()}")
        if not math.isfinite(v):
            raise _FieldError(y, f"must be a finite number, got {v}")
        return float(v)

    def as_bool(self, y: _Y) -> bool:
        if y.bad:
            raise _ReportedError
        if not isinstance(y.value, bool):
            raise _FieldError(y, f"must be true or false, got {y.describe()}")
        return y.value

    def as_duration(self, y: _Y, *, positive: bool = False) -> float:
        """Seconds: a number, or ``500ms``, ``20s``, ``5m``, ``2h``, ``1d``, ``1h30m``."""
        if y.bad:
            raise _ReportedError
        v, s = y.value, y.text.strip()
        if isinstance(v, int | float) and not isinstance(v, bool):
            seconds = float(v)
        elif isinstance(v, str) and _DURATION.fullmatch(s):
            try:
                seconds = parse_duration(s)
            except ValueError as exc:
                raise _FieldError(y, str(exc)) from None
        else:
            raise _FieldError(y, f"{y.describe()} is not a duration; {_DURATION_HINT}")
        if not math.isfinite(seconds) or seconds < 0 or (positive and seconds == 0):
            raise _FieldError(y, f"a duration must be {'>' if positive else '>='} 0, got {s}")
        return seconds

    def as_positive_duration(self, y: _Y) -> float:
        return self.as_duration(y, positive=True)

    def as_severity(self, y: _Y) -> str:
        s = self.as_str(y)
        if s not in SEVERITY_RANK:
            raise _FieldError(y, f"unknown severity {s!r}{_did_you_mean(s, SEVERITIES)}")
        return s

    def as_labels(self, y: _Y) -> dict[str, str]:
        out = {}
        for k, v in self.as_map(y).items():
            self.attempt(self.as_name, _Y(v.path, y.key_lines[k], k, k), "")
            out[k] = self.attempt(self.as_str, v, "")
        return out

    def as_annotations(self, y: _Y) -> dict[str, str]:
        out = {}
        for k, v in self.as_map(y).items():
            self.attempt(self.as_name, _Y(v.path, y.key_lines[k], k, k), "")
            out[k] = self.attempt(self.as_template, v, "")
        return out

    def as_template(self, y: _Y) -> str:
        s = self.as_str(y)
        try:
            s.format(**_SAMPLE)
        except KeyError as exc:
            key = str(exc.args[0])
            raise _FieldError(
                y, f"unknown template field {{{key}}}{_did_you_mean(key, list(_SAMPLE))}"
            ) from None
        except IndexError:
            raise _FieldError(y, "a template names its fields: {value}, not {} or {0}") from None
        except (ValueError, AttributeError, TypeError) as exc:
            raise _FieldError(
                y, f"bad template: {exc} (a literal brace is written {{{{ or }}}})"
            ) from None
        return s

    # -- the file -----------------------------------------------------------------------------

    def top(self, y: _Y, source: str) -> RuleSet | None:
        if not isinstance(y.value, dict):
            self.error(y.line, "version", "the file must be a mapping with version: 1 and rules:")
            return None
        m = self.as_map(y, _TOP_KEYS)
        version = self.required(m, "version", y)
        v = version.value
        if not version.bad and (isinstance(v, bool) or v != 1 or not isinstance(v, int)):
            self.error(version.line, "version", f"must be 1, got {version.describe()}")
        defaults = self.attempt(self.as_defaults, m.get("defaults"), _Defaults())
        rules = []
        first: dict[str, _Y] = {}
        for item in self.items_of(self.required(m, "rules", y)):
            rule, name_y = self.rule(item, defaults)
            if rule is not None:
                rules.append(rule)
            if name_y.bad or not isinstance(name_y.value, str):
                continue
            if name_y.value in first:
                f = first[name_y.value]
                self.error(
                    name_y.line,
                    name_y.path,
                    f"rule name {name_y.value!r} is already used at line {f.line} ({f.path}); "
                    f"rule names must be unique",
                )
            first.setdefault(name_y.value, name_y)
        notifications = self.attempt(self.as_notifications, m.get("notifications"), None)
        return RuleSet(tuple(rules), notifications or NotificationConfig(), source)

    def as_defaults(self, y: _Y) -> _Defaults:
        m = self.as_map(y, _DEFAULT_KEYS)
        return _Defaults(
            for_s=self.attempt(self.as_duration, m.get("for"), 0.0),
            keep_firing_for_s=self.attempt(self.as_duration, m.get("keep_firing_for"), 0.0),
            severity=self.attempt(self.as_severity, m.get("severity"), "warning"),
            labels=self.attempt(self.as_labels, m.get("labels"), {}),
            annotations=self.attempt(self.as_annotations, m.get("annotations"), {}),
        )

    def rule(self, y: _Y, d: _Defaults) -> tuple[Rule | None, _Y]:
        """The rule (``None`` if it has problems) and its ``name`` value."""
        fails = self.fails
        m = self.attempt(lambda y: self.as_map(y, _RULE_KEYS), y, None)
        if m is None:
            return None, _NIL
        name_y = self.required(m, "name", y)
        name = self.attempt(self.as_str, name_y, "")
        if name and not all(c.isalnum() or c in "_-.:" for c in name):
            self.error(name_y.line, name_y.path, f"{name!r}: a name is letters, digits and _-.:")
        severity = self.attempt(self.as_severity, m.get("severity"), d.severity)
        select = self.attempt(self.as_selector, m.get("select"), Selector())
        for_s = self.attempt(self.as_duration, m.get("for"), d.for_s)
        keep_s = self.attempt(self.as_duration, m.get("keep_firing_for"), d.keep_firing_for_s)
        labels = {**d.labels, **self.attempt(self.as_labels, m.get("labels"), {})}
        notes = {**d.annotations, **self.attempt(self.as_annotations, m.get("annotations"), {})}
        when = self.required(m, "when", y)
        condition = self.attempt(lambda w: self.as_condition(w, severity), when, None)
        if self.fails > fails or condition is None:
            return None, name_y
        try:
            rule = Rule(name, condition, select, for_s, keep_s, severity, labels, notes)
        except RuleError as exc:  # checked above already; the fallback still names the field
            msg = str(exc)
            said = msg.split(":", 1)[-1]
            key = next((k for k in sorted(_RULE_KEYS, key=len, reverse=True) if k in said), "when")
            at = m.get(key, y)
            self.error(at.line, at.path if key in m else f"{y.path}.{key}", msg)
            return None, name_y
        return rule, name_y

    def as_selector(self, y: _Y) -> Selector:
        m = self.as_map(y, _SELECT_KEYS)
        fields = {
            k: self.attempt(self.as_strs, v, tuple[str, ...]())
            for k, v in m.items()
            if k != "labels"
        }
        for item in _items(m.get("kind", _NIL)):
            kind = item.value
            if isinstance(kind, str) and kind not in KIND_NAMES:
                self.error(
                    item.line, item.path, f"unknown kind {kind!r}{_did_you_mean(kind, KIND_NAMES)}"
                )
        return Selector(**fields, labels=self.attempt(self.as_labels, m.get("labels"), {}))

    def as_condition(self, y: _Y, severity: str) -> Condition:
        m = self.as_map(y, _WHEN_KEYS)
        if not m:
            if y.value:  # only unknown keys, reported already
                raise _ReportedError
            raise _FieldError(y, f"needs one condition: {', '.join(_WHEN_KEYS)}")
        (key, body), *more = m.items()
        for k, extra in more:
            self.error(
                y.key_lines[k],
                extra.path,
                f"a rule has exactly one condition, and {y.path} already has {key} "
                f"(line {y.key_lines[key]})",
            )
        if key == "health":
            return self.as_health(body)
        if key == "anomaly":
            m = self.as_map(body, ("detector", "above", "hysteresis"))
            detector = self.attempt(self.as_str, self.required(m, "detector", body), "")
            return self.threshold(body, m, "score", severity, detector=detector)
        m = self.as_map(body, (*_LIMIT_KEYS, "per") if key == "rate" else _LIMIT_KEYS)
        per_s = self.attempt(self.as_positive_duration, m.get("per"), 60.0)
        return self.threshold(body, m, cast(Source, key), severity, per_s=per_s)

    def threshold(
        self, body: _Y, m: dict[str, _Y], source: Source, severity: str, **kw: Any
    ) -> Threshold:
        # severity → side ("low"/"high") → (limit, where it is written)
        bands: dict[str, dict[str, tuple[float, _Y]]] = {}

        def put(sev: str, side: str, x: float, where: _Y) -> None:
            sides = bands.setdefault(sev, {})
            if side in sides:
                also = sides[side][1].path
                raise _FieldError(where, f"the {sev} {side} limit is given twice (also at {also})")
            sides[side] = (x, where)

        def bound(side: str, sev: str, y: _Y) -> None:
            put(sev, side, self.as_number(y), y)

        def pair(_side: str, sev: str, y: _Y) -> None:
            v = y.value
            if not isinstance(v, list) or len(v) != 2:
                raise _FieldError(y, f"outside takes [low, high], got {y.describe()}")
            low, high = self.as_number(v[0]), self.as_number(v[1])
            if not low < high:
                raise _FieldError(
                    y, f"outside [low, high] needs low < high, got [{low:g}, {high:g}]"
                )
            put(sev, "low", low, y)
            put(sev, "high", high, y)

        for key, side, fn in (
            ("above", "high", bound),
            ("below", "low", bound),
            ("outside", "", pair),
        ):
            if key not in m:
                continue
            y = m[key]
            if not isinstance(y.value, dict):  # one number (a pair) at the rule's severity
                self.attempt(functools.partial(fn, side, severity), y, None)
                continue
            for sev, sub in self.as_map(y).items():
                if sev in SEVERITY_RANK:
                    self.attempt(functools.partial(fn, side, sev), sub, None)
                else:
                    msg = f"unknown severity {sev!r}{_did_you_mean(sev, SEVERITIES)}"
                    self.error(y.key_lines[sev], sub.path, msg)
        hysteresis = self.attempt(self.as_number, m.get("hysteresis"), 0.0)
        if hysteresis < 0:
            self.error(m["hysteresis"].line, m["hysteresis"].path, "hysteresis must be >= 0")
        if not any(k in m for k in ("above", "below", "outside")):
            raise _FieldError(body, "needs a limit: above, below or outside")
        levels = []
        for sev, sides in sorted(bands.items(), key=lambda kv: SEVERITY_RANK[kv[0]]):
            low = sides["low"][0] if "low" in sides else -math.inf
            high = sides["high"][0] if "high" in sides else math.inf
            if not low < high:
                raise _FieldError(
                    sides["low"][1],
                    f"{sev}: below {low:g} and above {high:g} together always fire; the low "
                    f"limit must be under the high one",
                )
            levels.append(Level(sev, low, high))
        for a, b in itertools.combinations(levels, 2):  # b is more severe: further out
            if math.isfinite(a.high) and b.high < a.high:
                raise _FieldError(
                    bands[b.severity]["high"][1],
                    f"{b.severity} above {b.high:g} is under {a.severity} above {a.high:g}: a "
                    f"more severe limit must be further out",
                )
            if math.isfinite(a.low) and b.low > a.low:
                raise _FieldError(
                    bands[b.severity]["low"][1],
                    f"{b.severity} below {b.low:g} is over {a.severity} below {a.low:g}: a "
                    f"more severe limit must be further out",
                )
        return Threshold(source, tuple(levels), hysteresis=max(hysteresis, 0.0), **kw)

    def as_health(self, y: _Y) -> Health:
        m: dict[str, _Y] = {}
        check_y = y
        if isinstance(y.value, dict):
            m = self.as_map(y, ("check", "after"))
            check_y = self.required(m, "check", y)
        check = self.as_str(check_y)
        if check not in HEALTH_CHECKS:
            hint = _did_you_mean(check, HEALTH_CHECKS)
            raise _FieldError(check_y, f"unknown health check {check!r}{hint}")
        if "after" in m and check != "no_data":
            raise _FieldError(m["after"], "after applies to the no_data check only")
        after_s = self.attempt(self.as_positive_duration, m.get("after"), 60.0)
        return Health(cast(HealthCheck, check), after_s)

    # -- notifications ------------------------------------------------------------------------

    def as_notifications(self, y: _Y) -> NotificationConfig:
        m = self.as_map(y, _NOTIFY_KEYS)
        receivers: dict[str, ReceiverConfig] = {}
        where: dict[str, _Y] = {}
        items = self.items_of(m.get("receivers"))
        for item in items:
            r = self.attempt(self.as_receiver, item, None)
            if r is None:
                continue
            if r.name in receivers:
                f = where[r.name]
                msg = f"receiver {r.name!r} is already defined at line {f.line} ({f.path})"
                self.error(item.line, f"{item.path}.name", msg)
                continue
            receivers[r.name], where[r.name] = r, item
        if "log" not in receivers:  # the built-in receiver, always there
            receivers = {"log": ReceiverConfig("log", "log"), **receivers}
        # routes may name a receiver that has problems of its own: those are reported already
        names = set(receivers) | {
            i.value["name"].text for i in items if isinstance(i.value, dict) and "name" in i.value
        }
        route = self.attempt(lambda r: self.as_route(r, names, root=True), m.get("route"), None)
        return NotificationConfig(
            receivers=tuple(receivers.values()),
            route=route or ROOT_DEFAULTS,
            external_url=self.attempt(self.as_str, m.get("external_url"), ""),
        )

    def as_receiver(self, y: _Y) -> ReceiverConfig | None:
        m = self.as_map(y, ("name", *_RECEIVER_KINDS))
        name_y = self.required(m, "name", y)
        name = self.attempt(self.as_str, name_y, "")
        kinds = [k for k in m if k != "name"]
        if len(kinds) != 1:
            if not kinds and len(m) < len(y.value):  # an unknown key, reported already
                raise _ReportedError
            got = ", ".join(kinds) or "none"
            raise _FieldError(
                y, f"a receiver has exactly one of {', '.join(_RECEIVER_KINDS)}; got {got}"
            )
        kind = kinds[0]
        if name == "log" and kind != "log":
            raise _FieldError(name_y, "the name log is taken by the built-in log receiver")
        options = self.plain(m[kind])
        if options is None:
            options = {}
        if not isinstance(options, dict):
            raise _FieldError(
                m[kind], f"{kind} takes a mapping of options, got {m[kind].describe()}"
            )
        for opt in _REQUIRED_OPTIONS.get(kind, ("url",)):
            if options.get(opt) in (None, "", []):
                self.error(m[kind].line, m[kind].path, f"{kind} needs {opt}")
        return ReceiverConfig(name, kind, options) if name else None

    def plain(self, y: _Y) -> Any:
        """The value as plain Python data, variables expanded."""
        if y.bad:
            raise _ReportedError
        if isinstance(y.value, dict):
            return {k: self.plain(v) for k, v in y.value.items()}
        if isinstance(y.value, list):
            return [self.plain(v) for v in y.value]
        return y.value

    def as_route(self, y: _Y, receivers: set[str], *, root: bool = False) -> Route:
        m = self.as_map(y, _ROUTE_KEYS)

        def receiver(r: _Y) -> str:
            s = self.as_str(r)
            if s not in receivers:
                raise _FieldError(r, f"unknown receiver {s!r}{_did_you_mean(s, sorted(receivers))}")
            return s

        def matcher(r: _Y) -> Matcher:
            try:
                return Matcher.parse(self.as_str(r))
            except ValueError as exc:
                raise _FieldError(r, str(exc)) from None

        def step(r: _Y) -> EscalationStep:
            s = self.as_map(r, ("after", "receiver"))
            after_s = self.attempt(self.as_positive_duration, self.required(s, "after", r), 0.0)
            return EscalationStep(after_s, receiver(self.required(s, "receiver", r)))

        def group_by(r: _Y) -> tuple[str, ...]:
            return tuple(self.as_name(i) for i in _items(r))

        matchers = [self.attempt(matcher, i, None) for i in self.items_of(m.get("matchers"))]
        steps: list[EscalationStep] = []
        for i in self.items_of(m.get("escalate")):
            s = self.attempt(step, i, None)
            if s is not None and steps and s.after_s <= steps[-1].after_s:
                prev = steps[-1].after_s
                msg = f"escalation steps come in order: after must be later than {prev:g} s"
                self.error(i.line, f"{i.path}.after", msg)
            elif s is not None:
                steps.append(s)
        children = [
            self.attempt(lambda c: self.as_route(c, receivers), c, None)
            for c in self.items_of(m.get("routes"))
        ]
        if root:
            for k in ("matchers", "continue"):
                if k in m:
                    msg = f"the root route takes every alert; put {k} on the routes under it"
                    self.error(m[k].line, m[k].path, msg)
        base = ROOT_DEFAULTS if root else Route()
        dur, pos = self.as_duration, self.as_positive_duration
        return Route(
            receiver=self.attempt(receiver, m.get("receiver"), base.receiver),
            matchers=tuple(x for x in matchers if x is not None),
            group_by=self.attempt(group_by, m.get("group_by"), base.group_by),
            group_wait_s=self.attempt(dur, m.get("group_wait"), base.group_wait_s),
            group_interval_s=self.attempt(pos, m.get("group_interval"), base.group_interval_s),
            repeat_interval_s=self.attempt(pos, m.get("repeat_interval"), base.repeat_interval_s),
            escalate=tuple(steps),
            continue_=self.attempt(self.as_bool, m.get("continue"), False),
            routes=tuple(c for c in children if c is not None),
        )
