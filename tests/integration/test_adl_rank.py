"""``clearing adl rank`` and ``account show``'s standing under the market's loss policy.

The ledger (Z-PERP: tick 0.5, step 0.01, IMF 10 %, MMF 5 %, contract 1), on SQLite and on
PostgreSQL. At mark 1,000: l1 buys 1 from s1, l2 buys 2 from s2; the mark moves to 1,100;
l3 buys 1 from s3 at 1,250. At mark 1,100 (equity = deposit + gain, leverage = notional /
equity, BitMEX score = PnL% x leverage, PnL% / leverage at a loss):

    account  deposit  size  entry  gain  equity  leverage  BitMEX score
    l1           450     1  1,000   100     550         2  10 % x 2 = 0.2
    l2           350     2  1,000   200     550         4  10 % x 4 = 0.4
    l3           370     1  1,250  -150     220         5  -12 % / 5 = -0.024
    s1           650    -1  1,000  -100     550         2  -10 % / 2 = -0.05
    s2           750    -2  1,000  -200     550         4  -10 % / 4 = -0.025
    s3           125    -1  1,250   150     275         4  12 % x 4 = 0.48

Then the market's ``loss_policy`` goes from ``adl`` (the default) to ``waterfill_leverage``
and to ``haircut_gains`` through ``clearing set-parameters``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner, Result

from clearing.settings import store_env
from cli.main import main
from projections import queries
from projections.queries import LossPolicies
from projections.read import Views
from projections.store import ProjectionStore
from tests.ledger import Ledger

MARKET = ('{"type":"create_market","market":"Z-PERP","kind":"perpetual","tick_size":"0.5","step_size":"0.01",'
          '"initial_margin_fraction":"0.1","maintenance_margin_fraction":"0.05","price_band":"0.5"}')
OPENING = "\n".join([
    MARKET,
    '{"type":"price","market":"Z-PERP","price":"1000"}',
    *[f'{{"type":"open_account","account":"{name}"}}\n{{"type":"deposit","account":"{name}","amount":"{amount}"}}'
      for name, amount in (("l1", "450"), ("l2", "350"), ("l3", "370"), ("s1", "650"), ("s2", "750"), ("s3", "125"))],
    '{"type":"trade","market":"Z-PERP","buyer":"l1","seller":"s1","size":"1","price":"1000"}',
    '{"type":"trade","market":"Z-PERP","buyer":"l2","seller":"s2","size":"2","price":"1000"}',
    '{"type":"price","market":"Z-PERP","price":"1100"}',
])
LATE_TRADE = '{"type":"trade","market":"Z-PERP","buyer":"l3","seller":"s3","size":"1","price":"1250"}'
BEFORE_THE_POLICY_CHANGES = "2025-06-01T00:00:00Z"  # after every ledger command (2025-01-01), before the CLI's


def _cli(db: str, *args: str) -> Result:
    """A query after the in-process ledger's posts: the projections are caught up first, the
    writer's job (queries never catch up, ADR 27)."""
    assert CliRunner().invoke(main, ["--db", db, "projections", "catch-up"], catch_exceptions=False).exit_code == 0
    return CliRunner().invoke(main, ["--db", db, *args], catch_exceptions=False)


def _rank(db: str, *args: str) -> dict[str, Any]:
    result = _cli(db, "adl", "rank", "Z-PERP", "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _table(view: dict[str, Any], *fields: str) -> dict[str, list[tuple[Any, ...]]]:
    """Each side's rows in rank order, as (account, rank, *fields)."""
    return {side: [(row["account"], row["rank"], *(row[field] for field in fields)) for row in view[side]]
            for side in ("longs", "shorts")}


def _set_policy(db: str, policy: str) -> None:
    result = _cli(db, "set-parameters", "--market", "Z-PERP", f"loss_policy={policy}")
    assert result.exit_code == 0, result.output


@pytest.fixture
def ledger(store_db: str) -> tuple[Ledger, str, int, int]:
    """The ledger above: (ledger, db, position after the 1,100 mark, position after l3's trade)."""
    book = Ledger(env=store_env(store_db))
    book.post_ok(OPENING)
    cut_opening = book.head()
    book.post_ok(LATE_TRADE)
    return book, store_db, cut_opening, book.head()


def test_adl_ranks_each_side_and_a_deficit_goes_to_the_winners_in_score_order(ledger):
    book, db, _, head = ledger
    view = _rank(db, "--deficit", "250")
    assert {key: view[key] for key in ("market", "policy", "family", "mark_price", "contract_size", "position",
                                       "deficit")} == {
        "market": "Z-PERP", "policy": "adl", "family": "queue", "mark_price": "1100", "contract_size": "1",
        "position": head, "deficit": "250"}
    # If a bankrupt short left 250, the longs' winners pay in score order, each up to its gain:
    # l2 (0.4) its whole gain 200, l1 (0.2) the other 50; l3 is at a loss. If a bankrupt long left
    # 250, the only short with a gain, s3 (150), pays 150 and 100 stays uncovered.
    assert _table(view, "size", "equity", "leverage", "score", "bears") == {
        "longs": [("l2", 1, "2", "550", "4", "0.4", "200"), ("l1", 2, "1", "550", "2", "0.2", "50"),
                  ("l3", 3, "1", "220", "5", "-0.024", "0")],
        "shorts": [("s3", 1, "-1", "275", "4", "0.48", "150"), ("s2", 2, "-2", "550", "4", "-0.025", "0"),
                   ("s1", 3, "-1", "550", "2", "-0.05", "0")]}
    assert view["what_if"] == [{"charged": "longs", "borne": "250", "uncovered": "0"},
                               {"charged": "shorts", "borne": "150", "uncovered": "100"}]
    assert book.head() == head  # a read writes nothing
    text = _cli(db, "adl", "rank", "Z-PERP", "--deficit", "250").stdout
    assert text.splitlines()[0] == f"market Z-PERP  policy adl (queue)  mark 1100  log position {head}"
    assert "if a bankrupt position of the shorts left 250: longs bear 250, 0 uncovered" in text
    assert "if a bankrupt position of the longs left 250: shorts bear 150, 100 uncovered" in text


def test_without_a_deficit_nobody_bears_anything(ledger):
    _, db, _, _ = ledger
    view = _rank(db)
    assert view["deficit"] is None and view["what_if"] == []
    assert {row["bears"] for side in ("longs", "shorts") for row in view[side]} == {None}
    assert "bears" not in _cli(db, "adl", "rank", "Z-PERP").stdout


def test_waterfill_ranks_by_leverage_and_charges_the_most_levered_winners_first(ledger):
    _, db, _, _ = ledger
    _set_policy(db, "waterfill_leverage")
    view = _rank(db, "--deficit", "250")
    assert (view["policy"], view["family"]) == ("waterfill_leverage", "queue")
    # score = leverage, highest first: l3 5, l2 4, l1 2; s2 and s3 both 4 (by name), s1 2.
    # If a bankrupt short left 250 (250 / 1,100 contracts at the mark), water-filling over the
    # winners l2 (leverage 4) and l1 (2) closes l2 alone down to (2,200 - 250) / 550 = 3.55 >= 2,
    # so l2 bears up to its gain, 200; the other 50 is water-filled over l1 alone.
    assert _table(view, "score", "bears") == {
        "longs": [("l3", 1, "5", "0"), ("l2", 2, "4", "200"), ("l1", 3, "2", "50")],
        "shorts": [("s2", 1, "4", "0"), ("s3", 2, "4", "150"), ("s1", 3, "2", "0")]}
    assert view["what_if"] == [{"charged": "longs", "borne": "250", "uncovered": "0"},
                               {"charged": "shorts", "borne": "150", "uncovered": "100"}]


def test_haircut_gains_charges_every_winner_pro_rata_to_gain(ledger):
    _, db, _, _ = ledger
    _set_policy(db, "waterfill_leverage")
    _set_policy(db, "haircut_gains")
    view = _rank(db, "--deficit", "90")
    assert (view["policy"], view["family"]) == ("haircut_gains", "cash")
    # score = gain; one allocation over every holder: gains l2 200, s3 150, l1 100 (450 in all),
    # so 90 is 20 % of each gain: l2 40, s3 30, l1 20; the losers pay nothing.
    assert _table(view, "score", "bears") == {
        "longs": [("l2", 1, "200", "40"), ("l1", 2, "100", "20"), ("l3", 3, "-150", "0")],
        "shorts": [("s3", 1, "150", "30"), ("s1", 2, "-100", "0"), ("s2", 3, "-200", "0")]}
    assert view["what_if"] == [{"charged": "all", "borne": "90", "uncovered": "0"}]
    text = _cli(db, "adl", "rank", "Z-PERP", "--deficit", "90").stdout
    assert "if 90 were allocated over every holder: all bear 90, 0 uncovered" in text


def test_as_of_an_earlier_point_gives_the_ranking_and_the_policy_of_then(ledger):
    _, db, cut_opening, cut_trade = ledger
    _set_policy(db, "waterfill_leverage")
    earlier = _rank(db, "--as-of", str(cut_opening), "--deficit", "250")
    # before l3 and s3 traded: two holders a side, still under adl
    assert (earlier["policy"], earlier["position"]) == ("adl", cut_opening)
    assert _table(earlier, "score", "bears") == {
        "longs": [("l2", 1, "0.4", "200"), ("l1", 2, "0.2", "50")],
        "shorts": [("s2", 1, "-0.025", "0"), ("s1", 2, "-0.05", "0")]}
    by_time = _rank(db, "--as-of", BEFORE_THE_POLICY_CHANGES)
    assert (by_time["policy"], by_time["position"]) == ("adl", cut_trade)
    assert [row["account"] for row in by_time["shorts"]] == ["s3", "s2", "s1"]  # the adl order
    now = _rank(db)
    assert now["policy"] == "waterfill_leverage" and [row["account"] for row in now["shorts"]] == ["s2", "s3", "s1"]


def test_account_show_ranks_under_the_policy_in_force(ledger):
    _, db, _, cut_trade = ledger

    def standing(*args: str) -> tuple[str, str, int, int]:
        result = _cli(db, "account", "show", "l3", "--json", *args)
        assert result.exit_code == 0, result.output
        (position,) = json.loads(result.stdout)["positions"]
        return position["adl_policy"], position["adl_score"], position["adl_rank"], position["adl_holders"]

    assert standing() == ("adl", "-0.024", 3, 3)
    _set_policy(db, "waterfill_leverage")
    assert standing() == ("waterfill_leverage", "5", 1, 3)  # the most levered long is closed first
    assert standing("--as-of", str(cut_trade)) == ("adl", "-0.024", 3, 3)


def test_the_policy_in_force_follows_the_defaults_and_the_market_override(ledger):
    book, db, _, _ = ledger
    reader = LossPolicies(book.app)
    before = book.head()
    assert reader.in_force("Z-PERP", before) == "adl"
    assert _cli(db, "set-parameters", "loss_policy=socialize_per_contract").exit_code == 0  # the default
    defaults_set = book.head()
    _set_policy(db, "leverage_weighted_gains")
    assert reader.in_force("Z-PERP", book.head()) == "leverage_weighted_gains"  # the override wins
    assert reader.in_force("OTHER", book.head()) == "socialize_per_contract"  # no override: the default
    assert reader.in_force("Z-PERP", defaults_set) == "socialize_per_contract"
    assert reader.in_force("Z-PERP", before) == "adl"  # an earlier position reads again
    views = Views(ProjectionStore(db))
    (position,) = queries.account_view(views, "l1", reader)["positions"]  # caught up by the CLI above
    assert (position["adl_policy"], position["adl_score"]) == ("leverage_weighted_gains", "200")  # 2 x gain 100


@pytest.mark.parametrize(("args", "code", "shown"), [
    (["--deficit", "-5"], "negative", "deficit must not be negative"),
    (["--deficit", "abc"], "invalid_number", "deficit: 'abc' is not a plain decimal number"),
    (["--deficit", "NaN"], "invalid_number", "deficit: 'NaN' is not a plain decimal number"),
    (["--deficit", "1e3"], "invalid_number", "deficit: '1e3' is not a plain decimal number"),
    (["--deficit", "2.5f"], "invalid_number", "deficit: '2.5f' is not a plain decimal number"),
    (["--deficit", "0.0000001"], "too_many_decimals", "deficit 0.0000001 is not a multiple of the collateral quantum"),
    (["--as-of", "yesterday"], "invalid_until", "until: 'yesterday' is neither a log position nor an ISO-8601 time"),
])
def test_bad_input_names_its_field_on_one_line_and_writes_nothing(ledger, args, code, shown):
    book, db, _, head = ledger
    result = _cli(db, "adl", "rank", "Z-PERP", *args)
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.startswith(f"error: [{code}] ") and shown in result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert book.head() == head


def test_an_unknown_market_is_refused(ledger):
    book, db, _, head = ledger
    result = _cli(db, "adl", "rank", "NOPE-PERP", "--json")
    assert result.exit_code == 1 and json.loads(result.stderr) == {  # --json: the error as JSON too
        "error": {"code": "market_not_found", "field": "market", "message": "market NOPE-PERP does not exist"}}
    assert book.head() == head
