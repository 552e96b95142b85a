"""Per-hop authorization: what a route requires of the verified Txn-Token.

A :class:`Rule` names a route and what it requires: ``scopes`` (all of them), conditions on ``tctx`` and ``rctx``
members, and request binding (``bind``): a value of the request must equal a ``tctx`` member, so a token minted for
"buy 100 MSFT" cannot be replayed to "buy 1000 TSLA". A :class:`Policy` is a rule set with a mode (``enforce``
refuses, ``audit`` logs the would-be refusal and lets the call through) and an answer for routes no rule matches.

Routes:

- HTTP: ``"METHOD /path/{param}"``; ``METHOD`` is an HTTP method or ``*``; a ``{param}`` is one whole path segment.
- gRPC: ``"/package.Service/Method"`` or ``"/package.Service/*"``.

Matching is deterministic; one rule, the most specific, applies:

1. HTTP: among the templates matching the path, the one with a literal segment where the others have a parameter,
   at the first position where they differ (so an exact path beats every template); then a named method beats ``*``.
   gRPC: the exact method beats the service wildcard.
2. Two rules for the same route shape and method are a configuration error, never a silent shadowing.

Binding sources: ``path.NAME`` (a parameter of the route template), ``query.NAME`` (refused when the parameter is
missing or appears more than once), ``message.NAME`` (a field of a gRPC request message, read by the integration's
binding extractor). Values are compared canonically: a string as is, anything else as compact JSON, so the query
value ``"100"`` equals the ``tctx`` number ``100``. Members are addressed by dotted paths (``order.symbol``).

Callers (WIMSE): ``callers`` lists the calling workloads a route accepts, as exact Workload Identifiers or prefix
patterns ending in ``/*`` (:class:`~txtoken.wimse.CallerPattern`); a request whose authenticated caller (its WIT's
``sub``) matches none, or that has no authenticated caller, is refused with ``caller_not_allowed``.

Conditions on a member: a plain value means equality; ``{"one_of": [...]}``, ``{"min": n}``, ``{"max": n}``,
``{"present": true|false}`` and ``{"equals": value}`` (for a dict or list value) are the other forms.
"""

from __future__ import annotations

import json
import logging
import math
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeAlias
from urllib.parse import parse_qsl

from txtoken.errors import AccessDenied, BindingMismatch, CallerNotAllowed, ConfigurationError, InsufficientScope
from txtoken.verify import VerifiedTxnToken
from txtoken.wimse.identifier import CallerPattern

__all__ = ["ABSENT", "Condition", "Mode", "Policy", "RouteMatch", "Rule", "canonical", "member"]

Mode: TypeAlias = Literal["enforce", "audit"]
Unmatched: TypeAlias = Literal["allow", "deny"]

logger = logging.getLogger("txtoken.policy")

_OPERATORS = frozenset({"equals", "one_of", "min", "max", "present"})
_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_METHOD = re.compile(r"[A-Z]+|\*")
_GRPC_ROUTE = re.compile(r"/[A-Za-z0-9_.]+/([A-Za-z0-9_]+|\*)")
_BIND_SOURCES = {"http": frozenset({"path", "query"}), "grpc": frozenset({"message"})}
_ABSENT = object()


def canonical(value: Any) -> str:
    """The form in which request values and ``tctx`` members are compared: strings as is, others as compact JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _member(container: Mapping[str, Any], dotted: str) -> Any:
    value: Any = container
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return _ABSENT
        value = value[part]
    return value


#: What :func:`member` answers for a member that is not there.
ABSENT = _ABSENT


def member(container: Mapping[str, Any], dotted: str) -> Any:
    """The member of ``container`` at the dotted path (``order.symbol``), or :data:`ABSENT`."""
    return _member(container, dotted)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True, slots=True)
class Condition:
    """One condition on a claim member: ``equals``, ``one_of``, ``min``, ``max`` or ``present``."""

    op: str
    operand: Any

    @classmethod
    def parse(cls, spec: Any) -> Condition:
        """A plain value means equality; a one-key dict naming an operator is that operator."""
        if isinstance(spec, Condition):
            return spec
        if not isinstance(spec, Mapping):
            return cls("equals", spec)
        if len(spec) != 1 or next(iter(spec)) not in _OPERATORS:
            raise ConfigurationError(f"a condition is a value or one of {{{', '.join(sorted(_OPERATORS))}: ...}}")
        op, operand = next(iter(spec.items()))
        if op == "one_of" and not isinstance(operand, list | tuple):
            raise ConfigurationError("one_of takes a list")
        if op in ("min", "max") and not _is_number(operand):
            raise ConfigurationError(f"{op} takes a number")
        if op == "present" and not isinstance(operand, bool):
            raise ConfigurationError("present takes true or false")
        return cls(op, tuple(operand) if op == "one_of" else operand)

    def holds(self, value: Any) -> bool:
        if self.op == "present":
            return (value is not _ABSENT) is self.operand
        if value is _ABSENT:
            return False
        if self.op == "equals":
            return canonical(value) == canonical(self.operand)
        if self.op == "one_of":
            return canonical(value) in {canonical(v) for v in self.operand}
        if not _is_number(value):
            return False
        return bool(value >= self.operand) if self.op == "min" else bool(value <= self.operand)


@dataclass(frozen=True, slots=True)
class _Route:
    kind: Literal["http", "grpc"]
    method: str  # HTTP method or "*"; for gRPC the full method name or "/pkg.Service/*"
    segments: tuple[str | None, ...] = ()  # HTTP path: a literal segment, or None for a parameter
    params: tuple[str, ...] = ()

    @classmethod
    def parse(cls, route: str) -> _Route:
        if " " not in route:
            if not _GRPC_ROUTE.fullmatch(route):
                raise ConfigurationError(f"not a route: {route!r} (HTTP 'METHOD /path' or gRPC '/pkg.Service/Method')")
            return cls("grpc", route)
        method, _, path = route.partition(" ")
        if not _METHOD.fullmatch(method) or not path.startswith("/"):
            raise ConfigurationError(f"not an HTTP route: {route!r} (expected 'METHOD /path')")
        segments: list[str | None] = []
        params: list[str] = []
        for segment in path[1:].split("/"):
            param = _PARAM.fullmatch(segment)
            if param:
                if param.group(1) in params:
                    raise ConfigurationError(f"parameter {param.group(1)!r} appears twice in {route!r}")
                params.append(param.group(1))
                segments.append(None)
            elif "{" in segment or "}" in segment:
                raise ConfigurationError(f"a parameter must be a whole path segment: {route!r}")
            else:
                segments.append(segment)
        return cls("http", method, tuple(segments), tuple(params))

    @property
    def shape(self) -> tuple[Any, ...]:
        """Identity of the route ignoring parameter names: two rules with one shape would shadow each other."""
        return (self.kind, self.method, self.segments)

    @property
    def specificity(self) -> tuple[int, ...]:
        """Sort key: literal (0) before parameter (1), segment by segment; then a named method before ``*``."""
        return (len(self.segments), *(1 if s is None else 0 for s in self.segments), self.method == "*")

    def match_path(self, segments: list[str]) -> dict[str, str] | None:
        if len(segments) != len(self.segments):
            return None
        values: dict[str, str] = {}
        names = iter(self.params)
        for template, segment in zip(self.segments, segments, strict=True):
            if template is None:
                if not segment:
                    return None
                values[next(names)] = segment
            elif template != segment:
                return None
        return values


@dataclass(frozen=True)
class Rule:
    """What one route requires. Build it from plain values: ``Rule("GET /orders/{id}", scopes=["orders.read"])``.

    ``callers``, when given, are the calling workloads the route accepts (exact identifiers or ``.../*`` patterns).
    ``bind`` maps a request source (``path.NAME``, ``query.NAME`` or ``message.NAME``) to the dotted name of the
    ``tctx`` member it must equal. ``mode``, if set, overrides the policy's mode for this rule.
    """

    route: str
    scopes: Iterable[str] = ()
    tctx: Mapping[str, Any] = field(default_factory=dict)
    rctx: Mapping[str, Any] = field(default_factory=dict)
    bind: Mapping[str, str] = field(default_factory=dict)
    mode: Mode | None = None
    callers: Iterable[str] = ()
    _route: _Route = field(init=False, repr=False, compare=False)
    _callers: tuple[CallerPattern, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        parsed = _Route.parse(self.route)
        set_ = object.__setattr__
        set_(self, "_route", parsed)
        set_(self, "scopes", frozenset(self.scopes))
        set_(self, "tctx", {name: Condition.parse(spec) for name, spec in self.tctx.items()})
        set_(self, "rctx", {name: Condition.parse(spec) for name, spec in self.rctx.items()})
        set_(self, "bind", dict(self.bind))
        if isinstance(self.callers, str):
            raise ConfigurationError(f"callers of {self.route!r} must be a list of workload identifiers or patterns")
        set_(self, "callers", tuple(self.callers))
        set_(self, "_callers", tuple(CallerPattern(pattern) for pattern in self.callers))
        if self.mode not in (None, "enforce", "audit"):
            raise ConfigurationError("mode must be 'enforce' or 'audit'")
        for source, member in self.bind.items():
            kind, _, name = source.partition(".")
            if kind not in _BIND_SOURCES[parsed.kind] or not name:
                allowed = ", ".join(f"{k}.NAME" for k in sorted(_BIND_SOURCES[parsed.kind]))
                raise ConfigurationError(f"binding source {source!r} of {self.route!r}: expected {allowed}")
            if kind == "path" and name not in parsed.params:
                raise ConfigurationError(f"binding source {source!r}: {self.route!r} has no such parameter")
            if not isinstance(member, str) or not member:
                raise ConfigurationError(f"binding source {source!r} must name a tctx member")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Rule:
        unknown = set(data) - {"route", "scopes", "tctx", "rctx", "bind", "mode", "callers"}
        if unknown:
            raise ConfigurationError(f"unknown rule keys: {', '.join(sorted(unknown))}")
        if not isinstance(data.get("route"), str):
            raise ConfigurationError("a rule needs a route")
        return cls(**data)

    @property
    def kind(self) -> Literal["http", "grpc"]:
        return self._route.kind

    @property
    def message_bindings(self) -> Mapping[str, str]:
        """Bindings on fields of a gRPC request message: field name → ``tctx`` member."""
        return {src.partition(".")[2]: member for src, member in self.bind.items() if src.startswith("message.")}

    def check(
        self,
        txn: VerifiedTxnToken,
        path_params: Mapping[str, str],
        query: list[tuple[str, str]],
        caller: str | None = None,
    ) -> None:
        """Caller, scopes, conditions, and path and query bindings; raises an :class:`AccessDenied` subclass."""
        if self._callers and (caller is None or not any(p.matches(caller) for p in self._callers)):
            raise CallerNotAllowed("the calling workload is not allowed on this route")
        missing = sorted(set(self.scopes) - txn.scopes)
        if missing:
            raise InsufficientScope(f"missing scope: {' '.join(missing)}")
        for claim, conditions in (("tctx", self.tctx), ("rctx", self.rctx)):
            members = txn.tctx if claim == "tctx" else txn.rctx
            for name, condition in conditions.items():
                if not condition.holds(_member(members, name)):
                    raise AccessDenied(f"{claim}.{name} does not satisfy the rule")
        for source, member in self.bind.items():
            kind, _, name = source.partition(".")
            if kind == "path":
                self._bound(txn, source, member, path_params[name])
            elif kind == "query":
                values = [value for key, value in query if key == name]
                if len(values) != 1:
                    problem = "is missing" if not values else "appears more than once"
                    raise BindingMismatch(f"query parameter {name!r} {problem}")
                self._bound(txn, source, member, values[0])

    def check_message(self, txn: VerifiedTxnToken, fields: Mapping[str, Any]) -> None:
        """The message bindings, against the fields the binding extractor read from a request message."""
        for name, member in self.message_bindings.items():
            self._bound(txn, f"message.{name}", member, _member(fields, name))

    @staticmethod
    def _bound(txn: VerifiedTxnToken, source: str, member: str, value: Any) -> None:
        expected = _member(txn.tctx, member)
        if expected is _ABSENT:
            raise BindingMismatch(f"{source} is bound to tctx.{member}, which the token lacks")
        if value is _ABSENT or canonical(value) != canonical(expected):
            raise BindingMismatch(f"{source} does not match tctx.{member}")


@dataclass(frozen=True, slots=True)
class RouteMatch:
    """The rule that applies to a request, with the values of its path parameters."""

    rule: Rule
    path_params: Mapping[str, str] = field(default_factory=dict)


class Policy:
    """A rule set: the routes of one service and what each requires of the Txn-Token.

    ``mode`` is ``enforce`` (refuse) or ``audit`` (log the would-be refusal, without the token, and let the call
    through). ``unmatched`` answers requests no rule matches: ``deny`` (the default; refused as ``access_denied``)
    or ``allow`` (a verified token is enough).
    """

    def __init__(self, rules: Iterable[Rule], *, mode: Mode = "enforce", unmatched: Unmatched = "deny") -> None:
        if mode not in ("enforce", "audit"):
            raise ConfigurationError("mode must be 'enforce' or 'audit'")
        if unmatched not in ("allow", "deny"):
            raise ConfigurationError("unmatched must be 'allow' or 'deny'")
        self.rules = tuple(rules)
        self.mode: Mode = mode
        self.unmatched: Unmatched = unmatched
        shapes: dict[tuple[Any, ...], str] = {}
        for rule in self.rules:
            if rule._route.shape in shapes:
                raise ConfigurationError(f"rules {shapes[rule._route.shape]!r} and {rule.route!r} cover the same route")
            shapes[rule._route.shape] = rule.route
        self._grpc = {rule._route.method: rule for rule in self.rules if rule.kind == "grpc"}
        http = [rule for rule in self.rules if rule.kind == "http"]
        self._http = sorted(http, key=lambda rule: rule._route.specificity)  # stable: declaration order last

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Policy:
        """A policy from plain values: ``{"mode": ..., "unmatched": ..., "rules": [{...}, ...]}``."""
        unknown = set(data) - {"mode", "unmatched", "rules"}
        if unknown:
            raise ConfigurationError(f"unknown policy keys: {', '.join(sorted(unknown))}")
        rules = data.get("rules", [])
        if not isinstance(rules, list) or not all(isinstance(r, Mapping) for r in rules):
            raise ConfigurationError("rules must be a list of tables")
        return cls(
            [Rule.from_dict(r) for r in rules],
            mode=data.get("mode", "enforce"),
            unmatched=data.get("unmatched", "deny"),
        )

    @classmethod
    def load(cls, path: str | Path) -> Policy:
        """A policy from a ``.toml`` or ``.json`` file."""
        path = Path(path)
        try:
            if path.suffix == ".toml":
                data = tomllib.loads(path.read_text("utf-8"))
            elif path.suffix == ".json":
                data = json.loads(path.read_text("utf-8"))
            else:
                raise ConfigurationError("a policy file is .toml or .json")
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"cannot read the policy file {path}: {exc}") from None
        if not isinstance(data, Mapping):
            raise ConfigurationError("a policy file holds a table")
        return cls.from_dict(data)

    # -- matching ------------------------------------------------------------------------------------------------

    def match_http(self, method: str, path: str) -> RouteMatch | None:
        segments = path[1:].split("/") if path.startswith("/") else [path]
        for rule in self._http:
            route = rule._route
            if route.method not in (method, "*"):
                continue
            params = route.match_path(segments)
            if params is not None:
                return RouteMatch(rule, params)
        return None

    def match_grpc(self, method: str) -> RouteMatch | None:
        rule = self._grpc.get(method) or self._grpc.get(method.rpartition("/")[0] + "/*")
        return None if rule is None else RouteMatch(rule)

    @property
    def has_message_bindings(self) -> bool:
        return any(rule.message_bindings for rule in self.rules)

    # -- decisions -----------------------------------------------------------------------------------------------

    def authorize_http(
        self, txn: VerifiedTxnToken, *, method: str, path: str, query_string: str = "", caller: str | None = None
    ) -> RouteMatch | None:
        """Check an HTTP request; returns the match (None if no rule matched and ``unmatched`` lets it through).

        ``caller`` is the authenticated calling workload (WIMSE), if any."""
        match = self.match_http(method, path)
        if match is None:
            self._unmatched(txn)
            return None
        query = parse_qsl(query_string, keep_blank_values=True) if query_string else []
        self._decide(txn, match.rule, lambda: match.rule.check(txn, match.path_params, query, caller))
        return match

    def authorize_grpc(self, txn: VerifiedTxnToken, *, method: str, caller: str | None = None) -> RouteMatch | None:
        """Check a gRPC call before its messages; message bindings are checked by :meth:`authorize_message`."""
        match = self.match_grpc(method)
        if match is None:
            self._unmatched(txn)
            return None
        self._decide(txn, match.rule, lambda: match.rule.check(txn, {}, [], caller))
        return match

    def authorize_message(self, txn: VerifiedTxnToken, match: RouteMatch, fields: Mapping[str, Any]) -> None:
        """Check the message bindings of a matched gRPC rule against one request message's fields."""
        self._decide(txn, match.rule, lambda: match.rule.check_message(txn, fields))

    def _unmatched(self, txn: VerifiedTxnToken) -> None:
        if self.unmatched == "deny":
            self._refuse(txn, "unmatched", self.mode, AccessDenied("no policy rule for this route"))

    def _decide(self, txn: VerifiedTxnToken, rule: Rule, check: Callable[[], None]) -> None:
        try:
            check()
        except AccessDenied as exc:
            self._refuse(txn, rule.route, rule.mode or self.mode, exc)

    @staticmethod
    def _refuse(txn: VerifiedTxnToken, route: str, mode: Mode, exc: AccessDenied) -> None:
        if mode == "enforce":
            raise exc
        logger.warning(
            "audit: would refuse route=%s code=%s txn=%s: %s",
            route,
            exc.code,
            txn.txn,
            exc.message,
            extra={"txtoken_route": route, "txtoken_code": exc.code, "txtoken_txn": txn.txn},
        )
