"""The TTS verifies the JWTs it receives like the core verifier: a JWT without ``kid`` is accepted when the issuer's
keys hold exactly one key for its ``alg`` (RFC 7515 makes ``kid`` optional; many JOSE stacks leave it out)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt

from txtoken.keys import SigningKey

from .conftest import API_AUDIENCE, GATEWAY, IDENTIFIER, ISSUERS, Tts


def _without_kid(key: SigningKey, claims: dict[str, Any], typ: str) -> str:
    token = jwt.encode(claims, key.private_key, algorithm=key.alg, headers={"typ": typ})
    assert "kid" not in jwt.get_unverified_header(token)
    return token


def test_subject_token_and_client_assertion_without_kid_are_accepted(tts: Tts) -> None:
    now = int(time.time())
    access_token = _without_kid(
        tts.platform.keys["idp"],
        {
            "iss": ISSUERS["idp"],
            "sub": "alice",
            "aud": API_AUDIENCE,
            "client_id": "web-app",
            "scope": "trade.stocks",
            "iat": now,
            "exp": now + 300,
            "jti": str(uuid.uuid4()),
        },
        "at+jwt",
    )
    assertion = _without_kid(
        tts.keys.gateway,
        {"iss": GATEWAY, "sub": GATEWAY, "aud": IDENTIFIER, "iat": now, "exp": now + 60, "jti": str(uuid.uuid4())},
        "JWT",
    )
    verified = tts.verifier().verify(tts.issue(subject_token=access_token, client_assertion=assertion))
    with_kid = tts.verifier().verify(tts.issue(subject_token=tts.platform.access_token(sub="alice")))
    assert (verified.sub, verified.req_wl) == (with_kid.sub, GATEWAY)
