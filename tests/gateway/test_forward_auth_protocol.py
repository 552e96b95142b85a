"""The forward-auth protocol as Envoy ext_authz (HTTP service) and Traefik ForwardAuth speak it, against the
in-process ForwardAuth app on a real uvicorn server, and the configuration's refusals."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest

from txtoken.cli import main
from txtoken.errors import ConfigurationError
from txtoken.forwardauth import ForwardAuth, load_config
from txtoken.keys import KeySet

from ..conftest import RedisServer, RunningServer
from ..service.conftest import IDENTIFIER, TRUST_DOMAIN
from .test_forward_auth_nginx import HOP_POLICY, ORDERS, SERVICE_URL, WIMSE_POLICY, Minter, Workload


def _hop(tmp_path: Path, **extra: str) -> tuple[RunningServer, Minter]:
    keys = KeySet.generate()
    (tmp_path / "jwks.json").write_text(json.dumps(keys.public_jwks()), encoding="utf-8")
    (tmp_path / "policy.toml").write_text(HOP_POLICY, encoding="utf-8")
    lines = "\n".join(f'{k} = "{v}"' for k, v in extra.items())
    (tmp_path / "fa.toml").write_text(
        f"""
mode = "hop"
trust_domain = "{TRUST_DOMAIN}"
tts_identifier = "{IDENTIFIER}"
tts_jwks_file = "{tmp_path / "jwks.json"}"
{lines}

[hop]
policy = "{tmp_path / "policy.toml"}"
""",
        encoding="utf-8",
    )
    app = ForwardAuth.from_config(load_config(tmp_path / "fa.toml"))
    return RunningServer(app).start(), Minter(keys)


def test_envoy_style_check_uses_the_request_line_below_path_prefix(tmp_path: Path) -> None:
    """Envoy ext_authz HTTP service: the original method and path arrive as the check's own, after path_prefix."""
    server, minter = _hop(tmp_path, path_prefix="/check")
    try:
        token = minter.mint()
        ok = httpx.post(f"{server.url}/check/charges/MSFT?quantity=5", headers={"Txn-Token": token})
        assert ok.status_code == 200
        assert ok.headers["txn-sub"] == "alice"
        assert token not in str(ok.headers) and ok.content == b""
        wrong = httpx.post(f"{server.url}/check/charges/TSLA?quantity=5", headers={"Txn-Token": token})
        assert (wrong.status_code, wrong.json()["error"]) == (403, "binding_mismatch")
        # Traefik: X-Forwarded-Method and X-Forwarded-Uri name the original request, whatever the check's line
        traefik = httpx.get(
            f"{server.url}/",
            headers={"Txn-Token": token, "X-Forwarded-Method": "POST", "X-Forwarded-Uri": "/charges/MSFT?quantity=5"},
        )
        assert traefik.status_code == 200
        duplicated = httpx.post(
            f"{server.url}/check/charges/MSFT?quantity=5", headers=[("Txn-Token", token), ("Txn-Token", token)]
        )
        assert (duplicated.status_code, duplicated.json()["error"]) == (401, "token_duplicated")
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('mode = "hop"\ntrust_domain = "td"\ntts_identifier = "x"\ntts_jwks_file = "j"', "needs a [hop] table"),
        ('mode = "edge"\ntrust_domain = "td"\ntts_identifier = "x"\n[edge]\ntoken_endpoint = "t"', "edge.issuers"),
        ('mode = "sideways"\ntrust_domain = "td"\ntts_identifier = "x"', "mode"),
        ('mode = "hop"\ntrust_domain = "td"\ntts_identifier = "x"\n[hop]\npolicy = "p"', "exactly one of"),
        ('mode = "hop"\ntrust_domain = "td"\ntts_identifier = "x"\nsurprise = 1', "surprise"),
        (
            'mode = "hop"\ntrust_domain = "td"\ntts_identifier = "x"\ntts_jwks_file = "j"\n[hop]\npolicy = "p"\n'
            '[hop.wimse]\nservice_urls = ["https://svc.td"]',
            "hop.wimse: give exactly one of wit_jwks_uri, wit_jwks_file",
        ),
        (
            'mode = "hop"\ntrust_domain = "td"\ntts_identifier = "x"\ntts_jwks_file = "j"\n[hop]\npolicy = "p"\n'
            '[hop.wimse]\nwit_jwks_file = "w"\nservice_urls = ["/charges"]',
            "hop.wimse.service_urls",
        ),
        (
            'mode = "hop"\ntrust_domain = "td"\ntts_identifier = "x"\ntts_jwks_file = "j"\n[hop]\npolicy = "p"\n'
            '[hop.wimse]\nwit_jwks_file = "w"',
            "hop.wimse.service_urls",
        ),
    ],
)
def test_bad_configuration_is_named(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "fa.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigurationError, match=re.escape(problem)):
        load_config(path)


def test_cli_reports_a_bad_configuration(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "fa.toml"
    path.write_text('mode = "hop"\n', encoding="utf-8")
    assert main(["forward-auth", "--config", str(path)]) == 1
    assert "txtoken forward-auth: configuration_error" in capsys.readouterr().err


def _wimse_hop(tmp_path: Path, keys: KeySet, wit_keys: KeySet, redis_url: str, path_prefix: str = "") -> RunningServer:
    (tmp_path / "jwks.json").write_text(json.dumps(keys.public_jwks()), encoding="utf-8")
    (tmp_path / "wit-jwks.json").write_text(json.dumps(wit_keys.public_jwks()), encoding="utf-8")
    (tmp_path / "policy.toml").write_text(WIMSE_POLICY, encoding="utf-8")
    (tmp_path / "fa.toml").write_text(
        f"""
mode = "hop"
trust_domain = "{TRUST_DOMAIN}"
tts_identifier = "{IDENTIFIER}"
tts_jwks_file = "{tmp_path / "jwks.json"}"
path_prefix = "{path_prefix}"

[hop]
policy = "{tmp_path / "policy.toml"}"
replay_redis_url = "{redis_url}"

[hop.wimse]
wit_jwks_file = "{tmp_path / "wit-jwks.json"}"
service_urls = ["{SERVICE_URL}"]
""",
        encoding="utf-8",
    )
    app = ForwardAuth.from_config(load_config(tmp_path / "fa.toml"))
    return RunningServer(app).start()


def test_wimse_replicas_share_the_redis_replay_store(tmp_path: Path, redis_server: RedisServer) -> None:
    """Two forward-auth replicas with ``replay_redis_url``: a WPT accepted by one is a replay at the other; the
    audience is the configured service URL + the path of X-Original-URI (nginx's convention), or of the Envoy-style
    check's request line below ``path_prefix``."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    keys, wit_keys = KeySet.generate(), KeySet.generate("ES256")
    first = _wimse_hop(tmp_path / "a", keys, wit_keys, redis_server.url)
    second = _wimse_hop(tmp_path / "b", keys, wit_keys, redis_server.url, path_prefix="/check")
    try:
        orders, minter = Workload(wit_keys, ORDERS), Minter(keys)
        token = minter.mint()
        proof = orders.headers(token, f"{SERVICE_URL}/charges/MSFT")
        nginx_style = {"X-Forwarded-Method": "POST", "X-Original-URI": "/charges/MSFT?quantity=5"}
        ok = httpx.get(f"{first.url}/", headers=proof | nginx_style)
        assert (ok.status_code, ok.headers["txn-caller"]) == (200, ORDERS)
        replay = httpx.post(f"{second.url}/check/charges/MSFT?quantity=5", headers=proof)
        assert (replay.status_code, replay.headers["txtoken-error"]) == (403, "wpt_replayed")
        fresh = orders.headers(token, f"{SERVICE_URL}/charges/MSFT")
        envoy_style = httpx.post(f"{second.url}/check/charges/MSFT?quantity=5", headers=fresh)
        assert (envoy_style.status_code, envoy_style.headers["txn-caller"]) == (200, ORDERS)
    finally:
        first.stop()
        second.stop()
