"""The one nesting limit for JSON in Txn-Tokens, at the token endpoint (a real TTS over HTTP)."""

from __future__ import annotations

import json

import pytest

from txtoken.claims import MAX_JSON_DEPTH

from .conftest import Tts


def nested_json(member: str, depth: int, leaf: str = '"x"') -> str:
    """JSON text ``{member: …}`` nesting objects and arrays ``depth`` levels deep (the outer object is one); built as
    text so that any depth can be sent."""
    opening = ['{"k":' if level % 2 else "[" for level in range(depth - 1)]
    closing = ["}" if level % 2 else "]" for level in reversed(range(depth - 1))]
    return f'{{"{member}":{"".join(opening)}{leaf}{"".join(closing)}}}'


def test_request_details_at_the_limit_is_issued_and_verifies(tts: Tts) -> None:
    details = nested_json("note", MAX_JSON_DEPTH, leaf=json.dumps('quote " backslash \\'))
    verified = tts.verifier().verify(tts.issue(request_details=details))
    assert dict(verified.tctx) == json.loads(details)


@pytest.mark.parametrize("name", ["request_details", "request_context"])
@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 210, 250, 400, 2000])
def test_nesting_deeper_than_the_limit_is_invalid_request(tts: Tts, name: str, depth: int) -> None:
    """issue 10: request_details nested about 400 deep answered 500 server_error (pydantic's serialization depth);
    200-250 deep it answered 200 with a token the TTS's own verifier refuses as token_malformed."""
    text = nested_json("note" if name == "request_details" else "authn", depth)
    response = tts.post(tts.form(**{name: text}))
    assert (response.status_code, response.json()["error"]) == (400, "invalid_request")


def test_the_refusal_names_the_limit(tts: Tts) -> None:
    response = tts.post(tts.form(request_details=nested_json("note", MAX_JSON_DEPTH + 1)))
    assert response.json()["error_description"] == f"request_details nests deeper than {MAX_JSON_DEPTH} levels"
