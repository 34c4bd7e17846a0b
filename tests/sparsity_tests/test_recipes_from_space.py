"""Every recipe trains on digits end to end from a space file, on a tiny budget.

The path a search takes: a YAML space file -> ``load_space`` -> one sampled SubnetSpec ->
``evaluate`` (model, plan, recipe with the file's knobs, val metrics). Each case sets a
non-default knob, so a knob lost between the file and the recipe fails here.
"""

from __future__ import annotations

import optuna
import pytest

import sparsearch.sparsity.recipes as recipes
from sparsearch.data import DataSplits
from sparsearch.evaluate import EvalContext, evaluate
from sparsearch.space import load_space
from sparsearch.sparsity import list_recipes, recipe_knobs
from sparsearch.spec import parse_nm

EPOCHS = 3
TRAIN = {"epochs": 1, "lr": 1e-2, "weight_decay": 0.0, "optimizer": "adam", "batch_size": 64}
DYNAMIC = {"gradual", "mdgf", "scores", "sdgf", "sr_ste"}
# Per recipe: the pattern lines of its space file and one non-default knob.
CASES = {
    "gradual": ("pattern: unstructured\n  sparsity: 0.8", {"end": 0.6}),
    "inherited": ("pattern: unstructured\n  sparsity: 0.8", {"weights": False}),
    "mdgf": ('pattern: block\n  block: "4x4"\n  sparsity: 0.5', {"k": 5.0}),
    "one_shot": ("pattern: unstructured\n  sparsity: 0.8", {"prune_at": 0.34}),
    "random_init": ('pattern: block\n  block: "4x4"\n  sparsity: 0.5', {}),
    "scores": ("pattern: unstructured\n  sparsity: 0.8", {"train_weights": True}),
    "sdgf": ('pattern: nm\n  nm: "1:4"', {"schedule": "geometric"}),
    "sr_ste": ('pattern: nm\n  nm: "2:4"', {"lambda_w": 1e-3}),
}


def write_space(tmp_path, recipe: str) -> str:
    pattern, knobs = CASES[recipe]
    lines = [f"  {pattern}", f"  recipe: {{fixed: {recipe}}}", f"  epochs: {EPOCHS}"]
    lines += [f"  {recipe}.{knob}: {str(value).lower()}" for knob, value in knobs.items()]
    path = tmp_path / f"{recipe}.yaml"
    path.write_text(f"description: {recipe} on digits, tiny budget\nparams:\n"
                    + "\n".join(lines) + "\n")
    return str(path)


@pytest.mark.parametrize("recipe", list_recipes())
def test_recipe_trains_end_to_end_from_a_space_file(tmp_path, monkeypatch,
                                                    digits: DataSplits, recipe: str) -> None:
    assert recipe in CASES, f"add a space-file case for the new recipe {recipe!r}"
    _, knobs = CASES[recipe]
    assert all(recipe_knobs(recipe)[k] != v for k, v in knobs.items()), "knob is a default"
    assert bool(knobs) == bool(recipe_knobs(recipe)), "set a knob of every recipe that has one"
    created = []
    real_create_recipe = recipes.create_recipe

    def spy_create_recipe(name, **given):
        created.append(real_create_recipe(name, **given))
        return created[-1]

    # evaluate() imports create_recipe from sparsearch.sparsity.recipes when it runs.
    monkeypatch.setattr(recipes, "create_recipe", spy_create_recipe)

    space = load_space(write_space(tmp_path, recipe))
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    spec = space.sample(trial)
    ctx = EvalContext(data=digits, model={"kind": "mlp", "hidden": [64, 64]}, train=TRAIN)
    log: list = []
    result, model = evaluate(spec, ctx,
                             log_metric=lambda key, value, step: log.append((key, value, step)))

    assert result.status == "complete", result.reason
    assert model is not None
    # Ten classes: chance is 0.1; three epochs reach 0.87 to 0.93 with every recipe.
    assert result.metrics["accuracy"] > 0.7, result.metrics
    if spec.pattern == "nm":
        n, m = parse_nm(spec.nm)
        target = n / m
    else:
        target = 1.0 - spec.sparsity
    # Block tiles cut by a layer's edge (the 10-row head) move the density a little.
    tolerance = 0.01 if spec.pattern == "block" else 1e-3
    assert result.metrics["density"] == pytest.approx(target, abs=tolerance)
    [made] = created
    assert made.name == recipe
    assert all(made.options[k] == v for k, v in knobs.items()), made.options
    flips = [(value, step) for key, value, step in log if key == "mask_flip_rate"]
    if recipe in DYNAMIC:
        assert [step for _, step in flips] == list(range(EPOCHS))
        assert all(0.0 <= value <= 1.0 for value, _ in flips)
        # Masks recomputed from moving weights flip in the first epoch.
        assert flips[0][0] > 0.0
