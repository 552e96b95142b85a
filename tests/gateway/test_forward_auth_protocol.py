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

from ..conftest import RunningServer
from ..service.conftest import IDENTIFIER, TRUST_DOMAIN
from .test_forward_auth_nginx import HOP_POLICY, Minter


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
