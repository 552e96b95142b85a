"""Per-hop policy: deterministic route matching, conditions, request binding, modes, policy files."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from txtoken import KeySet, TxnTokenMinter, TxnTokenVerifier, VerifiedTxnToken
from txtoken.errors import AccessDenied, BindingMismatch, ConfigurationError, InsufficientScope
from txtoken.policy import Policy, Rule, canonical

KEYS = KeySet.generate()


def txn(**claims: Any) -> VerifiedTxnToken:
    claims.setdefault("sub", "alice")
    claims.setdefault("scope", "trade read")
    claims.setdefault("req_wl", "gateway")
    claims.setdefault("tctx", {"action": "buy", "symbol": "MSFT", "quantity": 100, "order": {"limit": 42.5}})
    claims.setdefault("rctx", {"req_ip": "10.0.0.1", "authn": "mfa"})
    token = TxnTokenMinter(KEYS, trust_domain="td").mint(**claims)
    return TxnTokenVerifier(KEYS, trust_domain="td").verify(token)


# -- matching -----------------------------------------------------------------------------------------------------

HTTP_RULES = [
    "GET /orders/{id}",
    "* /orders/{id}",
    "GET /orders/open",
    "GET /{kind}/items",
    "GET /orders/{id}/lines/{line}",
    "GET /orders/{id}/lines/first",
]


@pytest.mark.parametrize("order", [HTTP_RULES, list(reversed(HTTP_RULES))])
@pytest.mark.parametrize(
    ("method", "path", "route", "params"),
    [
        ("GET", "/orders/open", "GET /orders/open", {}),  # an exact path beats every template
        ("GET", "/orders/42", "GET /orders/{id}", {"id": "42"}),  # a named method beats *
        ("DELETE", "/orders/42", "* /orders/{id}", {"id": "42"}),
        ("GET", "/orders/items", "GET /orders/{id}", {"id": "items"}),  # literal first where they first differ
        ("GET", "/stock/items", "GET /{kind}/items", {"kind": "stock"}),
        ("GET", "/orders/7/lines/first", "GET /orders/{id}/lines/first", {"id": "7"}),
        ("GET", "/orders/7/lines/3", "GET /orders/{id}/lines/{line}", {"id": "7", "line": "3"}),
        ("GET", "/orders", None, None),
        ("GET", "/orders/", None, None),  # a parameter is never empty
        ("GET", "/orders/7/lines", None, None),
    ],
)
def test_http_matching_is_most_specific_first_whatever_the_declaration_order(
    order: list[str], method: str, path: str, route: str | None, params: dict[str, str] | None
) -> None:
    match = Policy([Rule(r) for r in order]).match_http(method, path)
    if route is None:
        assert match is None
    else:
        assert match is not None
        assert (match.rule.route, dict(match.path_params)) == (route, params)


def test_grpc_matching_exact_method_before_service_wildcard() -> None:
    policy = Policy([Rule("/shop.Orders/*", scopes=["a"]), Rule("/shop.Orders/Buy", scopes=["b"])])
    routes = {m: getattr(policy.match_grpc(m), "rule", None) for m in ("/shop.Orders/Buy", "/shop.Orders/Sell")}
    assert {m: r.route for m, r in routes.items() if r} == {
        "/shop.Orders/Buy": "/shop.Orders/Buy",
        "/shop.Orders/Sell": "/shop.Orders/*",
    }
    assert policy.match_grpc("/shop.Stock/Buy") is None
    assert policy.match_http("GET", "/shop.Orders/Buy") is None


@pytest.mark.parametrize(
    "rules",
    [
        [Rule("GET /a/{x}"), Rule("GET /a/{y}")],
        [Rule("/s.S/M"), Rule("/s.S/M", scopes=["x"])],
    ],
)
def test_two_rules_for_one_route_are_refused(rules: list[Rule]) -> None:
    with pytest.raises(ConfigurationError):
        Policy(rules)


@pytest.mark.parametrize(
    ("route", "options"),
    [
        ("orders", {}),
        ("get /orders", {}),
        ("GET orders", {}),
        ("GET /orders/item-{id}", {}),
        ("GET /a/{x}/{x}", {}),
        ("/s.S/M extra", {}),
        ("GET /orders/{id}", {"bind": {"path.nope": "symbol"}}),
        ("GET /orders/{id}", {"bind": {"message.symbol": "symbol"}}),
        ("/s.S/M", {"bind": {"query.qty": "quantity"}}),
        ("/s.S/M", {"bind": {"message.": "quantity"}}),
        ("/s.S/M", {"tctx": {"a": {"between": [1, 2]}}}),
        ("/s.S/M", {"tctx": {"a": {"min": "one"}}}),
        ("/s.S/M", {"tctx": {"a": {"one_of": "abc"}}}),
        ("/s.S/M", {"mode": "shadow"}),
    ],
)
def test_invalid_rules_are_configuration_errors(route: str, options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        Rule(route, **options)


# -- what a rule requires -----------------------------------------------------------------------------------------


def check(rule: Rule, token: VerifiedTxnToken, path: str = "/x", query: str = "") -> None:
    Policy([rule]).authorize_http(token, method="GET", path=path, query_string=query)


def test_scopes_are_all_required() -> None:
    check(Rule("GET /x", scopes=["trade", "read"]), txn())
    with pytest.raises(InsufficientScope, match="missing scope: admin"):
        check(Rule("GET /x", scopes=["trade", "admin"]), txn())


@pytest.mark.parametrize(
    ("conditions", "allowed"),
    [
        ({"action": "buy"}, True),
        ({"action": "sell"}, False),
        ({"action": {"one_of": ["buy", "hold"]}}, True),
        ({"quantity": {"max": 100}}, True),
        ({"quantity": {"max": 99}}, False),
        ({"quantity": {"min": 101}}, False),
        ({"action": {"min": 1}}, False),  # not a number
        ({"order.limit": {"max": 50}}, True),  # dotted path into a nested member
        ({"order.limit": 42.5}, True),
        ({"venue": {"present": False}}, True),
        ({"venue": {"present": True}}, False),
        ({"venue": "NYSE"}, False),  # an absent member never equals anything
        ({"order": {"equals": {"limit": 42.5}}}, True),
    ],
)
def test_tctx_conditions(conditions: dict[str, Any], allowed: bool) -> None:
    rule = Rule("GET /x", tctx=conditions)
    if allowed:
        check(rule, txn())
    else:
        with pytest.raises(AccessDenied) as refused:
            check(rule, txn())
        assert refused.value.code == "access_denied"


def test_rctx_conditions() -> None:
    check(Rule("GET /x", rctx={"authn": {"one_of": ["mfa", "face"]}}), txn())
    with pytest.raises(AccessDenied, match="rctx.authn"):
        check(Rule("GET /x", rctx={"authn": "face"}), txn())


ORDER = Rule("POST /orders/{symbol}", bind={"path.symbol": "symbol", "query.qty": "quantity"})


@pytest.mark.parametrize(
    ("path", "query", "problem"),
    [
        ("/orders/MSFT", "qty=100", None),
        ("/orders/MSFT", "other=1&qty=100", None),
        ("/orders/TSLA", "qty=100", "path.symbol does not match tctx.symbol"),
        ("/orders/MSFT", "qty=1000", "query.qty does not match tctx.quantity"),
        ("/orders/MSFT", "qty=100&qty=1000", "'qty' appears more than once"),
        ("/orders/MSFT", "qty=100&qty=100", "'qty' appears more than once"),
        ("/orders/MSFT", "quantity=100", "'qty' is missing"),
        ("/orders/MSFT", "qty=100.0", "query.qty does not match"),  # canonical forms, not numeric equality
    ],
)
def test_path_and_query_binding(path: str, query: str, problem: str | None) -> None:
    policy = Policy([ORDER])
    if problem is None:
        match = policy.authorize_http(txn(), method="POST", path=path, query_string=query)
        assert match is not None and match.path_params == {"symbol": "MSFT"}
    else:
        with pytest.raises(BindingMismatch, match=problem):
            policy.authorize_http(txn(), method="POST", path=path, query_string=query)


def test_binding_to_a_member_the_token_lacks_is_refused() -> None:
    with pytest.raises(BindingMismatch, match="token lacks"):
        check(Rule("GET /x/{venue}", bind={"path.venue": "venue"}), txn(), path="/x/NYSE")


def test_message_binding() -> None:
    policy = Policy([Rule("/shop.Orders/Buy", bind={"message.symbol": "symbol", "message.qty": "quantity"})])
    token = txn()
    match = policy.authorize_grpc(token, method="/shop.Orders/Buy")
    assert match is not None and policy.has_message_bindings
    policy.authorize_message(token, match, {"symbol": "MSFT", "qty": 100})
    policy.authorize_message(token, match, {"symbol": "MSFT", "qty": "100"})  # int64 as JSON string
    for fields in ({"symbol": "MSFT", "qty": 1000}, {"symbol": "MSFT"}, {"symbol": "MSFT", "qty": True}):
        with pytest.raises(BindingMismatch):
            policy.authorize_message(token, match, fields)


def test_canonical_form() -> None:
    assert [canonical(v) for v in ("100", 100, True, None, {"b": 1, "a": [1, 2]})] == [
        "100",
        "100",
        "true",
        "null",
        '{"a":[1,2],"b":1}',
    ]


# -- unmatched routes, modes --------------------------------------------------------------------------------------


def test_unmatched_routes_are_denied_unless_allowed() -> None:
    with pytest.raises(AccessDenied, match="no policy rule"):
        Policy([]).authorize_http(txn(), method="GET", path="/x")
    assert Policy([], unmatched="allow").authorize_http(txn(), method="GET", path="/x") is None


def test_audit_mode_logs_the_would_be_refusal_without_the_token(caplog: pytest.LogCaptureFixture) -> None:
    token = txn()
    policy = Policy([ORDER, Rule("GET /strict", scopes=["admin"], mode="enforce")], mode="audit")
    with caplog.at_level(logging.WARNING, logger="txtoken.policy"):
        policy.authorize_http(token, method="POST", path="/orders/TSLA", query_string="qty=1")
        policy.authorize_http(token, method="GET", path="/nowhere")
        with pytest.raises(InsufficientScope):  # a rule's own mode overrides the policy's
            policy.authorize_http(token, method="GET", path="/strict")
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        f"audit: would refuse route=POST /orders/{{symbol}} code=binding_mismatch txn={token.txn}: "
        "path.symbol does not match tctx.symbol",
        f"audit: would refuse route=unmatched code=access_denied txn={token.txn}: no policy rule for this route",
    ]
    assert all(token.token not in m and "TSLA" not in m for m in messages)


# -- policy files -------------------------------------------------------------------------------------------------

POLICY_TOML = """
mode = "enforce"
unmatched = "allow"

[[rules]]
route = "POST /orders/{symbol}"
scopes = ["trade"]
tctx = { action = "buy", quantity = { max = 1000 } }
bind = { "path.symbol" = "symbol", "query.qty" = "quantity" }

[[rules]]
route = "/shop.Orders/*"
mode = "audit"
bind = { "message.symbol" = "symbol" }
"""


def test_toml_and_json_policy_files_load_the_same_rules(tmp_path: Path) -> None:
    import tomllib

    toml_file = tmp_path / "policy.toml"
    toml_file.write_text(POLICY_TOML)
    json_file = tmp_path / "policy.json"
    json_file.write_text(json.dumps(tomllib.loads(POLICY_TOML)))
    for policy in (Policy.load(toml_file), Policy.load(json_file)):
        assert policy.unmatched == "allow"
        assert [r.route for r in policy.rules] == ["POST /orders/{symbol}", "/shop.Orders/*"]
        assert policy.rules[1].mode == "audit" and policy.has_message_bindings
        policy.authorize_http(txn(), method="POST", path="/orders/MSFT", query_string="qty=100")
        with pytest.raises(BindingMismatch):
            policy.authorize_http(txn(), method="POST", path="/orders/MSFT", query_string="qty=10")


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("p.yaml", "rules: []"),
        ("p.toml", "rules = 3"),
        ("p.toml", "[[rules]]\nroute = 'GET /x'\nscope = ['typo']"),
        ("p.toml", "rule = []"),
        ("p.json", "{not json"),
        ("p.json", "[]"),
        ("missing.toml", None),
    ],
)
def test_bad_policy_files_are_configuration_errors(tmp_path: Path, name: str, content: str | None) -> None:
    if content is not None:
        (tmp_path / name).write_text(content)
    with pytest.raises(ConfigurationError):
        Policy.load(tmp_path / name)
