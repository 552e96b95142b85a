"""``carried_token``: exactly one Txn-Token among the values of its carrier (§12.1)."""

from __future__ import annotations

import pytest

from txtoken import carried_token
from txtoken.errors import TokenDuplicated, TokenMissing

from .conftest import raises_exactly

TOKEN = "eyJhbGciOiJFUzI1NiJ9.eyJ0eG4iOiJ0In0.c2ln"


@pytest.mark.parametrize("values", [[TOKEN], [f" {TOKEN}\t"], [f"\t{TOKEN} "]])
def test_one_token_is_read(values: list[str]) -> None:
    assert carried_token(values, carrier="Txn-Token header") == TOKEN


@pytest.mark.parametrize(
    "values",
    [[f"{TOKEN}, {TOKEN}"], [f"{TOKEN},{TOKEN}x"], [f"{TOKEN},"], [f",{TOKEN}"], [TOKEN, TOKEN], ["", TOKEN]],
)
def test_more_than_one_value_is_duplicated(values: list[str]) -> None:
    """issue 10: two comma-joined tokens (fetch/undici's way of sending two values) were token_malformed."""
    error = raises_exactly(TokenDuplicated, "token_duplicated", lambda: carried_token(values, carrier="c"))
    assert TOKEN not in error.message


@pytest.mark.parametrize("values", [[], [""], [" "], ["", "\t"], [","], [" , "]])
def test_no_value_or_only_empty_ones_is_missing(values: list[str]) -> None:
    """issue 10: an empty Txn-Token field was token_malformed, not token_missing."""
    raises_exactly(TokenMissing, "token_missing", lambda: carried_token(values, carrier="c"))
