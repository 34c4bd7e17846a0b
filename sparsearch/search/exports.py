"""Exports the Pareto subnets of a finished search, with measured kernels, into MLflow.

Each front entry's trained weights (``trials/<key>/weights.safetensors``) become an export
directory ``exports/rank-<r>/`` (``sparsearch.export.save``: formats from the zeros,
kernels timed against dense per batch-size class). Each export is logged as an artifact of
its trial's child run and registered in the MLflow model registry under the search's name
with the alias ``pareto-<rank>``. ``exports/index.json`` remembers what was exported, so a
rerun of a finished search does not export or register the same subnet again.
"""

from __future__ import annotations

import json
import re
import shutil
from typing import TYPE_CHECKING

from sparsearch.search.report import SearchReport
from sparsearch.search.setup import SearchSetup

if TYPE_CHECKING:
    from sparsearch.tracking import Tracker

__all__ = ["export_front", "registered_name"]


def registered_name(setup: SearchSetup) -> str:
    """The registry name of a search's exports: its experiment and strategy, sanitised."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", f"{setup.experiment}-{setup.cfg.search.strategy}")


def export_front(setup: SearchSetup, report: SearchReport, *,
                 tracker: Tracker) -> dict[int, str]:
    """Exports (and registers) every Pareto subnet; returns rank -> export directory."""
    from sparsearch.export import log_export, save
    from sparsearch.search.trial import load_trial_model

    cfg = setup.cfg.export
    root = setup.run_dir / "exports"
    root.mkdir(exist_ok=True)
    index_path = root / "index.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else {}
    example = setup.ctx.data.val[0][:1]
    out: dict[int, str] = {}
    for entry in report.front:
        path = root / f"rank-{entry.rank}"
        done = index.get(str(entry.rank), {})
        if done.get("key") != entry.key or not path.exists():
            model = load_trial_model(setup.ctx, setup.run_dir, entry.key)
            # Write beside, then move: a half-written export never sits at its final path.
            partial = root / f".rank-{entry.rank}.partial"
            shutil.rmtree(partial, ignore_errors=True)
            save(model, entry.spec, partial, example_input=example,
                 batch_sizes=list(cfg.batch_sizes))
            shutil.rmtree(path, ignore_errors=True)
            partial.rename(path)
            done = {"key": entry.key}
        if cfg.register and entry.run_id and done.get("version") is None:
            registered = log_export(path, run_id=entry.run_id,
                                    registered_model_name=registered_name(setup),
                                    alias=f"pareto-{entry.rank}",
                                    tracking_uri=setup.cfg.tracking.uri,
                                    artifact_name=f"trial-{entry.key}")
            done["version"] = registered.version
            done["model_uri"] = registered.model_uri
        index[str(entry.rank)] = done
        index_path.write_text(json.dumps(index, indent=1))
        out[entry.rank] = str(path)
    return out
