"""The demo composes public library parts only: no module of ``service_mesh_demo`` imports a module inside
``txtoken.service`` (the TTS's internals) or a private (underscore) module."""

from __future__ import annotations

import ast
from pathlib import Path

import service_mesh_demo

DEMO = Path(service_mesh_demo.__file__).parent


def _imported_modules(path: Path) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
        elif isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
    return modules


def test_demo_imports_no_service_internals_or_private_modules() -> None:
    offending = {
        f"{path.name}: {module}"
        for path in sorted(DEMO.glob("*.py"))
        for module in _imported_modules(path)
        if module.startswith(("txtoken", "txtoken_"))
        and (module.startswith("txtoken.service.") or any(part.startswith("_") for part in module.split(".")))
    }
    assert offending == set()
    assert "txtoken.gateway" in _imported_modules(DEMO / "gateway.py")
