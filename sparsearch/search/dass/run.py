"""The DASS strategy: the lambda sweep as units of work, with its records.

DASS (Mousavi et al., arXiv 2207.06968) as a strategy with the same budget and records as
the random-search baseline (Farahani, arXiv 2403.08265), under any runner. ``DassStrategy``
proposes, in order: the dense warm-up of a round (``WarmUpUnit``, cached in
``<run dir>/dass/warmup.pt``), one supernet search per lambda of the sweep
(``LambdaUnit``, ``sweep.next_step``), and for each derived subnet its training
(``TrialUnit``, as a sampled trial trains): a child run of the DASS parent run,
``trials/<key>/``, and a finished trial in the Optuna study (``add_trial``) that
``finalize_search`` reads like any other. Lambdas in flight count as searched, so no lambda
is proposed twice and a refinement or a new round waits for the results it depends on.
``search.n_trials`` caps the derived subnets, ``search.timeout_s`` the wall-clock of
everything here (supernet training included); a derived subnet whose training starts
before the deadline finishes, as a random trial does. With ``search.dass.probe`` the first
derived subnet is trained again under the space's other training values, one dimension at
a time (``probe``), before the sweep goes on, and the later subnets train with the best. A lambda whose subnet equals an
earlier one is recorded in the sweep, not trained again. When a round's sweep is complete
and budget is left, the next round searches again on a finer grid (``round_levels``: the
spacing of the discretised sparsity halves) with supernets seeded anew; once a round adds
nothing, the front's subnets are retrained under the space's other training values
(``retrain``), so the strategy spends its budget. A rerun in the same run dir resumes:
lambdas recorded in the study are not redone, and an interrupted one keeps its trial key
(so its MLflow run is reused). Under Ray, a child run is tagged with the node that searched
its lambda and the node that trained it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sparsearch import mlflow_keys as keys
from sparsearch.search.dass.budget import plan_budget
from sparsearch.search.dass.inherit import inherited_spec
from sparsearch.search.dass.job import LambdaOutcome, build_supernet
from sparsearch.search.dass.plan import SupernetPlan, fixed_values, plan_supernet
from sparsearch.search.dass.probe import next_probe, probe_axes, variant_key
from sparsearch.search.dass.retrain import (
    dass_front,
    retrain_levels,
    training_variants,
    variant_spec,
)
from sparsearch.search.dass.sweep import SweepPoint, next_step
from sparsearch.search.dass.units import LambdaUnit, WarmUpUnit
from sparsearch.search.setup import SearchSetup
from sparsearch.search.strategies import Strategy
from sparsearch.search.study import budget_used, trial_key
from sparsearch.search.trial import TrialUnit, trial_dir
from sparsearch.search.work import Finished, Unit
from sparsearch.spec import SubnetSpec

if TYPE_CHECKING:
    import optuna

    from sparsearch.evaluate import TrialResult
    from sparsearch.tracking import Tracker

__all__ = ["DassStrategy", "check_dass", "round_levels", "sweep_points"]

log = logging.getLogger("sparsearch")

MAX_HALVINGS = 2
SWEEP_ATTR = keys.DASS_SWEEP
POINT_ATTR = keys.DASS_POINT


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


def sweep_points(study: optuna.Study) -> list[SweepPoint]:
    """The lambdas this study has recorded (sweep attribute and trials), by key."""
    points = {p["key"]: SweepPoint.from_dict(p) for p in study.user_attrs.get(SWEEP_ATTR, [])}
    for t in study.get_trials(deepcopy=False):
        if POINT_ATTR in t.user_attrs:
            point = SweepPoint.from_dict(t.user_attrs[POINT_ATTR])
            points.setdefault(point.key, point)
    return [points[k] for k in sorted(points)]


def _write_snapshot(setup: SearchSetup, outcome: LambdaOutcome,
                    extra: dict[str, object]) -> Path:
    path = setup.run_dir / "dass" / f"alpha-{outcome.key:05d}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**outcome.snapshot, **extra, "search_s": outcome.search_s},
                               indent=1, default=str))
    return path


def _digest(outcome: LambdaOutcome) -> str:
    assert outcome.spec is not None
    text = outcome.spec.to_json() + json.dumps(outcome.model or {}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _save_sweep(study: optuna.Study, points: list[SweepPoint]) -> None:
    study.set_user_attr(SWEEP_ATTR, [p.to_dict() for p in points])


def record_duplicate(setup: SearchSetup, study: optuna.Study, outcome: LambdaOutcome, *,
                     points: list[SweepPoint], originals: list[SweepPoint], tracker: Tracker,
                     parent_run_id: str, round_: int) -> SweepPoint | None:
    """Records a lambda whose subnet equals one of ``originals`` (not trained again);
    None when its subnet is new."""
    digest = _digest(outcome)
    original = next((p for p in originals if p.digest == digest and p.duplicate_of is None),
                    None)
    if original is None:
        return None
    point = SweepPoint(lam=outcome.lam, key=outcome.key, digest=digest, cost=outcome.cost,
                       duplicate_of=original.key, round=round_)
    tracker.log_artifact(parent_run_id, _write_snapshot(setup, outcome,
                                                        {"duplicate_of": original.key}), "dass")
    _save_sweep(study, [*points, point])
    return point


def derived_unit(setup: SearchSetup, study: optuna.Study, outcome: LambdaOutcome, *,
                 round_: int, retrain_of: int | None) -> TrialUnit:
    """The training of a derived subnet: exactly as a sampled one (seed and context)."""
    assert outcome.spec is not None
    dass = setup.cfg.search.dass
    # search.dass.inherit: the subnet starts from the supernet's masks (and weights).
    spec = (inherited_spec(outcome, run_dir=setup.run_dir) if outcome.inherited is not None
            else outcome.spec)
    return TrialUnit(spec=spec, key=outcome.key,
                     number=len(study.get_trials(deepcopy=False)), model=outcome.model,
                     extra_params={"strategy": "dass", "dass.lambda": outcome.lam,
                                   "dass.supernet": dass.supernet, "dass.derive": dass.derive,
                                   "dass.cost": dass.cost, "dass.round": round_,
                                   "dass.inherit": (dass.inherit if outcome.inherited
                                                    is not None else "none"),
                                   **({"dass.retrain_of": retrain_of}
                                      if retrain_of is not None else {}),
                                   **({"dass.probe": True} if outcome.snapshot.get("probe")
                                      else {})})


def record_trained(setup: SearchSetup, study: optuna.Study, outcome: LambdaOutcome,
                   result: TrialResult, *, points: list[SweepPoint], tracker: Tracker,
                   round_: int, retrain_of: int | None,
                   trial: optuna.Trial | None = None) -> SweepPoint:
    """Records a trained derived subnet: its study trial, snapshot and DASS metrics.

    Args:
        trial: the asked trial the subnet answers (dass_tpe), told its values; None: a
            finished trial is added to the study (dass, whose sampler asks nothing).

    Returns:
        The lambda's sweep point (also saved in the study).
    """
    from optuna.trial import TrialState, create_trial

    from sparsearch.evaluate import accuracy_on_test
    from sparsearch.search.trial import load_trial_model

    if outcome.model and result.status == "complete":
        # finalize_search rebuilds the search's model; a cell network scores itself here
        # and leaves its model options beside its weights.
        ctx = replace(setup.ctx, model=outcome.model)
        folder = trial_dir(setup.run_dir, outcome.key)
        (folder / "model.json").write_text(json.dumps(outcome.model, sort_keys=True))
        model = load_trial_model(ctx, setup.run_dir, outcome.key)
        (folder / "test.json").write_text(json.dumps(
            {"test_accuracy": accuracy_on_test(model, ctx.data)}))
    run_id = tracker.trial_run_id(setup.search_key, outcome.key)
    if run_id is not None:
        tracker.log_artifact(run_id, _write_snapshot(setup, outcome, {}), "dass")
        tracker.log_metrics(run_id, {"dass_lambda": outcome.lam, "dass_search_s": outcome.search_s,
                                     "dass_expected_cost": outcome.expected_cost,
                                     "dass_derived_cost": outcome.cost})
    complete = result.status == "complete" and all(m in result.metrics
                                                   for m, _ in setup.objectives)
    point = SweepPoint(lam=outcome.lam, key=outcome.key, digest=_digest(outcome),
                       cost=outcome.cost,
                       accuracy=result.metrics.get("accuracy") if complete else None,
                       round=round_, retrain_of=retrain_of,
                       training=(outcome.snapshot.get("training") if retrain_of is not None
                                 else None))
    attrs = {keys.METRICS: result.metrics, keys.RETRY_OF: outcome.key,
             keys.DASS_LAMBDA: outcome.lam, POINT_ATTR: point.to_dict()}
    values = [float(result.metrics[m]) for m, _ in setup.objectives] if complete else None
    if not complete:
        attrs[keys.FAIL_REASON] = result.reason or "objective metric missing"
    if trial is None:
        study.add_trial(create_trial(state=TrialState.COMPLETE if complete else TrialState.FAIL,
                                     user_attrs=attrs, values=values))
    else:
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        study.tell(trial, values, state=TrialState.COMPLETE if complete else TrialState.FAIL)
    _save_sweep(study, [*points, point])
    return point


def trained_spec(run_dir: Path, key: int) -> tuple[SubnetSpec, dict[str, Any] | None]:
    """The spec a trained subnet ran with, and its model options (cells), from its folder."""
    folder = trial_dir(run_dir, key)
    model = (json.loads((folder / "model.json").read_text())
             if (folder / "model.json").exists() else None)
    return SubnetSpec.from_dict(json.loads((folder / "spec.json").read_text())), model


def next_retrain(setup: SearchSetup, points: list[SweepPoint], *,
                 values: dict[str, Any] | None = None
                 ) -> tuple[SweepPoint, LambdaOutcome] | None:
    """The next front subnet to train under other training values, or None when done.

    The values come from ``training_variants`` at ``search.dass.levels`` points per range,
    then at grids twice as fine (``retrain_levels``: each holds the coarser one's points
    exactly, so nothing is trained twice), so a search with budget left keeps spending it;
    those nearest ``values`` (the probe's choice) or the plan's fixed ones come first.
    """
    dass = setup.cfg.search.dass
    fixed = {**fixed_values(setup.space, dict(dass.fixed)), **(values or {})}
    seen = {p.digest for p in points}
    # Each front subnet's files are read once per call, not once per variant.
    sources = [(source, *trained_spec(setup.run_dir, source.key))
               for source in dass_front(points)]
    # A finer grid repeats the coarser one's points: each variant is tried once.
    variants: dict[str, dict[str, Any]] = {}
    for levels in retrain_levels(dass.levels):
        for v in training_variants(setup.space, fixed, levels=levels):
            variants.setdefault(json.dumps(v, sort_keys=True, default=str), v)
    for variant in variants.values():
        for source, base, model in sources:
            outcome = LambdaOutcome(lam=source.lam, key=-1, status="derived",
                                    spec=variant_spec(base, variant, fixed), model=model,
                                    cost=source.cost,
                                    snapshot={"lambda": source.lam, "retrain_of": source.key,
                                              "training": variant})
            if _digest(outcome) not in seen:
                return source, outcome
    return None


@dataclass(frozen=True)
class _Training:
    """A derived subnet proposed for training, until its result is recorded."""

    outcome: LambdaOutcome
    round_: int
    retrain_of: int | None
    searched_on: str | None

    def placeholder(self) -> SweepPoint:
        # Counts as searched while it trains, as a lambda in flight does.
        return SweepPoint(lam=self.outcome.lam, key=self.outcome.key, digest="",
                          cost=math.nan, round=self.round_, retrain_of=self.retrain_of)


class DassStrategy(Strategy):
    """DASS's lambda sweep, proposed as units of work (module doc).

    Raises:
        ConfigError: the space or settings cannot be searched by DASS ("not supported: ...").
    """

    def __init__(self, setup: SearchSetup, study: optuna.Study, *, tracker: Tracker,
                 parent_run_id: str, on_trial: Callable[[int, str], None]) -> None:
        super().__init__(setup, study, tracker=tracker, parent_run_id=parent_run_id,
                         on_trial=on_trial)
        cfg = setup.cfg.search
        # Absolute: units compare it with time.time() in other processes.
        self.deadline = time.time() + cfg.timeout_s if cfg.timeout_s is not None else None
        self.plans = {0: check_dass(setup)}
        self.fixed = fixed_values(setup.space, dict(cfg.dass.fixed))
        # search.dass.probe: the dimensions tried on the first derived subnet (probe.py),
        # and once they are settled, the values the later subnets train with.
        self.axes = (probe_axes(setup.space, levels=cfg.dass.levels, fixed=cfg.dass.fixed,
                                recipe=cfg.dass.inherit == "none") if cfg.dass.probe else [])
        self.chosen: dict[str, Any] | None = study.user_attrs.get(keys.DASS_TRAINING)
        # Measured before the warm-up spends the budget; with fit_budget, scaled epochs.
        self.dass = plan_budget(self.plans[0], setup.ctx, cfg.dass, timeout_s=cfg.timeout_s)
        self.min_cost = build_supernet(self.plans[0], setup.ctx).cheapest_cost(cfg.dass.cost)
        self.points = sweep_points(study)
        self.warm: dict[int, str] = {}  # round -> fingerprint of its warm-up in the cache
        self.warming = False
        self.running: dict[int, SweepPoint] = {}  # lambdas in flight, by key
        self.training: dict[int, _Training] = {}  # derived subnets proposed, by key
        self.queue: list[TrialUnit] = []
        self.lost: list[SweepPoint] = []
        self.stopped = False  # the deadline passed inside a unit
        self.completed = False

    @classmethod
    def check(cls, setup: SearchSetup) -> None:
        check_dass(setup)

    def _next_key(self) -> int:
        keys_ = [p.key for p in [*self.points, *self.lost]] + [*self.running, *self.training]
        keys_ += [trial_key(t) for t in self.study.get_trials(deepcopy=False)]
        return max(keys_, default=-1) + 1

    def _budget_left(self) -> bool:
        if self.deadline is not None and time.time() >= self.deadline:
            return False
        n_trials = self.setup.cfg.search.n_trials
        in_flight = len(self.running) + len(self.training)
        return n_trials is None or budget_used(self.study) + in_flight < n_trials

    def _train(self, outcome: LambdaOutcome, *, round_: int, retrain_of: int | None,
               searched_on: str | None) -> TrialUnit:
        self.training[outcome.key] = _Training(outcome, round_, retrain_of, searched_on)
        return derived_unit(self.setup, self.study, outcome, round_=round_,
                            retrain_of=retrain_of)

    def _probe(self) -> TrialUnit | bool:
        """The probe's next training, True while the sweep waits for the probe, False
        when it has nothing (more) to do."""
        if not self.axes or self.chosen is not None:
            return False
        source = next((p for p in sorted(self.points, key=lambda p: p.key)
                       if p.retrain_of is None and p.duplicate_of is None
                       and p.accuracy is not None), None)
        if source is None:
            # Later lambdas wait for the first subnet (and so for the probe's choice).
            return bool(self.running or self.training)
        start = {name: self.fixed.get(name) for name, _ in self.axes}
        finished: dict[str, float | None] = {variant_key(start): source.accuracy}
        finished.update({variant_key(p.training): p.accuracy for p in self.points
                         if p.retrain_of == source.key and p.training is not None})
        pending = {variant_key(t.outcome.snapshot["training"]) for t in self.training.values()
                   if t.outcome.snapshot.get("probe")}
        step = next_probe(self.axes, start, finished, pending)
        if step.action == "wait":
            return True
        if step.action == "done":
            self.chosen = step.values
            self.study.set_user_attr(keys.DASS_TRAINING, self.chosen)
            self.tracker.set_tags(self.parent_run_id,
                                  {keys.DASS_TRAINING: json.dumps(self.chosen, sort_keys=True)})
            log.info("dass: the probe chose %s for the derived subnets (val accuracy %.4f)",
                     json.dumps(self.chosen, sort_keys=True),
                     finished[variant_key(self.chosen)] or 0.0)
            return False
        spec, model = trained_spec(self.setup.run_dir, source.key)
        outcome = LambdaOutcome(lam=source.lam, key=self._next_key(), status="derived",
                                spec=variant_spec(spec, step.values, self.fixed), model=model,
                                cost=source.cost,
                                snapshot={"lambda": source.lam, "retrain_of": source.key,
                                          "training": step.values, "probe": True})
        return self._train(outcome, round_=source.round, retrain_of=source.key,
                           searched_on=None)

    def propose(self) -> Unit | None:
        if self.queue:
            # A derived subnet trains even past the budget: its lambda reserved the slot.
            return self.queue.pop(0)
        if self.stopped or self.warming or not self._budget_left():
            return None
        probe = self._probe()
        if probe is not False:
            return probe if isinstance(probe, TrialUnit) else None
        in_flight = [*self.running.values(), *(t.placeholder() for t in self.training.values())]
        searched = [*self.points, *in_flight, *self.lost]
        step = next_step(self.dass.lambdas, searched, refine=self.dass.refine,
                         min_cost=self.min_cost)
        if step is None:
            if in_flight or not self.dass.refine:
                return None
            retrain = next_retrain(self.setup, self.points, values=self.chosen)
            if retrain is None:
                if not self.completed:
                    log.info("dass: the sweep is complete (%d subnets)", len(self.points))
                    self.completed = True
                return None
            source, outcome = retrain
            return self._train(replace(outcome, key=self._next_key()), round_=source.round,
                               retrain_of=source.key, searched_on=None)
        round_, lam = step
        if in_flight and round_ > max((p.round for p in searched), default=0):
            return None  # a new round waits for the lambdas in flight
        if round_ not in self.plans:
            self.plans[round_] = check_dass(self.setup,
                                            levels=round_levels(self.dass.levels, round_))
        if round_ not in self.warm:
            self.warming = True
            return WarmUpUnit(round_=round_, plan=self.plans[round_], dass=self.dass,
                              deadline=self.deadline)
        key = self._next_key()
        self.running[key] = SweepPoint(lam=lam, key=key, digest="", cost=math.nan,
                                       round=round_)
        return LambdaUnit(lam=lam, key=key, round_=round_, plan=self.plans[round_],
                          dass=self.dass, fingerprint=self.warm[round_],
                          deadline=self.deadline)

    def consume(self, done: Finished) -> None:
        unit = done.unit
        if isinstance(unit, WarmUpUnit):
            self._warmed(unit, done)
        elif isinstance(unit, LambdaUnit):
            self._searched(unit, done)
        else:
            self._trained(unit, done)

    def _warmed(self, unit: WarmUpUnit, done: Finished) -> None:
        self.warming = False
        if done.error is not None:
            log.warning("dass: the dense warm-up failed: %s", done.error)
            self.stopped = True
        elif done.value is None:
            log.info("dass: the budget ran out during the dense warm-up")
            self.stopped = True
        else:
            fingerprint, cached = done.value
            if cached:
                log.info("dass: round %d's dense warm-up came from dass/warmup.pt",
                         unit.round_)
            self.warm[unit.round_] = fingerprint

    def _searched(self, unit: LambdaUnit, done: Finished) -> None:
        pending = self.running.pop(unit.key)
        if done.error is not None:
            # Not proposed again in this run; a rerun searches it anew.
            log.warning("dass: lambda=%g failed: %s", unit.lam, done.error)
            self.lost.append(pending)
            return
        outcome: LambdaOutcome = done.value
        if outcome.status != "derived":
            log.info("dass: the budget ran out while searching lambda=%g", unit.lam)
            self.stopped = True
            return
        if self.chosen and outcome.spec is not None:
            # The probe's choice: later subnets train (and compare as duplicates) with it.
            outcome = replace(outcome, spec=variant_spec(outcome.spec, self.chosen,
                                                         self.fixed))
        # Subnets still training are originals too: a lambda that derives one again is a
        # duplicate of it, not a second training of the same subnet.
        training = [SweepPoint(lam=t.outcome.lam, key=k, digest=_digest(t.outcome),
                               cost=t.outcome.cost) for k, t in self.training.items()]
        point = record_duplicate(self.setup, self.study, outcome, points=self.points,
                                 originals=[*self.points, *training], tracker=self.tracker,
                                 parent_run_id=self.parent_run_id, round_=unit.round_)
        if point is not None:
            self.points.append(point)
            return
        self.queue.append(self._train(outcome, round_=unit.round_, retrain_of=None,
                                      searched_on=done.node_id))

    def _trained(self, unit: TrialUnit, done: Finished) -> None:
        training = self.training.pop(unit.key)
        result = self.trial_result(done)
        point = record_trained(self.setup, self.study, training.outcome, result,
                               points=self.points, tracker=self.tracker,
                               round_=training.round_, retrain_of=training.retrain_of)
        self.points.append(point)
        tags = {keys.NODE_ID: training.searched_on, keys.TRAIN_NODE_ID: done.node_id}
        run_id = self.tracker.trial_run_id(self.setup.search_key, point.key)
        if run_id is not None and any(tags.values()):
            self.tracker.set_tags(run_id, {k: v for k, v in tags.items() if v})
        self.on_trial(point.key, "complete" if point.accuracy is not None else "failed")
