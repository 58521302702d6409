"""The executed-docs count: after a run that included the docs examples, the terminal summary
says how many examples ran, how many are exempt, and which share of the non-exempt ones ran::

    docs examples: 129 executed, 13 exempt, 100% of non-exempt

Each page's test (tests/docs/test_docs_examples.py) records ``(run, runnable, exempt)`` as a user
property of its report; pytest-xdist sends reports, user properties included, from its workers to
the controller, where this hook adds them up. The hook lives here, loaded by the root conftest
(``pytest_plugins``), and not in a tests/docs/conftest.py: the xdist controller does not collect,
so it would never import a conftest below tests/ (and a second ``conftest`` module would shadow
the root one that test modules import from).
"""

from __future__ import annotations

from typing import Any

import pytest

DOCS_PROPERTY = "docs_examples"


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    ran = runnable = exempt = 0
    seen = False
    for reports in terminalreporter.stats.values():
        for report in reports:
            if getattr(report, "when", None) != "call":
                continue
            for name, value in getattr(report, "user_properties", ()):
                if name == DOCS_PROPERTY:
                    seen = True
                    page_ran, page_runnable, page_exempt = value
                    ran += page_ran
                    runnable += page_runnable
                    exempt += page_exempt
    if not seen:
        return
    share = 100 * ran / runnable if runnable else 100.0
    terminalreporter.write_sep("-", "docs examples")
    terminalreporter.write_line(
        f"docs examples: {ran} executed, {exempt} exempt, {share:.0f}% of non-exempt "
        f"({ran}/{runnable} run; {runnable + exempt} examples in all)"
    )
