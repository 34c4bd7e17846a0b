"""The dass_tpe strategy: TPE chooses training values and a target density, DASS where
the zeros go.

What cannot be differentiated (recipe, its knobs, lr, ...) is searched by an Optuna
TPESampler (Bergstra et al., NeurIPS 2011; multi-objective over the study's objectives),
together with a ``target_density`` in the range the supernet can derive; where in the
network the zeros go is decided by DASS (Mousavi et al., arXiv 2207.06968) for that
target. Per outer trial (``study.ask``) the strategy proposes, in order: the dense warm-up
once (``WarmUpUnit``, shared with ``search.strategy=dass`` through
``<run dir>/dass/warmup.pt``), supernet searches (``LambdaUnit``) at lambdas solved for the
target from every (lambda, derived cost) pair seen so far (``target.lambda_for_target``),
until a derived subnet is within ``search.dass.target_tolerance`` of the target or
``search.dass.max_bisections`` searches are spent (then the nearest subnet found), and
that subnet's training with the trial's values (``TrialUnit``), told to its trial
(``study.tell``) so TPE learns the training values and the density together. A subnet
already derived within the tolerance is trained again under the new values without a new
search. The supernet trains with the plan's values (``search.dass.fixed``, else the
middle of each range), as for dass; ``search.dass.inherit`` hands the subnet the
supernet's masks, so TPE then searches the hparams only. Budget as for dass:
``search.n_trials`` caps the trained subnets, ``search.timeout_s`` the wall-clock. A rerun
in the same run dir resumes: finished trials stay, the pairs searched before guide the
lambdas, and an interrupted trial is asked again with its values and, when it had chosen
its subnet, searches that subnet's lambda again under the same seed, so it trains the same
subnet under the same MLflow run.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from sparsearch import mlflow_keys as keys
from sparsearch.search.dass.budget import plan_budget
from sparsearch.search.dass.inherit import inherited_spec
from sparsearch.search.dass.job import LambdaOutcome, build_supernet
from sparsearch.search.dass.plan import training_dimensions
from sparsearch.search.dass.retrain import variant_spec
from sparsearch.search.dass.run import check_dass, record_trained, sweep_points
from sparsearch.search.dass.target import (
    closest_point,
    in_range,
    lambda_for_target,
    sparsity_for_cost,
)
from sparsearch.search.dass.units import LambdaUnit, WarmUpUnit
from sparsearch.search.setup import SearchSetup
from sparsearch.search.strategies import Strategy, create_sampler
from sparsearch.search.study import STALE, budget_used, trial_key
from sparsearch.search.trial import TrialUnit
from sparsearch.search.work import Finished, Unit
from sparsearch.space import HPARAMS
from sparsearch.spec import SubnetSpec

if TYPE_CHECKING:
    import optuna

    from sparsearch.config import SparsearchConfig
    from sparsearch.ops.supernet import Supernet
    from sparsearch.tracking import Tracker

__all__ = ["GRID_SPARSITY", "TARGET", "DassTpeStrategy", "cost_range", "exact_range"]

log = logging.getLogger("sparsearch")

TARGET = "target_density"  # the Optuna param (and MLflow param) of an outer trial's target
START_LAMBDA = 1.0  # the first lambda searched when no (lambda, cost) pair is known
# The MLflow param of a subnet trained at its target: the sparsity the supernet derived.
GRID_SPARSITY = "dass.grid_sparsity"


def cost_range(net: Supernet, kind: str) -> tuple[float, float]:
    """The costs (dense = 1) of the sparsest and the densest subnet ``net`` can derive,
    rounded so the target's distribution is the same on every run."""
    from sparsearch.ops.macro import MacroSupernet
    from sparsearch.ops.space import SpaceSupernet

    low = net.cheapest_cost(kind)
    high = 1.0
    if isinstance(net, MacroSupernet):
        densest = {n: max(range(len(d)), key=d.__getitem__) for n, d in net.densities.items()}
        high = net.chosen_density(densest, kind)
    elif isinstance(net, SpaceSupernet):
        high = max(net.target_cost(i, kind) for i in range(len(net.targets)))
    low, high = round(low, 4), round(high, 4)
    return low, max(high, low + 1e-3)


def exact_range(setup: SearchSetup, net: Supernet) -> tuple[float, float, float | None] | None:
    """(low, high, step) of the space's global sparsity range where ``search.dass
    .exact_target`` can set a derived subnet's sparsity: the space supernet over a space
    whose ``sparsity`` is a float range; else None."""
    from sparsearch.ops.space import SpaceSupernet

    dim = setup.space.params.get("sparsity")
    if not isinstance(net, SpaceSupernet) or dim is None or dim.kind != "float":
        return None
    assert dim.low is not None and dim.high is not None  # a float range has its bounds
    return float(dim.low), float(dim.high), dim.step


@dataclass
class _Outer:
    """One TPE trial, from its ask to its tell."""

    trial: optuna.Trial
    key: int
    target: float
    values: dict[str, Any]  # the training values it trains with
    searches: int = 0  # supernet searches spent on its target
    busy: bool = False  # one of its units is in flight
    outcome: LambdaOutcome | None = None  # the subnet it trains, once chosen
    searched_on: str | None = None
    replay: tuple[float, int] | None = None  # (lambda, search key) its killed attempt chose
    found: LambdaOutcome | None = None  # its latest search's subnet


class DassTpeStrategy(Strategy):
    """TPE over training values and a target density, DASS per target (module doc).

    Raises:
        ConfigError: the space or settings cannot be searched by DASS ("not supported: ...").
    """

    def __init__(self, setup: SearchSetup, study: optuna.Study, *, tracker: Tracker,
                 parent_run_id: str, on_trial: Callable[[int, str], None]) -> None:
        super().__init__(setup, study, tracker=tracker, parent_run_id=parent_run_id,
                         on_trial=on_trial)
        cfg = setup.cfg.search
        self.deadline = time.time() + cfg.timeout_s if cfg.timeout_s is not None else None
        self.plan = check_dass(setup)
        self.dass = plan_budget(self.plan, setup.ctx, cfg.dass, timeout_s=cfg.timeout_s)
        net = build_supernet(self.plan, setup.ctx)
        self.low, self.high = cost_range(net, cfg.dass.cost)
        # The space's sparsity range, where derived subnets train at their target exactly.
        self.exact = (exact_range(setup, net) if cfg.dass.exact_target
                      and cfg.dass.inherit == "none" else None)
        self.net = net if self.exact is not None else None
        self.fixed = dict(cfg.dass.fixed)
        dims = training_dimensions(setup.space)
        # Inherited masks train with their own recipe: only the hparams are TPE's then.
        self.dims = (dims if cfg.dass.inherit == "none"
                     else {k: d for k, d in dims.items() if k in HPARAMS})
        self.points = sweep_points(study)
        self.pairs: list[tuple[float, float]] = [
            (float(lam), float(cost)) for lam, cost in study.user_attrs.get(
                keys.DASS_TPE_SEARCHED, [])]
        self.outcomes: list[LambdaOutcome] = []  # derived this run, reusable for a target
        self.outers: dict[int, _Outer] = {}  # by trial key
        self.fingerprint: str | None = None
        self.warming = False
        self.stopped = False

    @classmethod
    def check(cls, setup: SearchSetup) -> None:
        check_dass(setup)

    @classmethod
    def sampler(cls, cfg: SparsearchConfig, *, offset: int) -> optuna.samplers.BaseSampler:
        return create_sampler("tpe", seed=cfg.seed + offset,
                              n_startup_trials=cfg.search.n_startup_trials)

    def _budget_left(self) -> bool:
        if self.deadline is not None and time.time() >= self.deadline:
            return False
        n_trials = self.setup.cfg.search.n_trials
        return n_trials is None or budget_used(self.study) + len(self.outers) < n_trials

    def propose(self) -> Unit | None:
        if self.stopped:
            for outer in [o for o in self.outers.values() if not o.busy]:
                self._give_up(outer, "the budget ran out before its subnet trained")
            return None
        if self.fingerprint is None:
            if self.warming:
                return None
            self.warming = True
            return WarmUpUnit(round_=0, plan=self.plan, dass=self.dass, deadline=self.deadline)
        for outer in list(self.outers.values()):
            if not outer.busy:
                unit = self._advance(outer)
                if unit is not None:
                    return unit
        if not self._budget_left():
            return None
        return self._advance(self._ask())

    def _ask(self) -> _Outer:
        trial = self.study.ask()
        values: dict[str, Any] = {}
        for name, dim in self.dims.items():
            if dim.active(values):
                values[name] = self.fixed[name] if name in self.fixed else dim.suggest(trial)
        target = trial.suggest_float(TARGET, self.low, self.high)
        outer = _Outer(trial=trial, key=trial_key(trial), target=target, values=values)
        if keys.RETRY_OF in trial.user_attrs:
            # An attempt of this trial was killed: if it had chosen its subnet (and so
            # opened its MLflow run with that subnet's params), derive the same one again.
            sources = [t.user_attrs[keys.DASS_TPE_SOURCE]
                       for t in self.study.get_trials(deepcopy=False)
                       if trial_key(t) == outer.key and keys.DASS_TPE_SOURCE in t.user_attrs]
            if sources:
                outer.replay = (float(sources[-1][0]), int(sources[-1][1]))
        self.outers[outer.key] = outer
        return outer

    def _advance(self, outer: _Outer) -> Unit | None:
        """The outer trial's next unit: a supernet search or its subnet's training."""
        assert self.fingerprint is not None
        if outer.replay is not None:
            if outer.found is not None:
                return self._train(outer, outer.found)
            if outer.searches == 0:
                outer.searches, outer.busy = 1, True
                return LambdaUnit(lam=outer.replay[0], key=outer.replay[1], round_=0,
                                  plan=self.plan, dass=self.dass,
                                  fingerprint=self.fingerprint, deadline=self.deadline)
        tolerance, limit = self.dass.target_tolerance, self.dass.max_bisections
        hit = min(self.outcomes, key=lambda o: abs(o.cost - outer.target), default=None)
        if hit is not None and (abs(hit.cost - outer.target) <= tolerance
                                or outer.searches >= limit):
            return self._train(outer, hit)
        if outer.searches >= limit:
            self._give_up(outer, f"none of its {limit} supernet searches derived a subnet")
            return None
        lam = lambda_for_target(outer.target, self.pairs, tolerance=tolerance,
                                start=START_LAMBDA)
        if lam is None:
            nearest = closest_point(outer.target, self.pairs)
            if hit is not None and (nearest is None or abs(hit.cost - outer.target)
                                    <= abs(nearest[1] - outer.target)):
                return self._train(outer, hit)
            # The nearest pair is an earlier run's, whose subnet this process does not
            # hold: search its lambda again.
            lam = nearest[0] if nearest is not None else START_LAMBDA
        outer.searches += 1
        outer.busy = True
        return LambdaUnit(lam=lam, key=outer.key, round_=0, plan=self.plan, dass=self.dass,
                          fingerprint=self.fingerprint, deadline=self.deadline)

    def _train(self, outer: _Outer, outcome: LambdaOutcome) -> TrialUnit:
        # Before the trial's MLflow run opens: a killed attempt is replayed from this.
        outer.trial.set_user_attr(keys.DASS_TPE_SOURCE, [outcome.lam, outcome.key])
        outcome = replace(outcome, key=outer.key)
        extra: dict[str, Any] = {}
        if outcome.inherited is None and outcome.spec is not None:
            on_target = self._on_target(outcome.spec, outer.target)
            if on_target is not None:
                # The supernet chose the pattern and allocation; the trial's target sets
                # the sparsity, so TPE's density is the one trained.
                extra[GRID_SPARSITY] = outcome.spec.sparsity
                outcome = replace(outcome, spec=on_target[0], cost=on_target[1])
        outer.outcome, outer.busy = outcome, True
        dass = self.dass
        derived = (inherited_spec(outcome, run_dir=self.setup.run_dir)
                   if outcome.inherited is not None else outcome.spec)
        assert derived is not None  # a derived outcome has a spec
        spec = self._training_spec(derived, outer.values)
        log.info("dass_tpe: trial %d trains lambda=%g, cost %.3f for target %.3f",
                 outer.key, outcome.lam, outcome.cost, outer.target)
        return TrialUnit(spec=spec, key=outer.key, number=outer.trial.number,
                         model=outcome.model,
                         extra_params={"strategy": "dass_tpe", "dass.lambda": outcome.lam,
                                       TARGET: outer.target, **extra,
                                       "dass.supernet": dass.supernet,
                                       "dass.derive": dass.derive, "dass.cost": dass.cost,
                                       "dass.inherit": (dass.inherit if outcome.inherited
                                                        is not None else "none")})

    def _on_target(self, spec: SubnetSpec, target: float) -> tuple[SubnetSpec, float] | None:
        """``spec`` at the sparsity whose cost is ``target`` and that cost, or None where
        the sparsity is not the space's range to set (N:M, dense, a fixed sparsity,
        ``exact_target=false``) or the solved sparsity is the grid level. The space's layer
        rules stay, as in any spec random search draws from it."""
        if self.exact is None or self.net is None or spec.pattern in ("dense", "nm") \
                or spec.sparsity == 0.0:
            return None
        from sparsearch.ops.space import SpaceSupernet

        net, kind = self.net, self.dass.cost
        assert isinstance(net, SpaceSupernet)  # exact_range holds only for the space supernet
        low, high, step = self.exact

        def cost_of(sparsity: float) -> float:
            return net.cost_of(replace(spec, sparsity=sparsity), kind)

        sparsity = in_range(sparsity_for_cost(target, cost_of, low=low, high=high),
                            low=low, high=high, step=step)
        if sparsity == spec.sparsity:
            return None
        return replace(spec, sparsity=sparsity), cost_of(sparsity)

    def _training_spec(self, spec: SubnetSpec, values: dict[str, Any]) -> SubnetSpec:
        """The derived spec trained with the trial's values (an inherited recipe stays:
        the trial asks no recipe then)."""
        return variant_spec(spec, values, values)

    def _give_up(self, outer: _Outer, reason: str) -> None:
        """Fails an outer trial that trained nothing; it does not count against the budget
        (a rerun with budget left asks anew)."""
        from optuna.trial import TrialState

        del self.outers[outer.key]
        outer.trial.set_user_attr(keys.FAIL_REASON, reason)
        outer.trial.set_user_attr(STALE, True)
        self.study.tell(outer.trial, state=TrialState.FAIL)
        log.info("dass_tpe: trial %d trained nothing: %s", outer.key, reason)

    def consume(self, done: Finished) -> None:
        unit = done.unit
        if isinstance(unit, WarmUpUnit):
            self._warmed(done)
        elif isinstance(unit, LambdaUnit):
            self._searched(unit, done)
        else:
            self._trained(unit, done)

    def _warmed(self, done: Finished) -> None:
        self.warming = False
        if done.error is not None or done.value is None:
            log.warning("dass_tpe: no dense warm-up: %s",
                        done.error or "the budget ran out during it")
            self.stopped = True
            return
        self.fingerprint, cached = done.value
        if cached:
            log.info("dass_tpe: the dense warm-up came from dass/warmup.pt")

    def _searched(self, unit: LambdaUnit, done: Finished) -> None:
        # A replayed search runs under its source's key: its trial is the one awaiting
        # exactly it, before any trial of that key (the same search gives the same subnet).
        waiting = [o for o in self.outers.values() if o.busy and o.outcome is None]
        outer = next((o for o in waiting if o.replay == (unit.lam, unit.key)), None)
        outer = outer or next(o for o in waiting if o.key == unit.key)
        outer.busy = False
        if done.error is not None:
            log.warning("dass_tpe: lambda=%g failed: %s", unit.lam, done.error)
            return
        outcome: LambdaOutcome = done.value
        if outcome.status != "derived":
            log.info("dass_tpe: the budget ran out while searching lambda=%g", unit.lam)
            self.stopped = True
            self._give_up(outer, "the budget ran out during its supernet search")
            return
        outer.searched_on, outer.found = done.node_id, outcome
        self.outcomes.append(outcome)
        if math.isfinite(outcome.cost):
            self.pairs.append((outcome.lam, outcome.cost))
            self.study.set_user_attr(keys.DASS_TPE_SEARCHED, [list(p) for p in self.pairs])
        log.info("dass_tpe: lambda=%g derived cost %.3f (trial %d, target %.3f)",
                 outcome.lam, outcome.cost, outer.key, outer.target)

    def _trained(self, unit: TrialUnit, done: Finished) -> None:
        outer = self.outers.pop(unit.key)
        assert outer.outcome is not None
        result = self.trial_result(done)
        if done.node_id:
            outer.trial.set_user_attr(keys.NODE_ID, done.node_id)
        point = record_trained(self.setup, self.study, outer.outcome, result,
                               points=self.points, tracker=self.tracker, round_=0,
                               retrain_of=None, trial=outer.trial)
        self.points.append(point)
        tags = {keys.NODE_ID: outer.searched_on, keys.TRAIN_NODE_ID: done.node_id}
        run_id = self.tracker.trial_run_id(self.setup.search_key, point.key)
        if run_id is not None:
            # A metric, not a param: a replayed attempt spends other searches.
            self.tracker.log_metrics(run_id, {"dass_searches": outer.searches})
            if any(tags.values()):
                self.tracker.set_tags(run_id, {k: v for k, v in tags.items() if v})
        self.on_trial(point.key, "complete" if point.accuracy is not None else "failed")
