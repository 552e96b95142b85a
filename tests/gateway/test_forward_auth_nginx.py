"""Forward-auth with a REAL nginx (Debian's package) in front of an upstream that has no txtoken in it (a plain
Python http.server process): ``txtoken forward-auth`` in edge and hop mode, configured with the exact nginx blocks
of docs/gateway.md (only the ports changed)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from txtoken.keys import KeySet
from txtoken.mint import TxnTokenMinter
from txtoken.verify import TxnTokenVerifier
from txtoken.wimse import WIT_HEADER, WPT_HEADER, WitIssuer, create_wpt

from ..service.conftest import API_AUDIENCE, GATEWAY, IDENTIFIER, ISSUERS, TRUST_DOMAIN, Tts, tamper
from .processes import NGINX, Process, forward_auth, nginx, upstream

pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx is not installed (.ci/run installs Debian's nginx)")

DOCS = Path(__file__).resolve().parents[2] / "docs" / "gateway.md"
NGINX_BLOCK = re.compile(r"^```nginx\n(.*?)^```", re.MULTILINE | re.DOTALL)


def documented_nginx(mode: str, forward_auth_port: int, upstream_port: int) -> str:
    """The documented nginx blocks of ``mode`` (hop mode reuses edge mode's refusal locations), ports filled in."""
    blocks: list[str] = NGINX_BLOCK.findall(DOCS.read_text(encoding="utf-8"))
    edge = next(b for b in blocks if b.startswith("# nginx: edge mode"))
    chosen = edge if mode == "edge" else next(b for b in blocks if b.startswith("# nginx: hop mode"))
    if mode == "hop":
        chosen += edge[edge.index("location @txtoken_401") :]
    return chosen.replace("127.0.0.1:8410", f"127.0.0.1:{forward_auth_port}").replace(
        "127.0.0.1:8080", f"127.0.0.1:{upstream_port}"
    )


class Stack:
    def __init__(self, processes: list[Process]) -> None:
        self.processes = processes
        self.proxy = processes[-1]

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()


def _stack(tmp: Path, mode: str, config: str) -> Stack:
    started: list[Process] = []
    try:
        started.append(upstream(tmp))
        started.append(forward_auth(tmp, config))
        started.append(nginx(tmp, documented_nginx(mode, started[1].port, started[0].port)))
    except BaseException:
        for process in reversed(started):
            process.stop()
        raise
    return Stack(started)


def _edge_config(tts: Tts, tmp: Path, token_endpoint: str | None = None) -> str:
    key_file = tmp / "gateway-key.json"
    KeySet(tts.keys.gateway).save(key_file)
    idp = tts.settings.issuers["idp"]
    return f"""
mode = "edge"
trust_domain = "{TRUST_DOMAIN}"
tts_identifier = "{IDENTIFIER}"
tts_jwks_uri = "{tts.url}/.well-known/jwks.json"
trusted_proxies = ["127.0.0.1/32"]

[edge]
token_endpoint = "{token_endpoint or tts.token_endpoint}"
key_file = "{key_file}"
workload_id = "{GATEWAY}"

[edge.issuers.idp]
kind = "oauth"
issuer = "{ISSUERS["idp"]}"
jwks_uri = "{idp.jwks_uri}"
audiences = ["{API_AUDIENCE}"]

[[edge.routes]]
route = "POST /trade/{{ticker}}"
scope = "trade.stocks"
path = {{ ticker = "ticker" }}
query = {{ quantity = "quantity" }}
"""


@pytest.fixture
def edge(tts: Tts, tmp_path: Path) -> Iterator[Stack]:
    stack = _stack(tmp_path, "edge", _edge_config(tts, tmp_path))
    yield stack
    stack.stop()


def _post(stack: Stack, path: str, token: str | None, **headers: str) -> httpx.Response:
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.post(f"{stack.proxy.url}{path}", headers=headers, content=b'{"ignored": true}', timeout=20)


def _refused(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json() == {"error": code}
    assert response.headers["txtoken-error"] == code
    assert "headers" not in response.text  # the upstream did not answer


def test_edge_mode_upstream_gets_the_txn_token_and_never_the_access_token(tts: Tts, edge: Stack) -> None:
    """§1.5 through a real nginx: the upstream receives a valid Txn-Token built from the declared mapping, and no
    Authorization header; the client address comes from nginx's X-Forwarded-For (nginx is the trusted proxy)."""
    access_token = tts.platform.access_token()
    response = _post(edge, "/trade/MSFT?quantity=5", access_token, **{"X-Forwarded-For": "203.0.113.7"})
    assert response.status_code == 200, response.text
    seen = response.json()
    assert seen["path"] == "/trade/MSFT?quantity=5"
    assert "authorization" not in seen["headers"]
    assert access_token not in json.dumps(seen)
    txn = tts.verifier().verify(seen["headers"]["txn-token"])
    assert txn.sub == "user:alice"
    assert txn.scope == "trade.stocks"
    assert dict(txn.tctx) == {"ticker": "MSFT", "quantity": "5"}
    assert txn.rctx["req_ip"] == "203.0.113.7"


def test_edge_mode_refusals_through_nginx(tts: Tts, edge: Stack) -> None:
    platform = tts.platform
    _refused(_post(edge, "/trade/MSFT?quantity=5", None), 401, "invalid_token")
    _refused(
        _post(edge, "/trade/MSFT?quantity=5", tamper(platform.access_token(), sub="mallory")), 401, "invalid_token"
    )
    _refused(_post(edge, "/trade/MSFT?quantity=5", platform.access_token(exp_in=-5)), 401, "invalid_token")
    _refused(_post(edge, "/admin/users", platform.access_token()), 403, "access_denied")
    _refused(
        _post(edge, "/trade/MSFT?quantity=5", platform.access_token(scope="trade.read")), 403, "insufficient_scope"
    )
    # a declared value missing: forward-auth answers 403 (nginx passes only 401 and 403), the code says why
    _refused(_post(edge, "/trade/MSFT", platform.access_token()), 403, "invalid_request")
    unauthorized = _post(edge, "/trade/MSFT?quantity=5", None)
    assert unauthorized.headers["www-authenticate"] == 'Bearer error="invalid_token"'


def test_edge_mode_token_service_down_is_503(tts: Tts, tmp_path: Path) -> None:
    stack = _stack(tmp_path, "edge", _edge_config(tts, tmp_path, token_endpoint="http://127.0.0.1:9/token"))
    try:
        response = _post(stack, "/trade/MSFT?quantity=5", tts.platform.access_token())
        assert (response.status_code, response.json()) == (503, {"error": "temporarily_unavailable"})
    finally:
        stack.stop()


# --- hop mode ------------------------------------------------------------------------------------------------------

HOP_POLICY = """
[[rules]]
route = "POST /charges/{ticker}"
scopes = ["trade.stocks"]
bind = { "path.ticker" = "ticker", "query.quantity" = "quantity" }

[[rules]]
route = "GET /quotes/{ticker}"
scopes = ["trade.read"]
"""


class Minter:
    def __init__(self, keys: KeySet) -> None:
        self.keys = keys

    def mint(self, *, clock: float | None = None, **claims: Any) -> str:
        minter = TxnTokenMinter(
            self.keys, trust_domain=TRUST_DOMAIN, issuer=IDENTIFIER, clock=(lambda: clock) if clock else time.time
        )
        claims.setdefault("sub", "alice")
        claims.setdefault("scope", "trade.stocks trade.read")
        claims.setdefault("req_wl", GATEWAY)
        claims.setdefault("tctx", {"ticker": "MSFT", "quantity": 5})
        claims.setdefault("rctx", {"req_ip": "203.0.113.7"})
        return minter.mint(**claims)


@pytest.fixture
def hop(tmp_path: Path) -> Iterator[tuple[Stack, Minter]]:
    keys = KeySet.generate()
    (tmp_path / "tts-jwks.json").write_text(json.dumps(keys.public_jwks()), encoding="utf-8")
    (tmp_path / "policy.toml").write_text(HOP_POLICY, encoding="utf-8")
    config = f"""
mode = "hop"
trust_domain = "{TRUST_DOMAIN}"
tts_identifier = "{IDENTIFIER}"
tts_jwks_file = "{tmp_path / "tts-jwks.json"}"

[hop]
policy = "{tmp_path / "policy.toml"}"
single_use = ["POST /charges/{{ticker}}"]
"""
    stack = _stack(tmp_path, "hop", config)
    yield stack, Minter(keys)
    stack.stop()


def _hop_post(stack: Stack, path: str, token: str | None, **headers: str) -> httpx.Response:
    if token is not None:
        headers["Txn-Token"] = token
    return httpx.post(f"{stack.proxy.url}{path}", headers=headers, timeout=20)


def test_hop_mode_upstream_gets_the_verified_context(hop: tuple[Stack, Minter]) -> None:
    """§12.2 at a service without txtoken: nginx lets the request through with the verified context in the
    documented headers (client-sent values replaced), and never adds the token to the answer."""
    stack, minter = hop
    token = minter.mint(sub="álice")
    forged = {"Txn-Sub": "mallory", "Txn-Tctx": "{}", "Txn-Caller": "spiffe://td.example/mallory"}
    response = _hop_post(stack, "/charges/MSFT?quantity=5", token, **forged)
    assert response.status_code == 200, response.text
    seen = response.json()["headers"]
    assert "txn-caller" not in seen  # no WIMSE binding here: no caller, and the client's value is removed
    assert seen["txn-sub"] == "%C3%A1lice"
    assert seen["txn-scope"] == "trade.stocks trade.read"
    assert seen["txn-requester"] == GATEWAY
    assert json.loads(seen["txn-tctx"]) == {"quantity": 5, "ticker": "MSFT"}
    assert json.loads(seen["txn-rctx"]) == {"req_ip": "203.0.113.7"}
    assert seen["txn-id"] == TxnTokenVerifier(minter.keys, trust_domain=TRUST_DOMAIN).verify(token).txn
    assert seen["txn-token"] == token  # the original header, for the upstream's own calls inside the domain
    quote = httpx.get(f"{stack.proxy.url}/quotes/MSFT", headers={"Txn-Token": minter.mint()}, timeout=20)
    assert quote.status_code == 200


def test_hop_mode_refusals_through_nginx(hop: tuple[Stack, Minter]) -> None:
    stack, minter = hop
    path = "/charges/MSFT?quantity=5"
    _refused(_hop_post(stack, path, None), 401, "token_missing")
    _refused(_hop_post(stack, path, tamper(minter.mint(), sub="mallory")), 401, "signature_invalid")
    _refused(_hop_post(stack, path, minter.mint(clock=time.time() - 3600)), 401, "token_expired")
    _refused(
        _hop_post(
            stack,
            path,
            TxnTokenMinter(KeySet.generate(), trust_domain=TRUST_DOMAIN).mint(
                sub="alice", scope="trade.stocks", req_wl=GATEWAY
            ),
        ),
        401,
        "kid_unknown",
    )
    # wrong route: the token was minted for MSFT x 5 (path and query binding)
    _refused(_hop_post(stack, "/charges/TSLA?quantity=5", minter.mint()), 403, "binding_mismatch")
    _refused(_hop_post(stack, "/charges/MSFT?quantity=500", minter.mint()), 403, "binding_mismatch")
    _refused(_hop_post(stack, "/refunds/MSFT", minter.mint()), 403, "access_denied")
    _refused(_hop_post(stack, path, minter.mint(scope="trade.read")), 403, "insufficient_scope")
    # replayed: a single-use route accepts one Txn-Token once
    token = minter.mint()
    assert _hop_post(stack, path, token).status_code == 200
    _refused(_hop_post(stack, path, token), 401, "token_replayed")
    challenge = _hop_post(stack, path, None).headers["www-authenticate"]
    assert challenge == 'Txn-Token error="token_missing"'


# --- hop mode with the WIMSE binding: WIT → WPT → Txn-Token -------------------------------------------------------

SERVICE_URL = "https://charges.td.example"
ORDERS = "spiffe://td.example/orders"
SHIPPING = "spiffe://td.example/shipping"
WIMSE_POLICY = f"""
[[rules]]
route = "POST /charges/{{ticker}}"
scopes = ["trade.stocks"]
bind = {{ "path.ticker" = "ticker" }}
callers = ["{ORDERS}"]
"""


class Workload:
    """A calling workload: its WIT and proof key, issued by the trust domain's WIT key."""

    def __init__(self, wit_keys: KeySet, workload: str) -> None:
        self.wit, self.key = WitIssuer(wit_keys, trust_domain=TRUST_DOMAIN).issue_with_new_key(workload)

    def headers(self, txn_token: str, audience: str) -> dict[str, str]:
        wpt = create_wpt(self.key, wit=self.wit, audience=audience, txn_token=txn_token)
        return {"Txn-Token": txn_token, WIT_HEADER: self.wit, WPT_HEADER: wpt}


@pytest.fixture
def wimse_hop(tmp_path: Path) -> Iterator[tuple[Stack, Minter, KeySet]]:
    keys, wit_keys = KeySet.generate(), KeySet.generate("ES256")
    (tmp_path / "tts-jwks.json").write_text(json.dumps(keys.public_jwks()), encoding="utf-8")
    (tmp_path / "wit-jwks.json").write_text(json.dumps(wit_keys.public_jwks()), encoding="utf-8")
    (tmp_path / "policy.toml").write_text(WIMSE_POLICY, encoding="utf-8")
    config = f"""
mode = "hop"
trust_domain = "{TRUST_DOMAIN}"
tts_identifier = "{IDENTIFIER}"
tts_jwks_file = "{tmp_path / "tts-jwks.json"}"

[hop]
policy = "{tmp_path / "policy.toml"}"

[hop.wimse]
wit_jwks_file = "{tmp_path / "wit-jwks.json"}"
service_urls = ["{SERVICE_URL}"]
"""
    stack = _stack(tmp_path, "hop", config)
    yield stack, Minter(keys), wit_keys
    stack.stop()


def test_hop_mode_wimse_caller_reaches_the_upstream(wimse_hop: tuple[Stack, Minter, KeySet]) -> None:
    """WIMSE at a service without txtoken: nginx passes a request with a genuine WIT, a WPT for the configured service
    URL + the original path (tth over the exact Txn-Token) and the Txn-Token; the upstream gets the verified caller
    in ``Txn-Caller`` (a client-sent value replaced), never a token in the check's answer."""
    stack, minter, wit_keys = wimse_hop
    orders = Workload(wit_keys, ORDERS)
    token = minter.mint()
    headers = {**orders.headers(token, f"{SERVICE_URL}/charges/MSFT"), "Txn-Caller": SHIPPING}
    response = _hop_post(stack, "/charges/MSFT?quantity=5", None, **headers)
    assert response.status_code == 200, response.text
    seen = response.json()["headers"]
    assert seen["txn-caller"] == ORDERS
    assert seen["txn-sub"] == "alice"
    assert seen["txn-id"] == TxnTokenVerifier(minter.keys, trust_domain=TRUST_DOMAIN).verify(token).txn


def test_hop_mode_wimse_refusals_through_nginx(wimse_hop: tuple[Stack, Minter, KeySet]) -> None:
    """Each refusal is nginx's 403 with the stable code in Txtoken-Error (WIT/WPT problems are 400s, which nginx
    does not pass from a check); the WPT audience comes from configuration, never from the Host nginx was called
    with."""
    stack, minter, wit_keys = wimse_hop
    orders, shipping = Workload(wit_keys, ORDERS), Workload(wit_keys, SHIPPING)
    path, audience = "/charges/MSFT?quantity=5", f"{SERVICE_URL}/charges/MSFT"
    _refused(_hop_post(stack, path, minter.mint()), 403, "wit_missing")
    token = minter.mint()
    _refused(_hop_post(stack, path, None, **{WIT_HEADER: orders.wit, "Txn-Token": token}), 403, "wpt_missing")
    replayed = orders.headers(token, audience)
    assert _hop_post(stack, path, None, **replayed).status_code == 200
    _refused(_hop_post(stack, path, None, **replayed), 403, "wpt_replayed")
    _refused(
        _hop_post(stack, path, None, **orders.headers(token, f"{SERVICE_URL}/refunds/MSFT")), 403, "wpt_aud_invalid"
    )
    host_audience = f"{stack.proxy.url}/charges/MSFT"  # the URL the client called: not this service's audience
    _refused(_hop_post(stack, path, None, **orders.headers(token, host_audience)), 403, "wpt_aud_invalid")
    other_token = orders.headers(minter.mint(), audience) | {"Txn-Token": token}  # tth over another Txn-Token
    _refused(_hop_post(stack, path, None, **other_token), 403, "wpt_tth_mismatch")
    _refused(_hop_post(stack, path, None, **shipping.headers(token, audience)), 403, "caller_not_allowed")
