"""The study's file in the run dir: Optuna's journal, a torn last line cut off on reopen, and
an older run dir's SQLite study kept so it resumes."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from sparsearch.search.study import load_run_study, open_study, recover_stale


def _open(run_dir):
    return open_study(name="s", storage=None, run_dir=run_dir,
                      sampler=optuna.samplers.RandomSampler(seed=0), directions=["max", "min"])


def _finish(study, n):
    for _ in range(n):
        trial = study.ask()
        x = trial.suggest_float("x", 0.0, 1.0)
        study.tell(trial, [x, 1.0 - x])


def test_a_new_run_dir_keeps_its_study_in_a_journal_that_another_process_reads(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_run_study(tmp_path, "s")
    assert list(tmp_path.iterdir()) == []  # reading created nothing
    study = _open(tmp_path)
    _finish(study, 3)
    assert (tmp_path / "optuna.journal").exists() and not (tmp_path / "optuna.db").exists()
    again = load_run_study(tmp_path, "s")
    assert [t.params for t in again.trials] == [t.params for t in study.trials]
    assert {t.state for t in again.trials} == {TrialState.COMPLETE}


def test_a_line_torn_by_a_crash_is_cut_off_and_the_study_goes_on(tmp_path):
    _finish(_open(tmp_path), 2)
    journal = tmp_path / "optuna.journal"
    whole = journal.read_bytes()
    # A write cut short by a power loss: half of a line, no newline.
    journal.write_bytes(whole + b'{"op_code": 4, "worker_id": "x", "trial_id"')
    study = _open(tmp_path)
    reopened = journal.read_bytes()
    assert reopened.startswith(whole) and b'"worker_id": "x"' not in reopened
    _finish(study, 2)  # without the cut, these lines would be glued to the torn one
    assert [t.state for t in load_run_study(tmp_path, "s").trials] == [TrialState.COMPLETE] * 4


def test_an_older_run_dirs_sqlite_study_is_kept_and_resumed(tmp_path):
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    old = optuna.create_study(study_name="s", storage=url, directions=["maximize", "minimize"])
    _finish(old, 2)
    old.ask()  # left RUNNING by a killed search
    study = _open(tmp_path)
    assert recover_stale(study) == 1
    assert not (tmp_path / "optuna.journal").exists()
    assert len(optuna.load_study(study_name="s", storage=url).trials) == 4
