"""dass_tpe: the lambda-for-target solver, its settings, and the strategy through the real
command (TPE trials told their subnets' values, MLflow records, resume, exit 3)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sparsearch.config import ConfigError, DassConfig, validate
from sparsearch.search.dass.target import (
    closest_point,
    in_range,
    lambda_for_target,
    sparsity_for_cost,
)
from sparsearch.search.study import load_run_study, trial_key
from tests.conftest import mlflow_uri, run_cli
from tests.search_tests.test_dass_cli import records
from tests.test_bad_input import compose

TOL = 0.03
EXACT_SPACE = """params:
  pattern: unstructured
  sparsity: {float: [0.5, 0.98]}
  allocation: {choice: [uniform, erk]}
  recipe: {choice: [one_shot, gradual]}
  lr: {float: [1.0e-3, 3.0e-2], log: true}
layers:
  "head": {dense: true}
"""


def test_nothing_known_starts_at_the_start_lambda():
    assert lambda_for_target(0.3, [], tolerance=TOL, start=0.5) == 0.5
    assert lambda_for_target(0.3, [(1.0, math.nan)], tolerance=TOL, start=0.5) == 0.5


def test_a_cost_within_tolerance_needs_no_search():
    assert lambda_for_target(0.3, [(1.0, 0.5), (2.0, 0.32)], tolerance=TOL) is None
    assert closest_point(0.3, [(1.0, 0.5), (2.0, 0.32), (4.0, math.nan)]) == (2.0, 0.32)
    assert closest_point(0.5, [(2.0, 0.25), (1.0, 0.75)]) == (1.0, 0.75)  # tie: smaller lambda
    assert closest_point(0.3, []) is None


def test_without_a_bracket_lambda_doubles_or_halves():
    # every subnet still denser than the target: twice the largest lambda
    assert lambda_for_target(0.2, [(0.5, 0.6), (1.0, 0.5)], tolerance=TOL) == 2.0
    assert lambda_for_target(0.2, [(0.0, 0.6)], tolerance=TOL, start=0.7) == 0.7
    # every subnet sparser: half the smallest; lambda 0 sparser still: nothing helps
    assert lambda_for_target(0.6, [(1.0, 0.3), (4.0, 0.1)], tolerance=TOL) == 0.5
    assert lambda_for_target(0.6, [(0.0, 0.3), (4.0, 0.1)], tolerance=TOL) is None


def test_a_bracket_interpolates_in_log_lambda_within_the_safeguard():
    points = [(1.0, 0.5), (4.0, 0.1), (0.25, 0.7), (16.0, 0.05)]
    # the tightest bracket is (1, 0.5)-(4, 0.1): the middle of the costs is lambda 2
    assert lambda_for_target(0.3, points, tolerance=TOL) == pytest.approx(2.0)
    assert lambda_for_target(0.45, points, tolerance=TOL) == pytest.approx(4 ** 0.125)
    # near an end the step is kept a tenth of the gap away from it
    assert lambda_for_target(0.49, points, tolerance=0.005) == pytest.approx(4 ** 0.1)
    # next to lambda 0 (no logarithm): linear
    assert lambda_for_target(0.3, [(0.0, 0.5), (4.0, 0.1)], tolerance=TOL) == pytest.approx(2.0)
    # not monotone (supernet noise): between the two that disagree
    assert lambda_for_target(0.3, [(1.0, 0.1), (4.0, 0.5)], tolerance=TOL) == pytest.approx(2.0)


def test_a_lambda_already_searched_is_not_proposed_again():
    assert lambda_for_target(0.45, [(1.0, 0.5), (1.01, 0.1)], tolerance=TOL) is None


@pytest.mark.parametrize(("overrides", "message"), [
    (["search=dass_tpe", "search.dass.target_tolerance=0"], "search.dass.target_tolerance"),
    (["search=dass_tpe", "search.dass.target_tolerance=1.5"], "search.dass.target_tolerance"),
    (["search=dass_tpe", "search.dass.max_bisections=0"], "search.dass.max_bisections"),
    (["search=dass_tpe", "search.scheduler=asha", "train.epochs=4"],
     "search.scheduler must be none for search.strategy=dass_tpe"),
])
def test_bad_dass_tpe_settings_name_the_key(overrides, message):
    with pytest.raises(ConfigError) as err:
        validate(compose(overrides))
    assert message in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="search.dass.max_bisections must be >= 1"):
        DassConfig(max_bisections=0)


def test_the_preset_is_valid():
    cfg = validate(compose(["search=dass_tpe"]))
    assert cfg.search.strategy == "dass_tpe" and cfg.search.dass.max_bisections == 3


def tpe_args(tmp: Path, *, n_trials: int | None, run: str = "run") -> list[str]:
    return [f"hydra.run.dir={tmp / run}", f"tracking.uri={mlflow_uri(tmp / 'mlflow.db')}",
            "name=tinytpe", "search=dass_tpe", "export.enabled=false", "model.hidden=[32,32]",
            "train.epochs=2", "train.threads=1", f"search.n_trials={n_trials or 'null'}",
            "search.n_startup_trials=2", "search.dass.levels=3",
            "search.dass.warmup_epochs=1", "search.dass.search_epochs=1",
            "search.dass.finetune_epochs=1", "search.dass.batch_size=256",
            "search.dass.alpha_lr=0.1"]


@pytest.mark.slow
def test_dass_tpe_tells_tpe_each_subnet_then_resumes(tmp_path):
    first = run_cli(tpe_args(tmp_path, n_trials=3), cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "(dass_tpe, 3 complete" in first.stdout
    study = load_run_study(tmp_path / "run", "tinytpe")
    pairs = study.user_attrs["sparsearch.dass_tpe.searched"]
    trials = study.trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * 3
    _, parents, children = records(f"sqlite:///{tmp_path / 'mlflow.db'}", "tinytpe")
    assert parents[0].data.params["strategy"] == "dass_tpe"
    by_key = {int(c.data.tags["sparsearch.trial_key"]): c for c in children}
    assert sorted(by_key) == [t.number for t in trials]
    for t in trials:
        target = t.params["target_density"]
        assert {"recipe", "lr"} <= set(t.params)  # TPE's training values
        cost = t.user_attrs["sparsearch.dass.point"]["cost"]
        assert t.values[1] == pytest.approx(cost, abs=1e-3)  # the density told is DASS's
        child = by_key[t.number].data.params
        assert child["strategy"] == "dass_tpe" and child["recipe"] == t.params["recipe"]
        assert float(child["target_density"]) == pytest.approx(target)
        assert float(child["dass.lambda"]) == t.user_attrs["sparsearch.dass.lambda"]
        # on target, or the nearest subnet any search derived, or its searches spent
        assert (abs(cost - target) <= TOL or by_key[t.number].data.metrics["dass_searches"] == 3
                or abs(cost - target) <= min(abs(c - target) for _, c in pairs) + 1e-9)
    weights = tmp_path / "run" / "trials" / "00000" / "weights.safetensors"
    stamp = weights.stat().st_mtime_ns

    second = run_cli(tpe_args(tmp_path, n_trials=4), cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    log = next((tmp_path / "run").glob("*.log")).read_text()
    assert "dass_tpe: the dense warm-up came from dass/warmup.pt" in log
    study = load_run_study(tmp_path / "run", "tinytpe")
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 4
    assert weights.stat().st_mtime_ns == stamp
    _, parents, children = records(f"sqlite:///{tmp_path / 'mlflow.db'}", "tinytpe")
    assert len(parents) == 1 and len(children) == 4


@pytest.mark.slow
def test_a_killed_trial_trains_the_same_subnet_in_the_same_run_on_resume(tmp_path):
    # long enough a training (seconds) to be killed in, polled often; the space supernet
    # over unstructured subnets, so the trials train at their targets (exact_target)
    space = tmp_path / "space.yaml"
    space.write_text(EXACT_SPACE)
    args = [*tpe_args(tmp_path, n_trials=2), "train.epochs=150", f"space={space}",
            "search.dass.supernet=space"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    killed = subprocess.Popen([sys.executable, "-m", "sparsearch", *args], cwd=tmp_path,
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not any(
                "dass_tpe: trial 1 trains" in f.read_text()
                for f in (tmp_path / "run").glob("*.log")):
            assert killed.poll() is None, "the search ended before it could be killed"
            time.sleep(0.05)
    finally:
        killed.kill()
        killed.wait()
    resumed = run_cli(args, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    study = load_run_study(tmp_path / "run", "tinytpe")
    counted = [t for t in study.trials if not t.user_attrs.get("sparsearch.stale")]
    assert [t.state.name for t in counted] == ["COMPLETE"] * 2
    [stale] = [t for t in study.trials if t.user_attrs.get("sparsearch.stale")]
    [retry] = [t for t in counted if t.user_attrs.get("sparsearch.retry_of") == 1]
    assert retry.params == stale.params  # asked again with its values
    # the killed attempt had chosen lambda and opened its run: the same subnet, same run
    assert (retry.user_attrs["sparsearch.dass_tpe.source"]
            == stale.user_attrs["sparsearch.dass_tpe.source"])
    _, _, children = records(f"sqlite:///{tmp_path / 'mlflow.db'}", "tinytpe")
    assert sorted(int(c.data.tags["sparsearch.trial_key"]) for c in children) == [0, 1]
    assert all(c.info.status == "FINISHED" for c in children)
    grid = {0.5, 0.74, 0.98}  # search.dass.levels=3 points of the sparsity range
    by_key = {int(c.data.tags["sparsearch.trial_key"]): c.data.params for c in children}
    for t in counted:
        # the supernet chose the allocation; the density trained is the trial's target
        params = by_key[trial_key(t)]
        assert t.values[1] == pytest.approx(t.params["target_density"], abs=0.01)
        assert float(params["dass.grid_sparsity"]) in grid
        assert float(params["sparsity"]) not in grid


@pytest.mark.slow
def test_dass_tpe_that_trains_nothing_exits_3(tmp_path):
    # 100000 mask-learning epochs cannot fit in 4 s: the deadline passes in the first search
    args = [*tpe_args(tmp_path, n_trials=None), "search.timeout_s=4",
            "search.dass.search_epochs=100000"]
    out = run_cli(args, cwd=tmp_path)
    assert out.returncode == 3, out.stderr[-3000:]
    assert out.stderr.strip().splitlines()[-1].startswith(
        "warning: dass_tpe completed no subnet within the budget")
    study = load_run_study(tmp_path / "run", "tinytpe")
    # the trial that never trained is failed, not left running, and not counted
    assert all(t.state.name == "FAIL" and t.user_attrs["sparsearch.stale"]
               for t in study.trials)


def test_the_sparsity_for_a_cost_is_solved_within_the_range():
    def cost(sparsity: float) -> float:  # a dense head of 0.1 and prunable 0.9
        return 0.1 + 0.9 * (1.0 - sparsity)

    solved = sparsity_for_cost(0.4, cost, low=0.5, high=0.98)
    assert cost(solved) == pytest.approx(0.4, abs=1e-4) and 0.5 < solved < 0.98
    # a target the range cannot reach: the nearest bound
    assert sparsity_for_cost(0.9, cost, low=0.5, high=0.98) == 0.5
    assert sparsity_for_cost(0.05, cost, low=0.5, high=0.98) == 0.98

    # as random search could draw it: rounded, on the step grid, within the range
    assert in_range(0.61234567, low=0.5, high=0.98, step=None) == 0.6123
    assert in_range(0.93, low=0.5, high=0.95, step=0.2) == 0.9  # the grid's top is 0.9
    assert in_range(0.999999, low=0.5, high=0.99995, step=None) == 0.99995
