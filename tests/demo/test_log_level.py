"""``txtoken demo --log-level``: the level reaches every service process of the mesh (issue 10)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from service_mesh_demo.mesh import Mesh
from service_mesh_demo.runner import _parser
from service_mesh_demo.topology import SERVICES

_PROBE = (
    "import logging; from service_mesh_demo.common import DemoEnv, configure_logging; "
    "configure_logging(DemoEnv.load()); log = logging.getLogger('probe'); "
    "log.debug('line at debug'); log.info('line at info'); log.warning('line at warning')"
)


@pytest.mark.parametrize(
    "level, shown, hidden",
    [("debug", ["debug", "info", "warning"], []), ("warning", ["warning"], ["debug", "info"])],
)
def test_demo_log_level_reaches_each_service(tmp_path: Path, level: str, shown: list[str], hidden: list[str]) -> None:
    """issue 10: ``txtoken demo`` had no ``--log-level``; the runner passes it to each service it starts."""
    args = _parser().parse_args(["--log-level", level])
    mesh = Mesh(tmp_path, base_port=20000, log_level=args.log_level)
    for service in SERVICES[:2]:
        done = subprocess.run(
            [sys.executable, "-c", _PROBE], env=mesh.env(service), capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        for word in shown:
            assert f"{service.name}: {word.upper()} probe: line at {word}" in done.stderr
        for word in hidden:
            assert f"line at {word}" not in done.stderr


def test_demo_refuses_an_unknown_log_level() -> None:
    txtoken = Path(sys.executable).with_name("txtoken")
    done = subprocess.run([str(txtoken), "demo", "--log-level", "loud"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--log-level" in done.stderr
