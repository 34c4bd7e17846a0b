"""The scheduler catalogue: none | asha | hyperband, each a factory of its promotion rule.

The only place the scheduler names are written; ``create_scheduler`` builds the rule from
the search config's ``min_epochs`` (first rung), ``eta`` and the trials' epoch budget.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sparsearch.catalogue import Catalogue
from sparsearch.schedulers._rule import SuccessiveHalving, rung_epochs

__all__ = ["SCHEDULERS", "create_scheduler", "list_schedulers", "register_scheduler"]

# (min_epochs, max_epochs, eta) -> rung epochs per bracket.
Factory = Callable[..., list[list[int]]]
SCHEDULERS: Catalogue[Factory] = Catalogue("scheduler", field="search.scheduler")


def register_scheduler(name: str) -> Callable[[Factory], Factory]:
    """Registers a factory ``(min_epochs, max_epochs, eta) -> rung epochs per bracket``."""
    return SCHEDULERS.decorator(name)


def list_schedulers() -> list[str]:
    return SCHEDULERS.names()


@register_scheduler("none")
def _no_rungs(*, min_epochs: int, max_epochs: int, eta: int) -> list[list[int]]:
    return []


@register_scheduler("asha")
def _asha(*, min_epochs: int, max_epochs: int, eta: int) -> list[list[int]]:
    return [rung_epochs(first=min_epochs, max_epochs=max_epochs, eta=eta)]


@register_scheduler("hyperband")
def _hyperband(*, min_epochs: int, max_epochs: int, eta: int) -> list[list[int]]:
    # Bracket s starts at min_epochs * eta**s: the aggressive bracket first, the last one
    # whose first rung is still below the budget; a bracket with no rung would never stop
    # anything, so it is left out.
    brackets = []
    first = min_epochs
    while first < max_epochs:
        brackets.append(rung_epochs(first=first, max_epochs=max_epochs, eta=eta))
        first *= eta
    return brackets


def create_scheduler(name: str, *, min_epochs: int, max_epochs: int, eta: int,
                     objectives: Sequence[tuple[str, str]]) -> SuccessiveHalving:
    """The promotion rule of ``search.scheduler`` (``none`` has no rungs: never stops).

    Args:
        name: none | asha | hyperband.
        min_epochs: the first rung, in epochs.
        max_epochs: a trial's full epoch budget (rungs lie below it).
        eta: reduction factor: the top 1/eta continue at each rung.
        objectives: the study's (metric, direction) pairs.
    """
    brackets = SCHEDULERS.get(name)(min_epochs=min_epochs, max_epochs=max_epochs, eta=eta)
    return SuccessiveHalving(brackets, eta=eta, objectives=objectives)
