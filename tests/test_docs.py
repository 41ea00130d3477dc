"""The README and the documentation site stay in step with the code and with each other.

``mkdocs build --strict`` (``make docs``, part of ``make test``) checks the links inside the
site; these tests check what it cannot: that the README (the package index's page, where a
relative link breaks) links only to pages the site has, that its quick start imports what it
uses, and that the API reference names every public export.
"""

from __future__ import annotations

import ast
import builtins
import re
from pathlib import Path

import pytest

import better_auth_obo
import better_auth_obo.testing

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _site_url() -> str:
    match = re.search(r"^site_url:\s*(\S+)\s*$", (ROOT / "mkdocs.yml").read_text(), re.M)
    assert match, "mkdocs.yml has no site_url"
    return match.group(1)


def test_the_readme_shows_the_two_commands() -> None:
    """``.ci/run`` runs the README's test command; a newcomer starts with the demo."""
    assert "\nmake demo   #" in README
    assert "\nmake test   #" in README


def test_readme_links_are_absolute_and_name_pages_of_the_site() -> None:
    site = _site_url()
    links = re.findall(r"\]\(([^)\s]+)\)|<(https?://[^>\s]+)>", README)
    targets = [a or b for a, b in links]
    relative = [t for t in targets if not t.startswith(("https://", "http://"))]
    assert relative == [], "relative links break on the package index"
    pages = [t[len(site) :] for t in targets if t.startswith(site)]
    assert len(pages) >= 10, "the README links to the documentation's pages"
    for page in pages:
        assert page == "" or page.endswith("/"), page
        name = page.rstrip("/") or "index"
        assert (DOCS / f"{name}.md").is_file() or (DOCS / name / "index.md").is_file(), page


def test_the_quick_start_imports_every_name_it_uses() -> None:
    code = README.split("## Quick start\n\n```python\n", 1)[1].split("```", 1)[0]
    tree = ast.parse(code)
    defined = set(dir(builtins))
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            defined |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            defined.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            defined.add(node.name)
            defined |= {a.arg for a in node.args.args + node.args.kwonlyargs}
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    assert used - defined == set()
    assert len(code.splitlines()) <= 30


@pytest.mark.parametrize(
    ("module", "page"),
    [(better_auth_obo, "reference/index.md"), (better_auth_obo.testing, "reference/testing.md")],
)
def test_the_api_reference_documents_every_public_name(module: object, page: str) -> None:
    text = (DOCS / page).read_text(encoding="utf-8")
    documented = set(re.findall(r"^::: ([\w.]+)$", text, re.M))
    prefix = f"{module.__name__}."  # type: ignore[attr-defined]
    names = {f"{prefix}{name}" for name in module.__all__}  # type: ignore[attr-defined]
    assert names - documented == set(), f"add them to docs/{page}"


def test_the_pages_that_include_root_files_include_them() -> None:
    """SECURITY.md, BENCHMARKS.md, CHANGELOG.md and CONTRIBUTING.md stay at the root (GitHub
    shows them there) and are included into the site, never copied."""
    for page, source in [
        ("security.md", "SECURITY.md"),
        ("benchmarks.md", "BENCHMARKS.md"),
        ("changelog.md", "CHANGELOG.md"),
        ("contributing.md", "CONTRIBUTING.md"),
    ]:
        assert (DOCS / page).read_text().strip() == f'--8<-- "{source}"'
        assert (ROOT / source).is_file()


def test_every_list_on_the_site_starts_after_a_blank_line() -> None:
    """GitHub starts a list right after a paragraph line; the site's Markdown (Python-Markdown)
    runs it into the paragraph, so each list must follow a blank line (or a heading)."""
    files = sorted(DOCS.rglob("*.md")) + [
        ROOT / name for name in ("SECURITY.md", "BENCHMARKS.md", "CHANGELOG.md", "CONTRIBUTING.md")
    ]
    item = re.compile(r"^\s*([-*]|\d+\.) ")
    glued = []
    for path in files:
        lines = path.read_text(encoding="utf-8").splitlines()
        fenced = False
        for number, line in enumerate(lines, start=1):
            before = lines[number - 2] if number > 1 else ""
            if line.lstrip().startswith("```"):
                fenced = not fenced
                continue
            starts_a_list = not fenced and item.match(line) and not line.startswith(" ")
            after_text = before.strip() and not before.startswith(("  ", "#"))
            if starts_a_list and after_text and not item.match(before):
                glued.append(f"{path.relative_to(ROOT)}:{number}")
    assert glued == []


def test_the_reasons_listed_in_the_docs_are_the_reason_type() -> None:
    import re
    from pathlib import Path

    from better_auth_obo._errors import REASONS

    text = (Path(__file__).parent.parent / "docs" / "errors.md").read_text()
    listed = text.split("<!-- reasons -->", 1)[1].split("<!-- /reasons -->", 1)[0]
    named = set(re.findall(r"`([a-z_]+)`", listed)) - {"OBOClient"}
    assert named == REASONS
