"""Exports in MLflow: a run artifact plus a registered pyfunc model under an alias.

Flavour: ``mlflow.pyfunc`` with the export directory as an artifact and a models-from-code
``python_model`` (``_mlflow_model.py``) that calls ``sparsearch.export.load``. The
pytorch flavour does not fit: its default ``pt2`` serialisation runs ``torch.export``,
which cannot trace our kernels (sparse CSR/BSR operands, the C++ op without a fake-tensor
kernel, data-dependent batch-class routing), and its ``pickle`` fallback is what the export
format avoids.
"""

from __future__ import annotations

import contextlib
import os
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from sparsearch.export._manifest import read_manifest

if TYPE_CHECKING:
    from mlflow.models import ModelSignature

__all__ = ["RegisteredExport", "load_registered", "log_export"]

_MODEL_CODE = Path(__file__).with_name("_mlflow_model.py")
# MLflow 3 rejects these characters in logged-model names (itwinai PR #505).
_BAD_NAME_CHARS = re.compile(r"[/:.%\"']")


@dataclass(frozen=True)
class RegisteredExport:
    """Where ``log_export`` put an export.

    Attributes:
        model_uri: ``models:/NAME@ALIAS``, loadable by ``mlflow.pyfunc.load_model``.
        name: registered model name.
        version: registered model version.
        alias: the alias set on that version.
        run_id: the run holding the export as artifact ``export/``.
        model_id: MLflow 3's LoggedModel id.
    """

    model_uri: str
    name: str
    version: str
    alias: str
    run_id: str
    model_id: str


@contextlib.contextmanager
def _no_progress_bars() -> Iterator[None]:
    """Quiets MLflow's artifact progress bars while logging (one per export, in the middle
    of the search's report); the user's own setting is restored afterwards."""
    key = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    previous = os.environ.get(key)
    os.environ[key] = "false"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = previous


@contextlib.contextmanager
def _tracking(uri: str | None) -> Iterator[None]:
    import mlflow

    if uri is None:
        yield
        return
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)


def _signature(input_shape: list[int] | None) -> ModelSignature | None:
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    if not input_shape:
        return None
    return ModelSignature(inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, *input_shape))]))


def log_export(path: str | Path, *, run_id: str, registered_model_name: str, alias: str,
               tracking_uri: str | None = None, artifact_name: str = "sparse_model",
               device: str = "cpu") -> RegisteredExport:
    """Logs an export directory to a run and registers it as a pyfunc model under an alias.

    Args:
        path: the export directory.
        run_id: the MLflow run (active or finished) that gets the export as artifact
            ``export/`` and as the source of the logged model.
        registered_model_name: model registry name (created if new; each call adds a
            version).
        alias: alias set on the new version (e.g. ``"pareto-fastest"``).
        tracking_uri: tracking/registry URI (default: MLflow's current one).
        artifact_name: name of the logged model; ``/ : . % " '`` become ``-``.
        device: where the pyfunc model runs when loaded.

    Returns:
        Where it went; ``model_uri`` is ``models:/NAME@ALIAS``.
    """
    import mlflow
    from mlflow import MlflowClient

    path = Path(path)
    manifest = read_manifest(path)
    name = _BAD_NAME_CHARS.sub("-", artifact_name)
    with _tracking(tracking_uri):
        client = MlflowClient()
        client.log_artifacts(run_id, str(path), artifact_path="export")
        active = mlflow.active_run()
        run = (contextlib.nullcontext() if active and active.info.run_id == run_id
               else mlflow.start_run(run_id=run_id, nested=active is not None))
        with run, warnings.catch_warnings(), _no_progress_bars():
            # We give the signature explicitly; MLflow still nags for type hints and an
            # input example (which would load the model once more at logging time).
            warnings.filterwarnings("ignore", message=".*(type hints|input example)",
                                    category=UserWarning)
            info = mlflow.pyfunc.log_model(
                name=name, python_model=str(_MODEL_CODE), artifacts={"export": str(path)},
                registered_model_name=registered_model_name,
                signature=_signature(manifest.get("input_shape")),
                pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", "safetensors",
                                  "sparsearch"],
                model_config={"device": device})
        version = str(info.registered_model_version)
        client.set_registered_model_alias(registered_model_name, alias, version)
    return RegisteredExport(f"models:/{registered_model_name}@{alias}", registered_model_name,
                            version, alias, run_id, info.model_id)


def load_registered(model_uri: str, *, device: str = "cpu",
                    tracking_uri: str | None = None) -> nn.Module:
    """Loads a model logged by ``log_export`` (e.g. ``models:/NAME@ALIAS``) as an nn.Module."""
    import mlflow

    with _tracking(tracking_uri):
        pyfunc = mlflow.pyfunc.load_model(model_uri, model_config={"device": device})
    return pyfunc.unwrap_python_model().model
