"""The audit log (one structured record per issuance and per refusal) and §15.2: no token in any captured log line."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from hypothesis import given, settings, strategies as st

from txtoken.claims import TOKEN_TYPE_ACCESS_TOKEN, TOKEN_TYPE_UNSIGNED_JSON
from txtoken.errors import TokenServiceError, TxTokenError
from txtoken.service import TokenService, create_app
from txtoken.service.audit import AUDIT_LOGGER, AuditLog, AuditRecord

from ..conftest import RunningServer
from .conftest import GATEWAY, ORDERS, TRUST_DOMAIN, Tts, tamper

_FIELDS = ("outcome", "error", "status", "reason", "txn", "req_wl", "aud", "subject_token_type", "scope")


def _audit_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    """The audit records' ``extra=`` fields (a field a record lacks is absent)."""
    return [
        {name: getattr(r, name) for name in (*_FIELDS, "replacement", "token_sha256") if hasattr(r, name)}
        for r in caplog.records
        if r.name == AUDIT_LOGGER
    ]


def test_one_audit_line_per_issuance_and_refusal(tts: Tts, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=AUDIT_LOGGER)
    token = tts.issue(scope="trade.read")
    tts.post(tts.form(scope="trade.admin"))
    issued, refused = _audit_lines(caplog)
    assert issued["outcome"] == "issued"
    assert issued["token_sha256"] == hashlib.sha256(token.encode()).hexdigest()
    assert issued["txn"] == tts.verifier().verify(token).txn
    assert (issued["req_wl"], issued["aud"], issued["scope"]) == (GATEWAY, TRUST_DOMAIN, "trade.read")
    assert issued["subject_token_type"] == TOKEN_TYPE_ACCESS_TOKEN
    assert refused["outcome"] == "refused"
    assert (refused["error"], refused["status"]) == ("invalid_scope", 400)
    assert refused["reason"]
    assert refused["txn"] is None
    assert "token_sha256" not in refused


def test_audit_fields_are_record_attributes_not_json_in_the_message(tts: Tts, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=AUDIT_LOGGER)
    tts.issue(scope="trade.read")
    (record,) = (r for r in caplog.records if r.name == AUDIT_LOGGER)
    assert record.__dict__["outcome"] == "issued"
    message = record.getMessage()
    assert message.startswith("Txn-Token issued: ")
    assert f"req_wl={json.dumps(GATEWAY)}" in message
    with pytest.raises(ValueError):
        json.loads(message)


def test_replacement_is_audited_as_such(tts: Tts, caplog: pytest.LogCaptureFixture) -> None:
    token = tts.issue()
    caplog.set_level(logging.INFO, logger=AUDIT_LOGGER)
    tts.post(tts.replace_form(token, tts.platform.k8s_token()))
    (line,) = _audit_lines(caplog)
    assert line["replacement"] is True
    assert line["req_wl"] == ORDERS
    assert line["txn"] == tts.verifier().verify(token).txn


def test_refused_replacement_names_the_transaction(tts: Tts, caplog: pytest.LogCaptureFixture) -> None:
    token = tts.issue(scope="trade.read")
    caplog.set_level(logging.INFO, logger=AUDIT_LOGGER)
    response = tts.post(tts.replace_form(token, tts.platform.k8s_token(), scope="trade.read trade.admin"))
    assert response.json()["error"] == "invalid_scope"
    (line,) = _audit_lines(caplog)
    assert (line["outcome"], line["replacement"]) == ("refused", True)
    assert line["txn"] == tts.verifier().verify(token).txn


def test_no_token_in_any_log_line(tts: Tts, caplog: pytest.LogCaptureFixture) -> None:
    """§15.2: complete Txn-Tokens MUST NOT be logged; nor any subject token, assertion or secret."""
    caplog.set_level(logging.DEBUG)
    secrets: list[str] = []

    def post(form: dict[str, str], **kwargs: Any) -> None:
        secrets.extend(v for k, v in form.items() if k in ("subject_token", "client_assertion"))
        response = tts.post(form, **kwargs)
        if response.status_code == 200:
            secrets.append(response.json()["access_token"])

    post(tts.form())
    post(tts.form(subject_token=tamper(tts.platform.access_token(), sub="mallory")))
    post(tts.form(subject_token=tts.platform.access_token(exp_in=-1)))
    post(tts.form(client_assertion=tts.gateway_assertion(aud="wrong")))
    post(
        tts.form(subject_token='{"sub": "pii-user-7"}', subject_token_type=TOKEN_TYPE_UNSIGNED_JSON, scope="trade.read")
    )
    post(tts.form(subject_token="opaque-secret-value-123"))
    issued = tts.issue()
    secrets.append(issued)
    post(tts.replace_form(issued, tts.platform.k8s_token()))
    post(tts.replace_form(issued, tts.platform.k8s_token(), scope="admin"))
    post(tts.form(client_assertion=issued))  # a Txn-Token as a credential
    with tts.client(credential=lambda: "bogus.assertion.value") as client:
        with pytest.raises(TxTokenError) as caught:
            client.exchange(subject_token=issued, subject_token_type=TOKEN_TYPE_ACCESS_TOKEN, scope="trade.read")
        secrets.append("bogus.assertion.value")
    assert issued not in str(caught.value)

    text = "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    assert any(r.name == AUDIT_LOGGER for r in caplog.records)
    for secret in secrets:
        assert secret not in text
        for part in secret.split("."):
            if len(part) > 20:
                assert part not in text
    assert "pii-user-7" not in text


class _LeakyAuditLog(AuditLog):
    """A bug to provoke (a test double of a defect, not of a component): an audit sink that fails with the request's
    credentials and the issued token in its exception message."""

    def __init__(self, leaked: list[str]) -> None:
        super().__init__()
        self.leaked = leaked

    def issued(self, record: AuditRecord, token: str) -> None:
        raise RuntimeError(f"audit sink failed on {token} for {' and '.join(self.leaked)}")

    def refused(self, record: AuditRecord, exc: TokenServiceError) -> None:
        raise RuntimeError(f"audit sink failed for {' and '.join(self.leaked)}")


def _failure_log(tts: Tts, serve: Callable[..., RunningServer], caplog: pytest.LogCaptureFixture, **post: Any) -> str:
    leaked: list[str] = []
    service = TokenService.build(tts.settings, audit=_LeakyAuditLog(leaked))
    url = serve(create_app(service), proxy_headers=False).url
    form = post.pop("form")
    leaked += [form["subject_token"], form["client_assertion"], *post.get("headers", {}).values()]
    caplog.clear()
    caplog.set_level(logging.ERROR, logger="txtoken.service")
    response = httpx.post(f"{url}/token", data=form, **post)
    assert (response.status_code, response.json()) == (500, {"error": "server_error"})
    (record,) = [r for r in caplog.records if r.name == "txtoken.service"]
    text = record.getMessage()
    for secret in leaked:
        assert secret not in text
        assert all(part not in text for part in secret.split(".") if len(part) > 12)
    assert "eyJ" not in text
    return text


def test_unexpected_error_is_logged_with_its_traceback_without_secrets(
    tts: Tts, serve: Callable[..., RunningServer], caplog: pytest.LogCaptureFixture
) -> None:
    """issue 10: an unexpected error in the token endpoint was logged with its class name only; it is logged with its
    traceback, scrubbed of the subject token, the client assertion and the issued Txn-Token."""
    text = _failure_log(tts, serve, caplog, form=tts.form())
    assert text.startswith("token endpoint failed: Traceback (most recent call last):")
    assert "in issued" in text and "RuntimeError: audit sink failed on [redacted] for [redacted]" in text


def test_traceback_of_a_refusal_path_keeps_authorization_and_unsigned_subjects_out(
    tts: Tts, serve: Callable[..., RunningServer], caplog: pytest.LogCaptureFixture
) -> None:
    """The scrub covers the Authorization value (a bare JWT, as in the issue's probe) and a subject token that is no
    JWT at all (unsigned JSON, an opaque access token)."""
    form = tts.form(subject_token='{"sub": "pii-user-8"}', subject_token_type=TOKEN_TYPE_UNSIGNED_JSON)
    text = _failure_log(tts, serve, caplog, form=form, headers={"Authorization": tts.gateway_assertion()})
    assert "in refused" in text and "pii-user-8" not in text
    text = _failure_log(tts, serve, caplog, form=tts.form(subject_token="opaque-access-token-value-42"))
    assert "opaque-access-token-value-42" not in text and "[redacted]" in text


def test_refusal_before_the_exchange_is_logged_with_method_path_status_code(
    tts: Tts, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="txtoken.service")
    form = tts.form()
    response = httpx.post(tts.token_endpoint, json=form)  # not a form
    assert response.status_code == 400
    (record,) = (r for r in caplog.records if r.name == "txtoken.service")
    fields = {name: record.__dict__[name] for name in ("method", "path", "status", "code")}
    assert fields == {"method": "POST", "path": "/token", "status": 400, "code": "invalid_request"}
    assert form["subject_token"] not in record.getMessage()
    assert not _audit_lines(caplog)


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@settings(max_examples=300, deadline=None)
@given(st.text() | st.booleans() | st.integers())
def test_message_values_are_written_as_json_dumps_writes_them(value: str | bool | int) -> None:
    """The message's ``name=value`` pairs: each value exactly as ``json.dumps`` writes it (quotes, escapes)."""
    logger = logging.getLogger("tests.audit.values")
    handler = _Collect()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        AuditLog(logger).refused(AuditRecord(scope=value), TokenServiceError("refused"))  # type: ignore[arg-type]
    finally:
        logger.removeHandler(handler)
    assert f" scope={json.dumps(value)} " in handler.records[0].getMessage() + " "
