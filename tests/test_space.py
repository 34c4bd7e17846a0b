from __future__ import annotations

import optuna
import pytest
import yaml

from sparsearch.config import ConfigError
from sparsearch.space import list_spaces, load_space, parse_space

SPACE = """
description: test space
params:
  pattern:    {choice: [unstructured, nm]}
  sparsity:   {float: [0.5, 0.98], when: {pattern: unstructured}}
  nm:         {choice: ["2:4", "1:4", "1:8"], when: {pattern: nm}}
  allocation: {choice: [uniform, global]}
  recipe:     {choice: [one_shot, gradual]}
  gradual.frequency: {int: [5, 20], step: 5, when: {recipe: gradual}}
  lr:         {float: [1.0e-3, 1.0e-1], log: true}
  epochs:     {fixed: 3}
layers:
  "fc1":  {sparsity: {float: [0.0, 0.5]}}
  "head": {dense: true}
"""


def parse(text: str):
    return parse_space(yaml.safe_load(text), source="test.yaml")


def study(tmp_path, seed: int = 0):
    return optuna.create_study(storage=f"sqlite:///{tmp_path / 'o.db'}",
                               sampler=optuna.samplers.RandomSampler(seed=seed),
                               study_name=f"s{seed}", load_if_exists=True)


def test_conditions_decide_which_dimensions_exist(tmp_path):
    space = parse(SPACE)
    s = study(tmp_path)
    seen_patterns = set()
    for _ in range(12):
        trial = s.ask()
        spec = space.sample(trial)
        seen_patterns.add(spec.pattern)
        if spec.pattern == "nm":
            assert "nm" in trial.params and "sparsity" not in trial.params
            assert spec.nm in ("2:4", "1:4", "1:8")
        else:
            assert "sparsity" in trial.params and "nm" not in trial.params
            assert 0.5 <= spec.sparsity <= 0.98
        assert ("gradual.frequency" in trial.params) == (spec.recipe == "gradual")
        assert spec.hparams["epochs"] == 3
        assert 1e-3 <= spec.hparams["lr"] <= 1e-1
        assert spec.rule_for("head").dense
        assert 0.0 <= spec.rule_for("fc1").sparsity <= 0.5
        s.tell(trial, 0.0)
    assert seen_patterns == {"unstructured", "nm"}


def test_same_seed_same_specs(tmp_path):
    space = parse(SPACE)
    a, b = study(tmp_path, 1), study(tmp_path / "..", 1)
    specs_a = [space.sample(a.ask()) for _ in range(5)]
    specs_b = [space.sample(b.ask()) for _ in range(5)]
    assert specs_a == specs_b


def test_to_spec_keeps_only_the_chosen_recipes_knobs():
    space = parse(SPACE)
    spec = space.to_spec({"pattern": "unstructured", "sparsity": 0.9, "recipe": "one_shot",
                          "gradual.frequency": 10})
    assert spec.options == {}


@pytest.mark.parametrize(("text", "message"), [
    ("params: {colour: {choice: [red]}}", "params.colour: unknown parameter"),
    ("params: {sparsity: {normal: [0, 1]}}", "unknown key 'normal'"),
    ("params: {sparsity: {float: [0.1, 0.5], choice: [1]}}", "exactly one kind"),
    ("params: {nm: {choice: ['2:4'], when: {pattern: nm}}}", "refers to 'pattern'"),
    ("params: {pattern: {fixed: nm}, nm: {choice: ['4:4']}}", "N < M"),
    ("params: {pattern: {fixed: nm}, nm: {choice: ['1:64']}}", "M up to 32"),
    ("params: {sparsity: {float: [0.5, 1.2]}}", "sparsity must lie in [0, 1)"),
    ("params: {sparsity: {float: [-0.1, 0.5]}}", "sparsity must lie in [0, 1)"),
    ("params: {sparsity: {float: [0.9, 0.5]}}", "low must be <= high"),
    ("params: {lr: {float: [0.0, 0.1], log: true}}", "log scale needs low > 0"),
    ("params: {recipe: {choice: [magic]}}", "recipe must be one of"),
    ("params: {sr_ste.gamma: {float: [0.1, 0.2]}}", "has no option 'gamma'"),
    ("params: {pattern: {choice: [unstructured, block]}, sparsity: 0.5}", "no params.block"),
    ("params: {pattern: {fixed: block}, block: '4x4'}", "block but there is no params.sparsity"),
    ("params: {pattern: {choice: [nm, unstructured]}, nm: '2:4'}",
     "unstructured but there is no params.sparsity"),
    ("params: {sparsity: 0.5}\nlayers: {fc1: {speed: fast}}", "unknown key 'speed'"),
    ("params: {sparsity: 0.5}\nextra: 1", "unknown top-level key 'extra'"),
])
def test_bad_space_files_fail_with_one_line(text, message):
    with pytest.raises(ConfigError) as err:
        parse(text)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_glob_that_matches_no_layer():
    space = parse("params: {sparsity: 0.5}\nlayers: {'conv*': {dense: true}}")
    with pytest.raises(ConfigError, match="matches no prunable layer"):
        space.check_layers(["fc1", "fc2", "head"])
    parse("params: {sparsity: 0.5}\nlayers: {'fc*': {dense: true}}").check_layers(["fc1"])


def test_shipped_spaces_load():
    assert "digits_mlp" in list_spaces()
    for name in list_spaces():
        assert load_space(name).params


def test_unknown_space_names_the_choices():
    with pytest.raises(ConfigError, match="space must be one of"):
        load_space("no_such_space")
    with pytest.raises(ConfigError, match="does not exist"):
        load_space("/nowhere/space.yaml")


def test_grid_discretises_ranges():
    space = parse("params: {sparsity: {float: [0.5, 0.9]}, lr: {float: [1.0e-3, 1.0e-1], log: true}}")
    assert space.params["sparsity"].grid(3) == pytest.approx([0.5, 0.7, 0.9])
    assert space.params["lr"].grid(3) == pytest.approx([1e-3, 1e-2, 1e-1])
