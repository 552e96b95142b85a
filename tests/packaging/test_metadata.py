"""What a package index shows and what `make test` installs: README links, draft versions, every extra listed."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
EXTRAS = set(tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"])
LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_every_readme_link_is_absolute_so_it_works_on_a_package_index_page() -> None:
    links = LINK.findall(README)
    assert links
    assert [link for link in links if not link.startswith("https://")] == []


def test_the_readme_states_the_draft_versions_implemented() -> None:
    rows = {row.split("|")[1].strip(): row.split("|")[2].strip() for row in README.splitlines() if "draft-ietf-" in row}
    versions = {LINK.sub("]", name).strip("[]"): version.split()[0] for name, version in rows.items()}
    assert versions["draft-ietf-oauth-transaction-tokens"] == "-10"
    assert {"draft-ietf-wimse-arch", "draft-ietf-wimse-workload-creds", "draft-ietf-wimse-wpt"} <= set(versions)


def test_the_readme_lists_every_extra() -> None:
    listed = set(re.findall(r"^\| `([a-z]+)` \|", README, re.MULTILINE))
    assert listed == EXTRAS


def test_make_test_installs_every_extra() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    (extras,) = re.findall(r"^EXTRAS := (\S+)$", makefile, re.MULTILINE)
    assert set(extras.split(",")) == EXTRAS
