"""Without nginx (or node) on the PATH the local runner leaves the shipping hop out, says why, and orders is started
without its address; the README's demo command keeps needing only Python and make."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from service_mesh_demo import mesh as mesh_module
from service_mesh_demo.mesh import Mesh
from service_mesh_demo.topology import BY_NAME, DEFAULT_BASE_PORT


def test_shipping_is_left_out_without_nginx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mesh_module, "_installed", lambda program: program != "nginx")
    mesh = Mesh(tmp_path, base_port=DEFAULT_BASE_PORT)
    assert mesh.left_out == {"shipping": "nginx not on the PATH"}
    assert "shipping" not in [service.name for service in mesh.services]
    assert "DEMO_SHIPPING_URL" not in mesh.env(BY_NAME["orders"])


def test_shipping_runs_where_nginx_and_node_are(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mesh_module, "_installed", lambda program: True)
    mesh = Mesh(tmp_path, base_port=DEFAULT_BASE_PORT)
    assert mesh.left_out == {}
    assert mesh.env(BY_NAME["orders"])["DEMO_SHIPPING_URL"].startswith("http://127.0.0.1:")
    assert os.environ.get("DEMO_SHIPPING_URL") is None
