"""A run dir holds one search: reruns of the same search resume, others are refused."""

from __future__ import annotations

import json
import sqlite3

import pytest

from sparsearch.config import validate
from sparsearch.search.fingerprint import (
    FINGERPRINT_FILE,
    FingerprintMismatch,
    check_fingerprint,
    search_fingerprint,
    write_fingerprint,
)
from sparsearch.space import resolve_space
from tests.conftest import run_cli, tiny_search_args
from tests.test_bad_input import compose

SPACE = "params: {sparsity: {float: [0.5, 0.9]}, recipe: {choice: [one_shot]}}\n"


def fingerprint(tmp_path, overrides: list[str]) -> dict:
    from sparsearch.search.setup import prepare_search

    space = tmp_path / "space.yaml"
    if not space.exists():
        space.write_text(SPACE)
    cfg = validate(compose([f"space={space}", "model.hidden=[16]", *overrides]))
    setup = prepare_search(cfg, tmp_path / "run")
    return search_fingerprint(cfg, space_path=resolve_space(cfg.space), model=setup.ctx.model,
                              train=setup.ctx.train)


def test_same_search_with_another_budget_passes(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    write_fingerprint(run_dir, fingerprint(tmp_path, ["search.n_trials=3"]))
    check_fingerprint(run_dir, fingerprint(tmp_path, ["search.n_trials=9",
                                                      "search.timeout_s=60",
                                                      "runner.max_failures=3"]))


@pytest.mark.parametrize(("change", "named"), [
    (["model.hidden=[32]"], "model.hidden (was [16], now [32])"),
    (["data.split_seed=1"], "data.split_seed (was 0, now 1)"),
    (["search.objectives=[accuracy:max,flops:min]"], "objectives (was"),
    (["train.epochs=3"], "train.epochs (was 20, now 3)"),
    (["search=random"], "strategy.name (was \"tpe\", now \"random\")"),
    (["seed=7"], "seed (was 0, now 7)"),
])
def test_a_different_search_is_refused_naming_what_differs(tmp_path, change, named):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    write_fingerprint(run_dir, fingerprint(tmp_path, []))
    with pytest.raises(FingerprintMismatch) as err:
        check_fingerprint(run_dir, fingerprint(tmp_path, change))
    message = str(err.value)
    assert named in message and "hydra.run.dir=ANOTHER_DIR" in message and "\n" not in message


def test_the_space_counts_by_content(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    write_fingerprint(run_dir, fingerprint(tmp_path, []))
    (tmp_path / "space.yaml").write_text(SPACE.replace("0.9", "0.95"))
    with pytest.raises(FingerprintMismatch, match="the space file's content"):
        check_fingerprint(run_dir, fingerprint(tmp_path, []))


def test_fingerprint_is_written_once(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    write_fingerprint(run_dir, fingerprint(tmp_path, []))
    write_fingerprint(run_dir, fingerprint(tmp_path, ["seed=3"]))
    assert json.loads((run_dir / FINGERPRINT_FILE).read_text())["seed"] == 0
    assert [p.name for p in run_dir.iterdir()] == [FINGERPRINT_FILE]


@pytest.mark.slow
def test_rerun_resumes_the_same_search_and_refuses_another(tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    args = [*tiny_search_args(tmp_path, seeded=True), f"space={space}", "search.n_trials=2",
            "train.epochs=1", "export.enabled=false"]
    first = run_cli(args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    run_dir = tmp_path / "run"
    written = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if ".hydra" not in p.parts
               and p.suffix != ".log"}

    # A different space (still compatible with the study): refused before anything opens.
    space.write_text(SPACE.replace("[0.5, 0.9]", "[0.1, 0.3]"))
    other = run_cli(args, cwd=tmp_path)
    assert other.returncode == 2, other.stderr[-3000:]
    assert other.stderr.strip() == (
        f"error: run dir {run_dir} holds a different search: the space file's content. Only "
        f"search.n_trials and search.timeout_s may change on resume; start a new run with "
        f"hydra.run.dir=ANOTHER_DIR")
    # A different objective: the same line names it, no Optuna traceback.
    objectives = run_cli([*args, "search.objectives=[accuracy:max]"], cwd=tmp_path)
    assert objectives.returncode == 2
    assert "objectives (was [\"accuracy:max\", \"density:min\"], now [\"accuracy:max\"])" \
        in objectives.stderr and "Traceback" not in objectives.stderr
    assert {p: p.stat().st_mtime_ns for p in written} == written
    with sqlite3.connect(tmp_path / "mlflow.db") as db:
        assert db.execute("select count(*) from runs").fetchone()[0] == 3  # parent + 2

    # The same search with a larger budget resumes.
    space.write_text(SPACE)
    more = run_cli([*args, "search.n_trials=3"], cwd=tmp_path)
    assert more.returncode == 0, more.stderr[-3000:]
    assert sorted(p.name for p in (run_dir / "trials").iterdir()) == ["00000", "00001", "00002"]


def test_dass_settings_added_later_read_as_their_earlier_behaviour(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    old = fingerprint(tmp_path, ["search=dass_tpe"])
    assert "probe" not in old["strategy"]["dass"]  # dass_tpe does not read it
    # a dass_tpe run dir from before exact_target (and probe) existed
    del old["strategy"]["dass"]["exact_target"]
    old["strategy"]["dass"]["probe"] = True
    write_fingerprint(run_dir, old)
    with pytest.raises(FingerprintMismatch, match=r"exact_target \(was false, now true\)"):
        check_fingerprint(run_dir, fingerprint(tmp_path, ["search=dass_tpe"]))
    check_fingerprint(run_dir, fingerprint(tmp_path, ["search=dass_tpe",
                                                      "search.dass.exact_target=false"]))
    # dass does not read exact_target: setting it changes nothing
    dass_dir = tmp_path / "dass"
    dass_dir.mkdir()
    write_fingerprint(dass_dir, fingerprint(tmp_path, ["search=dass"]))
    check_fingerprint(dass_dir, fingerprint(tmp_path, ["search=dass",
                                                       "search.dass.exact_target=false"]))
