"""``Catalogue[T]``: the one place the names of a kind of thing are written.

Every registry of sparsearch (patterns, allocations, recipes, models, kernels, primitives,
data sets, strategies, runners, schedulers) is a ``Catalogue``: entries are registered by
name, names are listed sorted, a name registered twice warns (the later entry wins, so a
user's plug-in may replace a built-in on purpose, but never by accident unnoticed), and an
unknown name fails with one line naming the field and the allowed names.

An entry may be registered lazily as ``"module:attribute"``: the catalogue knows the name
at once (config validation and ``--help`` read it without importing torch or ray) and
imports the module only when the entry is asked for.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from sparsearch.config import ConfigError

__all__ = ["Catalogue", "UnknownName"]

T = TypeVar("T")


class UnknownName(ConfigError):
    """An unknown name asked of a catalogue; the message is the one line a user sees
    (a ConfigError, so the command exits 2 with it)."""


class Catalogue(Generic[T]):
    """Named entries of one kind.

    Args:
        kind: what the entries are, for messages ("pattern", "runner").
        field: the config field that names an entry ("search.strategy"), for errors.
    """

    def __init__(self, kind: str, *, field: str | None = None) -> None:
        self.kind = kind
        self.field = field or kind
        self._entries: dict[str, T] = {}
        self._lazy: dict[str, str] = {}

    def register(self, name: str, entry: T) -> T:
        """Adds ``entry`` under ``name``; warns when the name was taken.

        A lazy placeholder of ``name`` is not "taken": its module registering the name when
        imported is how a lazy entry is fulfilled.
        """
        if name in self._entries:
            warnings.warn(f"{self.kind} {name!r} registered twice: the later one replaces "
                          f"the earlier", RuntimeWarning, stacklevel=2)
        self._lazy.pop(name, None)
        self._entries[name] = entry
        return entry

    def register_lazy(self, name: str, target: str) -> None:
        """Adds ``name`` now, its entry (``"module:attribute"``) when first asked for."""
        if name in self._entries or name in self._lazy:
            warnings.warn(f"{self.kind} {name!r} registered twice: the later one replaces "
                          f"the earlier", RuntimeWarning, stacklevel=2)
        self._entries.pop(name, None)
        self._lazy[name] = target

    def unregister(self, name: str) -> None:
        """Removes ``name`` (a plug-in taken out again); nothing when it is not there."""
        self._entries.pop(name, None)
        self._lazy.pop(name, None)

    def decorator(self, name: str) -> Callable[[T], T]:
        """``@catalogue.decorator("name")`` registers what it decorates."""

        def add(entry: T) -> T:
            return self.register(name, entry)

        return add

    def get(self, name: str) -> T:
        """The entry of ``name``; ``UnknownName`` (one line) when there is none."""
        if name not in self._entries and name in self._lazy:
            target = self._lazy.pop(name)
            module_name, attribute = target.split(":")
            try:
                # Importing the module may register the name itself (a decorator): that
                # entry wins over the attribute lookup, which covers modules that do not.
                module = importlib.import_module(module_name)
            except BaseException:
                self._lazy[name] = target
                raise
            if name not in self._entries:
                self._entries[name] = getattr(module, attribute)
        if name not in self._entries:
            raise UnknownName(f"{self.field} must be one of {self.names()}, got {name!r}")
        return self._entries[name]

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted({*self._entries, *self._lazy})

    def in_order(self) -> list[str]:
        """The registered names in registration order (where order means something)."""
        return [*self._entries, *self._lazy]

    def check(self, name: str) -> None:
        """``UnknownName`` unless ``name`` is registered (imports nothing)."""
        if name not in self._entries and name not in self._lazy:
            raise UnknownName(f"{self.field} must be one of {self.names()}, got {name!r}")

    def __contains__(self, name: object) -> bool:
        return name in self._entries or name in self._lazy

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())
