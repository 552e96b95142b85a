"""Requester authentication (§11.5): RFC 7523 client assertions (workload key pairs, Kubernetes, SPIFFE, GitHub
Actions) and mTLS through the trusted proxy's forwarded client certificate; the identity becomes ``req_wl``."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from txtoken.claims import CLIENT_ASSERTION_TYPE_JWT_BEARER, TOKEN_TYPE_ACCESS_TOKEN
from txtoken.client import AsyncTokenServiceClient
from txtoken.credentials import KeyPairAssertionSource
from txtoken.errors import TokenServiceUnavailable
from txtoken.replay import MemoryReplayStore
from txtoken.service import TokenService, create_app

from ..conftest import RunningServer
from .conftest import GATEWAY, IDENTIFIER, ORDERS, PAYMENTS, TRUST_DOMAIN, StartTts, Tts, assertion, tamper

XFCC = "x-forwarded-client-cert"


def _invalid_client(response: httpx.Response) -> str:
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "invalid_client"
    description: str = response.json()["error_description"]
    return description


def _replace(
    tts: Tts, client_assertion: str | None, headers: dict[str, str] | None = None, **params: Any
) -> httpx.Response:
    return tts.post(tts.replace_form(tts.issue(), client_assertion, **params), headers=headers)


# --- a key pair registered for the workload --------------------------------------------------------------------------


def test_workload_key_assertion_sets_req_wl(tts: Tts) -> None:
    assert tts.verifier().verify(tts.issue()).req_wl == GATEWAY


KEY_FORGERIES: dict[str, Callable[[Tts], str]] = {
    "aud = the trust domain": lambda t: t.gateway_assertion(aud=TRUST_DOMAIN),
    "aud = the token endpoint URL": lambda t: t.gateway_assertion(aud=t.token_endpoint),
    "missing aud": lambda t: t.gateway_assertion(aud=None),
    "expired": lambda t: t.gateway_assertion(exp_in=-1),
    "missing exp": lambda t: t.gateway_assertion(exp=None),
    "signed by another key": lambda t: assertion(t.keys.rogue, GATEWAY),
    "bad signature": lambda t: tamper(t.gateway_assertion(), jti="replayed"),
    "sub is not the workload": lambda t: t.gateway_assertion(sub=ORDERS),
    "unknown workload": lambda t: assertion(t.keys.gateway, "spiffe://td.example/unknown"),
    "typ at+jwt": lambda t: t.gateway_assertion(typ="at+jwt"),
    "not a JWT": lambda t: "gateway",
}


@pytest.mark.parametrize("forge", KEY_FORGERIES.values(), ids=KEY_FORGERIES.keys())
def test_workload_key_assertion_forgeries_refused(tts: Tts, forge: Callable[[Tts], str]) -> None:
    _invalid_client(tts.post(tts.form(client_assertion=forge(tts))))


def test_txn_token_cannot_authenticate_a_workload_13_12(tts: Tts) -> None:
    """§13.12: a workload MUST NOT use a Txn-Token to authenticate itself to the TTS."""
    description = _invalid_client(tts.post(tts.form(client_assertion=tts.issue())))
    assert "13.12" in description


def test_wrong_client_assertion_type_refused(tts: Tts) -> None:
    _invalid_client(
        tts.post(tts.form(client_assertion_type="urn:ietf:params:oauth:client-assertion-type:saml2-bearer"))
    )


def test_client_id_naming_another_workload_refused(tts: Tts) -> None:
    _invalid_client(tts.post(tts.form(client_id=ORDERS)))
    assert tts.post(tts.form(client_id=GATEWAY)).status_code == 200


# --- platform credentials: Kubernetes service-account tokens ------------------------------------------------------


def test_kubernetes_service_account_authenticates_orders(tts: Tts) -> None:
    response = _replace(tts, tts.platform.k8s_token())
    assert response.status_code == 200, response.text
    assert tts.verifier().verify(response.json()["access_token"]).req_wl == ORDERS


_WITHOUT_K8S_CLAIM: dict[str, Any] = {"kubernetes.io": None}
K8S_FORGERIES: dict[str, Callable[[Tts], str]] = {
    "another namespace": lambda t: t.platform.k8s_token(namespace="other"),
    "another service account": lambda t: t.platform.k8s_token(account="payments"),
    "aud = the API server (not the TTS)": lambda t: t.platform.k8s_token(aud="https://kubernetes.default.svc"),
    "expired": lambda t: t.platform.k8s_token(exp_in=-1),
    "bad signature": lambda t: tamper(t.platform.k8s_token(), jti="replayed"),
    "sub disagrees with kubernetes.io": lambda t: t.platform.k8s_token(sub="system:serviceaccount:shop:admin"),
    "missing kubernetes.io": lambda t: t.platform.k8s_token(**_WITHOUT_K8S_CLAIM),
    "signed by an unknown key": lambda t: t.platform.k8s_token(key=t.keys.rogue),
    "unknown issuer": lambda t: t.platform.k8s_token(iss="https://other-cluster.example"),
}


@pytest.mark.parametrize("forge", K8S_FORGERIES.values(), ids=K8S_FORGERIES.keys())
def test_kubernetes_assertion_forgeries_refused(tts: Tts, forge: Callable[[Tts], str]) -> None:
    _invalid_client(_replace(tts, forge(tts)))


def test_spiffe_svid_of_a_workload_without_a_policy_refused(tts: Tts) -> None:
    _invalid_client(_replace(tts, tts.platform.svid(spiffe_id="spiffe://td.example/unknown")))


def test_github_token_outside_the_issuer_allow_list_refused(tts: Tts) -> None:
    _invalid_client(_replace(tts, tts.platform.github_token(ref="refs/heads/feature")))


# --- mTLS through the trusted proxy ----------------------------------------------------------------------------------


def _xfcc(uri: str = PAYMENTS) -> str:
    return f'By=spiffe://td.example/tts;Hash=0a1b2c;Subject="CN=payments,O=td";URI={uri}'


def test_forwarded_certificate_from_the_trusted_proxy_authenticates(tts: Tts) -> None:
    response = _replace(tts, None, headers={XFCC: _xfcc()})
    assert response.status_code == 200, response.text
    assert tts.verifier().verify(response.json()["access_token"]).req_wl == PAYMENTS


@pytest.mark.parametrize(
    "header",
    [
        _xfcc("spiffe://td.example/unknown"),
        "By=spiffe://td.example/tts;Hash=0a1b2c",
        f"{_xfcc()},{_xfcc(ORDERS)}",
        f"{_xfcc()};URI={ORDERS}",
        'URI="spiffe://td.example/payments',
        "garbage",
    ],
    ids=["unknown URI SAN", "no URI SAN", "two certificates", "two URI SANs", "unterminated quote", "not key=value"],
)
def test_bad_forwarded_certificate_refused(tts: Tts, header: str) -> None:
    _invalid_client(_replace(tts, None, headers={XFCC: header}))


def test_forwarded_certificate_and_assertion_together_refused(tts: Tts) -> None:
    """RFC 6749 §2.3: one client authentication method per request."""
    _invalid_client(_replace(tts, tts.platform.k8s_token(), headers={XFCC: _xfcc()}))


def test_forwarded_certificate_from_an_untrusted_peer_refused(start_tts: StartTts) -> None:
    """The header is only honoured from the trusted proxy; from anyone else the request is refused, even when it
    also carries a valid client assertion."""

    def proxy_elsewhere(data: dict[str, Any]) -> None:
        data["trusted_proxy"] = {"addresses": ["192.0.2.10/32"]}

    tts = start_tts(proxy_elsewhere)
    description = _invalid_client(_replace(tts, None, headers={XFCC: _xfcc()}))
    assert "trusted proxy" in description
    _invalid_client(tts.post(tts.form(), headers={XFCC: _xfcc(GATEWAY)}))
    assert tts.post(tts.form()).status_code == 200


def test_uvicorn_proxy_headers_cannot_spoof_the_peer(start_tts: StartTts) -> None:
    """X-Forwarded-For from a client does not make it the trusted proxy (the TTS is served with proxy headers off)."""

    def proxy_elsewhere(data: dict[str, Any]) -> None:
        data["trusted_proxy"] = {"addresses": ["192.0.2.10/32"]}

    tts = start_tts(proxy_elsewhere)
    headers = {XFCC: _xfcc(), "x-forwarded-for": "192.0.2.10", "forwarded": "for=192.0.2.10"}
    _invalid_client(_replace(tts, None, headers=headers))


def test_assertion_lifetime_is_checked_against_the_clock(tts: Tts) -> None:
    early = assertion(tts.keys.gateway, GATEWAY, iat=int(time.time()) + 3600)
    _invalid_client(tts.post(tts.form(client_assertion=early)))
    assert (
        tts.post(tts.form(client_assertion=assertion(tts.keys.gateway, GATEWAY, aud=[IDENTIFIER]))).status_code == 200
    )
    assert CLIENT_ASSERTION_TYPE_JWT_BEARER in tts.form().values()


def test_bad_signatures_are_refused_for_the_signature(tts: Tts) -> None:
    assert "signature_invalid" in _invalid_client(
        tts.post(tts.form(client_assertion=tamper(tts.gateway_assertion(), jti="x")))
    )
    assert "signature_invalid" in _invalid_client(_replace(tts, tamper(tts.platform.k8s_token(), jti="x")))
    response = tts.post(tts.form(subject_token=tamper(tts.platform.access_token(), jti="x")))
    assert "signature_invalid" in response.json()["error_description"]


# --- issue 10: client assertions are capped, single-use (key pairs), for one audience, asymmetric ------------------

YEAR = 365 * 86400


@pytest.mark.parametrize(
    "changes",
    [{"exp_in": YEAR}, {"exp_in": 3 * YEAR}, {"exp_in": 301}, {"exp_in": 3600, "iat": None}],
    ids=["one year", "three years", "301 s", "an hour, no iat"],
)
def test_key_pair_assertion_lifetime_is_capped(tts: Tts, changes: dict[str, Any]) -> None:
    """issue 10: key-pair assertions valid for one and for three years were accepted. ``exp - iat`` and ``exp - now``
    are capped at ``key_assertion_max_lifetime`` (default 300 s)."""
    description = _invalid_client(tts.post(tts.form(client_assertion=tts.gateway_assertion(**changes))))
    assert "lifetime_too_long" in description
    assert tts.post(tts.form(client_assertion=tts.gateway_assertion(exp_in=300))).status_code == 200


def test_key_pair_assertion_cap_is_configurable(start_tts: StartTts) -> None:
    def longer(data: dict[str, Any]) -> None:
        data["key_assertion_max_lifetime"] = 900

    tts = start_tts(longer)
    assert tts.post(tts.form(client_assertion=tts.gateway_assertion(exp_in=900))).status_code == 200
    assert "lifetime_too_long" in _invalid_client(
        tts.post(tts.form(client_assertion=tts.gateway_assertion(exp_in=901)))
    )


def test_key_pair_assertion_needs_a_jti(tts: Tts) -> None:
    """issue 10: a key-pair assertion must carry a jti (it is what makes it single-use)."""
    description = _invalid_client(tts.post(tts.form(client_assertion=tts.gateway_assertion(jti=None))))
    assert "claim_invalid" in description


def test_replayed_key_pair_assertion_is_refused(tts: Tts) -> None:
    """issue 10: a key-pair assertion was accepted again when replayed; its jti is now used once within its
    lifetime. Another workload's assertion with the same jti is a different assertion."""
    replayed = tts.gateway_assertion(jti="once")
    assert tts.post(tts.form(client_assertion=replayed)).status_code == 200
    assert "already used" in _invalid_client(tts.post(tts.form(client_assertion=replayed)))
    assert "already used" in _invalid_client(tts.post(tts.form(client_assertion=tts.gateway_assertion(jti="once"))))
    assert tts.post(tts.form(client_assertion=tts.gateway_assertion())).status_code == 200


def test_replicas_sharing_a_replay_store_refuse_a_replay_at_either(
    tts: Tts, serve: Callable[..., RunningServer]
) -> None:
    """The replay store is injected into the service, so replicas can share one (here an in-memory store shared by
    two TTS apps; a networked store backs real replicas)."""
    store = MemoryReplayStore()
    first, second = (
        Tts(serve(create_app(s), proxy_headers=False).url, tts.settings, s, tts.platform, tts.keys)
        for s in (TokenService.build(tts.settings, replay_store=store) for _ in range(2))
    )
    used = tts.gateway_assertion()
    assert first.post(first.form(client_assertion=used)).status_code == 200
    assert "already used" in _invalid_client(second.post(second.form(client_assertion=used)))


def test_full_replay_store_is_temporarily_unavailable_never_open(tts: Tts, serve: Callable[..., RunningServer]) -> None:
    """A replay store that cannot remember another jti refuses (503 temporarily_unavailable): never fail open."""
    service = TokenService.build(tts.settings, replay_store=MemoryReplayStore(max_entries=1))
    small = Tts(serve(create_app(service), proxy_headers=False).url, tts.settings, service, tts.platform, tts.keys)
    assert small.post(small.form()).status_code == 200
    response = small.post(small.form())
    assert (response.status_code, response.json()["error"]) == (503, "temporarily_unavailable")


def test_platform_assertion_lifetime_is_capped_at_the_platforms(tts: Tts) -> None:
    """issue 10: a platform token is capped at its platform's lifetime (Kubernetes default: one day; SPIFFE and
    GitHub Actions: one hour) and may be reused within it, as the platform hands the same token out."""
    assert "lifetime_too_long" in _invalid_client(_replace(tts, tts.platform.k8s_token(exp_in=YEAR)))
    assert "lifetime_too_long" in _invalid_client(_replace(tts, tts.platform.svid(exp_in=3601)))
    assert "lifetime_too_long" in _invalid_client(_replace(tts, tts.platform.github_token(exp_in=7200)))
    reused = tts.platform.k8s_token(exp_in=86400)
    assert _replace(tts, reused).status_code == 200
    assert _replace(tts, reused).status_code == 200


def test_platform_assertion_cap_is_configurable_per_issuer(start_tts: StartTts) -> None:
    def shorter(data: dict[str, Any]) -> None:
        data["issuers"]["k8s"]["assertion_max_lifetime"] = 600

    tts = start_tts(shorter)
    assert "lifetime_too_long" in _invalid_client(_replace(tts, tts.platform.k8s_token(exp_in=601)))
    assert _replace(tts, tts.platform.k8s_token(exp_in=600)).status_code == 200


def test_assertion_aud_array_must_hold_only_the_tts(tts: Tts) -> None:
    """issue 10 (draft-ietf-oauth-rfc7523bis): an array aud is accepted only if it holds exactly the TTS's identifier;
    an assertion also addressed to another party could be replayed by it."""
    both = [IDENTIFIER, "https://other-as.example"]
    assert "aud_invalid" in _invalid_client(tts.post(tts.form(client_assertion=tts.gateway_assertion(aud=both))))
    assert "aud_invalid" in _invalid_client(_replace(tts, tts.platform.k8s_token(aud=both)))
    assert tts.post(tts.form(client_assertion=tts.gateway_assertion(aud=[IDENTIFIER]))).status_code == 200
    assert _replace(tts, tts.platform.k8s_token(aud=[IDENTIFIER])).status_code == 200


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _hs256(claims: dict[str, Any], secret: bytes, kid: str | None) -> str:
    header: dict[str, Any] = {"alg": "HS256", "typ": "JWT"} | ({"kid": kid} if kid else {})
    signing_input = f"{b64url_encode(json.dumps(header).encode())}.{b64url_encode(json.dumps(claims).encode())}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url_encode(mac)}"


@pytest.mark.parametrize("kid", [None, "gateway"], ids=["client_secret_jwt", "HMAC under the gateway's kid"])
def test_hs256_client_secret_jwt_assertion_is_refused(tts: Tts, kid: str | None) -> None:
    """issue 10: an HS256 (``client_secret_jwt``) assertion is refused: the TTS accepts only asymmetric assertions
    (§11.5 SHOULD), even one MACed with the workload's public key under its kid."""
    now = int(time.time())
    claims = {"iss": GATEWAY, "sub": GATEWAY, "aud": IDENTIFIER, "iat": now, "exp": now + 60, "jti": "hs"}
    public_jwk = json.dumps(tts.keys.gateway.verification_key.to_jwk()).encode()
    forged = _hs256(claims, public_jwk, tts.keys.gateway.kid if kid else None)
    description = _invalid_client(tts.post(tts.form(client_assertion=forged)))
    # Without a kid the header is refused before its alg is looked at.
    assert description in {"client_assertion: alg_not_allowed", "client_assertion: token_malformed"}
    assert kid is None or description == "client_assertion: alg_not_allowed"


@pytest.mark.anyio
async def test_client_retries_with_a_fresh_assertion_after_a_503(start_tts: StartTts) -> None:
    """A 503 answered after the assertion was accepted (here: the subject token's issuer is down) is retried, and each
    attempt must carry a new assertion: the client had reused the first one, which the TTS now refuses as a replay."""

    def idp_down(data: dict[str, Any]) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            data["issuers"]["idp"]["jwks_uri"] = f"http://127.0.0.1:{sock.getsockname()[1]}/jwks"

    tts = start_tts(idp_down)
    subject = tts.platform.access_token()
    with tts.client(retries=1) as client, pytest.raises(TokenServiceUnavailable):
        client.exchange(subject_token=subject, subject_token_type=TOKEN_TYPE_ACCESS_TOKEN, scope="trade.stocks")
    credential = KeyPairAssertionSource(tts.keys.gateway, workload_id=GATEWAY, audience=IDENTIFIER)
    async with AsyncTokenServiceClient(
        tts.token_endpoint, credential=credential, trust_domain=TRUST_DOMAIN, retries=1
    ) as async_client:
        with pytest.raises(TokenServiceUnavailable):
            await async_client.exchange(
                subject_token=subject, subject_token_type=TOKEN_TYPE_ACCESS_TOKEN, scope="trade.stocks"
            )
