"""One registry of error codes, and everything that names a code agrees with it.

``clearing.errors.REGISTRY`` is the one list. Checked here: every code written as a literal
where a ledger error is raised is registered, with the class that carries it; every registered
code is raised somewhere in the product; ``docs/errors.md`` is the registry's own rendering;
the bad-input catalogue covers exactly the command codes, except those named in
``OWN_TESTS`` with the test that covers them; every other code appears in some test; and
``clearing post --help`` lists every command type. ``tests/conftest.py`` fails the run when a
code that is not registered is constructed anywhere in the suite.
"""

from __future__ import annotations

import ast
from pathlib import Path

from click.testing import CliRunner

from clearing.commands import COMMAND_TYPES
from clearing.errors import REGISTRY, markdown
from cli.main import main
from tests.conftest import REPO
from tests.unit.test_bad_input_catalogue import CASES

PRODUCT = [path for package in ("clearing", "projections", "cli") for path in sorted((REPO / package).rglob("*.py"))]
TESTS = sorted((REPO / "tests").rglob("*.py"))
#: the class a user sees for an error raised as each of these (pydantic and money errors are
#: turned into InputError at the boundary)
CARRIERS = {"InputError": "InputError", "NotFoundError": "NotFoundError", "RuleError": "RuleError",
            "ConflictError": "ConflictError", "ProjectionError": "ProjectionError", "StoreError": "StoreError",
            "PydanticCustomError": "InputError", "MoneyError": "InputError"}
#: command codes the catalogue cannot hold (its ledger would need a state that breaks other
#: rows, or a clock), each with the test that rejects it
OWN_TESTS = {
    "time_in_future": "tests/integration/test_integrity.py",
    "time_before_log": "tests/integration/test_integrity.py",
    "trading_paused": "tests/unit/test_risk_scenarios.py",
    "source_required": "tests/unit/test_risk_scenarios.py",
    "negative": "tests/integration/test_adl_rank.py",
}


def _raised() -> dict[str, set[str]]:
    """code -> the classes it is raised with, from every literal first argument in the product."""
    found: dict[str, set[str]] = {}
    for path in PRODUCT:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
            first = node.args[0]
            if name in CARRIERS and isinstance(first, ast.Constant) and isinstance(first.value, str):
                found.setdefault(first.value, set()).add(CARRIERS[name])
    return found


def _literals() -> set[str]:
    """Every string constant in the product (codes passed on, e.g. to ``check_within_band``)."""
    return {node.value for path in PRODUCT for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Constant) and isinstance(node.value, str)}


def test_every_code_raised_is_registered_with_its_class():
    raised = _raised()
    unregistered = sorted(set(raised) - set(REGISTRY))
    assert not unregistered, f"raised but not in clearing.errors.REGISTRY: {unregistered}"
    wrong = {code: (sorted(kinds), REGISTRY[code].kind) for code, kinds in raised.items() if kinds != {REGISTRY[code].kind}}
    assert not wrong, f"raised with another class than registered: {wrong}"


def test_every_registered_code_is_raised_somewhere():
    literals = _literals()
    written = {code for code in REGISTRY if code in literals or any(f"[{code}]" in text for text in literals)}
    assert not sorted(set(REGISTRY) - written), "registered but never written in the product"


def test_docs_errors_md_is_the_registry():
    assert (REPO / "docs" / "errors.md").read_text() == markdown(), "run: python -m clearing.errors > docs/errors.md"


def test_the_catalogue_covers_exactly_the_command_codes():
    command = {code for code, entry in REGISTRY.items() if entry.surface == "command"}
    catalogue = {case[2] for case in CASES}
    assert not sorted(catalogue - command), "catalogue codes that are not command codes in the registry"
    assert sorted(command - catalogue) == sorted(OWN_TESTS), "command codes with neither a catalogue case nor an own test"
    for code, test in OWN_TESTS.items():
        assert f'"{code}"' in (REPO / test).read_text() or f"'{code}'" in (REPO / test).read_text(), (code, test)


def test_every_other_code_is_exercised_by_some_test():
    text = "\n".join(path.read_text() for path in TESTS if path.name != Path(__file__).name)
    untested = sorted(code for code, entry in REGISTRY.items() if entry.surface != "command" and code not in text)
    assert not untested, f"codes no test names: {untested}"


def test_post_help_lists_every_command_type():
    shown = CliRunner().invoke(main, ["post", "--help"], terminal_width=400).output
    missing = [name for name in COMMAND_TYPES if name not in shown]
    assert not missing, f"post --help does not list {missing}"
