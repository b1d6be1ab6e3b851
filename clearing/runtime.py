"""Process settings for long batch work: the cyclic garbage collector's thresholds.

Rule: a process that folds the log (``audit verify``, a projection rebuild or catch-up,
``post`` of a long stream) runs with the collector's first threshold at 50,000 allocations
instead of CPython's 700, and its later generations collected 50 and 100 times less often.

Why: such a process keeps a large state alive (a fold's totals, the aggregates it rebuilds,
a page of 25,000 decoded events), and every decoded event allocates a dozen objects that
live until their page is consumed. With the default thresholds the collector re-scans the
surviving objects thousands of times per page while finding almost nothing to free: the
ledger's own objects form no reference cycles. Measured on the 1,043,635-event bench log
(``audit verify`` with only the invariants check, alternating runs): the fold 29.2 and 32.5 s
with the defaults, 22.4 and 25.0 s with these settings; the read and decode 35.9 and 38.1 s
against 30.4 and 33.0 s; peak memory unchanged (see ``bench/README.md``).

Cycles are still collected, only less often, so memory stays bounded.
"""

from __future__ import annotations

import gc

THRESHOLDS = (50_000, 50, 100)


def tune_collector_for_batches() -> None:
    """Set the collector's thresholds for long folds (``THRESHOLDS``); idempotent."""
    gc.set_threshold(*THRESHOLDS)
