"""Malformed space files: every shape a user (or a corrupt file) can produce is one
``ConfigError`` line, never another exception; a fuzz test over random YAML trees."""

from __future__ import annotations

import optuna
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sparsearch.config import ConfigError
from sparsearch.space import load_space, parse_space, parse_space_text

MALFORMED = {
    "params is a list": "params:\n  - sparsity\n  - lr\n",
    "params is a number": "params: 3\n",
    "layers is a list": "params: {sparsity: 0.5}\nlayers: [fc1, fc2]\n",
    "top level is a list": "- params\n- layers\n",
    "top level is a string": "just words\n",
    "number as a top-level key": "params: {sparsity: 0.5}\n7: x\n",
    "number as a parameter name": "params: {7: {float: [0, 1]}}\n",
    "number as a layer glob": "params: {sparsity: 0.5}\nlayers: {3: {dense: true}}\n",
    "int step 0": "params: {sparsity: 0.5, epochs: {int: [1, 5], step: 0}}\n",
    "float step 0": "params: {sparsity: {float: [0.1, 0.5], step: 0}}\n",
    "negative step": "params: {sparsity: {float: [0.1, 0.5], step: -0.1}}\n",
    "step as text": "params: {sparsity: {float: [0.1, 0.5], step: fine}}\n",
    "fractional int step": "params: {sparsity: 0.5, epochs: {int: [1, 5], step: 0.5}}\n",
    "fractional int bounds": "params: {sparsity: 0.5, epochs: {int: [1.5, 5]}}\n",
    "log as text": "params: {sparsity: 0.5, lr: {float: [0.001, 0.1], log: maybe}}\n",
    "log on a choice": "params: {recipe: {choice: [one_shot], log: true}, sparsity: 0.5}\n",
    "step on fixed": "params: {sparsity: {fixed: 0.5, step: 0.1}}\n",
    "log with step": "params: {sparsity: 0.5, lr: {float: [0.001, 0.1], log: true, step: 0.01}}\n",
    "infinite bound": "params: {sparsity: 0.5, lr: {float: [0.001, .inf]}}\n",
    "nan bound": "params: {sparsity: {float: [.nan, 0.5]}}\n",
    "boolean bound": "params: {sparsity: {float: [false, 0.5]}}\n",
    "range of three": "params: {sparsity: {float: [0.1, 0.2, 0.3]}}\n",
    "nested list choice": "params: {sparsity: 0.5, recipe: {choice: [[one_shot]]}}\n",
    "date choice": "params: {sparsity: 0.5, lr: {choice: [2024-01-01]}}\n",
    "mapping as fixed value": "params: {sparsity: {fixed: {a: 1}}}\n",
    "list as bare value": "params: {sparsity: [0.1, 0.2]}\n",
    "when is a list": "params: {pattern: {choice: [nm]}, nm: {choice: ['2:4'], when: [pattern]}}\n",
    "boolean sparsity": "params: {sparsity: true}\n",
    "fractional epochs": "params: {sparsity: 0.5, epochs: 2.5}\n",
    "epochs as float range": "params: {sparsity: 0.5, epochs: {float: [1, 3]}}\n",
    "layer group is a list": "params: {sparsity: 0.5}\nlayers: {fc1: [dense]}\n",
    "layer dense as text": "params: {sparsity: 0.5}\nlayers: {fc1: {dense: yes please}}\n",
    "impossible date": "params: {sparsity: 0.5}\ndescription: 2020-13-45\n",
    "bad int tag": "params: {sparsity: !!int abc}\n",
    "python tag": "params: !!python/object:os.system {}\n",
    "unclosed bracket": "params: {sparsity: [0.1, 0.5\n",
    "tab indentation": "params:\n\tsparsity: 0.5\n",
    "nested too deeply": "params: " + "[" * 2000 + "]" * 2000 + "\n",
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_space_is_one_config_error(case):
    with pytest.raises(ConfigError) as err:
        parse_space_text(MALFORMED[case], source="bad.yaml")
    message = str(err.value)
    assert "\n" not in message and message.startswith("space bad.yaml")


@pytest.mark.parametrize("content", [
    bytes(range(256)) * 2,  # binary garbage
    "params: {sparsity: 0.5}\ndescription: café\n".encode("latin-1"),  # not UTF-8
    b"\x00\x01params: {}",  # UTF-8, but control characters YAML refuses
], ids=["binary", "latin-1", "control characters"])
def test_unreadable_space_files_are_one_config_error(tmp_path, content):
    path = tmp_path / "bad.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as err:
        load_space(str(path))
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_step_that_optuna_accepts_is_kept():
    space = parse_space_text("params: {sparsity: {float: [0.1, 0.5], step: 0.1}, "
                             "epochs: {int: [1, 5], step: 2}}", source="ok.yaml")
    trial = optuna.create_study().ask()
    values = space.suggest(trial)
    assert values["epochs"] in (1, 3, 5)
    assert round(values["sparsity"] * 10) == pytest.approx(values["sparsity"] * 10)


# Random YAML trees shaped roughly like a space file (with any subtree replaced by noise),
# so that many reach deep into the parser instead of failing at the top.
WORDS = ["unstructured", "nm", "block", "channel", "uniform", "erk", "global", "one_shot",
         "gradual", "sr_ste", "2:4", "1:40", "4x4", "0x2", "fc1"]
scalars = (st.sampled_from(WORDS) | st.integers(-5, 40) | st.floats(allow_nan=True)
           | st.floats(-1, 2) | st.booleans() | st.none() | st.text(max_size=6))
trees = st.recursive(
    scalars,
    lambda children: (st.lists(children, max_size=4)
                      | st.dictionaries(st.sampled_from(WORDS) | st.integers(0, 3), children,
                                        max_size=3)),
    max_leaves=12)
pairs = st.lists(st.integers(-2, 40) | st.floats(-1, 2), min_size=2, max_size=2)
values = scalars | pairs | st.lists(scalars, max_size=4) | trees
dimension = (st.dictionaries(st.sampled_from(["choice", "float", "int", "fixed", "log",
                                              "step", "when"]),
                             values | st.dictionaries(st.sampled_from(["pattern", "recipe"]),
                                                      values, max_size=2),
                             max_size=3)
             | scalars | trees)
names = st.sampled_from(["pattern", "sparsity", "nm", "block", "allocation", "recipe", "lr",
                         "epochs", "batch_size", "weight_decay", "gradual.frequency",
                         "erk.power", "colour"])
space_trees = st.fixed_dictionaries({}, optional={
    "params": st.dictionaries(names, dimension, max_size=6) | trees,
    "layers": st.dictionaries(st.sampled_from(["fc1", "head", "*", "fc*"]),
                              st.dictionaries(st.sampled_from(["dense", "sparsity", "pattern",
                                                               "nm", "block", "speed"]),
                                              dimension, max_size=3) | trees,
                              max_size=3) | trees,
    "description": scalars,
}) | trees


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=space_trees)
def test_fuzzed_space_either_parses_and_samples_or_is_one_config_error(tree):
    try:
        space = parse_space(tree, source="fuzz.yaml")
    except ConfigError as err:
        assert "\n" not in str(err)
        return
    # What the parser accepts must also run: Optuna takes every dimension.
    space.sample(optuna.create_study().ask())


@settings(max_examples=100, deadline=None)
@given(tree=space_trees)
def test_fuzzed_space_text_round_trip(tree):
    # The same trees through the YAML text path (what load_space reads).
    try:
        parse_space_text(yaml.safe_dump(tree), source="fuzz.yaml")
    except ConfigError:
        pass
