"""The shipped spaces beyond digits_mlp and the presets that use them."""

from __future__ import annotations

import re

import optuna
import pytest
import torch

from sparsearch.models import create_model
from sparsearch.space import load_space
from sparsearch.sparsity import prunable_layers
from sparsearch.sparsity.plan import SparsityPlan

from .conftest import run_cli


def test_generic_space_keeps_first_and_last_prunable_layers_dense() -> None:
    space = load_space("generic")
    # small first and last layers: the middle ones can hold a 90% global target
    model = create_model("mlp", in_shape=(1, 40), num_classes=10, hidden=(128, 128, 128))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(5):
        spec = space.sample(study.ask())
        plans = SparsityPlan(spec, model).layers(model)
        names = list(prunable_layers(model))
        assert plans[names[0]].sparsity == 0.0 and plans[names[-1]].sparsity == 0.0
        middle = sum(plans[n].sparsity * model.get_submodule(n).weight.numel()
                     for n in names[1:-1])
        total = sum(model.get_submodule(n).weight.numel() for n in names)
        # the middle layers carry the whole global target
        assert middle == pytest.approx(spec.target_sparsity * total, abs=len(names))


def test_nm_space_samples_only_nm_subnets() -> None:
    space = load_space("nm")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    specs = [space.sample(study.ask()) for _ in range(8)]
    assert {s.pattern for s in specs} == {"nm"}
    assert all(s.recipe in ("sr_ste", "mdgf", "sdgf", "one_shot", "gradual") for s in specs)


@pytest.mark.slow
@pytest.mark.parametrize(("preset", "extra"), [
    ("resnet_quickstart", []),
    ("vit_quickstart", []),
    ("mnist1d_nm", ["data.num_samples=500", "search.n_trials=1"]),
])
def test_preset_runs(tmp_path, preset: str, extra: list[str]) -> None:
    torch.set_num_threads(1)
    result = run_cli([f"+experiment={preset}", f"hydra.run.dir={tmp_path / 'run'}",
                      f"tracking.uri=sqlite:///{tmp_path / 'ml.db'}", "train.epochs=1",
                      "search.n_trials=2", "export.enabled=false", *extra], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Pareto-optimal subnets" in result.stdout
    assert "0 failed" in result.stdout


def test_a_model_that_cannot_take_the_data_is_one_line_exit_2(tmp_path) -> None:
    result = run_cli([f"hydra.run.dir={tmp_path / 'run'}",
                      f"tracking.uri=sqlite:///{tmp_path / 'ml.db'}", "model=timm",
                      "model.name=test_vit", "space=generic"], cwd=tmp_path)
    assert result.returncode == 2
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: model timm test_vit cannot take the input shape (1, 8, 8)"
                               " of data.name=digits: AssertionError: Input height (8) should "
                               "be divisible by patch size (16)"), lines[0]
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("override", "message"), [
    ("+model.options.width=3", "model.options is for model.kind=custom or timm, not mlp"),
    ("model.target=pkg:fn", "model.target is for model.kind=custom (model=custom), not mlp"),
])
def test_model_options_of_another_kind_are_refused(override: str, message: str) -> None:
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    from sparsearch.config import ConfigError, register_configs, validate

    register_configs()
    with initialize_config_module(config_module="sparsearch.conf", version_base="1.3"):
        cfg = OmegaConf.to_object(compose(config_name="config", overrides=[override]))
    with pytest.raises(ConfigError, match=re.escape(message)):
        validate(cfg)
