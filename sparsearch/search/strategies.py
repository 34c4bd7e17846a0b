"""Search strategies backed by Optuna samplers, always seeded and named explicitly.

Optuna 5 changed several defaults (TPE multivariate and constant_liar on; TPE the default
multi-objective sampler), so every sampler is built here with its arguments spelled out,
and the same seed gives the same sequence of trials.
"""

from __future__ import annotations

from typing import Any

__all__ = ["OPTUNA_STRATEGIES", "create_sampler"]

OPTUNA_STRATEGIES = ("random", "tpe", "nsga2")


def create_sampler(strategy: str, *, seed: int, n_startup_trials: int = 10,
                   population_size: int = 16) -> Any:
    """Builds the Optuna sampler of a strategy.

    Args:
        strategy: random | tpe | nsga2.
        seed: sampler seed.
        n_startup_trials: TPE's random start.
        population_size: NSGA-II's population.
    """
    import optuna

    if strategy == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if strategy == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=n_startup_trials,
                                          multivariate=True, constant_liar=True)
    if strategy == "nsga2":
        # NSGA-II samples parameters outside the intersection space independently, which
        # is how conditional dimensions (nm only when pattern is nm) are handled.
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=population_size)
    raise ValueError(f"search.strategy must be one of {list(OPTUNA_STRATEGIES)}, got {strategy!r}")
