"""The pytest plugin: its fixtures work, and a test suite that uses none of them runs exactly as without it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from txtoken.testing import TxnTokenKit
from txtoken.verify import TxnTokenVerifier

PROBE = """
import json
import sys


def test_probe(request):
    report = {
        "plugin_loaded": request.config.pluginmanager.has_plugin("txtoken"),
        "txtoken_imported": sorted(m for m in sys.modules if m.split(".")[0].startswith("txtoken")),
        "fixtures_of_a_test_asking_for_none": sorted(request.fixturenames),
        "markers": request.config.getini("markers"),
        "options": sorted(vars(request.config.option)),
    }
    with open("report.json", "w") as report_file:
        json.dump(report, report_file)


def test_opting_in(txtoken_kit):
    assert txtoken_kit.verified().sub == "user-1"
"""


def test_fixtures_give_a_kit_and_its_verifier(txtoken_kit: TxnTokenKit, txtoken_verifier: TxnTokenVerifier) -> None:
    assert isinstance(txtoken_kit, TxnTokenKit)
    assert txtoken_verifier is txtoken_kit.verifier
    assert txtoken_verifier.verify(txtoken_kit.mint(sub="erin")).sub == "erin"


def test_this_suite_loads_the_plugin_and_it_defines_no_hook(request: pytest.FixtureRequest) -> None:
    plugin = request.config.pluginmanager.get_plugin("txtoken")
    assert isinstance(plugin, ModuleType) and plugin.__name__ == "txtoken_pytest"
    assert [name for name in vars(plugin) if name.startswith("pytest_")] == []


def test_a_suite_that_uses_no_fixture_runs_exactly_as_without_the_plugin(tmp_path: Path) -> None:
    reports = {}
    # With the plugin the whole file runs (the probe first, then a test that opts in); without it, the probe alone.
    for variant, args in (("with", ["test_probe.py"]), ("without", ["-p", "no:txtoken", "test_probe.py::test_probe"])):
        project = tmp_path / variant
        project.mkdir()
        (project / "pytest.ini").write_text("[pytest]\n")
        (project / "test_probe.py").write_text(PROBE)
        run = subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-W", "error", *args],
            cwd=project,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert run.returncode == 0, run.stdout + run.stderr
        assert f"{2 if variant == 'with' else 1} passed" in run.stdout
        reports[variant] = json.loads((project / "report.json").read_text())
    assert reports["with"].pop("plugin_loaded") is True
    assert reports["without"].pop("plugin_loaded") is False
    assert reports["with"].pop("txtoken_imported") == ["txtoken_pytest"]  # not txtoken: nothing imported until used
    assert reports["without"].pop("txtoken_imported") == []
    # The same fixtures for a test that asks for none (no autouse fixture), the same markers, the same options.
    assert reports["with"] == reports["without"]
    assert reports["with"]["fixtures_of_a_test_asking_for_none"] == ["request"]
