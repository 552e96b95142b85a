"""Replicas of the TTS from one configuration share the single-use ``jti`` of key-pair client assertions and of WIT
key proofs in Redis (``replay_redis_url``): what one replica accepted, another refuses as a replay. With Redis
stopped, both checks fail closed: 503 ``temporarily_unavailable``, never a 500, nothing of the request echoed."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import RedisServer
from txtoken import KeySet, SigningKey
from txtoken.claims import CLIENT_ASSERTION_TYPE_JWT_BEARER
from txtoken.extras import MissingExtra
from txtoken.replay_redis import RedisReplayStore
from txtoken.service import TokenService, load_settings
from txtoken.wimse.proof import create_key_proof

from .conftest import IDENTIFIER, ORDERS, TRUST_DOMAIN, StartTts, Tts


def _replicas(start_tts: StartTts, tmp_path: Path, redis_url: str) -> tuple[Tts, Tts]:
    """Two TTS replicas of one configuration: the same keys, WIT keys and Redis."""
    KeySet.generate("ES256").save(tmp_path / "wit-keys" / "keys.json")

    def change(data: dict[str, Any]) -> None:
        data["replay_redis_url"] = redis_url
        data["wimse"] = {"trust_domain": TRUST_DOMAIN, "keys_dir": str(tmp_path / "wit-keys")}

    first, second = start_tts(change), start_tts(change)
    assert isinstance(first.service.redis_replay_store, RedisReplayStore)
    return first, second


def _wit_request(tts: Tts, proof: str) -> httpx.Response:
    """``POST /wit`` as orders, authenticated by its Kubernetes token (a platform credential: not single-use)."""
    form = {
        "client_assertion_type": CLIENT_ASSERTION_TYPE_JWT_BEARER,
        "client_assertion": tts.platform.k8s_token(),
        "proof": proof,
    }
    return httpx.post(f"{tts.url}/wit", data=form)


def test_a_key_pair_assertion_accepted_by_one_replica_is_refused_by_the_other(
    start_tts: StartTts, tmp_path: Path, redis_server: RedisServer
) -> None:
    first, second = _replicas(start_tts, tmp_path, redis_server.url)
    assertion = first.gateway_assertion()
    assert first.post(first.form(client_assertion=assertion)).status_code == 200
    refused = second.post(second.form(client_assertion=assertion))
    assert refused.status_code == 401
    assert refused.json() == {
        "error": "invalid_client",
        "error_description": "client_assertion: its jti was already used",
    }
    assert first.post(first.form(client_assertion=assertion)).status_code == 401  # and at the first one again
    assert second.post(second.form()).status_code == 200  # a fresh assertion is accepted there


def test_a_wit_key_proof_accepted_by_one_replica_is_refused_by_the_other(
    start_tts: StartTts, tmp_path: Path, redis_server: RedisServer
) -> None:
    first, second = _replicas(start_tts, tmp_path, redis_server.url)
    proof = create_key_proof(SigningKey.generate("ES256"), audience=IDENTIFIER)
    issued = _wit_request(first, proof)
    assert issued.status_code == 200 and issued.json()["workload"] == ORDERS
    refused = _wit_request(second, proof)
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_request"
    assert refused.json()["error_description"] == "proof: wpt_invalid: the key proof was already used"


def test_with_redis_stopped_single_use_checks_fail_closed_with_503(start_tts: StartTts, tmp_path: Path) -> None:
    redis = RedisServer(str(tmp_path))
    try:
        first, second = _replicas(start_tts, tmp_path, redis.url)
        assert first.post(first.form()).status_code == 200  # Redis up: accepted
    finally:
        redis.stop()
    assertion = second.gateway_assertion()
    proof = create_key_proof(SigningKey.generate("ES256"), audience=IDENTIFIER)
    subject = second.platform.access_token()
    answers = [
        second.post(second.form(client_assertion=assertion, subject_token=subject)),  # the assertion's jti
        _wit_request(second, proof),  # the key proof's jti (the client is a platform credential)
    ]
    for answer in answers:
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"] == "temporarily_unavailable"
        assert answer.headers["cache-control"] == "no-store"
        for secret in (assertion, proof, subject, redis.url, str(redis.port)):
            for part in secret.split("."):
                assert part not in answer.text
    assert answers[0].json()["error_description"] == "the client assertion replay store is unavailable"
    assert answers[1].json()["error_description"] == "the key proof replay store is unavailable"


def test_without_redis_py_the_setting_names_the_missing_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings(
        None, identifier=IDENTIFIER, trust_domains=[TRUST_DOMAIN], replay_redis_url="redis://127.0.0.1:6379/0"
    )
    monkeypatch.setitem(sys.modules, "redis", None)
    with pytest.raises(MissingExtra, match=r"^replay_redis_url .* pip install 'txtoken\[redis\]'$"):
        TokenService.build(settings)
