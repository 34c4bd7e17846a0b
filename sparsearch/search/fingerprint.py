"""What search a run dir holds: a fingerprint written by its first run, checked by every rerun.

A rerun into the same ``hydra.run.dir`` resumes its study and its MLflow parent run. That is
only right for the same search: a different space, model, data, objectives, training
defaults, strategy or seed would mix two searches in one study and one parent run (or fail
deep in Optuna once the runs are open). The budget (``search.n_trials``, ``search.timeout_s``)
is not part of the fingerprint: giving a search more trials is what resuming is for. Nor are
the runner, the tracking URI or the export settings: they say where and how, not what.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from sparsearch.config import ConfigError, SparsearchConfig

__all__ = ["FINGERPRINT_FILE", "FingerprintMismatch", "check_fingerprint", "search_fingerprint",
           "write_fingerprint"]

FINGERPRINT_FILE = "search.json"


class FingerprintMismatch(ConfigError):
    """A rerun of a different search into a run dir (exit code 2, one line)."""


def search_fingerprint(cfg: SparsearchConfig, *, space_path: Path, model: dict[str, Any],
                       train: dict[str, Any]) -> dict[str, Any]:
    """The settings that define a search, as plain JSON data.

    Args:
        cfg: the typed config.
        space_path: the space file (its content counts, not its name or path).
        model: the model options the search builds (only those of the chosen kind).
        train: the training defaults of every trial.
    """
    d = cfg.data
    strategy: dict[str, Any] = {"name": cfg.search.strategy}
    if cfg.search.strategy == "tpe":
        strategy["n_startup_trials"] = cfg.search.n_startup_trials
    elif cfg.search.strategy == "nsga2":
        strategy["population_size"] = cfg.search.population_size
    elif cfg.search.strategy == "dass":
        strategy["dass"] = asdict(cfg.search.dass)
    elif cfg.search.strategy == "dass_tpe":
        strategy["n_startup_trials"] = cfg.search.n_startup_trials
        strategy["dass"] = asdict(cfg.search.dass)
    strategy = _normalised(strategy)
    if cfg.search.scheduler != "none":
        # Which trials a scheduler stops is part of what the study holds.
        strategy["scheduler"] = {"name": cfg.search.scheduler, "eta": cfg.search.eta,
                                 "min_epochs": cfg.search.min_epochs}
        if cfg.search.rung_masks != "current":
            # Only when set, so run dirs made before the key existed still resume.
            strategy["scheduler"]["rung_masks"] = cfg.search.rung_masks
    return {
        # Only the content counts: the same file reached by another path is the same space.
        "space": {"sha256": hashlib.sha256(space_path.read_bytes()).hexdigest()},
        "model": model,
        "data": {"name": d.name, "root": str(Path(d.root).expanduser().resolve()) if d.root
                 else None, "val_fraction": d.val_fraction, "test_fraction": d.test_fraction,
                 "split_seed": d.split_seed, "image_size": d.image_size, "limit": d.limit},
        "objectives": list(cfg.search.objectives),
        "train": train,
        "strategy": strategy,
        "seed": cfg.seed,
    }


# DASS settings one of the two DASS strategies does not read: left out of its fingerprint.
UNREAD = {"dass": ("exact_target",), "dass_tpe": ("probe",)}
# DASS settings added after run dirs had fingerprints, with the value an older search ran
# under (the behaviour before the key existed): a fingerprint without one is read as that.
ADDED_LATER = {"probe": False, "exact_target": False}


def _normalised(strategy: dict[str, Any]) -> dict[str, Any]:
    """The strategy part of a fingerprint with the DASS settings its strategy reads: those
    it does not read dropped, those added later filled in with their earlier behaviour."""
    if not isinstance(strategy.get("dass"), dict):
        return strategy
    unread = UNREAD.get(strategy.get("name", ""), ())
    dass = {k: v for k, v in strategy["dass"].items() if k not in unread}
    for key, value in ADDED_LATER.items():
        if key not in unread:
            dass.setdefault(key, value)
    return {**strategy, "dass": dass}


def _differences(old: Any, new: Any, path: str) -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new), key=str):
            out += _differences(old.get(key), new.get(key), f"{path}.{key}" if path else key)
        return out
    return [] if old == new else [path]


def _describe(name: str, old: dict[str, Any], new: dict[str, Any]) -> str:
    if name == "space.sha256":
        return "the space file's content"
    value_old: Any = old
    value_new: Any = new
    for part in name.split("."):
        value_old = value_old.get(part) if isinstance(value_old, dict) else None
        value_new = value_new.get(part) if isinstance(value_new, dict) else None
    return f"{name} (was {json.dumps(value_old)}, now {json.dumps(value_new)})"


def check_fingerprint(run_dir: Path, fingerprint: dict[str, Any]) -> None:
    """Refuses a run dir whose first run was a different search; reads, never writes.

    A run dir without a fingerprint (new, or written before fingerprints existed) passes.

    Raises:
        FingerprintMismatch: one line naming what differs and how to start a new run.
    """
    path = run_dir / FINGERPRINT_FILE
    if not path.is_file():
        return
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise FingerprintMismatch(f"run dir {run_dir}: {FINGERPRINT_FILE} cannot be read "
                                  f"({err}); start a new run with hydra.run.dir=ANOTHER_DIR") from None
    if isinstance(old, dict) and isinstance(old.get("strategy"), dict):
        old = {**old, "strategy": _normalised(old["strategy"])}
    names = _differences(old, fingerprint, "")
    if not names:
        return
    shown = "; ".join(_describe(n, old, fingerprint) for n in names[:3])
    more = f" and {len(names) - 3} more" if len(names) > 3 else ""
    raise FingerprintMismatch(
        f"run dir {run_dir} holds a different search: {shown}{more}. Only search.n_trials and "
        f"search.timeout_s may change on resume; start a new run with "
        f"hydra.run.dir=ANOTHER_DIR")


def write_fingerprint(run_dir: Path, fingerprint: dict[str, Any]) -> None:
    """Writes the fingerprint once, atomically (a crash never leaves half a file)."""
    path = run_dir / FINGERPRINT_FILE
    if path.exists():
        return
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(fingerprint, indent=1, sort_keys=True))
    os.replace(tmp, path)
