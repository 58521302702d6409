"""Every example app has its recipe page and its tests, and each page shows the app's own code:
the page includes the file (pymdownx.snippets with ``check_paths``, so a missing file fails
``mkdocs build --strict``) rather than a copy that could drift."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(p.name for p in (ROOT / "examples").iterdir() if (p / "app.py").exists())
PAGES = {
    "fastapi_chat": "fastapi.md",
    "flask_chat": "flask.md",
    "litestar_chat": "litestar.md",
    "sqlmodel_chat": "sqlmodel.md",
}
INCLUDE = re.compile(r'```python\n--8<-- "(?P<path>[^"]+)"\n```')


def test_every_example_is_a_recipe() -> None:
    assert sorted(PAGES) == EXAMPLES


@pytest.mark.parametrize("example", EXAMPLES)
def test_the_page_includes_the_example_file_and_a_test_runs_it(example: str) -> None:
    page = (ROOT / "docs" / "recipes" / PAGES[example]).read_text(encoding="utf-8")
    included = [m["path"] for m in INCLUDE.finditer(page)]
    assert included == [f"examples/{example}/app.py"]
    assert (ROOT / included[0]).is_file()
    # No other Python block: every line of code the page shows is the tested file.
    assert page.count("```python") == 1
    short = example.removesuffix("_chat")
    tests = (ROOT / "tests" / "examples" / f"test_{short}_recipe.py").read_text(encoding="utf-8")
    assert f'load_example("{example}")' in tests


class _Loader(yaml.SafeLoader):  # type: ignore[misc]
    """Reads mkdocs.yml's ``!!python/name:`` tags (the mermaid fence) as plain strings."""


_Loader.add_multi_constructor("tag:yaml.org,2002:python/name:", lambda loader, suffix, node: suffix)


def test_the_pages_are_in_the_nav_and_snippets_check_paths() -> None:
    config = yaml.load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"), Loader=_Loader)
    recipes = next(item["Recipes"] for item in config["nav"] if "Recipes" in item)
    listed = {next(iter(entry.values())) for entry in recipes}
    assert listed == {"recipes/index.md"} | {f"recipes/{page}" for page in PAGES.values()}
    snippets = next(
        ext["pymdownx.snippets"]
        for ext in config["markdown_extensions"]
        if isinstance(ext, dict) and "pymdownx.snippets" in ext
    )
    assert snippets["check_paths"] is True
