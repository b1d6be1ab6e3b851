"""The hash chain over the event log, its digest, and ``verify_chain``, without a database.

Logs come from a ledger on the library's in-memory store. Tampering with the log itself
is done on a ``ListRecorder`` (a copy of those notifications that a test may edit); SQL
tampering on real stores is in tests/integration/test_tamper.py.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from uuid import UUID

import pytest
from eventsourcing.persistence import Notification

from clearing.audit.chain import (
    GENESIS,
    SCHEME,
    ChainBreak,
    Digest,
    digest,
    event_hash,
    iter_chain,
    verify_chain,
)
from clearing.errors import InputError
from tests.ledger import MARKET_BTC, Ledger, accounts_with

SCRIPT = f"""
{MARKET_BTC}
{accounts_with(("alice", "10000"), ("bob", "10000"), ("carol", "5000"))}
{{"type":"price","market":"BTC-PERP","price":"50000"}}
{{"type":"trade","market":"BTC-PERP","buyer":"alice","seller":"bob","size":"0.4","price":"50000"}}
{{"type":"deposit","account":"alice","amount":"250"}}
{{"type":"price","market":"BTC-PERP","price":"49000.5"}}
{{"type":"trade","market":"BTC-PERP","buyer":"bob","seller":"carol","size":"0.1","price":"49000"}}
{{"type":"deposit","account":"bob","amount":"1.5"}}
{{"type":"trade","market":"BTC-PERP","buyer":"carol","seller":"alice","size":"0.2","price":"49000"}}
"""

ID = UUID(int=1)


class ListRecorder:
    """A fake application recorder over a list of notifications a test may edit."""

    def __init__(self, notifications: Sequence[Notification]) -> None:
        self.notifications = list(notifications)

    def select_notifications(self, start: int | None, limit: int, **_: object) -> list[Notification]:
        chosen = sorted((n for n in self.notifications if n.id >= (start or 1)), key=lambda n: n.id)
        return chosen[:limit]


@pytest.fixture(scope="module")
def ledger() -> Ledger:
    ledger = Ledger()
    ledger.post_ok(SCRIPT)
    return ledger


@pytest.fixture
def log(ledger: Ledger) -> ListRecorder:
    return ListRecorder(ledger.app.recorder.select_notifications(start=1, limit=10_000))


def _field(data: bytes) -> bytes:
    return len(data).to_bytes(8, "big") + data


# -- event_hash ---------------------------------------------------------------------------


def test_event_hash_is_sha256_over_length_prefixed_fields():
    expected = hashlib.sha256(
        GENESIS + _field(b"sha256-v1") + _field(ID.bytes) + _field(b"1") + _field(b"t") + _field(b"{}")
    ).digest()
    assert event_hash(GENESIS, ID, 1, "t", b"{}") == expected
    # pinned: changing the serialisation must come with a new scheme name
    assert expected.hex() == "b1a61c922db05175f1739b4b6820383a1c20b9ab6aa013ad1171ce4762e26ff6"
    assert bytes(32) == GENESIS and SCHEME == "sha256-v1"


BASE = (GENESIS, ID, 7, "clearing.domain.account:Account.Deposited", b'{"amount":"10"}')


@pytest.mark.parametrize(
    "index, value",
    [
        (0, b"\x01" + bytes(31)),
        (1, UUID(int=2)),
        (2, 8),
        (3, "clearing.domain.account:Account.Withdrawn"),
        (4, b'{"amount":"11"}'),
        (4, b'{"amount":"10"} '),
    ],
)
def test_event_hash_changes_when_any_one_field_changes(index, value):
    changed = list(BASE)
    changed[index] = value
    assert event_hash(*BASE) == event_hash(*BASE)
    assert event_hash(*changed) != event_hash(*BASE)


def test_event_hash_has_no_ambiguity_between_fields():
    assert event_hash(GENESIS, ID, 1, "ab", b"c") != event_hash(GENESIS, ID, 1, "a", b"bc")
    assert event_hash(GENESIS, ID, 11, "t", b"") != event_hash(GENESIS, ID, 1, "1t", b"")


def test_event_hash_accepts_the_text_form_of_an_aggregate_id():
    assert event_hash(GENESIS, str(ID), 1, "t", b"{}") == event_hash(GENESIS, ID, 1, "t", b"{}")


def test_event_hash_needs_a_32_byte_previous_hash():
    with pytest.raises(ValueError):
        event_hash(b"short", ID, 1, "t", b"{}")


# -- iter_chain and digest ------------------------------------------------------------------


def test_the_chain_is_deterministic_whatever_the_page_size(ledger):
    chain = list(iter_chain(ledger.app.recorder))
    assert [position for position, _ in chain] == list(range(1, ledger.head() + 1))
    assert list(iter_chain(ledger.app.recorder, page=3)) == chain
    assert list(iter_chain(ledger.app.recorder, page=1)) == chain
    assert len({link for _, link in chain}) == len(chain)


def test_the_chain_continues_from_any_position_given_the_hash_before_it(ledger):
    chain = list(iter_chain(ledger.app.recorder))
    middle = len(chain) // 2
    tail = list(iter_chain(ledger.app.recorder, start=middle + 1, previous=chain[middle - 1][1]))
    assert tail == chain[middle:]


def test_the_chain_does_not_depend_on_positions(log):
    renumbered = ListRecorder([dataclasses.replace(n, id=n.id * 3 + 10) for n in log.notifications])
    assert [link for _, link in iter_chain(renumbered)] == [link for _, link in iter_chain(log)]
    assert digest(renumbered).head == digest(log).head


def test_digest_is_the_head_of_the_whole_log(ledger):
    chain = list(iter_chain(ledger.app.recorder))
    assert digest(ledger.app.recorder) == Digest(chain[-1][0], len(chain), chain[-1][1].hex(), SCHEME)


def test_digest_of_an_empty_log_is_the_genesis():
    empty = Ledger()
    assert digest(empty.app.recorder) == Digest(0, 0, "0" * 64)
    assert verify_chain(empty.app.recorder, stored=[], digest=Digest(0, 0, "0" * 64)) is None


# -- Digest text -------------------------------------------------------------------------------


def test_digest_text_round_trips(ledger):
    found = digest(ledger.app.recorder)
    text = found.to_text()
    assert text == f"sha256-v1:{found.position}:{found.events}:{found.head}" and "\n" not in text
    assert Digest.parse(text) == found
    assert Digest.parse(f"  {text}\n") == found
    assert Digest.parse(Digest(0, 0, GENESIS.hex()).to_text()) == Digest(0, 0, GENESIS.hex())


HEAD = "ab" * 32


@pytest.mark.parametrize(
    "text",
    [
        "",
        "sha256-v1",
        "sha256-v1:5:5",
        f"sha256-v1:5:5:{HEAD}:extra",
        f"md5:5:5:{HEAD}",
        f"SHA256-V1:5:5:{HEAD}",
        f"sha256-v1:-5:5:{HEAD}",
        f"sha256-v1:+5:5:{HEAD}",
        f"sha256-v1:05:5:{HEAD}",
        f"sha256-v1:5.0:5:{HEAD}",
        f"sha256-v1:5: 5:{HEAD}",
        f"sha256-v1:five:5:{HEAD}",
        f"sha256-v1:5:5:{HEAD[:-2]}",
        f"sha256-v1:5:5:{HEAD}00",
        f"sha256-v1:5:5:{HEAD.upper()}",
        f"sha256-v1:5:5:{'zz' * 32}",
        f"sha256-v1:5:6:{HEAD}",  # more events than positions
        f"sha256-v1:0:1:{HEAD}",
        f"sha256-v1:5:0:{HEAD}",
        f"sha256-v1:0:0:{HEAD}",  # an empty log has the genesis head
    ],
)
def test_a_bad_digest_is_refused_as_invalid_digest(text):
    with pytest.raises(InputError) as refused:
        Digest.parse(text)
    assert (refused.value.code, refused.value.field) == ("invalid_digest", "digest")
    assert "\n" not in refused.value.message


# -- verify_chain on a clean log, and against a recorded chain that differs ------------------------


def test_a_clean_log_verifies_against_its_chain_and_digest(ledger):
    recorder = ledger.app.recorder
    stored, found = list(iter_chain(recorder)), digest(recorder)
    seen: list[int] = []
    assert verify_chain(recorder) is None
    assert verify_chain(recorder, stored=stored) is None
    assert verify_chain(recorder, digest=found) is None
    assert verify_chain(recorder, stored=stored, digest=found, progress=seen.append, page=4) is None
    assert seen[-1] == found.events and seen == sorted(seen) and len(seen) > 1


def test_a_recorded_chain_of_hex_text_is_accepted(ledger):
    recorder = ledger.app.recorder
    assert verify_chain(recorder, stored=((p, link.hex()) for p, link in iter_chain(recorder))) is None


def test_events_appended_after_the_chain_are_unchained_but_within_an_older_digest():
    ledger = Ledger()
    ledger.post_ok(SCRIPT)
    stored, before = list(iter_chain(ledger.app.recorder)), digest(ledger.app.recorder)
    ledger.post_ok('{"type":"deposit","account":"carol","amount":"7"}')
    found = verify_chain(ledger.app.recorder, stored=stored)
    assert found is not None and (found.position, found.code) == (before.position + 1, "event_unchained")
    assert verify_chain(ledger.app.recorder, digest=before) is None  # the digest covers its prefix only


def _break(found: ChainBreak | None) -> tuple[int, str]:
    assert found is not None
    assert found.message and "\n" not in found.message
    return found.position, found.code


def test_a_position_left_out_of_the_recorded_chain_is_an_inserted_event(log):
    stored = list(iter_chain(log))
    assert _break(verify_chain(log, stored=stored[:4] + stored[5:])) == (5, "event_inserted")


def test_a_recorded_position_absent_from_the_log_is_a_missing_event(log):
    stored = list(iter_chain(log))
    assert _break(verify_chain(log, stored=[*stored, (stored[-1][0] + 1, GENESIS)])) == (len(stored) + 1, "event_missing")


def test_a_different_recorded_hash_is_a_mismatch_at_its_position(log):
    stored = list(iter_chain(log))
    stored[6] = (stored[6][0], bytes(32))
    assert _break(verify_chain(log, stored=stored)) == (7, "hash_mismatch")


def test_a_recorded_chain_out_of_position_order_is_an_error(log):
    stored = list(iter_chain(log))
    with pytest.raises(ValueError):
        verify_chain(log, stored=[*stored[:6], stored[4], *stored[6:]])


# -- verify_chain on a tampered log (a fake recorder; SQL tampering is in tests/integration) ----


def _tampered(log: ListRecorder, edit) -> ListRecorder:
    notifications = list(log.notifications)
    edit(notifications)
    return ListRecorder(notifications)


def _later_of_same_aggregate(log: ListRecorder, index: int) -> int | None:
    target = log.notifications[index]
    later = [n.id for n in log.notifications[index + 1:] if n.originator_id == target.originator_id]
    return later[0] if later else None


def test_a_changed_state_is_a_mismatch_at_its_position_and_breaks_the_digest(log):
    stored, before = list(iter_chain(log)), digest(log)

    def edit(ns):
        ns[9] = dataclasses.replace(ns[9], state=ns[9].state.replace(b'"', b"'", 1))

    changed = _tampered(log, edit)
    assert _break(verify_chain(changed, stored=stored)) == (10, "hash_mismatch")
    assert _break(verify_chain(changed, digest=before)) == (before.position, "digest_mismatch")
    assert verify_chain(changed) is None  # versions alone cannot see a changed state


def test_a_deleted_event_is_missing_and_its_aggregate_shows_a_version_gap(log):
    stored, before = list(iter_chain(log)), digest(log)
    index = next(i for i in range(len(log.notifications)) if _later_of_same_aggregate(log, i))
    changed = _tampered(log, lambda ns: ns.pop(index))
    assert _break(verify_chain(changed, stored=stored)) == (index + 1, "event_missing")
    assert _break(verify_chain(changed)) == (_later_of_same_aggregate(log, index), "version_gap")
    assert _break(verify_chain(changed, digest=before))[1] in ("version_gap", "digest_mismatch")


def test_a_truncated_log_is_missing_events_or_truncated_against_a_digest(log):
    stored, before = list(iter_chain(log)), digest(log)
    changed = _tampered(log, lambda ns: ns.pop())
    assert _break(verify_chain(changed, stored=stored)) == (before.position, "event_missing")
    assert _break(verify_chain(changed, digest=before)) == (before.position, "log_truncated")
    empty = ListRecorder([])
    assert _break(verify_chain(empty, digest=before)) == (1, "log_truncated")


def test_a_deleted_event_the_versions_cannot_see_is_a_count_mismatch_against_the_digest(log):
    before = digest(log)
    index = next(i for i in range(len(log.notifications) - 1) if _later_of_same_aggregate(log, i) is None)
    changed = _tampered(log, lambda ns: ns.pop(index))
    assert verify_chain(changed) is None
    found = verify_chain(changed, digest=before)
    assert _break(found) == (before.position, "digest_mismatch")
    assert f"{before.events - 1} events up to position {before.position}, the digest {before.events}" in found.message


def test_a_missing_digest_position_with_later_events_is_a_digest_mismatch(log):
    before = digest(ListRecorder(log.notifications[:12]))
    changed = _tampered(log, lambda ns: ns.pop(11))
    assert _break(verify_chain(changed, digest=before)) == (12, "digest_mismatch")


def test_two_events_swapped_are_a_mismatch_at_the_first(log):
    stored = list(iter_chain(log))

    def edit(ns):
        ns[3], ns[8] = dataclasses.replace(ns[8], id=4), dataclasses.replace(ns[3], id=9)

    assert _break(verify_chain(_tampered(log, edit), stored=stored)) == (4, "hash_mismatch")


def test_a_changed_version_is_a_mismatch_and_a_version_gap(log):
    stored = list(iter_chain(log))

    def edit(ns):
        ns[5] = dataclasses.replace(ns[5], originator_version=ns[5].originator_version + 100)

    changed = _tampered(log, edit)
    assert _break(verify_chain(changed, stored=stored)) == (6, "hash_mismatch")
    assert _break(verify_chain(changed)) == (6, "version_gap")


def test_an_inserted_copy_is_inserted_or_unchained_and_caught_by_the_digest(log):
    spaced = ListRecorder([dataclasses.replace(n, id=n.id * 2) for n in log.notifications])
    stored, before = list(iter_chain(spaced)), digest(spaced)
    copy = spaced.notifications[2]
    last_version = max(n.originator_version for n in spaced.notifications if n.originator_id == copy.originator_id)
    extra = dataclasses.replace(copy, originator_version=last_version + 1)
    middle = _tampered(spaced, lambda ns: ns.insert(3, dataclasses.replace(extra, id=7)))
    assert _break(verify_chain(middle, stored=stored)) == (7, "event_inserted")
    assert _break(verify_chain(middle, digest=before)) == (before.position, "digest_mismatch")
    end = _tampered(spaced, lambda ns: ns.append(dataclasses.replace(extra, id=before.position + 1)))
    assert _break(verify_chain(end, stored=stored)) == (before.position + 1, "event_unchained")
    assert verify_chain(end, digest=before) is None  # after the digest: not its concern
