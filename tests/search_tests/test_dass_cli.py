"""DASS through the real command: MLflow records, resume, the cell space on image folders,
bad input, and the equal-budget comparison preset."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient
from PIL import Image

from sparsearch.search.study import load_run_study
from tests.conftest import mlflow_uri

pytestmark = pytest.mark.slow


def run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "sparsearch", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600, env=env)


def dass_args(tmp: Path, *, n_trials: int, probe: bool = False) -> list[str]:
    return [f"hydra.run.dir={tmp / 'run'}", f"tracking.uri={mlflow_uri(tmp / 'mlflow.db')}",
            "name=tinydass", "search=dass", "export.enabled=false", "model.hidden=[32,32]",
            "train.epochs=2", "train.threads=1", f"search.n_trials={n_trials}",
            "search.dass.lambdas=[16.0,0.0]", "search.dass.levels=3", "search.dass.warmup_epochs=1", "search.dass.search_epochs=1",
            "search.dass.finetune_epochs=1", "search.dass.batch_size=256",
            "search.dass.alpha_lr=0.1", f"search.dass.probe={str(probe).lower()}"]


def records(uri: str, experiment: str):
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("sparsearch.role") == "search"]
    children = [r for r in runs if r.data.tags.get("sparsearch.role") == "trial"]
    return client, parents, children


def test_dass_end_to_end_then_resume_without_redoing_lambdas(tmp_path):
    first = run_cli(dass_args(tmp_path, n_trials=1), tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "Pareto-optimal subnets of tinydass (dass, 1 complete" in first.stdout
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client, parents, children = records(uri, "tinydass")
    assert len(parents) == 1 and parents[0].data.params["strategy"] == "dass"
    assert len(children) == 1
    child = children[0]
    assert child.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
    assert child.data.params["dass.lambda"] == "16.0" and child.data.tags["pareto"] == "true"
    assert "test_accuracy" in child.data.metrics and "dass_expected_cost" in child.data.metrics
    [snapshot] = client.list_artifacts(child.info.run_id, "dass")
    local = client.download_artifacts(child.info.run_id, snapshot.path, str(tmp_path))
    alpha = json.loads(Path(local).read_text())
    assert alpha["lambda"] == 16.0 and set(alpha["decisions"]) == {"fc1", "fc2"}
    assert parents[0].data.metrics["hypervolume"] > 0
    key = int(child.data.tags["sparsearch.trial_key"])
    spec = json.loads((tmp_path / "run" / "trials" / f"{key:05d}" / "spec.json").read_text())
    assert [r["glob"] for r in spec["layers"]] == ["fc1", "fc2", "head"]
    weights = tmp_path / "run" / "trials" / f"{key:05d}" / "weights.safetensors"
    stamp = weights.stat().st_mtime_ns

    # the same command with a larger budget resumes: lambda 16 is not searched again
    second = run_cli(dass_args(tmp_path, n_trials=2), tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    client, parents, children = records(uri, "tinydass")
    assert len(parents) == 1 and len(children) == 2
    assert sorted(c.data.params["dass.lambda"] for c in children) == ["0.0", "16.0"]
    assert weights.stat().st_mtime_ns == stamp
    study = load_run_study(tmp_path / "run", "tinydass")
    lambdas = sorted(t.user_attrs["sparsearch.dass.lambda"] for t in study.trials)
    assert lambdas == [0.0, 16.0]
    front = json.loads((tmp_path / "run" / "pareto.json").read_text())["front"]
    assert front and all("test_accuracy" in e["metrics"] for e in front)


def test_the_probe_picks_training_values_for_later_subnets_and_resumes(tmp_path):
    # digits_mlp at levels=3: the first subnet (lambda 16, lr 5.5e-3, one_shot) is trained
    # again at lr 1e-3 and 3e-2, then with the better lr under the other recipe; lambda 0's
    # subnet trains with the values that won. The first run stops inside the probe.
    first = run_cli(dass_args(tmp_path, n_trials=2, probe=True), tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    second = run_cli(dass_args(tmp_path, n_trials=5, probe=True), tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    study = load_run_study(tmp_path / "run", "tinydass")
    assert len(study.trials) == 5
    specs = [json.loads((tmp_path / "run" / "trials" / f"{t.number:05d}" / "spec.json")
                        .read_text()) for t in study.trials]
    trained = [(s["hparams"]["lr"], s["recipe"], s["pattern"], s["sparsity"],
                s["allocation"]) for s in specs]
    assert len(set(trained)) == 5, trained  # the resumed probe trained nothing twice
    points = [t.user_attrs["sparsearch.dass.point"] for t in study.trials]
    source = points[0]
    assert source["lam"] == 16.0 and source["retrain_of"] is None
    probes = points[1:4]
    assert all(p["retrain_of"] == source["key"] and p["lam"] == 16.0 for p in probes)
    assert [p["training"] for p in probes[:2]] == [
        {"lr": pytest.approx(1e-3), "recipe": "one_shot"},
        {"lr": pytest.approx(3e-2), "recipe": "one_shot"}]
    acc = {json.dumps(p["training"], sort_keys=True): p["accuracy"] for p in probes}
    lr_axis = [(source["accuracy"], 5.477e-3), (probes[0]["accuracy"], 1e-3),
               (probes[1]["accuracy"], 3e-2)]
    best_lr = max(lr_axis, key=lambda a: a[0])[1]  # ties: the earlier one (the start first)
    assert probes[2]["training"] == {"lr": pytest.approx(best_lr, rel=1e-3), "recipe": "gradual"}
    one_shot_acc = max(a for a, _ in lr_axis)
    best_recipe = "gradual" if acc[json.dumps(probes[2]["training"], sort_keys=True)] > \
        one_shot_acc else "one_shot"
    chosen = study.user_attrs["sparsearch.dass.training"]
    assert chosen == {"lr": pytest.approx(best_lr, rel=1e-3), "recipe": best_recipe}
    last = points[4]
    assert last["lam"] == 0.0 and last["retrain_of"] is None
    assert specs[4]["hparams"]["lr"] == pytest.approx(chosen["lr"])
    assert specs[4]["recipe"] == chosen["recipe"]
    _, parents, children = records(f"sqlite:///{tmp_path / 'mlflow.db'}", "tinydass")
    assert json.loads(parents[0].data.tags["sparsearch.dass.training"]) == chosen
    assert sum(c.data.params.get("dass.probe") == "True" for c in children) == 3


def test_pt_derivation_with_a_flops_cost_through_the_command(tmp_path):
    args = [*dass_args(tmp_path, n_trials=1), "search.dass.derive=pt",
            "search.dass.cost=flops", "search.dass.pt_tune_epochs=0"]
    out = run_cli(args, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    client, _, children = records(f"sqlite:///{tmp_path / 'mlflow.db'}", "tinydass")
    [child] = children
    assert child.data.params["dass.derive"] == "pt"
    assert child.data.params["dass.cost"] == "flops"
    [snapshot] = client.list_artifacts(child.info.run_id, "dass")
    alpha = json.loads(Path(client.download_artifacts(child.info.run_id, snapshot.path,
                                                      str(tmp_path))).read_text())
    # PT scored removing each candidate of each decision on validation accuracy.
    assert alpha["derive"] == "pt" and alpha["cost"] == "flops"
    assert set(alpha["pt_accuracy_without"]) == {"fc1", "fc2"}
    assert 0.0 < alpha["expected_cost"] <= 1.0


def write_images(root: Path) -> None:
    rng = np.random.RandomState(0)
    for c in range(2):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(20):
            pixels = rng.randint(0, 60, size=(8, 8, 3), dtype=np.uint8)
            pixels[:, : 4 + 4 * c] += 150  # class 1 is brighter on the right half too
            Image.fromarray(pixels).save(root / f"class{c}" / f"{i}.png")


def test_cell_supernet_on_an_image_folder(tmp_path):
    write_images(tmp_path / "imgs")
    args = [f"hydra.run.dir={tmp_path / 'run'}", f"tracking.uri=sqlite:///{tmp_path / 'm.db'}",
            "name=cells", "data=imagefolder", f"data.root={tmp_path / 'imgs'}",
            "data.image_size=8", "model=cnn", "model.channels=[4,4,4]", "space=darts_cell",
            "search=dass", "search.dass.supernet=cell", "search.dass.init_channels=4",
            "search.dass.cells=2", "search.dass.levels=2", "search.dass.lambdas=[1.0]",
            "search.dass.warmup_epochs=1", "search.dass.search_epochs=1",
            "search.dass.finetune_epochs=0", "search.n_trials=1", "train.epochs=1",
            "train.threads=1", "export.batch_sizes=[1]"]
    out = run_cli(args, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    _, _, children = records(f"sqlite:///{tmp_path / 'm.db'}", "cells")
    [child] = children
    genotype = json.loads(child.data.params["cell.genotype"])
    assert len(genotype["normal"]) == len(genotype["reduce"]) == 8
    assert child.data.params["sparsity"] in ("0.5", "0.95")
    assert "test_accuracy" in child.data.metrics
    key = int(child.data.tags["sparsearch.trial_key"])
    model = json.loads((tmp_path / "run" / "trials" / f"{key:05d}" / "model.json").read_text())
    assert model["kind"] == "darts_cell" and model["genotype"] == genotype

    # The derived cell network is exported (not the search's CNN) and a fresh process
    # rebuilds it from the manifest alone.
    export = tmp_path / "run" / "exports" / "rank-0"
    manifest = json.loads((export / "manifest.json").read_text())
    assert manifest["build"]["kind"] == "darts_cell"
    script = ("import sys, torch; from sparsearch.export import load\n"
              "m = load(sys.argv[1]); y = m(torch.zeros(2, 3, 8, 8)); print(tuple(y.shape))")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    loaded = subprocess.run([sys.executable, "-c", script, str(export)], capture_output=True,
                            text=True, timeout=300, env=env, cwd=tmp_path)
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert loaded.stdout.strip().splitlines()[-1] == "(2, 2)"


def test_unsupported_dass_input_exits_2_with_one_line(tmp_path):
    base = [f"hydra.run.dir={tmp_path / 'run'}", f"tracking.uri=sqlite:///{tmp_path / 'm.db'}",
            "search=dass", "search.n_trials=1", "train.epochs=1", "model.hidden=[8]"]
    bad = run_cli([*base, "search.dass.init_channels=2"], tmp_path)
    assert bad.returncode == 2 and "search.dass.init_channels must be >= 4" in bad.stderr
    cell = run_cli([*base, "search.dass.supernet=cell"], tmp_path)
    assert cell.returncode == 2, cell.stderr[-2000:]
    assert cell.stderr.strip().splitlines()[-1].startswith("error: not supported: search.dass")


def test_the_comparison_preset_runs_both_strategies(tmp_path):
    args = ["+experiment=digits_dass_vs_random", f"hydra.run.dir={tmp_path / 'run'}",
            f"tracking.uri=sqlite:///{tmp_path / 'm.db'}", "search.timeout_s=6",
            "export.enabled=false",
            "model.hidden=[32,32]", "train.epochs=2", "train.threads=1"]
    out = run_cli(args, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "strategies on the same space and budget" in out.stdout
    assert "search s" in out.stdout and "wall s" in out.stdout and "test HV" in out.stdout
    _, parents, _ = records(f"sqlite:///{tmp_path / 'm.db'}", "digits_dass_vs_random")
    assert sorted(p.data.params["strategy"] for p in parents) == ["dass", "random"]
    for parent in parents:
        # the trials alone fit the 6 s budget (plus the trial running when it ran out)
        trials_s = parent.data.metrics["search_trials_s"]
        assert 0 < trials_s <= parent.data.metrics["search_wall_s"]
    for strategy in ("random", "dass"):
        report = json.loads((tmp_path / "run" / strategy / "pareto.json").read_text())
        # Each strategy's val front is also scored on test, printed beside its val volume.
        assert 0 < report["test_hypervolume"] <= 1
        assert f"{report['test_hypervolume']:.4f}" in out.stdout
    assert (tmp_path / "run" / "dass" / "dense.json").read_text() == \
        (tmp_path / "run" / "random" / "dense.json").read_text()
