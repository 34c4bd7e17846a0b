"""The wheel must carry every package, conf/, search_spaces/ and the kernels' C++ source, so
an installed sparsearch works outside the checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def _expected_files() -> set[str]:
    """Every source file of the checkout, named as the wheel must name it."""
    expected = {f"sparsearch/{p.relative_to(REPO / 'sparsearch')}"
                for p in (REPO / "sparsearch").rglob("*.py")}
    expected |= {f"sparsearch/kernels/{p.name}" for p in (REPO / "kernels").iterdir()
                 if p.suffix in (".py", ".cpp")}
    expected |= {f"sparsearch/conf/{p.relative_to(REPO / 'conf')}"
                 for p in (REPO / "conf").rglob("*.yaml")}
    expected |= {f"sparsearch/search_spaces/{p.name}"
                 for p in (REPO / "search_spaces").glob("*.yaml")}
    return expected


def test_wheel_carries_every_source_file_and_imports_outside_the_checkout(tmp_path):
    # Built from a copy without build/ or *.egg-info: setuptools would reuse a stale
    # build/lib and ship files the package list no longer (or never) names.
    source = tmp_path / "src"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "outputs", "__pycache__", ".pytest_cache"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path), str(source)], check=True, timeout=300)
    (wheel,) = tmp_path.glob("sparsearch-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = sorted(_expected_files() - names)
    assert not missing, missing
    for path in ("sparsearch/conf/config.yaml", "sparsearch/conf/experiment/quickstart.yaml",
                 "sparsearch/search_spaces/digits_mlp.yaml", "sparsearch/kernels/nm_cpu.cpp",
                 "sparsearch/search/dass/__init__.py", "sparsearch/sparsity/recipes/__init__.py"):
        assert path in names, path

    # Every module imports from the unpacked wheel (first on the path), not from the checkout.
    target = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(target)
    script = (
        "import importlib, pkgutil, sparsearch\n"
        "mods = [m.name for m in pkgutil.walk_packages(sparsearch.__path__, 'sparsearch.')\n"
        "        if not m.name.endswith('__main__')]\n"
        "for name in mods:\n"
        "    mod = importlib.import_module(name)\n"
        f"    assert mod.__file__.startswith({str(target)!r}), (name, mod.__file__)\n"
        "print(len(mods))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(target), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert int(result.stdout.strip().splitlines()[-1]) > 40
