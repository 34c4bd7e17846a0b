from __future__ import annotations

import json

import pytest

from sparsearch.spec import LayerRule, SubnetSpec, parse_block, parse_nm


def test_parse_nm_and_block():
    assert parse_nm("2:4") == (2, 4)
    assert parse_nm("1:16") == (1, 16)
    assert parse_block("4x8") == (4, 8)
    for bad in ("4:4", "5:4", "0:4", "2-4", "a:b"):
        with pytest.raises(ValueError):
            parse_nm(bad)


def test_spec_round_trips_through_json():
    spec = SubnetSpec(pattern="nm", nm="1:8", allocation="erk", recipe="gradual",
                      hparams={"lr": 0.01}, options={"erk.power": 0.5},
                      layers=(LayerRule("head", dense=True), LayerRule("fc*", sparsity=0.3)))
    again = SubnetSpec.from_dict(json.loads(spec.to_json()))
    assert again == spec
    assert again.digest() == spec.digest()
    assert spec.target_sparsity == pytest.approx(0.875)


def test_spec_rejects_bad_values():
    with pytest.raises(ValueError, match="sparsity"):
        SubnetSpec(pattern="unstructured", sparsity=1.0)
    with pytest.raises(ValueError, match="pattern"):
        SubnetSpec(pattern="diagonal")
    with pytest.raises(ValueError, match="N < M"):
        SubnetSpec(pattern="nm", nm="4:4")


def test_first_matching_rule_wins_and_flat_params():
    spec = SubnetSpec(pattern="unstructured", sparsity=0.9,
                      layers=(LayerRule("fc1", sparsity=0.2), LayerRule("fc*", dense=True)))
    assert spec.rule_for("fc1").sparsity == 0.2
    assert spec.rule_for("fc2").dense
    assert spec.rule_for("head") is None
    flat = spec.flat_params()
    assert flat["sparsity"] == 0.9
    assert flat["layers.fc1.sparsity"] == 0.2
    assert flat["layers.fc*.dense"] is True
