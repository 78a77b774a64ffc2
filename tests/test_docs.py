"""The documents: README.md stays a short guide, and no relative link of README.md or docs/ points to a missing
file (the strict mkdocs build in .ci/run checks the site's own links and anchors)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
CODE = re.compile(r"```.*?```|`[^`\n]*`", re.S)
INLINE = re.compile(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")  # [text](target) and ![alt](target)
DEFINED = re.compile(r"^\[[^\]]+\]:\s*(\S+)", re.M)  # [label]: target


def relative_links(page: Path) -> list[str]:
    text = CODE.sub("", page.read_text())
    links = INLINE.findall(text) + DEFINED.findall(text)
    return [link for link in links if not re.match(r"^[a-z][a-z0-9+.-]*:|^#", link)]


def test_readme_is_a_short_guide():
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= 250


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_point_to_existing_files(page):
    missing = [link for link in relative_links(page) if not (page.parent / link.split("#")[0]).exists()]
    assert not missing, f"{page.relative_to(REPO)}: {missing}"

