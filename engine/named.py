"""A registry of named entries (step kinds, input checks): each name registered once, kept in order."""

from __future__ import annotations

from typing import Callable, Generic, Iterator, Protocol, TypeVar


class Named(Protocol):
    name: str


T = TypeVar("T", bound=Named)


class Registry(Generic[T]):
    """Entries by name, in registration order, or sorted by `order_by` when given. A second entry of the
    same name raises at registration: two modules claiming one name is a mistake to see at import.

    `get(name)`, the entry or None, is the entries dict's own `get`, bound when the registry is made: the
    runner asks the step kinds and the input checks a few times a turn, and a Python method that looks
    the name up costs about 1.3k instructions a call against 0.6k. So the dict is one object for the
    registry's whole life, sorted in place, never replaced.
    """

    noun = "entry"

    def __init__(self, order_by: Callable[[T], object] | None = None) -> None:
        self._entries: dict[str, T] = {}
        self._order_by = order_by
        # Counts registrations: anything built from the entries (the flow schema) is keyed on it, so it
        # cannot go stale when an entry is registered after a first use.
        self.generation = 0
        self.get: Callable[[str], T | None] = self._entries.get

    def register(self, entry: T) -> T:
        if entry.name in self._entries:
            raise ValueError(f"{self.noun} '{entry.name}' is registered twice")
        self._entries[entry.name] = entry
        if self._order_by is not None:
            ordered = sorted(self._entries.values(), key=self._order_by)
            self._entries.clear()  # in place: `get` is bound to this dict
            self._entries.update((e.name, e) for e in ordered)
        self.generation += 1
        return entry

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def __iter__(self) -> Iterator[T]:
        return iter(self._entries.values())


__all__ = ["Registry"]
