"""Workload Identifiers (identifier draft §4) and caller patterns of route policies."""

from __future__ import annotations

import pytest

from txtoken.errors import ConfigurationError
from txtoken.wimse import CallerPattern, check_workload_identifier


@pytest.mark.parametrize(
    "value",
    ["spiffe://shop.example/ns/shop/sa/inventory", "wimse://shop.example/w", "spiffe://shop.example/a/b:c@d%20e"],
)
def test_valid_identifiers_are_returned_unchanged(value: str) -> None:
    assert check_workload_identifier(value, "shop.example") == value


def test_an_identifier_of_2048_characters_is_supported_identifier_4() -> None:
    value = "spiffe://shop.example/" + "a" * (2048 - len("spiffe://shop.example/"))
    assert check_workload_identifier(value, "shop.example") == value


def test_an_exact_pattern_compares_the_complete_uri() -> None:
    pattern = CallerPattern("spiffe://shop.example/ns/shop/sa/inventory")
    assert pattern.matches("spiffe://shop.example/ns/shop/sa/inventory")
    assert not pattern.matches("spiffe://shop.example/ns/shop/sa/inventory/x")
    assert not pattern.matches("spiffe://shop.example/ns/shop/sa/inventor")
    assert not pattern.matches("wimse://shop.example/ns/shop/sa/inventory")


def test_a_prefix_pattern_matches_below_its_path_only() -> None:
    pattern = CallerPattern("spiffe://shop.example/ns/shop/*")
    assert pattern.matches("spiffe://shop.example/ns/shop/sa/inventory")
    assert not pattern.matches("spiffe://shop.example/ns/shop/")
    assert not pattern.matches("spiffe://shop.example/ns/shopping/sa/x")
    assert not pattern.matches("spiffe://other.example/ns/shop/sa/x")


@pytest.mark.parametrize(
    "pattern", ["*", "spiffe://shop.example/*/sa/x", "spiffe://shop.example/ns*", "inventory", "spiffe://a.example"]
)
def test_bad_patterns_are_configuration_errors(pattern: str) -> None:
    with pytest.raises(ConfigurationError):
        CallerPattern(pattern)
