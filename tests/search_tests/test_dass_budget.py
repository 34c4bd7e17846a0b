"""DASS's phases planned against search.timeout_s: measured, warned about, fitted; an empty
front ends the command with a warning and exit code 3."""

from __future__ import annotations

import logging

import pytest

from sparsearch.config import DassConfig
from sparsearch.evaluate import EvalContext, build_model
from sparsearch.search.dass.budget import (
    BUDGET_SHARE,
    PhaseTimes,
    fit_epochs,
    measure_phases,
    plan_budget,
)
from sparsearch.search.dass.plan import plan_supernet
from sparsearch.space import load_space
from sparsearch.sparsity import prunable_layers
from tests.search_tests.test_dass_cli import dass_args, run_cli

TRAIN = {"epochs": 1, "lr": 1e-2, "weight_decay": 0.0, "optimizer": "adam", "batch_size": 64}


def test_fit_epochs_scales_every_phase_to_the_budget_share():
    times = PhaseTimes(warmup=10.0, search=20.0, finetune=10.0, evaluate_s=1.0,
                       pt_evaluations=10, pt_tunes=2)
    dass = DassConfig(warmup_epochs=2, search_epochs=6, finetune_epochs=2, pt_tune_epochs=1)
    # 2*10 + 6*20 + (2 + 2*1)*10 + 10*1
    assert times.needed_s(dass) == pytest.approx(190.0)
    assert fit_epochs(dass, times, budget_s=1000.0) is dass  # it fits: unchanged
    fitted = fit_epochs(dass, times, budget_s=100.0)
    assert times.needed_s(fitted) == pytest.approx(BUDGET_SHARE * 100.0)
    # one factor for all phases keeps their proportions
    assert fitted.search_epochs / fitted.warmup_epochs == pytest.approx(3.0)
    assert 0 < fitted.pt_tune_epochs < 1


def test_phases_are_measured_and_a_budget_too_small_is_said(digits, caplog):
    ctx = EvalContext(data=digits, model={"kind": "mlp", "hidden": [32, 32]},
                      train=dict(TRAIN), seed=0, threads=1)
    dass = DassConfig(levels=2, derive="pt", warmup_epochs=1, search_epochs=2,
                      finetune_epochs=1)
    plan = plan_supernet(load_space("digits_mlp"),
                         layer_names=list(prunable_layers(build_model(ctx))),
                         in_shape=ctx.data.in_shape, dass=dass)
    times = measure_phases(plan, ctx, dass)
    assert min(times.warmup, times.search, times.finetune, times.evaluate_s) > 0
    # the mask-learning step also steps alpha: dearer than a warm-up step
    assert times.search > times.warmup
    # PT: one evaluation per candidate of fc1 and fc2 (2 sparsities + 4 N:M each), one tune
    # per decision
    assert (times.pt_evaluations, times.pt_tunes) == (12, 2)
    with caplog.at_level(logging.INFO, logger="sparsearch"):
        kept = plan_budget(plan, ctx, dass, timeout_s=0.01)
    assert kept is dass
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "search.timeout_s=0.01" in warning and "fit_budget=true" in warning
    assert "warm-up 1 epoch(s) x" in warning and "PT 12 evaluations" in warning
    fitted = plan_budget(plan, ctx, DassConfig(**{**dass.__dict__, "fit_budget": True}),
                         timeout_s=0.01)
    assert 0 < fitted.search_epochs < 0.01 and fitted.search_epochs == 2 * fitted.warmup_epochs
    assert plan_budget(plan, ctx, dass, timeout_s=None) is dass  # no timeout: nothing to fit


@pytest.mark.slow
def test_an_unfit_search_exits_3_and_fit_budget_derives_a_subnet(tmp_path):
    # 100000 mask-learning epochs cannot fit in 4 s on any machine (400 did on an idle
    # one): without fit_budget the deadline passes in the search phase and the front is
    # empty; with it, the epochs shrink to fit.
    def args(name: str, *extra: str) -> list[str]:
        base = [a for a in dass_args(tmp_path, n_trials=2)
                if not a.startswith(("hydra.run.dir", "search.n_trials",
                                     "search.dass.search_"))]
        return [*base, f"hydra.run.dir={tmp_path / name}", "search.n_trials=null",
                "search.timeout_s=4", "search.dass.search_epochs=100000",
                "search.dass.refine=false", *extra]

    unfit = run_cli(args("unfit"), tmp_path)
    assert unfit.returncode == 3, unfit.stderr[-3000:]
    assert "more than 50% of search.timeout_s=4" in unfit.stdout + unfit.stderr
    assert unfit.stderr.strip().splitlines()[-1].startswith(
        "warning: dass completed no subnet within the budget")
    fit = run_cli(args("fit", "search.dass.fit_budget=true"), tmp_path)
    assert fit.returncode == 0, fit.stderr[-3000:]
    assert "scaled the phase epochs to fit search.timeout_s=4" in fit.stdout + fit.stderr
    assert "(dass, 0 complete" not in fit.stdout and "(dass, " in fit.stdout
