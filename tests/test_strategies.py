from __future__ import annotations

import optuna
import pytest

from sparsearch.search.strategies import create_sampler
from sparsearch.space import load_space


@pytest.mark.parametrize("strategy", ["random", "tpe", "nsga2"])
def test_seeded_strategies_repeat_themselves(tmp_path, strategy):
    space = load_space("digits_mlp")

    def specs(name: str):
        study = optuna.create_study(
            study_name=name, storage=f"sqlite:///{tmp_path / 'o.db'}",
            sampler=create_sampler(strategy, seed=7, n_startup_trials=2, population_size=4),
            directions=["maximize", "minimize"])
        out = []
        for _ in range(6):
            trial = study.ask()
            spec = space.sample(trial)
            # A deterministic stand-in objective, so model-based samplers see the same history.
            study.tell(trial, [1.0 - spec.target_sparsity / 2, spec.target_sparsity])
            out.append(spec)
        return out

    assert specs("a") == specs("b")


def test_unknown_strategy():
    with pytest.raises(ValueError, match="search.strategy"):
        create_sampler("grid", seed=0)
