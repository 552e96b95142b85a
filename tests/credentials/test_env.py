"""Environment-variable credentials: the production warning, missing and expired values."""

from __future__ import annotations

import logging
import time

import pytest

from txtoken.credentials import EnvCredentialSource
from txtoken.errors import ConfigurationError, CredentialUnavailable
from txtoken.keys import SigningKey

from .fakes import Clock, make_jwt


def test_reads_the_variable(issuer_key: SigningKey, monkeypatch: pytest.MonkeyPatch) -> None:
    token = make_jwt(issuer_key, {"sub": "orders", "aud": "tts"}, lifetime=600)
    monkeypatch.setenv("ORDERS_CREDENTIAL", token)
    credential = EnvCredentialSource("ORDERS_CREDENTIAL", development=True).get()
    assert credential.value == token
    assert credential.expires_at is not None and credential.expires_at > time.time() + 500


@pytest.mark.anyio
async def test_warns_once_outside_development_naming_the_variable_not_the_value(
    issuer_key: SigningKey, caplog: pytest.LogCaptureFixture
) -> None:
    token = make_jwt(issuer_key, {"sub": "orders"})
    source = EnvCredentialSource("ORDERS_CREDENTIAL", environ={"ORDERS_CREDENTIAL": token})
    with caplog.at_level(logging.WARNING, logger="txtoken.credentials"):
        source.get()
        await source.aget()
        source.get()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "ORDERS_CREDENTIAL" in warnings[0].getMessage()
    assert "discouraged in production" in warnings[0].getMessage()
    assert token not in caplog.text


def test_no_warning_in_development_mode(issuer_key: SigningKey, caplog: pytest.LogCaptureFixture) -> None:
    environ = {"ORDERS_CREDENTIAL": make_jwt(issuer_key, {"sub": "orders"})}
    with caplog.at_level(logging.DEBUG, logger="txtoken.credentials"):
        EnvCredentialSource("ORDERS_CREDENTIAL", development=True, environ=environ).get()
    assert caplog.records == []


def test_missing_variable_is_named() -> None:
    with pytest.raises(CredentialUnavailable, match="ORDERS_CREDENTIAL is not set"):
        EnvCredentialSource("ORDERS_CREDENTIAL", development=True, environ={}).get()


def test_expired_value_is_not_served(issuer_key: SigningKey, clock: Clock) -> None:
    token = make_jwt(issuer_key, {"sub": "orders"}, lifetime=300, now=clock())
    source = EnvCredentialSource(
        "ORDERS_CREDENTIAL", development=True, environ={"ORDERS_CREDENTIAL": token}, clock=clock
    )
    assert source.get().value == token
    clock.advance(301)
    with pytest.raises(CredentialUnavailable, match="ORDERS_CREDENTIAL holds a JWT that expired") as info:
        source.get()
    assert token not in str(info.value)


def test_opaque_value_without_expiry() -> None:
    source = EnvCredentialSource("API_KEY", development=True, jwt=False, environ={"API_KEY": " s3cr3t-value\n"})
    credential = source.get()
    assert (credential.value, credential.expires_at) == ("s3cr3t-value", None)
    assert "s3cr3t-value" not in repr(source) + repr(credential)
    with pytest.raises(CredentialUnavailable, match="does not hold a JWT") as info:
        EnvCredentialSource("API_KEY", development=True, environ={"API_KEY": "s3cr3t-value"}).get()
    assert "s3cr3t-value" not in str(info.value)


def test_empty_variable_name_is_refused() -> None:
    with pytest.raises(ConfigurationError):
        EnvCredentialSource("")
