"""Every error row of the spec digest §1.7 table, over a real server: RFC 6749 §5.2 JSON, code and status.

Raw HTTP checks the wire format; the client checks that each code becomes the matching core error class.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from txtoken.claims import (
    TOKEN_TYPE_ACCESS_TOKEN,
    TOKEN_TYPE_ID_TOKEN,
    TOKEN_TYPE_REFRESH_TOKEN,
    TOKEN_TYPE_SELF_SIGNED,
)
from txtoken.errors import (
    InvalidClient,
    InvalidRequest,
    InvalidScope,
    InvalidTarget,
    TokenServiceError,
    UnauthorizedClient,
    UnsupportedGrantType,
)
from txtoken.mint import encode_jws

from .conftest import GATEWAY, TRUST_DOMAIN, Tts


def _self_signed(tts: Tts, aud: str) -> str:
    now = int(time.time())
    claims = {"iss": GATEWAY, "sub": "carol", "aud": aud, "iat": now, "exp": now + 60}
    return encode_jws(claims, tts.keys.gateway, typ="JWT")


Case = Callable[[Tts], dict[str, Any]]

INVALID_REQUEST: dict[str, Case] = {
    "missing requested_token_type": lambda t: t.form(requested_token_type=None),
    "wrong requested_token_type": lambda t: t.form(requested_token_type=TOKEN_TYPE_ACCESS_TOKEN),
    "missing audience": lambda t: t.form(audience=None),
    "missing scope": lambda t: t.form(scope=None),
    "missing subject_token": lambda t: t.form(subject_token=None),
    "missing subject_token_type": lambda t: t.form(subject_token_type=None),
    "unsupported subject_token_type": lambda t: t.form(subject_token_type="urn:ietf:params:oauth:token-type:saml2"),
    "refresh token as subject (§13.3)": lambda t: t.form(subject_token_type=TOKEN_TYPE_REFRESH_TOKEN),
    "invalid subject token": lambda t: t.form(subject_token="not-a-jwt.at.all"),
    "expired subject token (§6)": lambda t: t.form(subject_token=t.platform.access_token(exp_in=-1)),
    "self-signed aud = trust domain (§11.2.1)": lambda t: t.form(
        subject_token=_self_signed(t, TRUST_DOMAIN), subject_token_type=TOKEN_TYPE_SELF_SIGNED, scope="trade.read"
    ),
    "request_details not JSON": lambda t: t.form(request_details="{not json"),
    "request_context not an object": lambda t: t.form(request_context='["req_ip"]'),
    "request_details with duplicate members": lambda t: t.form(request_details='{"a": 1, "a": 2}'),
    "repeated parameter": lambda t: {**t.form(), "scope": ["trade.read", "trade.stocks"]},
    "actor_token (not in the profile)": lambda t: t.form(actor_token="x", actor_token_type=TOKEN_TYPE_ACCESS_TOKEN),
    "resource (not in the profile)": lambda t: t.form(resource="https://api.td.example"),
}


@pytest.mark.parametrize("case", INVALID_REQUEST.values(), ids=INVALID_REQUEST.keys())
def test_invalid_request_400(tts: Tts, case: Case) -> None:
    response = tts.post(case(tts))
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    assert response.json()["error"] == "invalid_request"
    assert isinstance(response.json()["error_description"], str)


def test_not_a_form_is_invalid_request(tts: Tts) -> None:
    response = httpx.post(tts.token_endpoint, json=tts.form())
    assert (response.status_code, response.json()["error"]) == (400, "invalid_request")


def test_oversized_body_is_invalid_request(tts: Tts) -> None:
    response = tts.post(tts.form(request_details=json.dumps({"note": "x" * 70_000})))
    assert (response.status_code, response.json()["error"]) == (400, "invalid_request")


def test_body_that_is_not_utf8_is_invalid_request(tts: Tts) -> None:
    response = httpx.post(
        tts.token_endpoint, content=b"grant_type=%ff%fe", headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert (response.status_code, response.json()["error"]) == (400, "invalid_request")


def test_unknown_parameters_are_ignored(tts: Tts) -> None:
    """RFC 6749 §3.2: the server MUST ignore unrecognized request parameters."""
    assert tts.post({**tts.form(), "unrelated": "1"}).status_code == 200


def test_audience_not_served_is_invalid_target(tts: Tts) -> None:
    response = tts.post(tts.form(audience="elsewhere.example"))
    assert (response.status_code, response.json()["error"]) == (400, "invalid_target")


@pytest.mark.parametrize(
    "scope", ["trade.stocks admin", "profile.read"], ids=["beyond subject and workload", "beyond subject"]
)
def test_scope_beyond_the_subject_is_invalid_scope(tts: Tts, scope: str) -> None:
    response = tts.post(tts.form(scope=scope))
    assert (response.status_code, response.json()["error"]) == (400, "invalid_scope")


def test_malformed_scope_is_invalid_scope(tts: Tts) -> None:
    """issue 10: a malformed scope got invalid_request; RFC 6749 §5.2 says invalid_scope ("malformed")."""
    response = tts.post(tts.form(scope="trade.stocks  trade.read"))
    assert (response.status_code, response.json()["error"]) == (400, "invalid_scope")


def test_scope_beyond_the_workload_ceiling_is_invalid_scope(tts: Tts) -> None:
    subject = tts.platform.access_token(scope="trade.stocks trade.admin")
    response = tts.post(tts.form(subject_token=subject, scope="trade.admin"))
    assert (response.status_code, response.json()["error"]) == (400, "invalid_scope")


def test_unknown_subject_scope_without_a_bound_is_invalid_scope(tts: Tts) -> None:
    """§13.14: an access token without scope and no policy bound is refused, not treated as unconstrained."""
    response = tts.post(tts.form(subject_token=tts.platform.access_token(scope=None)))
    assert (response.status_code, response.json()["error"]) == (400, "invalid_scope")


#: The one challenge of every invalid_client answer: the client authentication methods the TTS supports.
CHALLENGE = 'private_key_jwt realm="txtoken", tls_client_auth realm="txtoken"'


def test_no_client_authentication_is_invalid_client_401_with_a_challenge(tts: Tts) -> None:
    """issue 10: invalid_client was a 401 without WWW-Authenticate (RFC 9110 §15.5.2 requires one on every 401)."""
    response = tts.post(tts.form(client_assertion=None, client_assertion_type=None))
    assert (response.status_code, response.json()["error"]) == (401, "invalid_client")
    assert response.headers["www-authenticate"] == CHALLENGE


def test_refused_client_assertion_gets_the_challenge(tts: Tts) -> None:
    response = tts.post(tts.form(client_assertion="not-a-jwt"))
    assert (response.status_code, response.json()["error"]) == (401, "invalid_client")
    assert response.headers["www-authenticate"] == CHALLENGE


def test_http_authorization_header_gets_a_challenge(tts: Tts) -> None:
    """RFC 6749 §5.2: HTTP authentication is refused (invalid_client, 401) with a challenge that names the methods
    the TTS supports, never the scheme the client tried (the TTS supports no HTTP authentication scheme)."""
    form = tts.form(client_assertion=None, client_assertion_type=None)
    response = tts.post(form, auth=("gateway", "secret"))
    assert (response.status_code, response.json()["error"]) == (401, "invalid_client")
    assert response.headers["www-authenticate"] == CHALLENGE


@pytest.mark.parametrize(
    "authorization",
    ["BARE_JWT", "Bearer BARE_JWT", "Basic Z2F0ZXdheTpzZWNyZXQ=", "DPoP BARE_JWT", "X" * 2000],
    ids=["bare JWT", "Bearer", "Basic", "DPoP", "2000 characters"],
)
def test_authorization_value_is_never_echoed(tts: Tts, authorization: str) -> None:
    """issue 10: a bare JWT in Authorization came back in WWW-Authenticate (everything before the first space was
    taken as the scheme). Nothing of the request is echoed into a header or the body."""
    credential = tts.gateway_assertion()
    value = authorization.replace("BARE_JWT", credential)
    response = tts.post(tts.form(), headers={"Authorization": value})
    assert (response.status_code, response.json()["error"]) == (401, "invalid_client")
    assert response.headers["www-authenticate"] == CHALLENGE
    sent = value.split(" ")[-1]
    for header_value in response.headers.values():
        assert sent not in header_value and credential not in header_value
    assert sent not in response.text and credential not in response.text


def test_workload_not_allowed_the_subject_type_is_unauthorized_client(tts: Tts) -> None:
    from .conftest import ORDERS

    k8s = tts.platform.k8s_token()
    response = tts.post(tts.form(client_assertion=k8s, subject_token_type=TOKEN_TYPE_ACCESS_TOKEN))
    assert tts.settings.workloads[1].id == ORDERS
    assert (response.status_code, response.json()["error"]) == (400, "unauthorized_client")


def test_workload_not_allowed_the_audience_is_unauthorized_client(tts: Tts) -> None:
    response = tts.post(tts.form(audience="other.example"))
    assert (response.status_code, response.json()["error"]) == (400, "unauthorized_client")


def test_wrong_grant_type_is_unsupported_grant_type(tts: Tts) -> None:
    response = tts.post(tts.form(grant_type="client_credentials"))
    assert (response.status_code, response.json()["error"]) == (400, "unsupported_grant_type")


def test_missing_grant_type_is_invalid_request(tts: Tts) -> None:
    response = tts.post(tts.form(grant_type=None))
    assert (response.status_code, response.json()["error"]) == (400, "invalid_request")


CLIENT_ERRORS: dict[str, tuple[dict[str, Any], type[TokenServiceError]]] = {
    "invalid_request": ({"subject_token_type": TOKEN_TYPE_REFRESH_TOKEN}, InvalidRequest),
    "invalid_target": ({"audience": "elsewhere.example"}, InvalidTarget),
    "invalid_scope": ({"scope": "trade.stocks admin"}, InvalidScope),
    "unauthorized_client": ({"audience": "other.example"}, UnauthorizedClient),
    "invalid_subject": ({"subject_token_type": TOKEN_TYPE_ID_TOKEN}, InvalidRequest),
}


@pytest.mark.parametrize("change, error", CLIENT_ERRORS.values(), ids=CLIENT_ERRORS.keys())
def test_client_raises_the_core_error_of_each_code(tts: Tts, change: dict[str, Any], error: type[Exception]) -> None:
    subject = tts.platform.access_token()
    params: dict[str, Any] = {
        "subject_token": subject,
        "subject_token_type": TOKEN_TYPE_ACCESS_TOKEN,
        "scope": "trade.stocks",
        **change,
    }
    with tts.client() as client, pytest.raises(error) as caught:
        client.exchange(**params)
    assert type(caught.value) is error
    assert subject not in str(caught.value)


def test_client_raises_invalid_client_without_credential(tts: Tts) -> None:
    with (
        tts.client(credential=lambda: "not.a.jwt") as client,
        pytest.raises(InvalidClient) as caught,
    ):
        client.exchange(
            subject_token=tts.platform.access_token(), subject_token_type=TOKEN_TYPE_ACCESS_TOKEN, scope="trade.stocks"
        )
    assert caught.value.http_status == 401
    assert "not.a.jwt" not in str(caught.value)


def test_unsupported_grant_type_maps_to_its_class(tts: Tts) -> None:
    response = tts.post(tts.form(grant_type="password"))
    from txtoken.errors import oauth_error_class

    assert oauth_error_class(response.json()["error"]) is UnsupportedGrantType
