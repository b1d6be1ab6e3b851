"""The layering rules of docs/architecture.md, checked on the source."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("clearing", "projections", "cli")


def _calls(path: Path, name: str) -> list[int]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [node.lineno for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == name]


def test_aggregate_events_are_triggered_from_the_domain_only():
    outside = {str(path.relative_to(ROOT)): lines
               for package in PRODUCT for path in sorted((ROOT / package).rglob("*.py"))
               if "domain" not in path.relative_to(ROOT).parts[:2] and (lines := _calls(path, "trigger_event"))}
    assert outside == {}, f"trigger_event outside clearing/domain/: {outside}"


def test_the_risk_deciders_read_no_aggregate_and_no_application_module():
    allowed = ("clearing.domain.risk", "clearing.domain.liquidation_math", "clearing.domain.margin",
               "clearing.domain.parameters", "clearing.domain.loss_policies", "clearing.domain.governance",
               "clearing.domain.account", "clearing.money")
    found = {}
    for path in sorted((ROOT / "clearing" / "domain" / "risk").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            module = node.module if isinstance(node, ast.ImportFrom) else None
            if module and module.startswith("clearing") and not module.startswith(allowed):
                found.setdefault(path.name, []).append(module)
    # clearing.domain.account is read for its status names and Position only, never an Account
    assert found == {}, found


def test_every_market_parameter_is_a_typed_property_of_the_parameter_set():
    from typing import get_type_hints

    from clearing.domain.parameters import MARKET_CHECKS, ParameterSet

    properties = {name for name, member in vars(ParameterSet).items() if isinstance(member, property)}
    assert properties == set(MARKET_CHECKS)
    untyped = [name for name in properties if "return" not in get_type_hints(getattr(ParameterSet, name).fget)]
    assert untyped == []
