"""The built wheel in fresh virtual environments, away from the source tree, as a new user installs it.

The sdist is built from this tree and the wheel from the sdist (so both are shown complete). One venv gets the wheel
with only the core dependencies: the core, the CLI and the README's snippet work, and every integration names the
extra it lacks. A second venv gets ``txtoken[demo]`` and runs the demo. Installs come from ``.venv/wheelhouse``, the
dependency wheels that ``make test``'s install step prepares; nothing here reaches the network.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from email.parser import Parser
from pathlib import Path

import pytest

from service_mesh_demo.scenario import STEPS
from tests.demo.helpers import free_base_port
from tests.docs.test_snippets import SNIPPET

ROOT = Path(__file__).resolve().parents[2]
WHEELHOUSE = ROOT / ".venv" / "wheelhouse"
CORE_DEPENDENCIES = {"pyjwt", "cryptography", "pydantic", "httpx"}
EXTRAS = set(tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"])
# Every bounded wait here guards against a hang; none is a measurement.
COMMAND_TIMEOUT = 300


def offline_env() -> dict[str, str]:
    """The environment without pip's site configuration (its indexes, find-links) and without this tree's paths."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON", "VIRTUAL_ENV"))}
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_NO_INDEX"] = "1"
    return env


def run(command: Sequence[str | Path], cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=offline_env(),
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )
    if check:
        assert result.returncode == 0, f"{command} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


@dataclass
class Built:
    sdist: Path
    wheel: Path


@dataclass
class Venv:
    """A fresh venv outside the source tree; ``home`` is a scratch directory to run its programs in."""

    path: Path
    home: Path

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    def txtoken(self, *args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run([self.path / "bin" / "txtoken", *args], self.home, check=check)

    def script(self, code: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run([self.python, "-I", "-c", code], self.home, check=check)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    if not (WHEELHOUSE / ".stamp").exists():
        pytest.skip(f"no dependency wheelhouse at {WHEELHOUSE}: `make test` (its install step) prepares it")
    out = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "hatchling", "build", "--target", "sdist", "--directory", out], ROOT)
    (sdist,) = out.glob("txtoken-*.tar.gz")
    # The wheel from the sdist, with this venv's hatchling: what `python -m build` does, without an index.
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", out, sdist], out)
    (wheel,) = out.glob("txtoken-*.whl")
    return Built(sdist, wheel)


def make_venv(tmp_path_factory: pytest.TempPathFactory, name: str, requirement: str) -> Venv:
    path = tmp_path_factory.mktemp(name) / "venv"
    home = tmp_path_factory.mktemp(f"{name}-home")
    run([sys.executable, "-m", "venv", "--without-pip", path], home)
    pip: list[str | Path] = [sys.executable, "-m", "pip", "--python", path / "bin" / "python"]
    run([*pip, "install", "--quiet", "--no-index", "--find-links", WHEELHOUSE, requirement], home)
    return Venv(path, home)


@pytest.fixture(scope="module")
def core(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Venv:
    return make_venv(tmp_path_factory, "core", str(built.wheel))


@pytest.fixture(scope="module")
def demo(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Venv:
    return make_venv(tmp_path_factory, "demo", f"{built.wheel}[demo]")


def installed(venv: Venv) -> set[str]:
    code = "import importlib.metadata as m, json; print(json.dumps([d.metadata['Name'] for d in m.distributions()]))"
    return {name.lower().replace("_", "-") for name in json.loads(venv.script(code).stdout)}


# --- what ships ----------------------------------------------------------------------------------------------------


def test_the_sdist_ships_license_changelog_and_every_linked_doc(built: Built) -> None:
    with tarfile.open(built.sdist) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    docs = {f"docs/{path.name}" for path in (ROOT / "docs").glob("*.md")}
    assert {"LICENSE", "CHANGELOG.md", "README.md", "pyproject.toml"} <= names
    assert docs and docs <= names


def test_the_wheel_ships_the_license_the_demo_and_its_data_files(built: Built) -> None:
    with zipfile.ZipFile(built.wheel) as wheel:
        names = set(wheel.namelist())
        (metadata_name,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        metadata = Parser().parsestr(wheel.read(metadata_name).decode())
    dist_info = metadata_name.rsplit("/", 1)[0]
    assert f"{dist_info}/licenses/LICENSE" in names
    for data in ("tts.toml", "viewer.html", "compose.yaml", "Dockerfile", "runner.py"):
        assert f"service_mesh_demo/{data}" in names
    for package in ("txtoken", "txtoken_asgi", "txtoken_grpc", "txtoken_httpx", "txtoken_fastapi", "txtoken_pytest"):
        assert f"{package}/py.typed" in names
    assert metadata["License-Expression"] == "Apache-2.0"
    assert set(metadata.get_all("Provides-Extra", [])) == EXTRAS
    unconditional = [r for r in metadata.get_all("Requires-Dist", []) if "extra ==" not in r]
    assert {re.split(r"[\[<>=~; ]", r, maxsplit=1)[0].lower() for r in unconditional} == CORE_DEPENDENCIES
    urls = metadata.get_all("Project-URL", [])
    assert urls and all(url.split(", ", 1)[1].startswith("https://") for url in urls)


# --- the core alone ------------------------------------------------------------------------------------------------


def test_the_core_install_brings_no_framework(core: Venv) -> None:
    names = installed(core)
    assert CORE_DEPENDENCIES | {"txtoken"} <= names
    frameworks = {"starlette", "uvicorn", "pydantic-settings", "grpcio", "protobuf", "spiffe", "fastapi"}
    assert not names & frameworks
    assert not [name for name in names if name.startswith(("opentelemetry", "prometheus"))]
    where = core.script("import txtoken; print(txtoken.__file__)").stdout.strip()
    assert Path(where).is_relative_to(core.path) and not Path(where).is_relative_to(ROOT)


def test_the_readme_snippet_runs_on_the_core_alone(core: Venv) -> None:
    (snippet,) = SNIPPET.findall((ROOT / "README.md").read_text(encoding="utf-8"))
    core.script(snippet + "\nprint('verified', verified.sub)")


def test_the_core_imports_and_verifies(core: Venv) -> None:
    code = (
        "import txtoken, txtoken_httpx, txtoken.credentials, txtoken.client\n"
        "from txtoken import KeySet, TxnTokenMinter, TxnTokenVerifier\n"
        "keys = KeySet.generate('EdDSA')\n"
        "token = TxnTokenMinter(keys, trust_domain='d.example').mint(sub='s', scope='a', req_wl='w')\n"
        "print(TxnTokenVerifier(keys, trust_domain='d.example').verify(token).sub)"
    )
    assert core.script(code).stdout.strip() == "s"


@pytest.mark.parametrize(
    ("statement", "extra"),
    [
        ("import txtoken_asgi", "asgi"),
        ("from txtoken_asgi.middleware import TxnTokenMiddleware", "asgi"),
        ("import txtoken.service", "server"),
        ("from txtoken.service.config import load_settings", "server"),
        ("import txtoken_grpc", "grpc"),
        ("import txtoken_fastapi", "fastapi"),
        ("from txtoken import otel", "otel"),
        ("import service_mesh_demo.runner", "demo"),
        ("from txtoken.credentials import SpiffeJwtSource; SpiffeJwtSource('aud', socket='unix:///x')", "spiffe"),
    ],
)
def test_an_integration_without_its_extra_names_it(core: Venv, statement: str, extra: str) -> None:
    result = core.script(statement, check=False)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("txtoken.extras.MissingExtra: ")
    assert f"pip install 'txtoken[{extra}]'" in last


def test_the_cli_round_trip_on_the_core_alone(core: Venv) -> None:
    assert "keygen" in core.txtoken("--help").stdout
    core.txtoken("keygen", "--out", "keys.json", "--public-out", "jwks.json")
    token = core.txtoken(
        "mint", "--keys", "keys.json", "--trust-domain", "shop.example",
        "--sub", "user-42", "--scope", "orders.create", "--req-wl", "spiffe://shop.example/gateway",
        "--tctx", '{"quantity": 100}',
    ).stdout.strip()  # fmt: skip
    claims = json.loads(core.txtoken("verify", token, "--jwks", "jwks.json", "--trust-domain", "shop.example").stdout)
    assert (claims["sub"], claims["tctx"], claims["aud"]) == ("user-42", {"quantity": 100}, "shop.example")


@pytest.mark.parametrize(
    ("args", "extra"),
    [(["serve"], "server"), (["keys", "rotate", "--dir", "keys"], "server"), (["demo", "--help"], "demo")],
    ids=["serve", "keys-rotate", "demo"],
)
def test_a_command_without_its_extra_says_so_in_one_line(core: Venv, args: list[str], extra: str) -> None:
    result = core.txtoken(*args, check=False)
    assert result.returncode == 1
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"txtoken {args[0]}: ")
    assert f"pip install 'txtoken[{extra}]'" in line


# --- txtoken[demo] -------------------------------------------------------------------------------------------------


def test_the_demo_extra_brings_every_integration(demo: Venv) -> None:
    assert {"starlette", "uvicorn", "pydantic-settings", "grpcio"} <= installed(demo)
    demo.script("import txtoken_asgi, txtoken_grpc, txtoken.service, service_mesh_demo.runner")


@pytest.mark.slow
def test_txtoken_demo_runs_from_the_wheel(demo: Venv) -> None:
    assert "--once" in demo.txtoken("demo", "--help").stdout
    result = demo.txtoken("demo", "--once", "--base-port", str(free_base_port()), "--data-dir", demo.home / "mesh")
    assert f"{len(STEPS)} of {len(STEPS)} steps had the expected outcome." in result.stdout
    assert "✘" not in result.stdout
