"""Checkpoints of the margin projection (``projections.checkpoints``), on both stores.

With a checkpoint every 7 log positions, the report scenario (four business days, calls,
liquidations, a deficit) is replayed as of every one of its positions: from position 1,
and from the live store's last checkpoint at or before the cut. Seeded with the closed
days' rows every read model table must be the same, row for row; seeded as a query seeds
it (state tables only), the state tables and every account's figures. The checkpoint rows themselves must not depend
on how the log was paged: a rebuild with pages of 3 events and a build fed pages of 5 (as
``audit verify`` feeds its scratch projections) write the same rows as the live store.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from clearing.audit.log import read_log
from projections import checkpoints
from projections.compare import canonical_rows, first_difference
from projections.queries import account_list
from projections.read import Views
from projections.replay import replay_views, seed_from_checkpoint
from projections.runner import Projector
from projections.store import ProjectionStore
from tests.unit.test_reports import build

EVERY = 7
STATE = ("margin_accounts", "margin_positions", "margin_markets", "margin_clock")
COPIES = {checkpoints.copy_name(name) for name in (*checkpoints.COPIED, checkpoints.FLOWS)} | {checkpoints.INDEX}


@pytest.fixture
def small_interval(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(checkpoints, "EVERY", EVERY)
    yield


def _read_models(views: Views) -> dict[str, list[tuple[object, ...]]]:
    """Every margin table but the checkpoints', as canonical rows."""
    from projections.margin import MarginProjection

    with views.reading() as connection:
        return {spec.name: canonical_rows(connection, views.table("margin", spec.name), spec.key)
                for spec in MarginProjection.SPECS if spec.name not in COPIES}


def test_a_replay_from_a_checkpoint_equals_a_replay_from_the_start_at_every_cut(store_db, small_interval):
    built = build(store_db)
    app = built.ledger.app
    live_store = ProjectionStore(store_db)
    Projector(app, live_store).catch_up()
    live = Views(live_store)
    head = built.ledger.head()
    with live.reading() as connection:
        labels = [row[0] for row in connection.execute(
            live.table("margin", checkpoints.INDEX).select().with_only_columns(
                live.table("margin", checkpoints.INDEX).c.position))]
    assert labels and all(label % EVERY == 0 for label in labels) and max(labels) > head - 2 * EVERY, labels
    seeded_from = set()
    for cut in range(1, head + 1):
        from_start_views = replay_views(app, cut, ["margin"])
        from_start = _read_models(from_start_views)
        scratch = Projector(app, ProjectionStore(":memory:"), ["margin"])
        seeded_from.add(seed_from_checkpoint(scratch, live, cut))  # with the closed days' rows
        scratch.catch_up(until=cut)
        assert _read_models(Views(scratch.store)) == from_start, f"cut {cut}"
        queried = replay_views(app, cut, ["margin"], live=live)  # as a query seeds it: state tables only
        state = {name: rows for name, rows in _read_models(queried).items() if name in STATE}
        assert state == {name: rows for name, rows in from_start.items() if name in STATE}, f"cut {cut}"
        assert list(account_list(queried)) == list(account_list(from_start_views)), f"cut {cut}"
    assert seeded_from - {0} == set(labels), "every checkpoint served some cut"


def test_the_checkpoint_rows_do_not_depend_on_paging(sqlite_db, small_interval):
    built = build(sqlite_db)
    app = built.ledger.app
    live = Projector(app, ProjectionStore(sqlite_db))
    live.catch_up()
    paged = Projector(app, ProjectionStore(":memory:"), ["margin"])
    paged.catch_up(page=3)
    fed = Projector(app, ProjectionStore(":memory:"), ["margin"])
    for page in read_log(app.recorder, app.mapper, page=5):
        fed.feed(page.notifications, page.events)
    for other in (paged, fed):
        assert first_difference(live, other, "margin") is None
    with live.store.engine.connect() as connection:
        copies = canonical_rows(connection, live.projections["margin"].tables["margin_cp_accounts"],
                                ("checkpoint", "account"))
    assert copies, "the comparison covered checkpoint rows"


def test_a_changed_checkpoint_row_is_found_by_the_comparison(sqlite_db, small_interval):
    """The check above can fail: one copied collateral altered is named."""
    from decimal import Decimal

    from sqlalchemy import func, select, update

    built = build(sqlite_db)
    live = Projector(built.ledger.app, ProjectionStore(sqlite_db))
    live.catch_up()
    table = live.projections["margin"].tables["margin_cp_accounts"]
    with live.store.engine.begin() as connection:
        last = connection.execute(select(func.max(table.c.checkpoint))).scalar()
        changed = connection.execute(update(table).where(table.c.checkpoint == last).values(collateral=Decimal("123456789")))
        assert changed.rowcount >= 1
    rebuilt = Projector(built.ledger.app, ProjectionStore(":memory:"), ["margin"])
    rebuilt.catch_up()
    assert "margin_cp_accounts" in (first_difference(live, rebuilt, "margin") or "")


def test_a_time_is_cut_where_a_scan_of_the_whole_log_cuts_it(store_db):
    """``resolve_until`` starts its scan at the watermark's floor (``time_floor``); for a
    second before, at and after every business time in the log it gives the position the
    scan from position 1 gives, and the floor is used (it is not always 0)."""
    from datetime import timedelta

    from projections.replay import _position_before, resolve_until, time_floor

    built = build(store_db)
    app = built.ledger.app
    head = built.ledger.head()
    times = sorted({event.at for page in read_log(app.recorder, app.mapper) for _, event in page.decoded()
                    if getattr(event, "at", None) is not None})
    floors = set()
    for at in times:
        for moment in (at - timedelta(seconds=1), at, at + timedelta(seconds=1)):
            floors.add(time_floor(app, moment, head))
            expected = _position_before(app, moment, head, 0)
            assert resolve_until(app, moment.isoformat()) == expected, moment
    assert len(floors) > 3, floors


def test_a_store_upgraded_midway_verifies_without_a_rebuild(sqlite_db, small_interval):
    """A margin projection built before checkpoints holds none for the log before the
    upgrade; a build from event 1 holds them all. Only the stored ones are compared."""
    from sqlalchemy import delete, func, select

    built = build(sqlite_db)
    live = Projector(built.ledger.app, ProjectionStore(sqlite_db))
    live.catch_up()
    tables = live.projections["margin"].tables
    with live.store.engine.begin() as connection:  # as if the first checkpoints were never written
        last = connection.execute(select(func.max(tables[checkpoints.INDEX].c.position))).scalar()
        for name in checkpoints.TABLES:
            column = tables[name].c.position if name == checkpoints.INDEX else tables[name].c.checkpoint
            connection.execute(delete(tables[name]).where(column < last))
    rebuilt = Projector(built.ledger.app, ProjectionStore(":memory:"), ["margin"])
    rebuilt.catch_up()
    assert first_difference(live, rebuilt, "margin") is None
    with live.store.engine.begin() as connection:  # the one kept is still compared whole
        connection.execute(delete(tables["margin_cp_positions"]).where(tables["margin_cp_positions"].c.checkpoint == last))
    assert "margin_cp_positions" in (first_difference(live, rebuilt, "margin") or "")
