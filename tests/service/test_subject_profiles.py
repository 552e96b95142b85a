"""Each subject-token profile accepted, and each one's typical forgeries refused (invalid_request)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from txtoken.claims import (
    TOKEN_TYPE_ACCESS_TOKEN,
    TOKEN_TYPE_ID_TOKEN,
    TOKEN_TYPE_JWT,
    TOKEN_TYPE_SELF_SIGNED,
    TOKEN_TYPE_UNSIGNED_JSON,
)
from txtoken.mint import encode_jws

from .conftest import (
    API_AUDIENCE,
    BATCH,
    CI,
    GATEWAY,
    GITLAB_JOB,
    IDENTIFIER,
    ISSUERS,
    OIDC_CLIENT,
    TRUST_DOMAIN,
    Tts,
    tamper,
)


def _issue(tts: Tts, **params: Any) -> dict[str, Any]:
    response = tts.post(tts.form(**params))
    assert response.status_code == 200, response.text
    return tts.verifier().verify(response.json()["access_token"]).claims.to_dict()


def _refused(tts: Tts, error: str = "invalid_request", **params: Any) -> str:
    response = tts.post(tts.form(**params))
    assert response.status_code == 400, response.text
    assert response.json()["error"] == error
    description: str = response.json()["error_description"]
    if error == "invalid_request":
        assert "subject_token" in description  # refused for the subject, not for something incidental
    return description


# --- OAuth JWT access tokens (RFC 9068) -----------------------------------------------------------------------------


def test_jwt_access_token_accepted(tts: Tts) -> None:
    claims = _issue(tts, subject_token=tts.platform.access_token(sub="alice"), scope="trade.read")
    assert claims["sub"] == "user:alice"
    assert claims["scope"] == "trade.read"


ACCESS_TOKEN_FORGERIES: dict[str, Callable[[Tts], str]] = {
    "wrong issuer": lambda t: t.platform.access_token(iss="https://evil.example"),
    "wrong audience": lambda t: t.platform.access_token(aud="https://other-api.example"),
    "expired": lambda t: t.platform.access_token(exp_in=-5),
    "bad signature": lambda t: tamper(t.platform.access_token(), sub="mallory"),
    "signed by an unknown key": lambda t: t.platform.access_token(key=t.keys.rogue),
    "missing client_id": lambda t: t.platform.access_token(client_id=None),
    "missing jti": lambda t: t.platform.access_token(jti=None),
    "missing exp": lambda t: t.platform.access_token(exp=None),
    "typ JWT (an ID token shape, not at+jwt)": lambda t: t.platform.access_token(typ="JWT"),
    "alg none": lambda t: ".".join(
        [
            "eyJhbGciOiJub25lIiwidHlwIjoiYXQrand0Iiwia2lkIjoieCJ9",
            t.platform.access_token().split(".")[1],
            "",
        ]
    ),
    "iat in the future": lambda t: t.platform.access_token(iat=int(time.time()) + 3600),
}


@pytest.mark.parametrize("forge", ACCESS_TOKEN_FORGERIES.values(), ids=ACCESS_TOKEN_FORGERIES.keys())
def test_jwt_access_token_forgeries_refused(tts: Tts, forge: Callable[[Tts], str]) -> None:
    _refused(tts, subject_token=forge(tts))


# --- OpenID Connect ID tokens ---------------------------------------------------------------------------------------


def test_id_token_accepted_with_the_issuer_scope_bound(tts: Tts) -> None:
    claims = _issue(
        tts,
        subject_token=tts.platform.id_token(sub="bob"),
        subject_token_type=TOKEN_TYPE_ID_TOKEN,
        scope="profile.read",
    )
    assert claims["sub"] == "oidc:bob"  # the issuer's subject_prefix keeps sub unique in the trust domain
    assert claims["scope"] == "profile.read"


def test_id_token_scope_beyond_the_bound_refused(tts: Tts) -> None:
    _refused(
        tts,
        "invalid_scope",
        subject_token=tts.platform.id_token(),
        subject_token_type=TOKEN_TYPE_ID_TOKEN,
        scope="trade.stocks",
    )


@pytest.mark.parametrize(
    "typ, accepted", [("", True), ("JWT", True), ("application/jwt", True), ("at+jwt", False), ("txntoken+jwt", False)]
)
def test_id_token_typ_is_absent_or_jwt(tts: Tts, typ: str, accepted: bool) -> None:
    """The id_token profile's typ rule, as docs/service.md states it (issue 10: the page left it out)."""
    now = int(time.time())
    claims = {"iss": ISSUERS["oidc"], "sub": "bob", "aud": OIDC_CLIENT, "iat": now, "exp": now + 60}
    form = tts.form(
        subject_token=tts.platform.sign("oidc", claims, typ=typ),  # an empty typ leaves the header out
        subject_token_type=TOKEN_TYPE_ID_TOKEN,
        scope="profile.read",
    )
    response = tts.post(form)
    assert response.status_code == (200 if accepted else 400), response.text
    assert accepted or "typ_invalid" in response.json()["error_description"]


ID_TOKEN_FORGERIES: dict[str, Callable[[Tts], str]] = {
    "wrong issuer": lambda t: t.platform.id_token(iss=ISSUERS["idp"]),
    "wrong audience": lambda t: t.platform.id_token(aud="another-client"),
    "expired": lambda t: t.platform.id_token(exp_in=-1),
    "bad signature": lambda t: tamper(t.platform.id_token(), sub="mallory"),
    "missing iat": lambda t: t.platform.id_token(iat=None),
    "access token presented as ID token": lambda t: t.platform.access_token(),
}


@pytest.mark.parametrize("forge", ID_TOKEN_FORGERIES.values(), ids=ID_TOKEN_FORGERIES.keys())
def test_id_token_forgeries_refused(tts: Tts, forge: Callable[[Tts], str]) -> None:
    _refused(tts, subject_token=forge(tts), subject_token_type=TOKEN_TYPE_ID_TOKEN, scope="profile.read")


# --- opaque access tokens via RFC 7662 introspection ---------------------------------------------------------------


def test_opaque_access_token_accepted_via_introspection(tts: Tts) -> None:
    tts.platform.opaque["opaque-ok-1"] = {
        "active": True,
        "sub": "dave",
        "scope": "trade.read trade.stocks",
        "iss": ISSUERS["idp"],
        "aud": API_AUDIENCE,
        "exp": int(time.time()) + 300,
        "client_id": "web-app",
    }
    claims = _issue(tts, subject_token="opaque-ok-1", scope="trade.read")
    assert claims["sub"] == "user:dave"
    assert "opaque-ok-1" not in json.dumps(claims)


OPAQUE_FORGERIES: dict[str, dict[str, Any]] = {
    "inactive": {"active": False, "sub": "dave", "scope": "trade.read"},
    "expired": {"active": True, "sub": "dave", "scope": "trade.read", "exp": 1_000_000},
    "wrong issuer": {"active": True, "sub": "dave", "scope": "trade.read", "iss": "https://evil.example"},
    "wrong audience": {"active": True, "sub": "dave", "scope": "trade.read", "aud": "https://other.example"},
    "missing sub": {"active": True, "scope": "trade.read", "aud": API_AUDIENCE},
}


@pytest.mark.parametrize("answer", OPAQUE_FORGERIES.values(), ids=OPAQUE_FORGERIES.keys())
def test_opaque_access_token_forgeries_refused(tts: Tts, answer: dict[str, Any]) -> None:
    token = f"opaque-{len(tts.platform.opaque)}-{time.monotonic_ns()}"
    tts.platform.opaque[token] = {"aud": API_AUDIENCE, **answer}
    _refused(tts, subject_token=token, scope="trade.read")


def test_unknown_opaque_token_refused(tts: Tts) -> None:
    _refused(tts, subject_token="never-issued", scope="trade.read")


def test_opaque_token_without_scope_refused(tts: Tts) -> None:
    """§13.14: no scope in the introspection answer and no configured bound."""
    tts.platform.opaque["opaque-noscope"] = {"active": True, "sub": "dave", "aud": API_AUDIENCE}
    _refused(tts, "invalid_scope", subject_token="opaque-noscope", scope="trade.read")


# --- self-signed JWTs (§11.2.1) -------------------------------------------------------------------------------------


def _self_signed(tts: Tts, **changes: Any) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {"iss": GATEWAY, "sub": "carol", "aud": IDENTIFIER, "iat": now, "exp": now + 60}
    key = changes.pop("key", tts.keys.gateway)
    claims.update(changes)
    return encode_jws({k: v for k, v in claims.items() if v is not None}, key, typ="JWT")


def test_self_signed_accepted(tts: Tts) -> None:
    """§11.2.1: the TTS SHALL use sub, and SHALL verify aud is its own identifier."""
    claims = _issue(tts, subject_token=_self_signed(tts), subject_token_type=TOKEN_TYPE_SELF_SIGNED, scope="trade.read")
    assert claims["sub"] == "gateway:carol"
    assert claims["req_wl"] == GATEWAY


SELF_SIGNED_FORGERIES: dict[str, Callable[[Tts], str]] = {
    "aud = the trust domain": lambda t: _self_signed(t, aud=TRUST_DOMAIN),
    "aud of another service": lambda t: _self_signed(t, aud="https://other-tts.example"),
    "expired": lambda t: _self_signed(t, exp=int(time.time()) - 1),
    "iat too far in the past": lambda t: _self_signed(t, iat=int(time.time()) - 3600),
    "bad signature": lambda t: tamper(_self_signed(t), sub="mallory"),
    "signed by another key": lambda t: _self_signed(t, key=t.keys.rogue),
    "iss of another workload": lambda t: _self_signed(t, iss="spiffe://td.example/orders"),
    "missing exp": lambda t: _self_signed(t, exp=None),
    "missing iat": lambda t: _self_signed(t, iat=None),
    "missing sub": lambda t: _self_signed(t, sub=None),
}


@pytest.mark.parametrize("forge", SELF_SIGNED_FORGERIES.values(), ids=SELF_SIGNED_FORGERIES.keys())
def test_self_signed_forgeries_refused(tts: Tts, forge: Callable[[Tts], str]) -> None:
    _refused(tts, subject_token=forge(tts), subject_token_type=TOKEN_TYPE_SELF_SIGNED, scope="trade.read")


def test_self_signed_scope_beyond_the_policy_bound_refused(tts: Tts) -> None:
    _refused(
        tts,
        "invalid_scope",
        subject_token=_self_signed(tts),
        subject_token_type=TOKEN_TYPE_SELF_SIGNED,
        scope="trade.stocks",
    )


# --- unsigned JSON (§11.2.2) ----------------------------------------------------------------------------------------


def test_unsigned_json_accepted_for_an_allowed_requester(tts: Tts) -> None:
    claims = _issue(
        tts, subject_token='{"sub": "erin"}', subject_token_type=TOKEN_TYPE_UNSIGNED_JSON, scope="trade.read"
    )
    assert claims["sub"] == "gateway:erin"


@pytest.mark.parametrize(
    "token", ['{"name": "erin"}', '"erin"', "{bad", '{"sub": ""}', '{"sub": "a", "sub": "b"}', '{"sub": 7}']
)
def test_unsigned_json_without_a_valid_sub_refused(tts: Tts, token: str) -> None:
    _refused(tts, subject_token=token, subject_token_type=TOKEN_TYPE_UNSIGNED_JSON, scope="trade.read")


def test_unsigned_json_refused_for_a_requester_the_policy_does_not_allow(tts: Tts) -> None:
    _refused(
        tts,
        "unauthorized_client",
        subject_token='{"sub": "erin"}',
        subject_token_type=TOKEN_TYPE_UNSIGNED_JSON,
        scope="batch.run",
        client_assertion=tts.platform.svid(),
    )


# --- workload JWTs: SPIFFE JWT-SVID, GitHub Actions, GitLab CI, Kubernetes -----------------------------------------


def test_jwt_svid_subject_accepted(tts: Tts) -> None:
    svid = tts.platform.svid()
    claims = _issue(
        tts,
        subject_token=svid,
        subject_token_type=TOKEN_TYPE_JWT,
        scope="batch.run",
        client_assertion=tts.platform.svid(),
    )
    assert claims["sub"] == f"workload:{BATCH}"
    assert claims["req_wl"] == BATCH


SVID_FORGERIES: dict[str, Callable[[Tts], str]] = {
    "another trust domain": lambda t: t.platform.svid(spiffe_id="spiffe://evil.example/batch"),
    "wrong audience": lambda t: t.platform.svid(aud="https://other.example"),
    "expired": lambda t: t.platform.svid(exp_in=-1),
    "bad signature": lambda t: tamper(t.platform.svid(), sub="spiffe://td.example/admin"),
    "signed by an unknown key": lambda t: t.platform.svid(key=t.keys.rogue),
    "missing aud": lambda t: t.platform.svid(aud=None),
    "wrong issuer": lambda t: t.platform.svid(iss="https://evil.example"),
}


@pytest.mark.parametrize("forge", SVID_FORGERIES.values(), ids=SVID_FORGERIES.keys())
def test_jwt_svid_subject_forgeries_refused(tts: Tts, forge: Callable[[Tts], str]) -> None:
    _refused(
        tts,
        subject_token=forge(tts),
        subject_token_type=TOKEN_TYPE_JWT,
        scope="batch.run",
        client_assertion=tts.platform.svid(),
    )


def test_github_actions_subject_accepted(tts: Tts) -> None:
    token = tts.platform.github_token()
    claims = _issue(
        tts,
        subject_token=token,
        subject_token_type=TOKEN_TYPE_JWT,
        scope="deploy",
        client_assertion=tts.platform.github_token(),
    )
    assert claims["sub"] == "github:repo:octo-org/octo-repo:environment:prod"
    assert claims["req_wl"] == CI


GITHUB_FORGERIES: dict[str, Callable[[Tts], str]] = {
    "ref outside the allow-list": lambda t: t.platform.github_token(ref="refs/heads/feature"),
    "repository outside the allow-list": lambda t: t.platform.github_token(
        repository="evil/repo", sub="repo:evil/repo:environment:prod"
    ),
    "wrong audience": lambda t: t.platform.github_token(aud="https://github.com/octo-org"),
    "expired": lambda t: t.platform.github_token(exp_in=-1),
    "bad signature": lambda t: tamper(t.platform.github_token(), run_id="other"),
    "missing repository": lambda t: t.platform.github_token(repository=None),
    "sub of another repository": lambda t: t.platform.github_token(sub="repo:evil/repo:ref:refs/heads/main"),
}


@pytest.mark.parametrize("forge", GITHUB_FORGERIES.values(), ids=GITHUB_FORGERIES.keys())
def test_github_actions_subject_forgeries_refused(tts: Tts, forge: Callable[[Tts], str]) -> None:
    _refused(
        tts,
        subject_token=forge(tts),
        subject_token_type=TOKEN_TYPE_JWT,
        scope="deploy",
        client_assertion=tts.platform.github_token(),
    )


def test_gitlab_ci_subject_accepted_and_forgery_refused(tts: Tts) -> None:
    claims = _issue(
        tts,
        subject_token=tts.platform.gitlab_token(),
        subject_token_type=TOKEN_TYPE_JWT,
        scope="deploy",
        client_assertion=tts.platform.gitlab_token(),
    )
    assert claims["sub"] == "gitlab:project_path:group/project:ref_type:branch:ref:main"
    assert claims["req_wl"] == GITLAB_JOB
    _refused(
        tts,
        subject_token=tts.platform.gitlab_token(project_path=None),
        subject_token_type=TOKEN_TYPE_JWT,
        scope="deploy",
        client_assertion=tts.platform.gitlab_token(),
    )


def test_kubernetes_token_from_an_assertion_only_issuer_is_not_a_subject(tts: Tts) -> None:
    """The k8s issuer is trusted to authenticate workloads, not to name subjects (its roles)."""
    _refused(
        tts,
        subject_token=tts.platform.k8s_token(),
        subject_token_type=TOKEN_TYPE_JWT,
        scope="batch.run",
        client_assertion=tts.platform.svid(),
    )


def test_access_token_is_not_accepted_as_a_workload_jwt(tts: Tts) -> None:
    _refused(
        tts,
        subject_token=tts.platform.access_token(),
        subject_token_type=TOKEN_TYPE_JWT,
        scope="batch.run",
        client_assertion=tts.platform.svid(),
    )


def test_access_token_typ_is_required_for_the_access_token_type(tts: Tts) -> None:
    _refused(tts, subject_token=tts.platform.id_token(), subject_token_type=TOKEN_TYPE_ACCESS_TOKEN)


@pytest.mark.parametrize(
    "claims",
    [
        {"sub": 42},
        {"sub": ""},
        {"scope": ["trade.read"]},
        {"exp": "tomorrow"},
        {"exp": True},
        {"aud": 7},
        {"aud": []},
        {"iat": 1.5e300},
        {"client_id": {"id": "x"}},
        {"iss": ["https://idp.td.example"]},
    ],
    ids=lambda c: "-".join(f"{k}={type(v).__name__}" for k, v in c.items()),
)
def test_signed_tokens_with_mistyped_claims_are_refused_not_crashing(tts: Tts, claims: dict[str, Any]) -> None:
    response = tts.post(tts.form(subject_token=tts.platform.access_token(**claims), scope="trade.read"))
    assert response.status_code == 400, response.text
    assert response.json()["error"] in ("invalid_request", "invalid_scope")
