"""Projections as of a past point of the log: ``audit replay --until`` and ``--as-of``.

A cut is a log position: every event at or before it is in, nothing after. A business
time T cuts the log before the first event (in log order) whose business time ``at`` is
later than T, so the state shown is the one the ledger had when T had just passed.
Example: events at 10:00 (position 5) and 10:05 (position 9); ``--as-of 10:02`` -> 8.

``audit replay --into`` is atomic (``ReplayTarget``, ADR 11): the projections are built in
a staging target and moved to the name asked for only once complete, so a run killed
midway never leaves a target that looks valid, and the next run starts afresh:

* SQLite: the staging file is ``.<name>.partial-<pid>`` in the target's directory. When
  complete it is checkpointed into one self-contained file (journal mode DELETE), synced,
  and hard-linked to the target name, which fails if that name appeared meanwhile (never
  overwritten), then the staging name is removed. Staging files of processes that no
  longer run (a killed replay) are removed by the next replay into the same target.
* PostgreSQL (``?schema=S``): the staging schema is ``S__partial`` (shortened with a hash
  for long names); a session advisory lock on the target name, held for the whole run on
  its own connection, keeps two replays into one target apart and is released by the
  server when a killed replay's connection drops. When complete, one transaction drops the
  (empty) target schema if it exists and renames the staging schema to ``S``. A leftover
  staging schema is dropped by the next run, under the lock.

A target that already holds anything (a file, a schema with tables) is refused with
``target_exists``, as before: delete it to replay into that name again.
"""

from __future__ import annotations

import hashlib
import os
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from clearing.audit.log import read_log
from clearing.domain.account import Account
from clearing.domain.fills import latest_fill_at
from clearing.errors import ClearingError, InputError
from clearing.settings import is_postgres, store_env
from projections import checkpoints
from projections.margin import MarginProjection
from projections.read import Views
from projections.runner import Progress, Projector
from projections.store import ProjectionStore

if TYPE_CHECKING:
    from clearing.application import ClearingApplication

PARTIAL = ".partial-"  # SQLite staging files: .<name>.partial-<pid>
SCHEMA_SUFFIX = "__partial"
REPLAY_LOCK = 7202612  # first key of the two-key advisory lock on a PostgreSQL target
#: pages of the scan for a time's cut: it starts just before the cut (``time_floor``), and
#: every row of a page is decoded, so a small page decodes little past the cut
SCAN_PAGE = 1000


def resolve_until(app: Any, text: str) -> int:
    """A log position from ``POSITION`` (an integer) or an ISO-8601 business time with zone."""
    head = app.recorder.max_notification_id() or 0
    if text.strip().isdigit():
        position = int(text)
        if position < 1:
            raise InputError("invalid_until", "until", "a log position starts at 1")
        return min(position, head)
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InputError("invalid_until", "until", f"{text!r} is neither a log position nor an ISO-8601 time") from None
    if moment.tzinfo is None:
        raise InputError("invalid_until", "until", "give the time with its zone, e.g. 2025-10-10T21:00:00Z")
    floor = time_floor(app, moment, head)
    found = _position_before(app, moment, head, floor)
    return found if found is not None else _position_before(app, moment, head, 0) or 0


def _run_at(app: ClearingApplication, position: int) -> str | None:
    """The run of fills the row at ``position`` belongs to; None for any other row."""
    notes = app.recorder.select_notifications(start=position, limit=1)
    if not notes or notes[0].id != position:
        return None
    event = app.mapper.to_domain_event(notes[0])
    return event.run if isinstance(event, Account.FillsRecorded) else None


def time_floor(app: ClearingApplication, moment: datetime, head: int) -> int:
    """A log position at or before the cut for ``moment``, found without reading the log.

    Binary search on the watermark (``ClearingApplication.watermark_at``): the last row
    the watermark as of a position was read from, when that watermark is at or before
    ``moment``, has no event after ``moment`` at or before it, so the cut is not earlier.
    About 20 probes of one page each on a log of 1,000,000 events, where reading and
    decoding the log up to the cut took most of a ``--as-of``. 0 when no watermark is
    recorded (a log of an older version): the scan then starts at position 1.
    """
    low, high, floor = 1, head, 0
    while low <= high:
        middle = (low + high) // 2
        watermark, row = app.watermark_at(middle)
        if watermark is not None and watermark <= moment:
            floor, low = max(floor, row), middle + 1
        else:
            high = middle - 1
    return floor


def _position_before(app: ClearingApplication, moment: datetime, head: int, start: int) -> int | None:
    """The last position before the first event after ``moment``, scanning from ``start + 1``;
    a run of fills (ADR 25: its rows, consecutive, one per account) counts as one event,
    after ``moment`` when any of its fills is, so the state never holds half a trade.

    None when the scan began inside a run (its first row unseen: the row at ``start`` is a
    fill of the same run) and that run is the one after ``moment``: the caller scans again
    from position 1.
    """
    run: tuple[str, int] | None = None  # (run, position of its first row)
    run_before = _run_at(app, start) if start else None
    for page in read_log(app.recorder, app.mapper, start=start + 1, page=SCAN_PAGE, stop=head):
        for note, event in page.decoded():
            if isinstance(event, Account.FillsRecorded):
                if run is None or run[0] != event.run:
                    run = (event.run, note.id)
                if latest_fill_at(event) > moment:
                    return None if run[1] == start + 1 and run[0] == run_before else run[1] - 1
                continue
            run = None
            at = getattr(event, "at", None)
            if at is not None and at > moment:
                return note.id - 1
    return head


def replay_into(app: Any, target: ProjectionStore, until: int, names: list[str] | None = None,
                progress: Progress | None = None) -> Projector:
    """Build projections into ``target`` (a separate file, schema or memory) up to ``until``."""
    projector = Projector(app, target, names)
    projector.catch_up(until=until, progress=progress)
    return projector


def replay_views(app: Any, until: int, names: list[str], live: Views | None = None,
                 progress: Progress | None = None) -> Views:
    """Projections ``names`` replayed into an in-memory database up to ``until``.

    The margin projection alone, with the ``live`` store's views given, starts from the
    last checkpoint at or before ``until`` (``projections.checkpoints``) and replays only
    the tail after it; without one (a log shorter than a checkpoint interval, a store
    built before checkpoints) it replays from position 1, as every other projection does.
    Seeded so, it serves a query: its state tables (accounts, positions, markets, the
    clock) are exact, and the closed days' flows and end-of-day rows, which no query as of
    a point reads, are neither copied nor written.
    """
    store = ProjectionStore(":memory:")
    projector = Projector(app, store, names)
    if names == ["margin"] and live is not None:  # the queries read the state tables only
        seed_from_checkpoint(projector, live, until, history=False)
        cast(MarginProjection, projector.projections["margin"]).end_of_day_rows = False
    projector.catch_up(until=until, progress=progress)
    return Views(store)


def seed_from_checkpoint(projector: Projector, live: Views, until: int, history: bool = True) -> int:
    """Fill ``projector``'s (empty) margin tables from the ``live`` store's last checkpoint at
    or before ``until``, its tracking record at the checkpoint; the checkpoint's position, 0
    when there is none. ``history``: as ``checkpoints.seed_rows``."""
    from eventsourcing.persistence import Tracking
    from sqlalchemy.exc import SQLAlchemyError

    from projections.base import write_many
    from projections.runner import APPLICATION

    try:
        live_tables = {spec.name: live.table("margin", spec.name) for spec in MarginProjection.SPECS}
        with live.reading() as connection:
            found = checkpoints.latest(connection, live_tables, until)
            rows = checkpoints.seed_rows(connection, live_tables, found, history) if found is not None else {}
    except (ClearingError, SQLAlchemyError):  # margin never built, or tables of an older version: replay all
        return 0
    if found is None:
        return 0
    projector.prepare()
    tables = projector.projections["margin"].tables
    with projector.store.datastore.transaction(commit=True) as session:
        for name, table_rows in rows.items():
            if table_rows:
                write_many(session, tables[name], table_rows, None)
        projector.trackers["margin"]._insert_tracking(session, Tracking(APPLICATION, found.position))
    projector.projections["margin"].hold(rows)  # every state row in memory: the tail reads none back
    projector.expected["margin"] = found.position  # so the first page keeps them
    return found.position


def replay_to(app: Any, target: ReplayTarget, until: int, names: list[str] | None = None,
              progress: Progress | None = None) -> None:
    """``replay_into`` a staging copy of ``target``, moved into place only when complete."""
    try:
        store = target.open()
        replay_into(app, store, until, names, progress=progress)
        target.commit()
    except BaseException:
        target.abandon()
        raise


class ReplayTarget:
    """Where ``audit replay --into`` builds: staged, then moved into place (module docstring).

    Constructing it validates the target (``invalid_target``, ``target_exists``) and, on
    PostgreSQL, takes the target's lock (``replay_in_progress`` when another replay holds it).
    """

    def __init__(self, into: str) -> None:
        self.into = into
        self.store: ProjectionStore | None = None
        self._done = False
        if is_postgres(into):
            self._impl: _SqliteTarget | _PostgresTarget = _PostgresTarget(into)
        else:
            self._impl = _SqliteTarget(into)

    @property
    def staging(self) -> str:
        return self._impl.staging

    def open(self) -> ProjectionStore:
        self._impl.clear_leftovers()
        self._impl.create()
        self.store = ProjectionStore(self._impl.staging)
        return self.store

    def commit(self) -> None:
        self._close_store()
        self._impl.commit()
        self._done = True

    def abandon(self) -> None:
        """Remove the staging copy (after a failure); the target is left as it was."""
        if self._done:
            return
        self._close_store()
        self._impl.abandon()
        self._done = True

    def _close_store(self) -> None:
        if self.store is not None:
            self.store.close()
            self.store = None


class _SqliteTarget:
    def __init__(self, into: str) -> None:
        if into == ":memory:":
            raise InputError("invalid_target", "into", "give a file path or a postgresql:// URL")
        self.final = Path(into).expanduser().absolute()
        if not self.final.parent.is_dir():
            raise InputError("invalid_target", "into", f"directory {self.final.parent} does not exist")
        if self.final.exists():
            raise InputError("target_exists", "into", f"{into} exists; replay into a new file")
        self.staging = str(self.final.with_name(f".{self.final.name}{PARTIAL}{os.getpid()}"))

    def clear_leftovers(self) -> None:
        """Staging files of replays into this target whose process is gone (killed)."""
        prefix = f".{self.final.name}{PARTIAL}"
        for path in self.final.parent.glob(f"{prefix}*"):
            pid = path.name[len(prefix):].split("-", 1)[0]
            if pid.isdigit() and (int(pid) == os.getpid() or not _alive(int(pid))):
                path.unlink(missing_ok=True)

    def create(self) -> None:
        pass  # ProjectionStore creates the file

    def commit(self) -> None:
        import sqlite3

        connection = sqlite3.connect(self.staging)
        try:
            connection.execute("PRAGMA journal_mode=DELETE")  # checkpoints the WAL: one self-contained file
        finally:
            connection.close()
        descriptor = os.open(self.staging, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        try:
            os.link(self.staging, self.final)  # fails if the name exists: a target is never overwritten
        except FileExistsError:
            raise InputError("target_exists", "into", f"{self.final} appeared during the replay; not replaced") from None
        except OSError:  # a file system without hard links
            if self.final.exists():
                raise InputError("target_exists", "into", f"{self.final} appeared during the replay; not replaced") from None
            os.replace(self.staging, self.final)
        Path(self.staging).unlink(missing_ok=True)
        _fsync_directory(self.final.parent)

    def abandon(self) -> None:
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(self.staging + suffix).unlink(missing_ok=True)


class _PostgresTarget:
    def __init__(self, into: str) -> None:
        parts = urlsplit(into)
        query = parse_qs(parts.query)
        if not query.get("schema"):
            raise InputError("invalid_target", "into", "give a schema: postgresql://.../db?schema=replay_1")
        self.schema = query["schema"][0]
        base = self.schema if len(self.schema) + len(SCHEMA_SUFFIX) <= 63 else (
            self.schema[:40] + "_" + hashlib.sha256(self.schema.encode()).hexdigest()[:8])
        self.staging_schema = base + SCHEMA_SUFFIX
        query["schema"] = [self.staging_schema]
        self.staging = urlunsplit(parts._replace(query=urlencode(query, doseq=True)))
        self.connection = self._connect(into)
        try:
            if not self._one("SELECT pg_try_advisory_lock(%s, hashtext(%s))", REPLAY_LOCK, self.schema):
                raise InputError("replay_in_progress", "into", f"another replay into schema {self.schema} is running")
            if self._relations(self.schema):
                raise InputError("target_exists", "into", f"schema {self.schema} holds tables; replay into a new schema")
        except BaseException:
            self.connection.close()
            raise

    @staticmethod
    def _connect(into: str) -> Any:
        import psycopg

        env = store_env(into)
        try:
            return psycopg.connect(host=env["POSTGRES_HOST"], port=env["POSTGRES_PORT"], user=env["POSTGRES_USER"],
                                   password=env.get("POSTGRES_PASSWORD") or None, dbname=env["POSTGRES_DBNAME"],
                                   connect_timeout=10, autocommit=True)
        except psycopg.Error as error:
            raise InputError("invalid_target", "into",
                             f"cannot connect to the target: {str(error).splitlines()[0]}") from None

    def _one(self, statement: str, *params: Any) -> Any:
        return self.connection.execute(statement, params).fetchone()[0]

    def _relations(self, schema: str) -> int:
        count: int = self._one("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                               "WHERE n.nspname = %s", schema)
        return count

    def _sql(self, template: str, *schemas: str) -> Any:
        from psycopg.sql import SQL, Identifier

        return SQL(template).format(*[Identifier(schema) for schema in schemas])

    def clear_leftovers(self) -> None:
        self.connection.execute(self._sql("DROP SCHEMA IF EXISTS {} CASCADE", self.staging_schema))

    def create(self) -> None:
        self.connection.execute(self._sql("CREATE SCHEMA {}", self.staging_schema))

    def commit(self) -> None:
        """One transaction: the empty target (if any) dropped, the staging schema renamed to it.

        On failure the staging schema is left for ``abandon`` to drop.
        """
        with self.connection.transaction():
            if self._relations(self.schema):
                raise InputError("target_exists", "into",
                                 f"schema {self.schema} was filled during the replay; not replaced")
            self.connection.execute(self._sql("DROP SCHEMA IF EXISTS {}", self.schema))
            self.connection.execute(self._sql("ALTER SCHEMA {} RENAME TO {}", self.staging_schema, self.schema))
        self._release()

    def abandon(self) -> None:
        try:
            if not self.connection.closed:
                self.connection.execute(self._sql("DROP SCHEMA IF EXISTS {} CASCADE", self.staging_schema))
        finally:
            self._release()

    def _release(self) -> None:
        if not self.connection.closed:
            self.connection.close()  # ends the session: the advisory lock goes with it


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fsync_directory(directory: Path) -> None:
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
