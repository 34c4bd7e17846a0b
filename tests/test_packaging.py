"""conf/, search_spaces/ and kernels/ must ship inside the wheel, so an installed
sparsearch works outside the checkout."""

from __future__ import annotations

import subprocess
import sys
import zipfile

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def test_wheel_carries_configs_spaces_and_kernels(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path), str(REPO)], check=True, timeout=300)
    (wheel,) = tmp_path.glob("sparsearch-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for path in ("sparsearch/conf/config.yaml", "sparsearch/conf/experiment/quickstart.yaml",
                 "sparsearch/conf/model/mlp.yaml", "sparsearch/search_spaces/digits_mlp.yaml",
                 "sparsearch/kernels/__init__.py", "sparsearch/__main__.py"):
        assert path in names, path
