"""A griffe extension for the API reference: Sphinx roles in docstrings become links.

sa_llm's docstrings name other objects the Sphinx way (:class:`Chat`, :meth:`~sa_llm.Chat.ask`,
:mod:`sa_llm.testing.fake`), which read well in ``help()`` and in an editor. mkdocstrings does not
know these roles, so this extension rewrites them, once the package is loaded, into mkdocs-autorefs
cross-references: the name is resolved in the docstring's own scope (as Python would: the object,
its parents, their imports), and becomes ``<autoref identifier="..." optional>`` with the name
in code font. ``~`` keeps the last component as the title; ``title <target>`` keeps the title.
A name that does not resolve (a stdlib or SQLAlchemy object) is left as code, unlinked;
``Example::`` before an indented block becomes ``Example:``. The
references are *optional*: one whose target the reference does not render stays text instead of
failing ``mkdocs build --strict`` (docs/decisions.md, D45).

Configured in mkdocs.yml (``extensions: [scripts/griffe_sphinx_roles.py:SphinxRoles]``).
"""

from __future__ import annotations

import html
import re
from typing import Any

import griffe

ROLE = re.compile(
    r":(?:py:)?(?P<role>class|meth|func|mod|attr|data|exc|obj|const):`(?P<body>[^`]+)`"
)
EXPLICIT = re.compile(r"^(?P<title>.+?)\s*<(?P<target>[^>]+)>$")


def _lookup(root: griffe.Object, path: str) -> str | None:
    """The path of ``path`` (``sa_llm.x.y``) in the loaded package, aliases followed."""
    if path == root.path:
        return root.path
    if not path.startswith(root.path + "."):
        return None
    try:
        member = root[path[len(root.path) + 1 :]]
    except (KeyError, griffe.AliasResolutionError, griffe.CyclicAliasError):
        return None
    if member.is_alias:
        try:
            return str(member.target_path)
        except (griffe.AliasResolutionError, griffe.CyclicAliasError):
            return None
    return str(member.path)


def resolve(obj: griffe.Object, root: griffe.Object, name: str) -> str | None:
    """The full path ``name`` stands for in the scope of ``obj``, or ``None``."""
    name = name.strip().lstrip(".").removesuffix("()")
    found = _lookup(root, name)
    if found is not None:
        return found
    first, _, rest = name.partition(".")
    scope: griffe.Object | None = obj
    while scope is not None:
        try:
            base = scope.resolve(first)
        except griffe.NameResolutionError:
            scope = scope.parent
            continue
        full = f"{base}.{rest}" if rest else base
        return _lookup(root, full) or full
    return None


def rewrite(text: str, obj: griffe.Object, root: griffe.Object) -> str:
    def replace(match: re.Match[str]) -> str:
        body = match["body"].strip()
        explicit = EXPLICIT.match(body)
        if explicit:
            title, target = explicit["title"], explicit["target"]
        else:
            target = body.lstrip("~")
            title = target.rsplit(".", 1)[-1] if body.startswith("~") else target
        code = f"<code>{html.escape(title)}</code>"
        full = resolve(obj, root, target.lstrip("~"))
        if full is None:
            return code
        return f'<autoref identifier="{html.escape(full)}" optional>{code}</autoref>'

    # A reST literal-block marker ("Example::" before an indented block) reads as one colon:
    # the indented block is a Markdown code block already.
    text = re.sub(r"(?<=\S)::$", ":", text, flags=re.M)
    return ROLE.sub(replace, text)


class SphinxRoles(griffe.Extension):
    """Rewrite the Sphinx roles of every docstring of a loaded package (see the module doc)."""

    def _walk(self, obj: griffe.Object, root: griffe.Object, seen: set[int]) -> None:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        if obj.docstring is not None and ":" in obj.docstring.value:
            obj.docstring.value = rewrite(obj.docstring.value, obj, root)
        for member in obj.members.values():
            if not member.is_alias:
                self._walk(member, root, seen)  # type: ignore[arg-type]

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        self._walk(pkg, pkg, set())
