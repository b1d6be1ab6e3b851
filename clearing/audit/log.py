"""The one reader of the event log, and the protocol of what consumes it.

Rule: the log is read only through the library's notification log
(``recorder.select_notifications``), a page at a time, in position order, and every
notification is decoded once, by the application's mapper (``mapper.to_domain_event``).
Everything that audits the whole log (the hash chain, the snapshot check, the invariants,
the decision re-checks, the projection comparison of ``audit verify``) is a ``Consumer`` fed
the same pages, so ``audit verify`` reads and decodes the log once for all of them.

Example: a log of 12,000 events read with ``page=5000`` yields three ``LogPage``s of 5,000,
5,000 and 2,000 entries; ``page.notifications[i]`` is the stored row (its raw ``state``
bytes are what the chain hashes) and ``page.events[i]`` the domain event decoded from it.

A notification that cannot be decoded (its stored bytes were edited into something the
mapper refuses) does not stop the read: its event is ``None`` and the error is kept in
``page.unreadable`` by index, so the chain still names the edited position while the
consumers that need the event report it as unreadable.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import Notification

PAGE = 5000
S = TypeVar("S")
E = TypeVar("E")


@dataclass(frozen=True)
class LogPage:
    """One page of the log: the stored notifications and their decoded events, index by index."""

    notifications: Sequence[Notification]
    events: list[DomainEventProtocol[Any] | None]
    unreadable: dict[int, Exception] = field(default_factory=dict)

    @property
    def last_position(self) -> int:
        return self.notifications[-1].id

    def decoded(self) -> Iterator[tuple[Notification, DomainEventProtocol[Any]]]:
        """(notification, event) in order; ``Unreadable`` on reaching an undecodable entry."""
        for index, (notification, event) in enumerate(zip(self.notifications, self.events, strict=True)):
            if event is None:
                raise Unreadable(notification.id, self.unreadable[index])
            yield notification, event

    def require_readable(self) -> None:
        """``Unreadable`` for the first undecodable entry, before any is used."""
        if self.unreadable:
            index = min(self.unreadable)
            raise Unreadable(self.notifications[index].id, self.unreadable[index])


class Unreadable(Exception):
    """A stored event the mapper cannot decode, at its log position."""

    def __init__(self, position: int, error: Exception) -> None:
        self.position = position
        self.error = error
        super().__init__(f"the event at position {position} cannot be decoded: {type(error).__name__}: {error}")


class Consumer(Protocol):
    """Something that folds the whole log: ``consume`` every page in order, then ``finish``.

    A consumer raises ``CheckFailed`` (from either method) to report what it found; the
    reader then stops feeding it and goes on with the others.
    """

    name: str

    def consume(self, page: LogPage) -> None: ...

    def finish(self, head: int) -> str:
        """What a clean run covered, in one line (``head``: the last position read)."""
        ...


class Handlers(Generic[S]):
    """Handlers of a fold by event class, as the library's own projection dispatch does.

    Example::

        ON: Handlers[Fold] = Handlers()

        @ON.register(Account.Deposited)
        def _deposited(fold: Fold, event: Account.Deposited) -> None:
            fold.deposits += event.amount

    ``ON.get(type(event))`` is the handler (None for a class the fold does not read): one
    dictionary lookup per event, and each handler annotated with its event class so the
    type checker sees every field it reads.
    """

    def __init__(self) -> None:
        self._by_class: dict[type[Any], Callable[[S, Any], None]] = {}

    def register(self, *classes: type[E]) -> Callable[[Callable[[S, E], None]], Callable[[S, E], None]]:
        def decorate(handler: Callable[[S, E], None]) -> Callable[[S, E], None]:
            for cls in classes:
                if cls in self._by_class:
                    raise ValueError(f"{cls.__qualname__} already has a handler")
                self._by_class[cls] = handler
            return handler

        return decorate

    def get(self, cls: type[Any]) -> Callable[[S, Any], None] | None:
        return self._by_class.get(cls)

    @property
    def classes(self) -> frozenset[type[Any]]:
        return frozenset(self._by_class)


class CheckFailed(Exception):
    """A consumer's finding, as the one line ``audit verify`` prints after ``FAILED``."""


def read_log(recorder: Any, mapper: Any = None, *, start: int = 1, stop: int | None = None,
             page: int = PAGE, topics: Sequence[str] = ()) -> Iterator[LogPage]:
    """Pages of the log from position ``start`` up to ``stop``, in position order.

    ``recorder`` is the application's recorder and ``mapper`` its mapper; without a mapper
    only the stored notifications are read (every event ``None``), for readers of the raw
    rows such as the hash chain. Without ``stop`` the read goes on to the first empty page,
    so events appended while reading are included. With ``topics`` only events of those
    topics are read (the library filters them in the store), so a reader of a few kinds of
    event decodes nothing else.
    """
    if page < 1:
        raise ValueError("page must be at least 1")
    position = start
    while stop is None or position <= stop:
        if stop is None:
            notifications = recorder.select_notifications(start=position, limit=page, topics=topics)
        else:
            notifications = recorder.select_notifications(start=position, limit=page, stop=stop, topics=topics)
        if not notifications:
            return
        events: list[DomainEventProtocol[Any] | None] = []
        unreadable: dict[int, Exception] = {}
        if mapper is not None:
            to_event: Callable[[Notification], DomainEventProtocol[Any]] = mapper.to_domain_event
            for index, notification in enumerate(notifications):
                try:
                    events.append(to_event(notification))
                except Exception as error:  # an edited row: reported by each consumer, not here
                    events.append(None)
                    unreadable[index] = error
        else:
            events = [None] * len(notifications)
        yield LogPage(notifications, events, unreadable)
        position = notifications[-1].id + 1


def log_events(app: Any, *, page: int = PAGE,
               progress: Callable[[int], None] | None = None) -> Iterator[tuple[int, DomainEventProtocol[Any]]]:
    """(position, event) of the whole log; an undecodable event raises ``Unreadable``;
    ``progress`` gets the number of events read after each page."""
    count = 0
    for log_page in read_log(app.recorder, app.mapper, page=page):
        for notification, event in log_page.decoded():
            yield notification.id, event
        count += len(log_page.notifications)
        if progress is not None:
            progress(count)


def run(app: Any, consumers: Sequence[Consumer], *, page: int = PAGE, stop: int | None = None,
        progress: Callable[[int], None] | None = None,
        timer: Callable[[], float] | None = None) -> dict[str, tuple[str | None, str, float]]:
    """Feed every page of the log to every consumer; each one's (failure, detail, seconds).

    The log is read once up to ``stop`` (default: the head at the start). A consumer that fails is not fed
    again; the read stops early when every consumer has failed. ``seconds`` is the time
    spent in that consumer; the read and decode are timed under the name ``"read"``.
    """
    clock = timer or time.perf_counter
    head = (app.recorder.max_notification_id() or 0) if stop is None else stop
    results: dict[str, tuple[str | None, str, float]] = {}
    spent: dict[str, float] = {consumer.name: 0.0 for consumer in consumers}
    active = list(consumers)
    read_seconds, done = 0.0, 0
    pages = read_log(app.recorder, app.mapper, stop=head, page=page)
    while active:
        started = clock()
        log_page = next(pages, None)
        read_seconds += clock() - started
        if log_page is None:
            break
        for consumer in list(active):
            started = clock()
            try:
                consumer.consume(log_page)
            except Exception as error:
                results[consumer.name] = (failure_line(error), "", 0.0)
                active.remove(consumer)
            spent[consumer.name] += clock() - started
        done += len(log_page.notifications)
        if progress is not None:
            progress(done)
    for consumer in active:
        started = clock()
        try:
            results[consumer.name] = (None, consumer.finish(head), 0.0)
        except Exception as error:
            results[consumer.name] = (failure_line(error), "", 0.0)
        spent[consumer.name] += clock() - started
    timed = {name: (failure, detail, spent[name]) for name, (failure, detail, _) in results.items()}
    timed["read"] = (None, f"{done} event(s) read and decoded once", read_seconds)
    return timed


def failure_line(error: Exception) -> str:
    """The line a check's failure prints: its finding, or ``[check_failed]`` and the crash."""
    if isinstance(error, CheckFailed):
        return str(error)
    first = str(error).splitlines()[0] if str(error) else ""
    return f"[check_failed] {type(error).__name__}: {first}"
