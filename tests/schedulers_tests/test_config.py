"""search.scheduler, search.min_epochs, search.eta and compare entries that carry a scheduler."""

from __future__ import annotations

from dataclasses import replace

import pytest

from sparsearch.config import ConfigError, SparsearchConfig, split_compare_entry, validate
from tests.conftest import run_cli, tiny_search_args


def _with(**search) -> SparsearchConfig:
    cfg = SparsearchConfig()
    return replace(cfg, search=replace(cfg.search, **search))


@pytest.mark.parametrize(("search", "message"), [
    ({"scheduler": "median"}, "search.scheduler must be one of ['asha', 'hyperband', 'none']"),
    ({"scheduler": "asha", "eta": 1}, "search.eta must be an integer >= 2"),
    ({"scheduler": "asha", "min_epochs": 0}, "search.min_epochs must be >= 1"),
    ({"scheduler": "asha", "min_epochs": 20}, "search.min_epochs must be < train.epochs (20)"),
    ({"scheduler": "hyperband", "objectives": ["density:min", "flops:min"]},
     "search.objectives must include accuracy or loss"),
    ({"scheduler": "asha", "strategy": "dass"}, "search.scheduler must be none for"),
    ({"scheduler": "asha", "rung_masks": "dense"},
     "search.rung_masks must be one of ['current', 'final']"),
    ({"compare": ["random", "random_median"]}, "search.compare item must be one of"),
])
def test_bad_scheduler_settings_name_the_field(search, message):
    with pytest.raises(ConfigError) as err:
        validate(_with(**search))
    assert message in str(err.value)


def test_good_scheduler_settings_pass():
    validate(_with(scheduler="hyperband", min_epochs=2, eta=2,
                   compare=["random", "random_asha", "tpe_hyperband", "nsga2_none"]))


def test_compare_entries_split_off_a_known_scheduler_only():
    assert split_compare_entry("random_asha") == ("random", "asha")
    assert split_compare_entry("tpe_hyperband") == ("tpe", "hyperband")
    assert split_compare_entry("random") == ("random", None)
    assert split_compare_entry("dass_tpe") == ("dass_tpe", None)


def test_unknown_scheduler_exits_2_with_one_line(tmp_path):
    result = run_cli([*tiny_search_args(tmp_path), "search.scheduler=median"], cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines() == [
        "error: search.scheduler must be one of ['asha', 'hyperband', 'none'], got 'median'"]
