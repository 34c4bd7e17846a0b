"""python -m sparsearch.export PATH [--bench]: the command as typed, and its main() in-process."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sparsearch.export import save
from sparsearch.export.__main__ import main

from .conftest import FAST, mlp_all_formats

REPO = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sparsearch.export", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    return save(mlp_all_formats(), None, tmp_path_factory.mktemp("cli") / "e", **FAST)


def test_the_command_prints_the_recorded_kernel_table(export_dir):
    result = run(str(export_dir))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("kernels measured on cpu")
    assert lines[1].split() == ["layer", "shape", "format", "density", "batch", "1", "batch",
                                "32", "batch", "256"]
    rows = {line.split()[0]: line.split() for line in lines[3:]}
    assert rows["fc1"][1:4] == ["128x64", "nm1:8", "0.125"]
    assert rows["fc2"][2] == "semi24" and rows["fc3"][2] == "bsr16x16"
    assert rows["fc4"][2] == "csr" and rows["head"][2] == "dense"
    assert rows["head"][4:] == ["dense", "1.00x"] * 3


def test_the_command_on_a_missing_path_is_one_line_and_exit_2(tmp_path):
    result = run(str(tmp_path / "nope"), "--bench")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == f"error: {tmp_path / 'nope'}: no such export directory\n"


def test_bench_measures_again(export_dir, capsys):
    assert main([str(export_dir), "--bench", "--batch-sizes", "1,8",
                 "--min-run-time-s", "0.002"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[-4:] == ["batch", "1", "batch", "8"]
    fc1 = next(line for line in lines if line.startswith("fc1")).split()
    assert fc1[5].endswith("x") and float(fc1[5][:-1]) >= 1.0


def test_bench_write_records_the_fresh_dispatch_that_load_then_uses(tmp_path, capsys,
                                                                    monkeypatch):
    from sparsearch.export import load, read_manifest
    from sparsearch.export._tuning import machine_fingerprint

    # An export saved without timing (as a busy machine's would be worth re-timing).
    path = save(mlp_all_formats(), None, tmp_path / "e", tune=False)
    assert read_manifest(path)["dispatch"] == {}
    weights_before = (path / "weights.safetensors").read_bytes()
    assert main([str(path), "--bench", "--write", "--min-run-time-s", "0.002"]) == 0
    assert "recorded this cpu dispatch" in capsys.readouterr().out
    manifest = read_manifest(path)
    record = manifest["dispatch"]["cpu"]
    assert record["machine"] == machine_fingerprint("cpu")
    assert {"fc1", "fc2", "fc3", "fc4"} <= set(record["layers"])
    assert (path / "weights.safetensors").read_bytes() == weights_before
    assert not list(path.glob(".manifest.json.tmp-*"))
    # load finds the recorded dispatch for this machine: nothing measured, nothing cached.
    cache = tmp_path / "cache"
    monkeypatch.setenv("SPARSEARCH_CACHE_DIR", str(cache))
    load(path)
    assert not (cache / "dispatch").exists()
    # ... whereas without a record it measures and caches (the check above can fail).
    bare = save(mlp_all_formats(), None, tmp_path / "bare", tune=False)
    load(bare, min_run_time_s=0.002)
    assert list((cache / "dispatch").glob("*.json"))


def test_write_needs_bench_and_the_exports_batch_sizes(export_dir, capsys):
    assert main([str(export_dir), "--write"]) == 2
    assert capsys.readouterr().err.startswith("error: --write records what --bench measures")
    before = (export_dir / "manifest.json").read_text()
    assert main([str(export_dir), "--bench", "--write", "--batch-sizes", "1,8",
                 "--min-run-time-s", "0.002"]) == 2
    assert "not supported: --write with batch sizes [1, 8]" in capsys.readouterr().err
    assert (export_dir / "manifest.json").read_text() == before


@pytest.mark.parametrize("make", ["empty_dir", "a_file", "bad_json", "other_json"])
def test_bad_input_is_one_line_on_stderr_and_exit_2(tmp_path, capsys, make):
    target = tmp_path / "target"
    if make == "a_file":
        target.write_text("x")
    else:
        target.mkdir()
        if make == "bad_json":
            (target / "manifest.json").write_text("{")
        elif make == "other_json":
            (target / "manifest.json").write_text('{"name": "something else"}')
    assert main([str(target)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1
    assert err.startswith("error: ") and str(target) in err


@pytest.mark.parametrize(("drop", "missing"), [(("weights",), "'weights'"),
                                               (("layers",), "'layers'"),
                                               (("batch_sizes",), "'batch_sizes'"),
                                               (("weights", "file"), "'weights.file'")])
def test_a_manifest_missing_a_required_key_is_one_line_and_exit_2(export_dir, tmp_path, drop,
                                                                  missing):
    target = tmp_path / "e"
    shutil.copytree(export_dir, target)
    manifest = json.loads((target / "manifest.json").read_text())
    node = manifest
    for key in drop[:-1]:
        node = node[key]
    del node[drop[-1]]
    (target / "manifest.json").write_text(json.dumps(manifest))
    result = run(str(target), "--bench")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == (f"error: {target / 'manifest.json'}: "
                             f"missing required key {missing}\n")
