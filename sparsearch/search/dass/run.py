"""``run_dass``: the DASS strategy end to end, with its records (study, MLflow, files).

DASS (Mousavi et al., arXiv 2207.06968) as a strategy with the same budget and records as
the random-search baseline (Farahani, arXiv 2403.08265): the dense warm-up runs once per
round (cached in ``<run dir>/dass/warmup.pt``), then the lambda sweep (``sweep.next_lambda``)
runs ``search_lambda`` per lambda and trains each derived subnet with ``run_trial``, as
``runners/local.py`` does for a sampled one: a child run of the DASS parent run,
``trials/<key>/``, and a finished trial in the Optuna study (``add_trial``) that
``finalize_search`` reads like any other. ``search.n_trials`` caps the derived subnets,
``search.timeout_s`` the wall-clock of everything here (supernet training included); a
derived subnet whose training starts before the deadline finishes, as a random trial
does. A lambda whose subnet equals an earlier one is recorded in the sweep, not trained
again. When a round's sweep is complete and budget is left, the next round searches again
on a finer grid (``round_levels``: the spacing of the discretised sparsity halves) with
supernets seeded anew; once a round adds nothing, the front's subnets are retrained under
the space's other training values (``retrain``), so the strategy spends its budget. A
rerun in the same run dir resumes: lambdas recorded in the study are not redone,
and an interrupted one keeps its trial key (so its MLflow run is reused).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch

from sparsearch.evaluate import EvalContext, TrialResult
from sparsearch.search.dass.budget import plan_budget
from sparsearch.search.dass.inherit import inherited_spec
from sparsearch.search.dass.job import LambdaJob, LambdaOutcome, build_supernet, search_lambda
from sparsearch.search.dass.job import warm_up as dense_warm_up
from sparsearch.search.dass.plan import SupernetPlan, fixed_values, plan_supernet
from sparsearch.search.dass.retrain import dass_front, training_variants, variant_spec
from sparsearch.search.dass.sweep import SweepPoint, next_step
from sparsearch.search.setup import SearchSetup
from sparsearch.search.study import REASON, RETRY_OF, budget_used, trial_key
from sparsearch.search.trial import TrialJob, run_trial, trial_dir
from sparsearch.spec import SubnetSpec

__all__ = ["POINT_ATTR", "SWEEP_ATTR", "check_dass", "record_next_retrain", "record_outcome",
           "round_levels", "run_dass", "sweep_points"]

log = logging.getLogger("sparsearch")

MAX_HALVINGS = 2
SWEEP_ATTR = "sparsearch.dass.sweep"
POINT_ATTR = "sparsearch.dass.point"


def round_levels(levels: int, round_: int) -> int:
    """Grid points of round ``round_``: coarse to fine, each round halving the spacing
    (``levels``, ``2 * levels - 1``, ...), up to two halvings."""
    return (levels - 1) * 2 ** min(round_, MAX_HALVINGS) + 1


def check_dass(setup: SearchSetup, *, levels: int | None = None) -> SupernetPlan:
    """The supernet plan of this search; ConfigError for what DASS cannot relax.

    Args:
        setup: the search.
        levels: grid points of continuous dimensions (default ``search.dass.levels``).
    """
    from sparsearch.evaluate import build_model
    from sparsearch.sparsity.masking import prunable_layers

    dass = setup.cfg.search.dass
    model = build_model(setup.ctx)
    return plan_supernet(setup.space, layer_names=list(prunable_layers(model)),
                         in_shape=tuple(setup.ctx.data.in_shape),
                         dass=dass if levels is None else replace(dass, levels=levels))


def sweep_points(study: Any) -> list[SweepPoint]:
    """The lambdas this study has recorded (sweep attribute and trials), by key."""
    points = {p["key"]: SweepPoint.from_dict(p) for p in study.user_attrs.get(SWEEP_ATTR, [])}
    for t in study.get_trials(deepcopy=False):
        if POINT_ATTR in t.user_attrs:
            point = SweepPoint.from_dict(t.user_attrs[POINT_ATTR])
            points.setdefault(point.key, point)
    return [points[k] for k in sorted(points)]


def _warm_state(setup: SearchSetup, plan: SupernetPlan, ctx: EvalContext, *,
                deadline: float | None) -> dict[str, torch.Tensor] | None:
    dass = setup.cfg.search.dass
    identity = json.dumps({"plan": plan.fingerprint(), "seed": ctx.seed,
                           "model": ctx.model, "train": ctx.train,
                           "hparams": plan.base.hparams, "warmup_epochs": dass.warmup_epochs,
                           # the warm-up trains on the rest of the train split at this batch
                           "alpha_fraction": dass.alpha_fraction,
                           "batch_size": dass.batch_size},
                          sort_keys=True, default=str)
    fingerprint = hashlib.sha256(identity.encode()).hexdigest()[:16]
    path = setup.run_dir / "dass" / "warmup.pt"
    if path.exists():
        cached = torch.load(path, weights_only=True)
        if cached.get("fingerprint") == fingerprint:
            return cached["state"]
    from sparsearch.search.dass.bilevel import DeadlineReached

    try:
        state = dense_warm_up(plan, ctx, dass, deadline=deadline)
    except DeadlineReached:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"fingerprint": fingerprint, "state": state}, path)
    return state


def _write_snapshot(setup: SearchSetup, outcome: LambdaOutcome, extra: dict[str, Any]) -> Any:
    path = setup.run_dir / "dass" / f"alpha-{outcome.key:05d}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**outcome.snapshot, **extra, "search_s": outcome.search_s},
                               indent=1, default=str))
    return path


def _digest(outcome: LambdaOutcome) -> str:
    assert outcome.spec is not None
    text = outcome.spec.to_json() + json.dumps(outcome.model or {}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def record_outcome(setup: SearchSetup, study: Any, outcome: LambdaOutcome, *,
                   points: list[SweepPoint], tracker: Any, parent_run_id: str,
                   round_: int = 0, retrain_of: int | None = None,
                   train: Callable[[TrialJob], TrialResult] | None = None) -> SweepPoint:
    """Trains and records one lambda's derived subnet (or notes it as a duplicate).

    ``retrain_of`` marks a retrain of an earlier subnet under other training values.
    ``train`` runs the trial job (train, score, record in MLflow) somewhere else, such as
    a Ray worker; by default it runs here with ``tracker``.

    Returns:
        The lambda's sweep point (also saved in the study).
    """
    from optuna.trial import TrialState, create_trial

    from sparsearch.evaluate import accuracy_on_test
    from sparsearch.search.trial import load_trial_model

    assert outcome.spec is not None
    digest = _digest(outcome)
    original = next((p for p in points if p.digest == digest and p.duplicate_of is None), None)
    if original is not None:
        point = SweepPoint(lam=outcome.lam, key=outcome.key, digest=digest, cost=outcome.cost,
                           duplicate_of=original.key, round=round_, retrain_of=retrain_of)
        path = _write_snapshot(setup, outcome, {"duplicate_of": original.key})
        tracker.log_artifact(parent_run_id, path, "dass")
        _save_sweep(study, [*points, point])
        return point
    # The derived subnet trains exactly as a sampled one: the search's seed and context.
    ctx = replace(setup.ctx, model=outcome.model) if outcome.model else setup.ctx
    dass = setup.cfg.search.dass
    spec = (inherited_spec(outcome, run_dir=setup.run_dir) if outcome.inherited is not None
            else outcome.spec)
    job = TrialJob(spec=spec, key=outcome.key, number=len(study.get_trials(deepcopy=False)),
                   ctx=ctx, run_dir=str(setup.run_dir), tracking_uri=setup.cfg.tracking.uri,
                   experiment=setup.experiment, search_key=setup.search_key,
                   parent_run_id=parent_run_id,
                   extra_params={"strategy": "dass", "dass.lambda": outcome.lam,
                                 "dass.supernet": dass.supernet, "dass.derive": dass.derive,
                                 "dass.cost": dass.cost, "dass.round": round_,
                                 "dass.inherit": (dass.inherit if outcome.inherited is not None
                                                  else "none"),
                                 **({"dass.retrain_of": retrain_of}
                                    if retrain_of is not None else {})})
    result = train(job) if train is not None else run_trial(job, tracker=tracker)
    if outcome.model and result.status == "complete":
        # finalize_search rebuilds the search's model; a cell network scores itself here
        # and leaves its model options beside its weights.
        folder = trial_dir(setup.run_dir, outcome.key)
        (folder / "model.json").write_text(json.dumps(outcome.model, sort_keys=True))
        model = load_trial_model(ctx, setup.run_dir, outcome.key)
        (folder / "test.json").write_text(json.dumps(
            {"test_accuracy": accuracy_on_test(model, ctx.data)}))
    run_id = tracker.trial_runs(setup.search_key).get(outcome.key)
    if run_id is not None:
        tracker.log_artifact(run_id, _write_snapshot(setup, outcome, {}), "dass")
        tracker.log_metrics(run_id, {"dass_lambda": outcome.lam, "dass_search_s": outcome.search_s,
                                     "dass_expected_cost": outcome.expected_cost,
                                     "dass_derived_cost": outcome.cost})
    complete = result.status == "complete" and all(m in result.metrics
                                                   for m, _ in setup.objectives)
    point = SweepPoint(lam=outcome.lam, key=outcome.key, digest=digest, cost=outcome.cost,
                       accuracy=result.metrics.get("accuracy") if complete else None,
                       round=round_, retrain_of=retrain_of)
    attrs = {"sparsearch.metrics": result.metrics, RETRY_OF: outcome.key,
             "sparsearch.dass.lambda": outcome.lam, POINT_ATTR: point.to_dict()}
    if complete:
        trial = create_trial(state=TrialState.COMPLETE, user_attrs=attrs,
                             values=[float(result.metrics[m]) for m, _ in setup.objectives])
    else:
        attrs[REASON] = result.reason or "objective metric missing"
        trial = create_trial(state=TrialState.FAIL, user_attrs=attrs)
    study.add_trial(trial)
    _save_sweep(study, [*points, point])
    return point


def _next_retrain(setup: SearchSetup,
                  points: list[SweepPoint]) -> tuple[SweepPoint, LambdaOutcome] | None:
    """The next front subnet to train under other training values, or None when done."""
    dass = setup.cfg.search.dass
    fixed = fixed_values(setup.space, dict(dass.fixed))
    variants = training_variants(setup.space, fixed, levels=dass.levels)
    front = dass_front(points)
    seen = {p.digest for p in points}
    for variant in variants:
        for source in front:
            folder = trial_dir(setup.run_dir, source.key)
            spec = variant_spec(SubnetSpec.from_dict(json.loads(
                (folder / "spec.json").read_text())), variant, fixed)
            model = (json.loads((folder / "model.json").read_text())
                     if (folder / "model.json").exists() else None)
            outcome = LambdaOutcome(lam=source.lam, key=-1, status="derived", spec=spec,
                                    model=model, cost=source.cost,
                                    snapshot={"lambda": source.lam, "retrain_of": source.key,
                                              "training": variant})
            if _digest(outcome) not in seen:
                return source, outcome
    return None


def _save_sweep(study: Any, points: list[SweepPoint]) -> None:
    study.set_user_attr(SWEEP_ATTR, [p.to_dict() for p in points])


def _next_key(study: Any, points: list[SweepPoint]) -> int:
    keys = [p.key for p in points] + [trial_key(t) for t in study.get_trials(deepcopy=False)]
    return max(keys, default=-1) + 1


def record_next_retrain(setup: SearchSetup, study: Any, points: list[SweepPoint], *,
                        tracker: Any, parent_run_id: str,
                        train: Callable[[TrialJob], TrialResult] | None = None
                        ) -> SweepPoint | None:
    """Trains and records the next front subnet under other training values (DASS's last
    phase, once the lambda sweep is complete); None when every variant is done."""
    retrain = _next_retrain(setup, points)
    if retrain is None:
        return None
    source, outcome = retrain
    outcome = replace(outcome, key=_next_key(study, points))
    return record_outcome(setup, study, outcome, points=points, tracker=tracker,
                          parent_run_id=parent_run_id, round_=source.round,
                          retrain_of=source.key, train=train)


def run_dass(setup: SearchSetup, study: Any, *, tracker: Any, parent_run_id: str,
             on_trial: Callable[[int, str], None]) -> None:
    """Runs the DASS lambda sweep until the budget is spent or the sweep is complete.

    Args:
        setup: the validated search (``search.dass`` holds the settings).
        study: its Optuna study (resumed or new); derived subnets are added to it.
        tracker: the MLflow tracker.
        parent_run_id: the search's parent run.
        on_trial: called after each derived subnet with (trial key, status).

    Raises:
        ConfigError: the space or settings cannot be searched by DASS ("not supported: ...").
    """
    cfg = setup.cfg.search
    deadline = time.time() + cfg.timeout_s if cfg.timeout_s is not None else None
    plans = {0: check_dass(setup)}
    # Measured before the warm-up spends the budget; with fit_budget, scaled epochs.
    dass = plan_budget(plans[0], setup.ctx, cfg.dass, timeout_s=cfg.timeout_s)
    setup = replace(setup, cfg=replace(setup.cfg, search=replace(cfg, dass=dass)))
    cfg = setup.cfg.search
    points = sweep_points(study)

    def budget_left() -> bool:
        if cfg.n_trials is not None and budget_used(study) >= cfg.n_trials:
            return False
        return deadline is None or time.time() < deadline

    min_cost = build_supernet(plans[0], setup.ctx).cheapest_cost(cfg.dass.cost)
    warm: dict[str, torch.Tensor] | None = None
    warm_round = -1
    while budget_left():
        step = next_step(cfg.dass.lambdas, points, refine=cfg.dass.refine, min_cost=min_cost)
        if step is None:
            point = (record_next_retrain(setup, study, points, tracker=tracker,
                                         parent_run_id=parent_run_id)
                     if cfg.dass.refine else None)
            if point is None:
                log.info("dass: the sweep is complete (%d subnets)", len(points))
                return
            points.append(point)
            on_trial(point.key, "complete" if point.accuracy is not None else "failed")
            continue
        round_, lam = step
        if round_ not in plans:
            plans[round_] = check_dass(setup, levels=round_levels(cfg.dass.levels, round_))
        ctx = replace(setup.ctx, seed=setup.ctx.seed + round_)
        if round_ != warm_round:
            warm = _warm_state(setup, plans[round_], ctx, deadline=deadline)
            warm_round = round_
        if warm is None:
            log.info("dass: the budget ran out during the dense warm-up")
            return
        job = LambdaJob(lam=lam, key=_next_key(study, points), plan=plans[round_], ctx=ctx,
                        dass=cfg.dass, warm_state=warm, deadline=deadline)
        outcome = search_lambda(job)
        if outcome.status != "derived":
            log.info("dass: the budget ran out while searching lambda=%g", lam)
            return
        point = record_outcome(setup, study, outcome, points=points, tracker=tracker,
                               parent_run_id=parent_run_id, round_=round_)
        points.append(point)
        if point.duplicate_of is None:
            on_trial(point.key, "complete" if point.accuracy is not None else "failed")
