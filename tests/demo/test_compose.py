"""docker compose runs the same services as the local runner: one topology, and a compose file generated from it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from service_mesh_demo.compose import compose_document, render
from service_mesh_demo.mesh import Mesh
from service_mesh_demo.topology import COMPOSE_BASE_PORT, DEFAULT_BASE_PORT, SERVICES, service_env

from .helpers import free_base_port

COMPOSE_FILE = Path(__file__).resolve().parents[2] / "service_mesh_demo" / "compose.yaml"


def test_committed_compose_file_is_the_generated_one() -> None:
    assert COMPOSE_FILE.read_text(encoding="utf-8") == render(), "run: python -m service_mesh_demo.compose"
    assert yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8")) == compose_document()


def test_compose_and_local_runner_describe_the_same_services(tmp_path: Path) -> None:
    services = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))["services"]
    mesh = Mesh(tmp_path, base_port=DEFAULT_BASE_PORT)
    assert list(services) == [service.name for service in SERVICES] + ["scenario"]
    assert COMPOSE_BASE_PORT == DEFAULT_BASE_PORT
    for service in SERVICES:
        entry = services[service.name]
        local_env = service_env(service, base_port=DEFAULT_BASE_PORT, data_dir=tmp_path)
        # the same command: compose's `python` is the image's interpreter, locally the running one
        assert entry["command"] == ["python", "-m", "service_mesh_demo", service.name]
        assert mesh.env(service)["DEMO_SERVICE"] == service.name
        # the same variables; values differ only where hosts and paths do
        assert set(entry["environment"]) == set(local_env)
        assert entry["environment"]["DEMO_PORT"] == local_env["DEMO_PORT"] == str(DEFAULT_BASE_PORT + service.offset)
        assert entry["expose"] == [local_env["DEMO_PORT"]]
        for name in service.needs:
            local_url, compose_url = (
                local_env[f"DEMO_{name.upper()}_URL"],
                entry["environment"][f"DEMO_{name.upper()}_URL"],
            )
            assert compose_url == local_url.replace("127.0.0.1", name)
        if service.credential == "file":
            assert f"{service.name}-token:/var/run/secrets/tokens:ro" in entry["volumes"]
            assert entry["environment"]["DEMO_CREDENTIAL_FILE"] == "/var/run/secrets/tokens/token"
    # what the docs' curl commands need, on the host's loopback, at the local runner's ports by default
    assert {name: entry["ports"] for name, entry in services.items() if "ports" in entry} == {
        "idp": ["127.0.0.1:${TXTOKEN_DEMO_IDP_PORT:-8701}:8701"],
        "gateway": ["127.0.0.1:${TXTOKEN_DEMO_GATEWAY_PORT:-8700}:8700"],
    }


def test_every_service_has_the_runners_healthcheck_and_waits_for_what_it_needs() -> None:
    services = compose_document()["services"]
    order = [service.name for service in SERVICES]
    for service in SERVICES:
        entry = services[service.name]
        assert entry["healthcheck"]["test"] == ["CMD", "python", "-m", "service_mesh_demo.health"]
        waits_for = entry.get("depends_on", {})
        assert all(condition == {"condition": "service_healthy"} for condition in waits_for.values())
        assert service.name == "platform" or "platform" in waits_for  # it writes every credential
        started_before = {name for name in service.needs if order.index(name) < order.index(service.name)}
        assert set(waits_for) - {"platform"} == started_before - {"platform"}
    scenario = services["scenario"]
    assert scenario["profiles"] == ["scenario"]  # `up` leaves it out; `run --rm scenario` runs it
    assert set(scenario["depends_on"]) == {service.name for service in SERVICES}


def test_health_check_is_the_one_the_local_runner_waits_on(tmp_path: Path) -> None:
    """`python -m service_mesh_demo.health` fails while nothing serves, as compose's healthcheck sees it."""
    env = {**os.environ, "DEMO_SERVICE": "gateway", "DEMO_PORT": str(free_base_port())}
    result = subprocess.run(
        [sys.executable, "-m", "service_mesh_demo.health"], env=env, capture_output=True, timeout=60, check=False
    )
    assert result.returncode == 1


def test_every_projected_token_volume_is_written_by_the_platform() -> None:
    services = compose_document()["services"]
    platform_mounts = {mount.split(":")[0] for mount in services["platform"]["volumes"]}
    for name, entry in services.items():
        for mount in entry.get("volumes", []):
            volume = mount.split(":")[0]
            if volume.endswith(("-token", "-env")):
                assert volume in platform_mounts, f"{name} mounts {volume}, which nothing writes"


def test_compose_file_is_valid_for_a_compose_parser() -> None:
    parser = shutil.which("docker-compose")
    if parser is None:
        pytest.skip("no compose parser here: `apt-get install docker-compose` (.ci/run installs it)")
    result = subprocess.run(
        [parser, "-f", str(COMPOSE_FILE), "config", "-q"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr


def test_compose_generator_runs_as_a_module() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "service_mesh_demo.compose"], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout == render()
