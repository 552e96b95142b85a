"""Every ```python snippet in README.md and docs/*.md runs: the blocks of one file run in order, in one namespace."""

from __future__ import annotations

import gc
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SNIPPET = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _snippets(path: Path) -> list[str]:
    return SNIPPET.findall(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("document", [d for d in DOCUMENTS if _snippets(d)], ids=lambda d: d.name)
def test_snippets_run(document: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": f"docs_{document.stem}"}
    for number, snippet in enumerate(_snippets(document), start=1):
        code = compile(snippet, f"{document.name}#snippet{number}", "exec")
        exec(code, namespace)  # noqa: S102 - running the documentation is the point of this test
    namespace.clear()
    gc.collect()  # finalize the snippets' grpc.aio objects here, not in a server thread of a later test
