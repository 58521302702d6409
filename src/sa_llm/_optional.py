"""Optional dependencies, imported when a feature needs them.

Every optional import goes through :func:`require`, so a missing package always raises the same
:class:`~sa_llm.errors.MissingDependencyError`, naming the feature and the extra to install.

Example::

    fsspec = require("fsspec", extra="storage", feature="FsspecStorage")
"""

from __future__ import annotations

import importlib
from types import ModuleType

from sa_llm.errors import MissingDependencyError

__all__ = ["require"]


def require(module: str, *, extra: str, feature: str, hint: str = "") -> ModuleType:
    """Import ``module``, or raise :class:`MissingDependencyError` naming ``extra``.

    Args:
        module: the module to import (``"botocore.session"``).
        extra: the sa_llm extra that installs it (``"bedrock"``).
        feature: what needs it, for the message (``"AWS profiles"``).
        hint: more advice appended to the message (e.g. which backend package to add).
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        package = exc.name or module.split(".")[0]
        message = (
            f'{feature} needs {package}, which is not installed: pip install "sa-llm[{extra}]"'
        )
        raise MissingDependencyError(f"{message}{hint}.", package, extra) from None
