"""The one missing-extra check: the extra and the missing module named, the real cause kept."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from txtoken.extras import MissingExtra, requires_extra


def test_a_missing_module_names_the_extra_and_the_module(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "starlette", None)
    with pytest.raises(MissingExtra) as raised, requires_extra("asgi", "the ASGI middleware"):
        importlib.import_module("starlette")
    assert str(raised.value) == (
        "the ASGI middleware needs the 'asgi' extra (module 'starlette' is not installed): pip install 'txtoken[asgi]'"
    )
    assert raised.value.extra == "asgi" and raised.value.name == "starlette"
    assert isinstance(raised.value, ImportError)
    assert isinstance(raised.value.__cause__, ModuleNotFoundError)


def test_nested_checks_name_the_outer_feature(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "grpc", None)
    outer, inner = requires_extra("demo", "the demo"), requires_extra("grpc", "the interceptors")
    with pytest.raises(MissingExtra, match=r"^the demo needs the 'demo' extra \(module 'grpc'"), outer, inner:
        importlib.import_module("grpc")


def test_an_installed_module_that_fails_to_import_keeps_its_own_error() -> None:
    with pytest.raises(ImportError) as raised, requires_extra("asgi", "the ASGI middleware"):
        raise ImportError("cannot import name 'X' from 'starlette'", name="starlette")
    assert type(raised.value) is ImportError


def test_a_missing_txtoken_module_is_a_broken_install_not_an_extra() -> None:
    with pytest.raises(ModuleNotFoundError), requires_extra("asgi", "the ASGI middleware"):
        importlib.import_module("txtoken.no_such_module")


@pytest.mark.parametrize(
    ("argv", "blocked", "extra"),
    [(["serve"], "uvicorn", "server"), (["keys", "rotate"], "pydantic_settings", "server"), (["demo"], "grpc", "demo")],
    ids=["serve", "keys-rotate", "demo"],
)
def test_a_command_without_its_extra_fails_in_one_line(argv: list[str], blocked: str, extra: str) -> None:
    # A process of its own: the blocked module must not be half-imported into this one.
    code = f"import sys; sys.modules[{blocked!r}] = None; from txtoken.cli import main; sys.exit(main({argv!r}))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1, result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"txtoken {argv[0]}: ")
    assert line.endswith(f"(module {blocked!r} is not installed): pip install 'txtoken[{extra}]'")
