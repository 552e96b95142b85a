"""The demo tests' shared mesh (every service a real process on loopback, started once for the package) and report:
what the compose scenario printed goes into the terminal summary of every test run."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from service_mesh_demo.mesh import Mesh
from service_mesh_demo.scenario import StepResult, run_scenario

from .helpers import free_base_port

#: Lines the compose test reports (its scenario's tables and summary line), shown at the end of `make test`.
COMPOSE_REPORT = pytest.StashKey[list[str]]()


@pytest.fixture(scope="package")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    with Mesh(tmp_path_factory.mktemp("mesh"), base_port=free_base_port()) as running:
        yield running


@pytest.fixture(scope="package")
def results(mesh: Mesh) -> dict[str, StepResult]:
    return {result.step.label: result for result in run_scenario(mesh)}


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    lines = config.stash.get(COMPOSE_REPORT, [])
    if lines:
        terminalreporter.section("the demo mesh under docker compose: the scenario inside its network")
        for line in lines:
            terminalreporter.write_line(line)
