"""``python -m projections.api.schema > docs/openapi.json``: the API's OpenAPI schema, as
served at ``/api/v1/openapi.json``; ``tests/api/test_api.py`` fails when the copy in
``docs/`` is not current."""

from __future__ import annotations

import json
from typing import Any


def schema() -> dict[str, Any]:
    from projections.api.app import create_app

    document: dict[str, Any] = create_app("", schema_only=True).openapi()
    return document


if __name__ == "__main__":
    print(json.dumps(schema(), indent=2, sort_keys=True))
