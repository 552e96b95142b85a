"""OpenTelemetry at the real TTS: token-endpoint spans (requester, subject token type, outcome), issuance metrics by
code, replacement calls through ``augment``; never a token in an attribute."""

from __future__ import annotations

import pytest
from opentelemetry.trace import StatusCode

from txtoken import use_transaction
from txtoken.augment import augment
from txtoken.errors import TokenServiceError

from ..conftest import Captured, assert_no_secret_in
from .conftest import GATEWAY, ORDERS, Tts


def test_token_endpoint_spans_and_issuance_metrics(tts: Tts, otel_capture: Captured) -> None:
    form = tts.form(scope="trade.read")
    issued = tts.post(form).json()["access_token"]
    refused = tts.post(tts.form(scope="trade.admin"))
    unauthenticated = tts.post(tts.form(client_assertion=tts.gateway_assertion(aud="elsewhere")))
    assert (refused.status_code, unauthenticated.status_code) == (400, 401)

    ok, scope_refused, client_refused = otel_capture.spans("txtoken.issue")
    assert ok.attributes["txtoken.requester"] == GATEWAY
    assert ok.attributes["txtoken.subject_token_type"] == "access_token"
    assert ok.attributes["txtoken.replacement"] is False
    assert ok.status.status_code == StatusCode.UNSET
    assert scope_refused.attributes["error.type"] == "invalid_scope"
    assert scope_refused.status.status_code == StatusCode.ERROR
    assert client_refused.attributes["error.type"] == "invalid_client"
    assert "txtoken.requester" not in client_refused.attributes  # not authenticated: nobody to name
    secrets = [issued, form["subject_token"], form["client_assertion"]]
    assert_no_secret_in(otel_capture.spans(), secrets)

    counts = otel_capture.counts("txtoken.issuances")
    assert counts[(("txtoken.outcome", "success"), ("txtoken.subject_token_type", "access_token"))] == 1
    refusal = (("error.type", "invalid_scope"), ("txtoken.outcome", "failure"))
    assert counts[(*refusal, ("txtoken.subject_token_type", "access_token"))] == 1
    assert counts[(("error.type", "invalid_client"), ("txtoken.outcome", "failure"))] == 1


def test_replacement_call_span_wraps_the_request_and_the_verification(tts: Tts, otel_capture: Captured) -> None:
    token = tts.issue()
    verifier = tts.verifier()
    client = tts.client(credential=tts.platform.k8s_token)
    with use_transaction(verifier.verify(token)), augment(client, verifier, request_details={"order_id": "o-1"}) as new:
        assert new.tctx["order_id"] == "o-1"
    client.close()
    (replace,) = otel_capture.spans("txtoken.replace")
    assert replace.status.status_code == StatusCode.UNSET
    children = [s for s in otel_capture.spans() if s.parent is not None and s.parent.span_id == replace.context.span_id]
    assert "txtoken.verify" in {s.name for s in children}
    issue = otel_capture.spans("txtoken.issue")[-1]
    assert (issue.attributes["txtoken.requester"], issue.attributes["txtoken.replacement"]) == (ORDERS, True)
    assert issue.attributes["txtoken.subject_token_type"] == "txn_token"
    assert otel_capture.counts("txtoken.replacements") == {(("txtoken.outcome", "success"),): 1}
    assert_no_secret_in(otel_capture.spans(), [token, new.token])


def test_refused_replacement_is_a_failed_replacement_span(tts: Tts, otel_capture: Captured) -> None:
    token = tts.issue(scope="trade.read")
    verifier = tts.verifier()
    client = tts.client(credential=tts.platform.k8s_token)
    with use_transaction(verifier.verify(token)), pytest.raises(TokenServiceError) as refused:  # noqa: SIM117
        with augment(client, verifier, scope="trade.read trade.admin"):
            pass
    client.close()
    assert refused.value.code == "invalid_scope"
    (replace,) = otel_capture.spans("txtoken.replace")
    assert replace.attributes["error.type"] == "invalid_scope"
    assert otel_capture.counts("txtoken.replacements") == {
        (("error.type", "invalid_scope"), ("txtoken.outcome", "failure")): 1
    }
    assert_no_secret_in(otel_capture.spans(), [token])
