"""MLflow "model from code" that serves a sparsearch export through ``mlflow.pyfunc``.

``log_export`` logs this file as the pyfunc's ``python_model`` (MLflow 3's models-from-code,
so no cloudpickle is involved) with the export directory as the artifact ``export``.
``model_config["device"]`` picks where it runs.
"""


from typing import Any

import mlflow
import numpy as np
import torch
from mlflow.pyfunc import PythonModel, PythonModelContext


class SparseExportModel(PythonModel):
    """Loads the export with ``sparsearch.export.load`` and runs numpy batches through it."""

    def load_context(self, context: PythonModelContext) -> None:
        from sparsearch.export import load, read_manifest

        config = context.model_config or {}
        self.device = torch.device(config.get("device", "cpu"))
        path = context.artifacts["export"]
        shape = read_manifest(path).get("input_shape")
        self.input_shape = tuple(shape) if shape else None
        self.model = load(path, device=self.device)

    # The ndarray hint tells MLflow there is no schema to infer from it (the signature is
    # given at logging), which also spares every log a "add type hints" warning.
    def predict(self, context: PythonModelContext | None, model_input: np.ndarray,
                params: dict[str, Any] | None = None) -> np.ndarray:
        x = torch.as_tensor(np.asarray(model_input, dtype=np.float32))
        if self.input_shape is not None:
            # Tabular inputs arrive flattened: restore the model's sample shape.
            x = x.reshape(-1, *self.input_shape)
        with torch.no_grad():
            return self.model(x.to(self.device)).float().cpu().numpy()


mlflow.models.set_model(SparseExportModel())
