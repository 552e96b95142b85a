"""The error tree: stable distinct codes, HTTP and gRPC statuses, OAuth names, and messages that never hold a token."""

from __future__ import annotations

import http
import json
import re
import socket

import grpc
import pytest

from txtoken import SigningKey, StaticKeySource, TxnTokenVerifier, errors
from txtoken.errors import (
    AccessDenied,
    KeysUnavailable,
    TokenDuplicated,
    TokenMissing,
    TokenRejected,
    TokenReplayed,
    TokenServiceError,
    TxTokenError,
    UnknownKey,
    oauth_error_class,
)
from txtoken.keysource import RemoteJwksKeySource

from .conftest import NOW, FakeClock, b64url, claims, header, sign, token, verifier

ERROR_CLASSES: list[type[TxTokenError]] = [
    cls for name in errors.__all__ if isinstance(cls := getattr(errors, name), type) and issubclass(cls, TxTokenError)
]
#: RFC 6749 §4.1.2.1 / §5.2, RFC 8693 §2.2.2.
OAUTH_ERRORS = {
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_scope",
    "invalid_target",
    "access_denied",
    "server_error",
    "temporarily_unavailable",
}


def test_every_error_class_has_a_distinct_stable_code() -> None:
    assert len(ERROR_CLASSES) >= 25
    codes = [cls.code for cls in ERROR_CLASSES]
    assert len(codes) == len(set(codes)), sorted(c for c in codes if codes.count(c) > 1)
    for code in codes:
        assert re.fullmatch(r"[a-z][a-z0-9]*(_[a-z0-9]+)*", code), code


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda cls: cls.__name__)
def test_every_error_class_has_http_grpc_and_oauth_statuses(cls: type[TxTokenError]) -> None:
    assert 400 <= http.HTTPStatus(cls.http_status).value < 600
    assert cls.grpc_status in grpc.StatusCode.__members__
    assert grpc.StatusCode[cls.grpc_status] is not grpc.StatusCode.OK
    assert cls.oauth_error is None or cls.oauth_error in OAUTH_ERRORS
    error = cls("something happened")
    assert str(error) == f"{cls.code}: something happened"
    assert str(cls()).startswith(f"{cls.code}: ")  # a default message


def test_statuses_by_family() -> None:
    for cls in ERROR_CLASSES:
        if issubclass(cls, TokenRejected):
            assert (cls.http_status, cls.grpc_status) == (401, "UNAUTHENTICATED"), cls
        if issubclass(cls, AccessDenied):
            assert (cls.http_status, cls.grpc_status) == (403, "PERMISSION_DENIED"), cls
    assert (KeysUnavailable.http_status, KeysUnavailable.grpc_status) == (503, "UNAVAILABLE")


def test_oauth_error_class_maps_token_service_codes() -> None:
    service_errors = [
        cls for cls in ERROR_CLASSES if issubclass(cls, TokenServiceError) and cls is not TokenServiceError
    ]
    assert service_errors
    for cls in service_errors:
        assert oauth_error_class(cls.code) is cls
        assert cls.oauth_error == cls.code
    assert oauth_error_class("something_new") is TokenServiceError


# --- no message holds the token ------------------------------------------------------------------------------------


def _bad_tokens(key: SigningKey, unreachable_jwks: str) -> list[tuple[str, TxnTokenVerifier]]:
    """Bad tokens covering every rejection a verifier can raise, each with the verifier that refuses it."""
    v = verifier(key)
    secretish = "SECRET-CLAIM-VALUE-7d1f"
    stranger = SigningKey.generate()
    jwks = RemoteJwksKeySource(unreachable_jwks, allow_http=True, timeout=1.0)
    unreachable = TxnTokenVerifier(jwks, trust_domain="td.example", clock=FakeClock())
    head, payload, signature = token(key).split(".")
    cases: list[tuple[str, TxnTokenVerifier]] = [
        ("x" * 9000, v),
        (token(key) + "\u00e9", v),
        (f"{head}.{payload}", v),
        (f"{head}.{payload}.{signature[:-4]}AAAA", v),
        (token(key, hdr=header(key, alg="HS256"), alg="ES256"), v),
        (token(key, hdr=header(key, typ="at+jwt")), v),
        (token(stranger), v),
        (sign(header(key), claims(), stranger), v),
        (token(key, payload=claims(aud="other.example")), v),
        (token(key, payload=claims(iat=NOW - 600, exp=NOW - 300)), v),
        (token(key, payload=claims(iat=NOW + 600, exp=NOW + 700)), v),
        (token(key, payload=claims(exp=NOW + 3600)), v),
        (token(key, payload=claims(tctx=secretish)), v),
        (token(key, payload=claims(sub=["user", secretish])), v),
        (token(key, payload=claims(purp=secretish)), v),
        (token(key, hdr=header(key, crit=["exp"])), v),
        (f"{b64url(json.dumps(header(key)).encode())}.{payload}==.{signature}", v),
        (token(key), unreachable),
    ]
    return cases


def test_rejection_messages_never_contain_the_token(es256: SigningKey) -> None:
    raised: set[type[TxTokenError]] = set()
    with socket.socket() as bound_not_listening:  # connections to it are refused
        bound_not_listening.bind(("127.0.0.1", 0))
        cases = _bad_tokens(es256, f"http://127.0.0.1:{bound_not_listening.getsockname()[1]}/jwks")
        for tok, v in cases:
            with pytest.raises(TxTokenError) as info:
                v.verify(tok)
            error = info.value
            raised.add(type(error))
            texts = [str(error), repr(error), error.message, *map(str, error.args)]
            parts = [p for p in tok.split(".") if len(p) > 16]
            for text in texts:
                assert tok not in text
                assert "SECRET-CLAIM-VALUE" not in text  # nor claim values
                for part in parts:
                    assert part not in text, (type(error).__name__, text)
    # Every rejection a verifier raises is covered (TokenMissing / TokenDuplicated belong to the integrations,
    # TokenReplayed to forward-auth's single-use routes).
    not_from_verify = {TokenRejected, TokenMissing, TokenDuplicated, TokenReplayed}
    verify_errors = {cls for cls in ERROR_CLASSES if issubclass(cls, TokenRejected)} - not_from_verify
    assert raised == verify_errors | {KeysUnavailable}


def test_unknown_kid_message_does_not_echo_the_kid(es256: SigningKey) -> None:
    """The ``kid`` is attacker-chosen and unbounded up to the size cap: it is not reflected into the message."""
    hostile = "A" * 500
    with pytest.raises(UnknownKey) as info:
        verifier(StaticKeySource([es256.verification_key])).verify(token(es256, hdr=header(es256, kid=hostile)))
    assert hostile not in str(info.value)
