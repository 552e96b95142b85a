"""The token endpoint's form parser gives what ``parse_qsl`` (strict, blank values kept, strict UTF-8) gives."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

import pytest
from hypothesis import given, settings, strategies as st

from txtoken.claims import GRANT_TYPE_TOKEN_EXCHANGE, TOKEN_TYPE_ACCESS_TOKEN
from txtoken.service.form import form_pairs

MAX_FIELDS = 8


def _reference(body: bytes) -> list[tuple[str, str]] | None:
    try:
        return parse_qsl(
            body.decode("utf-8"),
            keep_blank_values=True,
            strict_parsing=True,
            max_num_fields=MAX_FIELDS,
            errors="strict",
        )
    except ValueError:
        return None


def _ours(body: bytes) -> list[tuple[str, str]] | None:
    try:
        return form_pairs(body, max_fields=MAX_FIELDS)
    except ValueError:
        return None


# Bodies made of the characters that matter to the syntax, percent escapes (valid, invalid, of non-UTF-8 bytes, of
# the protocol's URNs, in either case), raw non-ASCII text and invalid UTF-8.
pieces = st.sampled_from(
    ["&", "=", "+", "%", "%2", "%3A", "%3a", "%41", "%zz", "%C3", "%A9", "%C3%A9", "%FF", "%E2%82", "%AC", "é", "a"]
) | st.text(alphabet="ab=&+%:", max_size=4)
urns = st.sampled_from([GRANT_TYPE_TOKEN_EXCHANGE, TOKEN_TYPE_ACCESS_TOKEN])
texts = st.lists(pieces, max_size=12).map("".join)
bodies = (
    texts.map(str.encode)
    | st.binary(max_size=12)
    | st.tuples(texts, urns, texts).map(lambda parts: (parts[0] + urlencode({"t": parts[1]}) + parts[2]).encode())
)


@settings(max_examples=1500, deadline=None)
@given(bodies)
def test_form_pairs_agrees_with_parse_qsl(body: bytes) -> None:
    assert _ours(body) == _reference(body)


@pytest.mark.parametrize(
    "body",
    [b"", b"a=1&&b=2", b"a", b"a=1&b", b"&".join([b"a=1"] * (MAX_FIELDS + 1)), b"a=%FF", b"\xff=1", b"a=%C3%A9+b"],
)
def test_edge_cases_agree(body: bytes) -> None:
    assert _ours(body) == _reference(body)


def test_urns_decode_as_parse_qsl_decodes_them() -> None:
    body = urlencode({"grant_type": GRANT_TYPE_TOKEN_EXCHANGE, "x": "a b"}).encode()
    assert form_pairs(body, max_fields=MAX_FIELDS) == [("grant_type", GRANT_TYPE_TOKEN_EXCHANGE), ("x", "a b")]
