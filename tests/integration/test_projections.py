"""Projections: equal to the aggregates after random paths, rebuild equals live, exactly once.

The aggregate-based views in ``tests.margin_state`` are the oracle: they replay each
account and market through the library's repository. The SQL projections are caught up
after every command (as the command line does) and must give the same figures, field by
field; a rebuild from event 1 must give the same tables, row by row.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from eventsourcing.persistence import IntegrityError, Tracking
from hypothesis import HealthCheck, given, settings

from clearing.business_time import TimeLimits
from clearing.settings import store_env
from projections.compare import canonical_rows, first_difference
from projections.queries import (
    ACCOUNT_STATUSES,
    AdlHolder,
    LossPolicies,
    account_list,
    account_view,
    adl_scores,
    insurance_fund_view,
    loss_allocations,
    market_view,
)
from projections.read import Views
from projections.runner import APPLICATION, READ_MODELS, Projector, rebuild
from projections.store import ProjectionStore
from tests import margin_state
from tests.ledger import Ledger
from tests.unit.test_risk_properties import MARKETS, scenarios, setup


class StepClock:
    """Business time advancing five hours per command, so paths cross several days."""

    def __init__(self) -> None:
        self.now = datetime(2025, 3, 1, 8, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(hours=5)
        return self.now


def _names(ledger: Ledger) -> list[str]:
    return [name for name in ["maker", "backstop", *[f"t{n}" for n in range(6)]]
            if _exists(ledger, name)]


def _exists(ledger: Ledger, name: str) -> bool:
    try:
        ledger.app.get_account(name)
    except Exception:
        return False
    return True


def assert_views_equal_aggregates(ledger: Ledger, views: Views) -> None:
    for name in _names(ledger):
        assert account_view(views, name, LossPolicies(ledger.app)) == margin_state.account_view(ledger.app, name), name
    for name in MARKETS:
        oracle = margin_state.market_view(ledger.app, name)
        oracle.pop("version")
        oracle["listed_at"] = oracle["listed_at"]
        assert market_view(views, name) == oracle, name
    sql_fund = insurance_fund_view(views)
    oracle_fund = margin_state.insurance_fund_view(ledger.app)
    strip = lambda rows, key: [{k: v for k, v in row.items() if k != key} for row in rows]  # noqa: E731
    assert strip(sql_fund["movements"], "position") == strip(oracle_fund["movements"], "version")
    totals = ("balance", "inflows", "outflows")
    assert {k: sql_fund[k] for k in totals} == {k: oracle_fund[k] for k in totals}
    assert loss_allocations(views) == margin_state.loss_allocations(ledger.app)
    assert list(account_list(views)) == [_list_row(margin_state.account_view(ledger.app, name))
                                         for name in sorted(_names(ledger))]


def _list_row(view: dict) -> dict:
    """What ``account list`` shows of an account view."""
    return {**{key: view[key] for key in ("account", "status", "collateral", "equity", "initial_margin", "maintenance_margin")},
            "positions": len(view["positions"])}


@settings(max_examples=25, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_projections_equal_the_aggregates_after_every_command_of_random_paths(scenario):
    policy, fund, grace, backstop, traders, moves = scenario
    ledger, _ = setup(policy, fund, grace, traders, backstop)
    ledger.clock = StepClock()
    store = ProjectionStore(":memory:")
    projector = Projector(ledger.app, store, READ_MODELS)
    views = Views(store)
    projector.catch_up()
    assert_views_equal_aggregates(ledger, views)
    prices = {"X-PERP": Decimal(1000), "Y-PERP": Decimal(20)}
    for target, percent in moves:
        if target == "funding":
            command = {"type": "funding", "market": "X-PERP", "rate": format(Decimal(percent or 1).scaleb(-4), "f")}
        else:
            tick = Decimal(MARKETS[target][1])
            prices[target] = (prices[target] * (100 + percent) / 100 / tick).quantize(Decimal(1)) * tick
            command = {"type": "price", "market": target, "price": format(prices[target], "f")}
        _step(ledger, projector, views, command)
    scratch = Projector(ledger.app, ProjectionStore(":memory:"), READ_MODELS)
    scratch.catch_up()
    for name in READ_MODELS:
        assert first_difference(projector, scratch, name) is None


def _step(ledger: Ledger, projector: Projector, views: Views, command: dict) -> None:
    """Post one command, catch up, and compare every view with the aggregates."""
    before = {name: margin_state.account_view(ledger.app, name) for name in _names(ledger)}
    day_before = projector.projections["margin"].state["margin_clock"].get(1)["day"]
    (outcome,) = ledger.post(json.dumps(command))
    assert outcome.status == "applied", (outcome.code, outcome.message)
    projector.catch_up()
    assert_views_equal_aggregates(ledger, views)
    _assert_end_of_day_is_state_before(views, day_before, before)


def _assert_end_of_day_is_state_before(views: Views, day: str, before: dict[str, dict]) -> None:
    """A day closed by this command holds the figures every account had just before it."""
    table = views.table("margin", "margin_eod_accounts")
    with views.reading() as connection:
        rows = {row["account"]: row for row in connection.execute(table.select().where(table.c.day == day)).mappings()}
    if not rows:
        return  # the command did not close a day
    assert set(rows) == set(before)
    for name, view in before.items():
        row = rows[name]
        for field in ("collateral", "equity", "initial_margin", "maintenance_margin", "free_collateral"):
            assert str(Decimal(view[field])) == str(row[field]) or Decimal(view[field]) == row[field], (name, field)


SCRIPT = """
{"type":"create_market","market":"X-PERP","kind":"perpetual","tick_size":"0.5","step_size":"0.01","initial_margin_fraction":"0.1","maintenance_margin_fraction":"0.05","price_band":"0.5","at":"2025-03-01T09:00:00Z"}
{"type":"set_parameters","parameters":{"loss_policy":"socialize_per_contract","margin_call_grace":0},"at":"2025-03-01T09:00:00Z"}
{"type":"price","market":"X-PERP","price":"1000","at":"2025-03-01T09:00:00Z"}
{"type":"fund_insurance","amount":"10","at":"2025-03-01T09:00:00Z"}
{"type":"open_account","account":"maker","at":"2025-03-01T09:00:00Z"}
{"type":"deposit","account":"maker","amount":"100000","at":"2025-03-01T09:00:00Z"}
{"type":"open_account","account":"alice","at":"2025-03-01T09:00:00Z"}
{"type":"deposit","account":"alice","amount":"1000.123456","at":"2025-03-01T09:00:00Z"}
{"type":"open_account","account":"bob","at":"2025-03-01T09:00:00Z"}
{"type":"deposit","account":"bob","amount":"2000","at":"2025-03-01T09:00:00Z"}
{"type":"trade","market":"X-PERP","buyer":"alice","seller":"maker","size":"9","price":"1000","at":"2025-03-01T10:00:00Z"}
{"type":"trade","market":"X-PERP","buyer":"maker","seller":"bob","size":"3","price":"1000","at":"2025-03-01T10:00:00Z"}
{"type":"price","market":"X-PERP","price":"960","at":"2025-03-02T10:00:00Z"}
{"type":"price","market":"X-PERP","price":"900","at":"2025-03-02T11:00:00Z"}
{"type":"price","market":"X-PERP","price":"850","at":"2025-03-03T11:00:00Z"}
{"type":"withdraw","account":"bob","amount":"100","at":"2025-03-03T12:00:00Z"}
"""


def _post_script(db: str) -> Ledger:
    ledger = Ledger(env=store_env(db))
    ledger.post_ok(SCRIPT.strip())
    return ledger


def _dump(projector: Projector) -> dict[str, list]:
    with projector.store.engine.connect() as connection:
        return {spec.name: canonical_rows(connection, projector.projections[name].tables[spec.name], spec.key)
                for name in READ_MODELS for spec in projector.projections[name].SPECS}


def test_projections_are_the_same_on_sqlite_and_postgresql_and_after_a_rebuild(sqlite_db, postgres_db):
    dumps = []
    for db in (sqlite_db, postgres_db):
        ledger = _post_script(db)
        store = ProjectionStore(db)
        projector = Projector(ledger.app, store, READ_MODELS)
        projector.catch_up(page=7)  # small pages: many transactions, caches across pages
        before = _dump(projector)
        assert rebuild(ledger.app, store, ["margin", "losses"], page=5) == {"margin": 2, "losses": 2}
        assert rebuild(ledger.app, store, "insurance_fund", page=5) == {"insurance_fund": 2}
        assert rebuild(ledger.app, store, "liquidations", page=5) == {"liquidations": 2}
        rebuilt = Projector(ledger.app, store, READ_MODELS)
        rebuilt.prepare()
        assert _dump(rebuilt) == before
        assert all(status.generation == 2 for status in rebuilt.status())
        dumps.append(before)
    assert dumps[0] == dumps[1]
    assert dumps[0]["margin_eod_accounts"], "the script crosses three business days"
    assert {row[0] for row in dumps[0]["margin_eod_accounts"]} == {"2025-03-01", "2025-03-02"}


def test_amounts_keep_every_digit_on_sqlite(sqlite_db):
    ledger = _post_script(sqlite_db)
    store = ProjectionStore(sqlite_db)
    Projector(ledger.app, store, ["margin"]).catch_up()
    views = Views(store)
    assert account_view(views, "alice")["collateral"] == margin_state.account_view(ledger.app, "alice")["collateral"]
    table = views.table("margin", "margin_accounts")
    with store.engine.connect() as connection:
        raw = connection.exec_driver_sql(f'SELECT deposits, typeof(deposits) FROM "{table.name}" WHERE account = ?',
                                         ("alice",)).one()
    assert raw == ("1000.123456", "text")


def test_two_processes_catching_up_at_once_apply_each_event_once(sqlite_db):
    ledger = _post_script(sqlite_db)
    errors: list[BaseException] = []

    def catch_up() -> None:
        try:
            Projector(ledger.app, ProjectionStore(sqlite_db), READ_MODELS).catch_up(page=3)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=catch_up) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    live = Projector(ledger.app, ProjectionStore(sqlite_db), READ_MODELS)
    live.prepare()
    scratch = Projector(ledger.app, ProjectionStore(":memory:"), READ_MODELS)
    scratch.catch_up()
    for name in READ_MODELS:
        assert first_difference(live, scratch, name) is None


def test_a_tracking_position_that_does_not_advance_is_refused_and_its_rows_roll_back(sqlite_db):
    ledger = _post_script(sqlite_db)
    store = ProjectionStore(sqlite_db)
    projector = Projector(ledger.app, store, ["insurance_fund"])
    projector.catch_up()
    head = ledger.head()
    table = projector.projections["insurance_fund"].tables["fund_movements"]
    with pytest.raises(IntegrityError), store.datastore.transaction(commit=True) as session:
        session.execute(table.insert(), [{"position": head + 1, "at": "x", "day": "x", "direction": "in",
                                          "cause": "forged", "amount": Decimal(1), "balance_after": Decimal(1)}])
        projector.trackers["insurance_fund"]._insert_tracking(session, Tracking(APPLICATION, head))
    with store.engine.connect() as connection:
        causes = [row.cause for row in connection.execute(table.select())]
    assert "forged" not in causes and causes[0] == "contribution"


def test_replay_until_a_position_shows_the_past(sqlite_db):
    from projections.replay import replay_views, resolve_until

    ledger = _post_script(sqlite_db)
    cut = resolve_until(ledger.app, "2025-03-01T23:59:59Z")
    past = replay_views(ledger.app, cut, ["margin"])
    alice = account_view(past, "alice")
    assert alice["positions"][0]["mark_price"] == "1000"  # before the first price of 03-02
    assert resolve_until(ledger.app, str(cut)) == cut
    assert alice["collateral"] == "1000.123456" and alice["status"] == "healthy"
    now = replay_views(ledger.app, ledger.head(), ["margin"])
    assert account_view(now, "alice", LossPolicies(ledger.app)) == margin_state.account_view(ledger.app, "alice")
    assert account_view(now, "alice")["status"] != "healthy"  # the crash of 03-02/03 took it down


def test_a_back_dated_event_is_booked_on_the_current_business_day_everywhere(sqlite_db):
    ledger = _post_script(sqlite_db)
    store = ProjectionStore(sqlite_db)
    projector = Projector(ledger.app, store, READ_MODELS)
    projector.catch_up()
    views = Views(store)
    eod = views.table("margin", "margin_eod_accounts")
    with views.reading() as connection:
        closed_before = sorted(map(tuple, connection.execute(eod.select().where(eod.c.day == "2025-03-01"))))
    ledger.app.time_limits = TimeLimits(max_backdate=timedelta(days=7))  # the default refuses a 2-day back-date
    ledger.post_ok('{"type":"fund_insurance","amount":"5","at":"2025-03-01T12:00:00Z"}\n'
                   '{"type":"deposit","account":"maker","amount":"7","at":"2025-03-01T12:00:00Z"}')
    projector.catch_up()
    fund = views.table("insurance_fund", "fund_movements")
    flows = views.table("margin", "margin_flows")
    with views.reading() as connection:
        (late,) = connection.execute(fund.select().where(fund.c.amount == Decimal(5))).mappings().all()
        maker_days = {row.day: row.deposits for row in connection.execute(flows.select().where(flows.c.account == "maker"))
                      if row.deposits}
        closed_after = sorted(map(tuple, connection.execute(eod.select().where(eod.c.day == "2025-03-01"))))
    assert late["day"] == "2025-03-03" and late["at"].startswith("2025-03-01")
    assert maker_days == {"2025-03-01": Decimal(100000), "2025-03-03": Decimal(7)}
    assert closed_after == closed_before


def test_every_report_is_byte_identical_after_a_rebuild_and_in_a_replay(sqlite_db, tmp_path):
    from projections.replay import replay_into
    from projections.reports.registry import REPORT_NAMES, build_report, check_request
    from projections.reports.rendering import render

    ledger = _post_script(sqlite_db)
    store = ProjectionStore(sqlite_db)
    Projector(ledger.app, store).catch_up()  # every projection: a report names the chain's head

    def reports(views: Views) -> dict[tuple[str, str, str], str]:
        return {(name, day, fmt): render(build_report(views, check_request(name, day)), fmt)
                for name in REPORT_NAMES for day in ("2025-03-01", "2025-03-02", "2025-03-03") for fmt in ("csv", "json")}

    live = reports(Views(store))
    rebuild(ledger.app, store, list(READ_MODELS))
    replayed = ProjectionStore(str(tmp_path / "replay.db"))
    replay_into(ledger.app, replayed, ledger.head())
    assert reports(Views(store)) == live
    assert reports(Views(replayed)) == live
    assert any("liquidation_fill" in text for text in live.values())


def test_a_projector_overtaken_by_another_after_its_commit_is_not_refused(sqlite_db):
    """Regression: the read-back after a commit found the position *beyond* the page.

    Two projectors on one store (as two processes): A commits a page up to ``cut``; before
    A reads its tracking position back, B takes the lock and advances the projections to
    the head. A's page was committed, so A must not fail with ``projection_not_committed``
    (it compared ``stored != reached``); it must go on from where B left off.
    """
    ledger = _post_script(sqlite_db)
    cut = ledger.head()
    ledger.post_ok('{"type":"deposit","account":"alice","amount":"5","at":"2025-03-03T13:00:00Z"}\n'
                   '{"type":"price","market":"X-PERP","price":"860","at":"2025-03-03T14:00:00Z"}')
    head = ledger.head()
    first = Projector(ledger.app, ProjectionStore(sqlite_db), READ_MODELS)
    second = Projector(ledger.app, ProjectionStore(sqlite_db), READ_MODELS)
    confirm = first._confirm
    overtaken: list[int] = []

    def overtaken_before_read_back(reached: int) -> None:
        if not overtaken:
            second.catch_up()
            overtaken.append(reached)
        confirm(reached)

    first._confirm = overtaken_before_read_back  # type: ignore[method-assign]
    first.catch_up(until=cut)
    assert overtaken == [cut] and cut < head
    assert {status.position for status in first.status()} == {head}
    first.catch_up()  # A's cached rows are older than the store's: it drops them and carries on
    ledger.post_ok('{"type":"deposit","account":"bob","amount":"1","at":"2025-03-03T15:00:00Z"}')
    first.catch_up()
    scratch = Projector(ledger.app, ProjectionStore(":memory:"), READ_MODELS)
    scratch.catch_up()
    for name in READ_MODELS:
        assert first_difference(first, scratch, name) is None


def test_a_page_whose_commit_was_lost_is_still_refused(sqlite_db):
    """The other side of the check: a tracked position *below* the page is a lost commit."""
    from projections.runner import ProjectionError

    ledger = _post_script(sqlite_db)
    projector = Projector(ledger.app, ProjectionStore(sqlite_db), ["insurance_fund"])
    projector.prepare()
    tracker = projector.trackers["insurance_fund"]
    tracker.max_tracking_id = lambda application: 0  # type: ignore[method-assign] - as if the commit was swallowed
    with pytest.raises(ProjectionError) as raised:
        projector.catch_up()
    assert raised.value.code == "projection_not_committed"


# -- account list, the amount due on a call, ADL ranks (issue 8, section 4) ---------------------------------


def _cli(db: str, *args: str, catch_up: bool = True):
    from click.testing import CliRunner

    from cli.main import main

    if catch_up:  # a query after the in-process ledger's posts: catching up is the writer's job (ADR 27)
        assert CliRunner().invoke(main, ["--db", db, "projections", "catch-up"], catch_exceptions=False).exit_code == 0
    return CliRunner().invoke(main, ["--db", db, *args], catch_exceptions=False)


def _ledger(db: str, script: str) -> Ledger:
    ledger = Ledger(env=store_env(db))
    ledger.post_ok(script.strip())
    return ledger


STATUSES = """
{"type":"create_market","market":"X-PERP","kind":"perpetual","tick_size":"0.5","step_size":"0.01","initial_margin_fraction":"0.1","maintenance_margin_fraction":"0.05","price_band":"0.5"}
{"type":"create_market","market":"Y-PERP","kind":"perpetual","tick_size":"0.01","step_size":"0.1","initial_margin_fraction":"0.1","maintenance_margin_fraction":"0.05","price_band":"0.5"}
{"type":"set_parameters","parameters":{"loss_policy":"socialize_per_contract","margin_call_grace":36000}}
{"type":"price","market":"X-PERP","price":"1000"}
{"type":"price","market":"Y-PERP","price":"20"}
{"type":"open_account","account":"maker"}
{"type":"deposit","account":"maker","amount":"1000000"}
{"type":"open_account","account":"backstop"}
{"type":"deposit","account":"backstop","amount":"1000000"}
{"type":"open_account","account":"alice"}
{"type":"deposit","account":"alice","amount":"2000"}
{"type":"open_account","account":"bob"}
{"type":"deposit","account":"bob","amount":"1000"}
{"type":"open_account","account":"dave"}
{"type":"deposit","account":"dave","amount":"250"}
{"type":"open_account","account":"erin"}
{"type":"deposit","account":"erin","amount":"1000"}
{"type":"open_account","account":"frank"}
{"type":"deposit","account":"frank","amount":"5"}
{"type":"open_account","account":"gina"}
{"type":"close_account","account":"gina"}
{"type":"trade","market":"X-PERP","buyer":"alice","seller":"maker","size":"10","price":"1000"}
{"type":"trade","market":"X-PERP","buyer":"bob","seller":"maker","size":"10","price":"1000"}
{"type":"trade","market":"X-PERP","buyer":"maker","seller":"erin","size":"1","price":"1000"}
{"type":"trade","market":"Y-PERP","buyer":"dave","seller":"maker","size":"100","price":"20"}
{"type":"price","market":"X-PERP","price":"860"}
{"type":"price","market":"X-PERP","price":"840"}
{"type":"set_parameters","market":"Y-PERP","parameters":{"twap_max_deviation":"0.01"}}
{"type":"price","market":"Y-PERP","price":"17.8"}
"""
"""bob: equity 1,000 - 1,400 < 0 at 860, liquidated in full below his bankruptcy price (fund empty:
the deficit is socialized): bankrupt. alice: equity about 2,000 - 1,600 less her loss share at 840,
below maintenance (420) but above the floor (210): called. dave: at 17.8 equity 30 < floor 44.5,
due, but the mark is 11 % off its TWAP: deferred, liquidating. erin, frank, maker: healthy; gina closed."""


def test_account_list_gives_every_account_by_name_with_its_status_and_totals(store_db):
    ledger = _ledger(store_db, STATUSES)
    result = _cli(store_db, "account", "list", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)  # one document: an array
    names = ["alice", "backstop", "bob", "dave", "erin", "frank", "gina", "maker"]
    assert [row["account"] for row in rows] == names
    assert rows == [_list_row(margin_state.account_view(ledger.app, name)) for name in names]
    statuses = {row["account"]: row["status"] for row in rows}
    assert statuses == {"alice": "margin_call", "backstop": "healthy", "bob": "bankrupt", "dave": "liquidating",
                        "erin": "healthy", "frank": "healthy", "gina": "closed", "maker": "healthy"}
    assert all(isinstance(row[key], str) for row in rows for key in ("collateral", "equity", "initial_margin",
                                                                      "maintenance_margin"))
    assert {row["account"]: row["positions"] for row in rows} == {
        "alice": 1, "backstop": 1, "bob": 0, "dave": 1, "erin": 1, "frank": 0, "gina": 0, "maker": 2}
    assert rows[names.index("frank")] == {"account": "frank", "status": "healthy", "collateral": "5", "equity": "5",
                                          "initial_margin": "0", "maintenance_margin": "0", "positions": 0}
    for status in ACCOUNT_STATUSES:
        filtered = _cli(store_db, "account", "list", "--status", status, "--json")
        assert filtered.exit_code == 0
        assert json.loads(filtered.stdout) == [r for r in rows if r["status"] == status]
    text = _cli(store_db, "account", "list", "--status", "margin_call").stdout.splitlines()
    assert text[0].split() == ["account", "status", "collateral", "equity", "initial_margin", "maintenance_margin", "positions"]
    alice = rows[0]
    assert text[1].split() == ["alice", "margin_call", alice["collateral"], alice["equity"], alice["initial_margin"],
                               alice["maintenance_margin"], "1"]
    assert len(text) == 2
    bad = _cli(store_db, "account", "list", "--status", "open")
    assert bad.exit_code == 2 and "'open' is not one of" in bad.stderr


def test_account_list_streams_in_pages_and_sorts_by_code_point(store_db, monkeypatch):
    from projections import queries

    names = ["b-2", "B-1", "a_3", "A.4", "9", "z", "Zed", "m:1", "m@2", "a-1", "a0"]
    ledger = _ledger(store_db, "\n".join(json.dumps({"type": "open_account", "account": name}) for name in names))
    monkeypatch.setattr(queries, "PAGE", 3)  # pages smaller than the listing
    views = Views(ProjectionStore(store_db))
    Projector(ledger.app, views.store, ["margin"]).catch_up()
    rows = queries.account_list(views)
    first = next(rows)  # a generator: rows are produced as the query is read
    assert first["account"] == min(names)
    assert [first["account"], *[row["account"] for row in rows]] == sorted(names)


def test_account_list_of_a_store_without_accounts_prints_an_empty_listing(store_db):
    Ledger(env=store_env(store_db))  # creates the (empty) store
    for args, printed in (([], "no accounts\n"), (["--json"], "[]\n"), (["--status", "healthy"], "no accounts\n")):
        result = _cli(store_db, "account", "list", *args)
        assert (result.exit_code, result.stdout) == (0, printed), result.output


CALL = """
{"type":"create_market","market":"X-PERP","kind":"perpetual","tick_size":"0.5","step_size":"0.01","initial_margin_fraction":"0.1","maintenance_margin_fraction":"0.05","price_band":"0.5"}
{"type":"set_parameters","parameters":{"margin_call_grace":36000}}
{"type":"price","market":"X-PERP","price":"1000"}
{"type":"open_account","account":"maker"}
{"type":"deposit","account":"maker","amount":"1000000"}
{"type":"open_account","account":"alice"}
{"type":"deposit","account":"alice","amount":"1200"}
{"type":"trade","market":"X-PERP","buyer":"alice","seller":"maker","size":"10","price":"1000"}
{"type":"price","market":"X-PERP","price":"920"}
"""


def test_a_partly_paid_call_shows_the_amount_still_due_until_the_rest_meets_it(store_db):
    # At 920 alice's equity is 1,200 - 800 = 400: below maintenance 460, above the floor 230,
    # so she is called for initial margin 920 - 400 = 520 (cme rule, grace 10 h).
    ledger = _ledger(store_db, CALL)

    def shown() -> dict:
        result = _cli(store_db, "account", "show", "alice", "--json")
        assert result.exit_code == 0, result.output
        view = json.loads(result.stdout)
        assert view == margin_state.account_view(ledger.app, "alice")
        return view

    called = shown()
    assert called["status"] == "margin_call" and called["equity"] == "400"
    assert {k: called["margin_call"][k] for k in ("amount_to_initial", "amount_due", "rule")} == {
        "amount_to_initial": "520", "amount_due": "520", "rule": "cme"}
    ledger.post_ok('{"type":"deposit","account":"alice","amount":"200"}')
    paid = shown()  # equity 600 is above maintenance but below initial margin: the call stands
    assert paid["status"] == "margin_call" and paid["equity"] == "600"
    assert paid["margin_call"] == {**called["margin_call"], "amount_due": "320"}
    text = _cli(store_db, "account", "show", "alice").stdout
    assert "margin call in X-PERP (cme rule): 320 due of 520 called to restore initial margin" in text
    ledger.post_ok('{"type":"deposit","account":"alice","amount":"320"}')
    met = shown()
    assert met["status"] == "healthy" and met["margin_call"] is None and met["equity"] == "920"


THREE_LONGS = """
{"type":"create_market","market":"Z-PERP","kind":"perpetual","tick_size":"0.5","step_size":"0.01","initial_margin_fraction":"0.1","maintenance_margin_fraction":"0.05","price_band":"0.5"}
{"type":"price","market":"Z-PERP","price":"1000"}
{"type":"open_account","account":"maker"}
{"type":"deposit","account":"maker","amount":"1000000"}
{"type":"open_account","account":"l1"}
{"type":"deposit","account":"l1","amount":"450"}
{"type":"open_account","account":"l2"}
{"type":"deposit","account":"l2","amount":"350"}
{"type":"open_account","account":"l3"}
{"type":"deposit","account":"l3","amount":"700"}
{"type":"trade","market":"Z-PERP","buyer":"l1","seller":"maker","size":"1","price":"1000"}
{"type":"trade","market":"Z-PERP","buyer":"l2","seller":"maker","size":"2","price":"1000"}
{"type":"price","market":"Z-PERP","price":"1100"}
{"type":"trade","market":"Z-PERP","buyer":"l3","seller":"maker","size":"1","price":"1250"}
"""


def test_account_show_ranks_each_position_among_the_same_side_for_deleveraging(store_db):
    # At mark 1,100 (score = PnL% x leverage, PnL% / leverage at a loss; leverage = value / equity):
    # l1: long 1 at 1,000, equity 450 + 100 = 550: PnL 10 %, leverage 1,100 / 550 = 2 -> 0.2
    # l2: long 2 at 1,000, equity 350 + 200 = 550: PnL 10 %, leverage 2,200 / 550 = 4 -> 0.4
    # l3: long 1 at 1,250, equity 700 - 150 = 550: PnL -12 %, leverage 2 -> -0.12 / 2 = -0.06
    ledger = _ledger(store_db, THREE_LONGS)
    standings = {}
    for name in ("l1", "l2", "l3", "maker"):
        result = _cli(store_db, "account", "show", name, "--json")
        assert result.exit_code == 0, result.output
        view = json.loads(result.stdout)
        assert view == margin_state.account_view(ledger.app, name)
        (position,) = view["positions"]
        standings[name] = (position["adl_score"], position["adl_rank"], position["adl_holders"])
    assert standings == {"l2": ("0.4", 1, 3), "l1": ("0.2", 2, 3), "l3": ("-0.06", 3, 3),
                         "maker": (standings["maker"][0], 1, 1)}  # the only short
    text = _cli(store_db, "account", "show", "l1").stdout
    assert "adl_rank (score)" in text and "2/3 (0.2)" in text


def test_adl_scores_rank_highest_first_none_last_ties_by_name():
    from projections.margin import MarketTerms

    market = MarketTerms({"market": "Z-PERP", "contract_size": Decimal(1), "tick_size": Decimal("0.5"),
                          "tiers": '[["0", "0.1", "0.05", "0", "0"]]', "collateral_quantum": Decimal("0.000001"),
                          "mark": Decimal(1100)})
    holders = [AdlHolder("c", Decimal(1), Decimal(1000), Decimal(550)),   # 0.1 x 2 = 0.2
               AdlHolder("a", Decimal(1), Decimal(1000), Decimal(550)),   # 0.2: tie, by name
               AdlHolder("z", Decimal(2), Decimal(2000), Decimal(550)),   # 0.1 x 4 = 0.4
               AdlHolder("b", Decimal(1), Decimal(1000), Decimal(0)),     # equity <= 0: None, last
               AdlHolder("d", Decimal(1), Decimal(1250), Decimal(550))]   # -0.12 / 2 = -0.06
    assert adl_scores(market, holders) == [("z", Decimal("0.4")), ("a", Decimal("0.2")), ("c", Decimal("0.2")),
                                           ("d", Decimal("-0.06")), ("b", None)]
    assert adl_scores(market, []) == []


def test_a_projection_built_without_a_new_column_is_refused_until_rebuilt(store_db):
    from sqlalchemy import text

    from projections.runner import ProjectionError

    ledger = _ledger(store_db, CALL)
    store = ProjectionStore(store_db)
    Projector(ledger.app, store, READ_MODELS).catch_up()
    with store.engine.begin() as connection:  # as an older version left it: no call_rule column, no views
        connection.execute(text('DROP VIEW IF EXISTS "margin_accounts"'))
        connection.execute(text('ALTER TABLE "margin_accounts_g1" DROP COLUMN call_rule'))
    stale = Projector(ledger.app, ProjectionStore(store_db), READ_MODELS)
    with pytest.raises(ProjectionError) as refused:
        stale.catch_up()
    assert refused.value.code == "projection_outdated" and "margin_accounts_g1.call_rule" in str(refused.value)
    assert "projections rebuild margin" in str(refused.value)
    shown = _cli(store_db, "account", "show", "alice", catch_up=False)
    assert shown.exit_code == 3 and "projection_outdated" in shown.stderr
    assert rebuild(ledger.app, ProjectionStore(store_db), "margin") == {"margin": 2}
    shown_json = _cli(store_db, "account", "show", "alice", "--json")
    assert json.loads(shown_json.stdout) == margin_state.account_view(ledger.app, "alice")


def _view_rows(store: ProjectionStore, view: str) -> list[tuple[object, ...]]:
    from sqlalchemy import text

    with store.engine.connect() as connection:
        return [tuple(row) for row in connection.execute(text(f'SELECT * FROM "{view}" ORDER BY 1, 2'))]


def test_stable_views_keep_their_names_across_rebuilds(store_db):
    """SQL written against ``margin_accounts`` keeps working when a rebuild moves the data
    to ``margin_accounts_g2``: the view is switched in the rebuild's last transaction."""
    from sqlalchemy import inspect

    ledger = _ledger(store_db, STATUSES)
    store = ProjectionStore(store_db)
    projector = Projector(ledger.app, store)
    projector.catch_up()
    spec_names = {spec.name for name in (*READ_MODELS, "chain") for spec in projector.projections[name].SPECS}
    assert spec_names <= set(inspect(store.engine).get_view_names())
    before = _view_rows(store, "margin_accounts")
    assert [row[0] for row in before] == ["alice", "backstop", "bob", "dave", "erin", "frank", "gina", "maker"]
    assert rebuild(ledger.app, store, ["margin"]) == {"margin": 2}
    assert _view_rows(store, "margin_accounts") == before
    assert not inspect(store.engine).has_table("margin_accounts_g1")


def test_a_store_built_before_the_views_gets_them_from_its_next_writer(store_db):
    from sqlalchemy import inspect, text

    ledger = _ledger(store_db, STATUSES)
    store = ProjectionStore(store_db)
    Projector(ledger.app, store).catch_up()
    with store.datastore.transaction(commit=True) as session:  # as an older version left it
        for view in inspect(store.engine).get_view_names():
            session.execute(text(f'DROP VIEW "{view}"'))
    assert inspect(store.engine).get_view_names() == []
    reader = Projector(ledger.app, ProjectionStore(store_db, read_only=True))
    reader.prepare()
    assert inspect(store.engine).get_view_names() == []  # a reader never creates them
    Projector(ledger.app, store).prepare()
    assert "margin_positions" in inspect(store.engine).get_view_names()
