"""Bad input, table-driven: every malformed override and space file is one ``error:`` line.

Most cases run in-process through the same composition and checks the command uses (Hydra's
compose, ``validate``, ``prepare_search``); a few run the real command to check what the
user sees: exit code 2, one line, no traceback, no run dir left behind.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sparsearch.config import ConfigError, validate
from tests.conftest import REPO, run_cli, tiny_search_args


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    from sparsearch.config import register_configs

    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return OmegaConf.to_object(hydra_compose(config_name="config", overrides=overrides))


BAD_OVERRIDES = [
    (["model.hidden=[-3]"], "model.hidden must be a non-empty list of widths >= 1"),
    (["model.hidden=[]"], "model.hidden"),
    (["model.hidden=[32,0]"], "model.hidden"),
    (["model=cnn", "model.channels=[8,8]"], "model.channels must be three"),
    (["model=cnn", "model.channels=[8,-1,8]"], "model.channels"),
    (["model.dropout=1.0"], "model.dropout must be in [0, 1)"),
    (["model.dropout=-0.1"], "model.dropout"),
    (["model.img_size=0"], "model.img_size must be >= 1 or null"),
    (["model=timm", "model.name=''"], "model.name"),
    (["data.limit=0"], "data.limit must be >= 1 or null"),
    (["data.image_size=-4"], "data.image_size"),
    (["data.val_fraction=0.7"], "data.val_fraction"),
    (["train.weight_decay=-1"], "train.weight_decay must be >= 0"),
    (["train.threads=0"], "train.threads must be >= 1 or null"),
    (["train.epochs=0"], "train.epochs"),
    (["train.lr=-0.1"], "train.lr"),
    (["search.n_startup_trials=-1"], "search.n_startup_trials"),
    (["search.population_size=1"], "search.population_size must be >= 2"),
    (["+search.reference.accuracy=nan"], "search.reference.accuracy"),
    (["search.objectives=[]"], "search.objectives must name at least one"),
    (["search.objectives=[accuracy:max,accuracy:max]"], "names a metric twice"),
    (["search.objectives=[accuracy:up]"], "direction of accuracy"),
    (["search.compare=[random,annealing]"], "search.compare item"),
    (["search.dass.lambdas=[]"], "search.dass.lambdas"),
    (["search.dass.lambdas=[-1.0]"], "search.dass.lambdas"),
    (["runner.num_cpus=0"], "runner.num_cpus must be >= 1 or null"),
    (["runner.max_concurrent_trials=0"], "runner.max_concurrent_trials"),
    (["runner.connect_timeout_s=0"], "runner.connect_timeout_s must be > 0"),
    (["tracking.timeout_s=-1"], "tracking.timeout_s must be > 0"),
    (["tracking.uri=file:///tmp/mlruns"], "tracking.uri must be sqlite"),
    (["export.batch_sizes=[]"], "export.batch_sizes must be a non-empty list"),
    (["export.batch_sizes=[0]"], "export.batch_sizes"),
]


@pytest.mark.parametrize(("overrides", "message"), BAD_OVERRIDES,
                         ids=[" ".join(o) for o, _ in BAD_OVERRIDES])
def test_bad_override_is_one_config_error(overrides, message):
    with pytest.raises(ConfigError) as err:
        validate(compose(overrides))
    assert message in str(err.value)
    assert "\n" not in str(err.value)


BAD_SPACES = {
    "params is a list": "params:\n  - sparsity\n",
    "int step 0": "params: {sparsity: 0.5, epochs: {int: [1, 5], step: 0}}\n",
    "glob matching no layer": "params: {sparsity: 0.5}\nlayers: {'conv*': {dense: true}}\n",
    "layer sparsity out of range": "params: {sparsity: 0.5}\nlayers: {fc1: {sparsity: 1.5}}\n",
}


@pytest.mark.parametrize("case", sorted(BAD_SPACES))
def test_bad_space_fails_in_search_setup(tmp_path, case):
    from sparsearch.search.setup import prepare_search

    space = tmp_path / "bad.yaml"
    space.write_text(BAD_SPACES[case])
    cfg = validate(compose([f"space={space}", "model.hidden=[16]"]))
    with pytest.raises(ConfigError) as err:
        prepare_search(cfg, tmp_path / "run")
    assert str(space) in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "run").exists()


def _assert_one_error_line(result, tmp_path: Path) -> str:
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [ln for ln in (result.stdout + result.stderr).splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()
    assert not (tmp_path / "mlflow.db").exists()
    return lines[0]


@pytest.mark.slow
@pytest.mark.parametrize(("content", "extra", "message"), [
    (b"params:\n  - sparsity\n", [], "params: must be a mapping"),
    (bytes(range(256)), [], "not UTF-8 text"),
    (b"params: {sparsity: 0.5}\n", ["model.hidden=[-3]"], "model.hidden"),
    (b"params: {sparsity: 0.5, epochs: {int: [1, 5], step: 0}}\n", [], "step: must be"),
], ids=["list params", "binary", "negative width", "step 0"])
def test_bad_input_through_the_command(tmp_path, content, extra, message):
    space = tmp_path / "space.yaml"
    space.write_bytes(content)
    result = run_cli([*tiny_search_args(tmp_path), f"space={space}", *extra], cwd=tmp_path)
    assert message in _assert_one_error_line(result, tmp_path)
