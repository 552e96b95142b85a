"""Checklist items (spec digest §1.12) that no other test proved on their own, over real components.

Each test names the draft section and the checklist item; ``docs/conformance.md`` points here. The components are
the real ones: ``TxnTokenMiddleware`` and ``TxnTokenAuth`` over httpx, a ``grpc.aio`` server on loopback with the
txtoken interceptors, a remote JWKS over TLS served by uvicorn, and the Txn-Token Service app with its client.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from txtoken import (
    KeySet,
    RemoteJwksKeySource,
    SigningKey,
    TxnTokenMinter,
    TxnTokenVerifier,
    current_transaction,
    require_transaction,
    use_transaction,
)
from txtoken.claims import TOKEN_TYPE_ACCESS_TOKEN
from txtoken.client import AsyncTokenServiceClient
from txtoken.credentials import KeyPairAssertionSource
from txtoken.errors import ConfigurationError, InvalidRequest, InvalidScope, KeysUnavailable
from txtoken.mint import encode_jws
from txtoken.policy import Policy, Rule
from txtoken.service import TokenService, create_app, load_settings
from txtoken_asgi import TxnTokenMiddleware
from txtoken_grpc import AioTxnTokenServerInterceptor, aio_client_interceptors
from txtoken_httpx import TxnTokenAuth

from .conftest import RunningServer
from .service.conftest import carries

TRUST_DOMAIN = "td.example"
IDENTIFIER = "https://tts.td.example"
GATEWAY = "spiffe://td.example/gateway"
INVENTORY = "/shop.Inventory/Reserve"

Serve = Callable[..., RunningServer]
Context = grpc.aio.ServicerContext[Any, Any]


def _encode(message: Any) -> bytes:
    return json.dumps(message).encode()


@pytest.fixture
def keys() -> KeySet:
    return KeySet.generate()


def _verifier(keys: KeySet) -> TxnTokenVerifier:
    return TxnTokenVerifier(keys, trust_domain=TRUST_DOMAIN)


def _mint(keys: KeySet, **changes: Any) -> str:
    fields: dict[str, Any] = {"sub": "alice", "scope": "trade", "req_wl": GATEWAY, "tctx": {"sku": "MSFT"}}
    fields.update(changes)
    return TxnTokenMinter(keys, trust_domain=TRUST_DOMAIN).mint(**fields)


def _expired(keys: KeySet) -> str:
    past = TxnTokenMinter(keys, trust_domain=TRUST_DOMAIN, clock=lambda: time.time() - 3600)
    return past.mint(sub="alice", scope="trade", req_wl=GATEWAY)


async def _grpc_status(call: Awaitable[Any]) -> tuple[grpc.StatusCode, str | None]:
    """The status of a call and the ``txtoken-error`` trailing metadata of a refusal."""
    try:
        await call
    except grpc.aio.AioRpcError as refused:
        codes = [value for key, value in refused.trailing_metadata() or () if key == "txtoken-error"]
        return refused.code(), str(codes[0]) if codes else None
    return grpc.StatusCode.OK, None


async def _reserve(request: dict[str, Any], context: Context) -> dict[str, Any]:
    """Reports what arrived: the ``txn-token`` metadata value as received, and every metadata key."""
    metadata = list(context.invocation_metadata() or ())
    received = [str(value) for key, value in metadata if key == "txn-token"]
    return {"received": received, "keys": sorted({str(key) for key, _ in metadata}), "txn": require_transaction().txn}


@asynccontextmanager
async def _inventory(verifier: TxnTokenVerifier, policy: Policy | None = None) -> AsyncIterator[str]:
    """A grpc.aio server on loopback behind the txtoken interceptor; yields its address."""
    handler = grpc.unary_unary_rpc_method_handler(
        _reserve, request_deserializer=json.loads, response_serializer=_encode
    )
    server = grpc.aio.server(interceptors=[AioTxnTokenServerInterceptor(verifier, policy=policy)])
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("shop.Inventory", {"Reserve": handler})])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(None)


def _reserve_rpc(channel: grpc.aio.Channel) -> grpc.aio.UnaryUnaryMultiCallable[Any, Any]:
    return channel.unary_unary(INVENTORY, request_serializer=_encode, response_deserializer=json.loads)


async def _whoami(request: Request) -> JSONResponse:
    return JSONResponse({"txn": require_transaction().txn})


def _guarded(verifier: TxnTokenVerifier, policy: Policy | None = None) -> Starlette:
    routes = [Route("/whoami", _whoami)]
    return Starlette(routes=routes, middleware=[Middleware(TxnTokenMiddleware, verifier=verifier, policy=policy)])


def _http(app: Any, **options: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc.td.example", **options)


async def _echo_headers(request: Request) -> JSONResponse:
    return JSONResponse({"authorization": request.headers.getlist("authorization"), **_carrier(request)})


def _carrier(request: Request) -> dict[str, list[str]]:
    return {"txn-token": request.headers.getlist("txn-token")}


# --- §12 item 51, §13.12 item 67, §13.13 item 68: never the Authorization header ------------------------------------


@pytest.mark.anyio
async def test_s12_item51_the_authorization_header_never_carries_the_token(keys: KeySet) -> None:
    """§12: "the standard HTTP Authorization header MUST NOT be used". The inbound side does not take the token from
    it (HTTP header or gRPC metadata), and the outbound side never puts it there, nor touches an access token that is
    there (§13.12, §13.13: a Txn-Token is neither an authentication credential nor an access token)."""
    token = _mint(keys)
    async with _http(_guarded(_verifier(keys))) as http:
        for value in (f"Bearer {token}", token):
            refused = await http.get("/whoami", headers={"Authorization": value})
            assert refused.status_code == 401 and refused.json()["error"] == "token_missing"
        assert (await http.get("/whoami", headers={"Txn-Token": token})).status_code == 200

    async with _inventory(_verifier(keys)) as address:
        async with grpc.aio.insecure_channel(address) as channel:
            call = _reserve_rpc(channel)({}, metadata=[("authorization", f"Bearer {token}")])
            assert await _grpc_status(call) == (grpc.StatusCode.UNAUTHENTICATED, "token_missing")
        async with grpc.aio.insecure_channel(address, interceptors=aio_client_interceptors()) as channel:
            with use_transaction(_verifier(keys).verify(token)):
                answer = await _reserve_rpc(channel)({})
        assert answer["received"] == [token]
        assert "authorization" not in answer["keys"]

    echo = Starlette(routes=[Route("/echo", _echo_headers)])
    auth = TxnTokenAuth(trusted_hosts=[".td.example"])
    with use_transaction(_verifier(keys).verify(token)):
        async with _http(echo, auth=auth) as http:
            with_access_token = (await http.get("/echo", headers={"Authorization": "Bearer access-token-1"})).json()
            without = (await http.get("/echo")).json()
    assert with_access_token == {"authorization": ["Bearer access-token-1"], "txn-token": [token]}
    assert without == {"authorization": [], "txn-token": [token]}


# --- §12.2 item 56: outbound calls carry the token as received ---------------------------------------------------


@pytest.mark.anyio
async def test_s12_2_item56_the_token_reaches_the_next_hops_unmodified(keys: KeySet) -> None:
    """§12.2: outbound calls MUST include the Txn-Token as it was received. A token in a spelling a re-encoding would
    change (indented JSON, a claim txtoken does not know) enters orders over HTTP and leaves it, byte for byte, on an
    httpx call to payments and on a gRPC call to inventory."""
    key = keys.active
    payload = {
        "iat": int(time.time()),
        "exp": int(time.time()) + 60,
        "aud": TRUST_DOMAIN,
        "txn": str(uuid.uuid4()),
        "sub": "alice",
        "scope": "trade",
        "req_wl": GATEWAY,
        "act": {"sub": "agent-7"},
    }
    token = jwt.PyJWS().encode(
        json.dumps(payload, indent=1).encode(),
        key.private_key,
        algorithm=key.alg,
        headers={"typ": "txntoken+jwt", "kid": key.kid},
    )
    verifier = _verifier(keys)

    async def charge(request: Request) -> JSONResponse:
        return JSONResponse(_carrier(request))

    payments = Starlette(
        routes=[Route("/charge", charge, methods=["POST"])],
        middleware=[Middleware(TxnTokenMiddleware, verifier=verifier)],
    )
    auth = TxnTokenAuth(trusted_hosts=[".td.example"])

    async with _inventory(verifier) as address:

        async def place(request: Request) -> JSONResponse:
            async with _http(payments, auth=auth, event_hooks=auth.async_event_hooks) as http:
                paid = (await http.post("/charge")).json()
            async with grpc.aio.insecure_channel(address, interceptors=aio_client_interceptors()) as channel:
                reserved = await _reserve_rpc(channel)({"sku": "MSFT"})
            return JSONResponse({"payments": paid["txn-token"], "inventory": reserved["received"]})

        orders = Starlette(
            routes=[Route("/orders", place, methods=["POST"])],
            middleware=[Middleware(TxnTokenMiddleware, verifier=verifier)],
        )
        async with _http(orders) as http:
            seen = (await http.post("/orders", headers={"Txn-Token": token})).json()
    assert seen == {"payments": [token], "inventory": [token]}
    assert current_transaction() is None


# --- §12.2 item 54: validity before authorization -----------------------------------------------------------------


@pytest.mark.anyio
async def test_s12_2_item54_validity_is_checked_before_authorization_even_in_audit_mode(keys: KeySet) -> None:
    """§12.2: the token MUST be evaluated for validity before it is authorized. A policy in audit mode (which lets
    authorization failures through) or one that allows unmatched routes still never admits an invalid token."""
    verifier = _verifier(keys)
    audit = Policy([Rule("GET /whoami", scopes=["admin"])], mode="audit")
    lenient = Policy([], unmatched="allow")
    tampered = _mint(keys)[:-4] + "AAAA"
    for policy in (audit, lenient):
        async with _http(_guarded(verifier, policy)) as http:
            assert (await http.get("/whoami", headers={"Txn-Token": _mint(keys)})).status_code == 200
            for bad, code in (
                (_expired(keys), "token_expired"),
                (tampered, "signature_invalid"),
                (None, "token_missing"),
            ):
                response = await http.get("/whoami", headers={"Txn-Token": bad} if bad else {})
                assert (response.status_code, response.json()["error"]) == (401, code)

    grpc_audit = Policy([Rule("/shop.Inventory/*", scopes=["admin"])], mode="audit")
    async with _inventory(verifier, grpc_audit) as address, grpc.aio.insecure_channel(address) as channel:
        reserve = _reserve_rpc(channel)
        assert (await _grpc_status(reserve({}, metadata=[("txn-token", _mint(keys))])))[0] == grpc.StatusCode.OK
        expired = reserve({}, metadata=[("txn-token", _expired(keys))])
        assert await _grpc_status(expired) == (grpc.StatusCode.UNAUTHENTICATED, "token_expired")


# --- §13.7 items 63-65: keys from an authenticated source ---------------------------------------------------------


def _certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A test CA and a server certificate for 127.0.0.1 it signed: (CA file, certificate file, key file)."""
    now = datetime.datetime.now(datetime.UTC)
    start, end = now - datetime.timedelta(minutes=1), now + datetime.timedelta(hours=1)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "txtoken gaps CA")])
    ca = (
        x509.CertificateBuilder(subject_name=ca_name, issuer_name=ca_name, public_key=ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    leaf_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "jwks")])
    cert = (
        x509.CertificateBuilder(subject_name=leaf_name, issuer_name=ca_name, public_key=key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, cert_file, key_file = directory / "ca.pem", directory / "jwks.pem", directory / "jwks.key"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return ca_file, cert_file, key_file


def test_s13_7_items63_65_keys_from_a_server_that_does_not_authenticate_are_refused(
    keys: KeySet, serve: Serve, tmp_path: Path
) -> None:
    """§13.7: configuration (here the TTS's JWKS) MUST come from a trusted source; the workload SHOULD authenticate it
    with TLS. A JWKS served over https with a certificate the workload does not trust yields no keys (fail closed);
    the same server is used once its CA is the one the key source's client trusts."""

    async def jwks(request: Request) -> JSONResponse:
        return JSONResponse(keys.public_jwks())

    ca_file, cert_file, key_file = _certificates(tmp_path)
    server = serve(Starlette(routes=[Route("/jwks", jwks)]), ssl_certfile=cert_file, ssl_keyfile=key_file)
    url = f"https://127.0.0.1:{server.port}/jwks"
    token = _mint(keys)

    untrusting = TxnTokenVerifier(RemoteJwksKeySource(url, timeout=2.0), trust_domain=TRUST_DOMAIN)
    with pytest.raises(KeysUnavailable):
        untrusting.verify(token)

    with httpx.Client(verify=ssl.create_default_context(cafile=str(ca_file))) as client:
        trusting = TxnTokenVerifier(RemoteJwksKeySource(url, client=client), trust_domain=TRUST_DOMAIN)
        assert trusting.verify(token).sub == "alice"


# --- The token service: §13.6 item 62, §13.14 item 69, §13.4 item 61 ----------------------------------------------


@dataclass
class Tts:
    """A Txn-Token Service (production mode), its OAuth issuer's key, and the gateway's client."""

    service: TokenService
    idp: SigningKey
    gateway: SigningKey

    def access_token(self, scope: str | None) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": "https://idp.td.example",
            "sub": "alice",
            "aud": "https://api.td.example",
            "client_id": "web",
            "iat": now,
            "exp": now + 60,
            "jti": str(uuid.uuid4()),
        }
        if scope is not None:
            claims["scope"] = scope
        return encode_jws(claims, self.idp, typ="at+jwt")

    @asynccontextmanager
    async def client(self) -> AsyncIterator[AsyncTokenServiceClient]:
        credential = KeyPairAssertionSource(self.gateway, workload_id=GATEWAY, audience=IDENTIFIER)
        async with (
            httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(self.service))) as http,
            AsyncTokenServiceClient(
                "http://tts/token", credential=credential, trust_domain=TRUST_DOMAIN, client=http, allow_http=True
            ) as client,
        ):
            try:
                yield client
            finally:
                await self.service.profiles.aclose()  # what the app's lifespan does (ASGITransport runs none)


def _settings(tmp_path: Path, idp: SigningKey, gateway: SigningKey, **issuers: dict[str, Any]) -> dict[str, Any]:
    KeySet.generate().save(tmp_path / "keys" / "keys.json")
    return {
        "identifier": IDENTIFIER,
        "trust_domains": [TRUST_DOMAIN],
        "keys": {"dir": str(tmp_path / "keys")},
        "issuers": {
            "idp": {
                "kind": "oauth",
                "issuer": "https://idp.td.example",
                "jwks": {"keys": [idp.verification_key.to_jwk()]},
                "audiences": ["https://api.td.example"],
                "subject_prefix": "user:",
            },
            **issuers,
        },
        "workloads": [
            {
                "id": GATEWAY,
                "authn": [{"method": "key", "jwks": {"keys": [gateway.verification_key.to_jwk()]}}],
                "subject_token_types": ["access_token"],
                "scopes": ["trade.read", "trade.stocks"],
                "rctx": ["req_ip"],
                "tctx": ["note", "order"],
            }
        ],
    }


def _tts(tmp_path: Path, **issuers: dict[str, Any]) -> Tts:
    idp, gateway = SigningKey.generate(), SigningKey.generate()
    return Tts(TokenService.build(load_settings(None, **_settings(tmp_path, idp, gateway, **issuers))), idp, gateway)


@pytest.mark.anyio
async def test_s13_6_item62_a_star_in_the_subject_tokens_scope_grants_nothing(serve: Serve, tmp_path: Path) -> None:
    """§13.6: the requested scope MUST be equal to or less than the scope of the subject token. A ``*`` in a token's
    own scope is a scope token like any other, not the policy's wildcard: neither a JWT access token nor an
    introspection answer carrying it lets the gateway obtain other scopes."""

    async def introspect(request: Request) -> JSONResponse:
        now = int(time.time())
        return JSONResponse({"active": True, "sub": "alice", "scope": "*", "exp": now + 60})

    server = serve(Starlette(routes=[Route("/introspect", introspect, methods=["POST"])]))
    tts = _tts(
        tmp_path,
        opaque={
            "kind": "introspection",
            "issuer": "https://idp.td.example",
            "introspection_endpoint": f"{server.url}/introspect",
            "subject_prefix": "user:",
        },
    )
    async with tts.client() as client:
        for subject in (tts.access_token("*"), tts.access_token("* trade.read"), "opaque-access-token"):
            with pytest.raises(InvalidScope):
                await client.exchange(
                    subject_token=subject, subject_token_type=TOKEN_TYPE_ACCESS_TOKEN, scope="trade.stocks"
                )
        issued = await client.exchange(
            subject_token=tts.access_token("* trade.read"),
            subject_token_type=TOKEN_TYPE_ACCESS_TOKEN,
            scope="trade.read",
        )
    assert issued.scope == "trade.read"


def test_s13_14_item69_production_refuses_a_star_scope_bound(tmp_path: Path) -> None:
    """§13.14: the TTS MUST NOT treat an unknown scope as unconstrained. An issuer's ``scopes`` bound (the scope of
    its tokens that carry none) of ``*`` would do exactly that, so production mode refuses it like any ``*`` grant."""
    idp, gateway = SigningKey.generate(), SigningKey.generate()
    starred = {"kind": "oidc", "issuer": "https://login.td.example", "jwks": {"keys": [idp.verification_key.to_jwk()]}}
    data = _settings(
        tmp_path, idp, gateway, oidc={**starred, "audiences": ["web"], "scopes": ["*"], "subject_prefix": "oidc:"}
    )
    with pytest.raises(ConfigurationError, match=r"issuers\.oidc\.scopes: '\*' is only accepted in development mode"):
        load_settings(None, **data)
    assert load_settings(None, **{**data, "mode": "development"}).issuers["oidc"].scopes == ["*"]


@pytest.mark.anyio
async def test_s13_4_item61_the_subject_token_is_never_copied_into_the_context(tmp_path: Path) -> None:
    """§13.4: the Txn-Token MUST NOT contain the access token presented. The TTS never copies the subject token, and
    refuses a request_context or request_details that carries it (in a value, a nested value, or a member name)."""
    tts = _tts(tmp_path)
    async with tts.client() as client:
        for where, value in (
            ("request_details", {"note": "{token}"}),
            ("request_details", {"order": {"lines": ["x", "Bearer {token}"]}}),
            ("request_context", {"req_ip": {"{token}": 1}}),
        ):
            subject = tts.access_token("trade.read")
            carried = json.loads(json.dumps(value).replace("{token}", subject))
            with pytest.raises(InvalidRequest, match="§13.4"):
                await client.exchange(
                    subject_token=subject,
                    subject_token_type=TOKEN_TYPE_ACCESS_TOKEN,
                    scope="trade.read",
                    **{where: carried},
                )
        subject = tts.access_token("trade.read")
        issued = await client.exchange(
            subject_token=subject,
            subject_token_type=TOKEN_TYPE_ACCESS_TOKEN,
            scope="trade.read",
            request_details={"note": "an order"},
        )
    assert not carries(issued.access_token, subject)  # in the decoded claims (issue 10: not the base64url text)
