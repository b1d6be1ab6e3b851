"""How events and snapshots are encoded: two value-object transcodings and the transcoder.

The library encodes Decimal, UUID and datetime itself; ``MarginTierAsDict`` and
``PositionAsDict`` add ``MarginTier`` and ``Position`` (matched by exact class, as the
library's JSON transcoder requires); Decimals inside them stay Decimals, encoded exactly by
the library's ``DecimalAsStr``.

``OrjsonEncodingTranscoder`` is the library's ``JSONTranscoder`` encoding with orjson:
the same bytes, about 2.5x faster. The library's encoder calls back into Python for every
Decimal, datetime and UUID, and encoding dominated the cost of posting a trade (three
events, 24 such values). orjson passes datetimes and subclasses through to the *library's
own* per-type encoder (``_encode_obj``), so every value is written exactly as the library
writes it, stores stay readable by the plain library, and decoding is the library's own.
``tests/unit/test_transcoder.py`` checks the bytes are identical for every event type (ADR 6).
One exception, which no state of ours reaches: orjson writes a ``UUID`` itself, as its
canonical string (it has no pass-through for UUIDs), so one would read back as a ``str``;
no event or snapshot state holds a UUID (the library restores a snapshot's aggregate id from
the stored row). ``tests/integration/test_recorder_conformance.py`` runs the library's own
transcoder cases and skips the three that put a UUID in a custom type, saying so.
"""

from __future__ import annotations

from typing import Any

import orjson
from eventsourcing.persistence import JSONTranscoder, Transcoding

from clearing.domain.account import Position
from clearing.domain.margin import MarginTier


class MarginTierAsDict(Transcoding):
    type = MarginTier
    name = "margin_tier"

    def encode(self, obj: MarginTier) -> dict[str, Any]:
        return {
            "notional_floor": obj.notional_floor,
            "initial_margin_fraction": obj.initial_margin_fraction,
            "maintenance_margin_fraction": obj.maintenance_margin_fraction,
            "initial_margin_deduction": obj.initial_margin_deduction,
            "maintenance_margin_deduction": obj.maintenance_margin_deduction,
        }

    def decode(self, data: dict[str, Any]) -> MarginTier:
        return MarginTier(**data)


class PositionAsDict(Transcoding):
    type = Position
    name = "position"

    def encode(self, obj: Position) -> dict[str, Any]:
        return {"size": obj.size, "cost": obj.cost, "realized_pnl": obj.realized_pnl}

    def decode(self, data: dict[str, Any]) -> Position:
        return Position(**data)


_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_PASSTHROUGH_DATACLASS


class OrjsonEncodingTranscoder(JSONTranscoder):
    """``JSONTranscoder`` whose ``encode`` uses orjson with the library's type encoder."""

    def encode(self, obj: Any) -> bytes:
        return orjson.dumps(obj, default=self._encode_obj, option=_OPTIONS)
