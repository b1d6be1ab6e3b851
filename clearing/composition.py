"""The composition root: the parts a ``ClearingApplication`` is wired from.

The application decides a batch and commits it; four of the things it does on the way are
parts that can be replaced: the one save of a batch's events, the lookup of answers already
stored for the batch's ids, the pause before a conflicting batch is decided again, and the
risk sweep after a mark price. ``real_parts()`` is what every store runs with; a test that
injects a fault (a store that fails on the second batch, a save that always conflicts, a
sweep with a bug) passes a ``Parts`` with that one part replaced by a fake, instead of
patching a private method:

    app = ClearingApplication(env, parts=real_parts().replace(backoff=lambda attempt: 0))
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clearing.application import Answer, ClearingApplication, Envelope
    from clearing.domain.market import Market
    from clearing.working_set import WorkingSet

SaveBatch = Callable[["ClearingApplication", list[Any]], list[Any]]  # (app, events) -> the library's recordings
AnswerLookup = Callable[["ClearingApplication", Sequence["Envelope"]], dict[str, "Answer"]]
Backoff = Callable[[int], float]  # attempt -> seconds to wait before deciding the batch again
Sweep = Callable[["WorkingSet", "Market", datetime, str], int]  # (ws, market, at, reason) -> accounts checked


@dataclass(frozen=True)
class Parts:
    """The replaceable parts; see the module docstring."""

    save_batch: SaveBatch
    stored_answers: AnswerLookup
    backoff: Backoff
    sweep: Sweep

    def replace(self, **parts: Any) -> Parts:
        """These parts with some replaced (``real_parts().replace(sweep=fake)``)."""
        return dataclasses.replace(self, **parts)


def real_parts() -> Parts:
    """The parts every store runs with."""
    from clearing import application, risk_engine

    return Parts(save_batch=application.save_in_order, stored_answers=application.stored_answers,
                 backoff=application.jittered_backoff, sweep=risk_engine.sweep)
