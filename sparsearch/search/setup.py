"""SearchSetup: everything a search needs, built and checked before any trial runs.

Bad input (an unknown space, a layer glob that matches nothing, a missing data path)
fails here with one ConfigError line, before any training, storage or MLflow run exists.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from sparsearch.config import ConfigError, SparsearchConfig, parse_objectives
from sparsearch.data import DataSplits
from sparsearch.evaluate import EvalContext
from sparsearch.space import SearchSpace

__all__ = ["SearchSetup", "load_data", "prepare_search"]


@dataclass
class SearchSetup:
    """A validated search, ready for a runner.

    Attributes:
        cfg: the typed config.
        run_dir: where this run writes (Hydra's run dir).
        space: the parsed space.
        ctx: the evaluation context shared by all trials.
        objectives: (metric, direction) pairs.
        study_name: the Optuna study name.
        experiment: the MLflow experiment name.
        search_key: identity of this search in MLflow (stable across resumes).
    """

    cfg: SparsearchConfig
    run_dir: Path
    space: SearchSpace
    ctx: EvalContext
    objectives: list[tuple[str, str]]
    study_name: str
    experiment: str
    search_key: str

    @property
    def directions(self) -> list[str]:
        return [d for _, d in self.objectives]


def load_data(cfg: SparsearchConfig) -> DataSplits:
    """Loads the configured dataset with its fixed split."""
    import inspect

    from sparsearch.data import DATASETS

    d = cfg.data
    loader = DATASETS.get(d.name)
    params = inspect.signature(loader).parameters
    # What the loader takes of the optional settings (a generated set has no image size).
    options = {k: v for k, v in {"image_size": d.image_size, "limit": d.limit}.items()
               if k in params}
    common = {"val_fraction": d.val_fraction, "test_fraction": d.test_fraction,
              "seed": d.split_seed, **options}
    if "root" not in params:
        return loader(**common)
    if not d.root:
        raise ConfigError(f"data.root must be set for data.name={d.name}")
    if not Path(d.root).expanduser().exists():
        raise ConfigError(f"data.root {d.root!r} does not exist")
    return loader(Path(d.root).expanduser(), **common)


def _model_options(cfg: SparsearchConfig) -> dict[str, object]:
    m = cfg.model
    if m.kind == "mlp":
        return {"kind": "mlp", "hidden": list(m.hidden), "dropout": m.dropout}
    if m.kind == "cnn":
        return {"kind": "cnn", "channels": list(m.channels)}
    if m.kind != "timm":
        # A model of the catalogue without options in the config (a plug-in's own).
        return {"kind": m.kind}
    options: dict[str, object] = {"kind": "timm", "name": m.name}
    if m.img_size is not None:
        options["img_size"] = m.img_size
    return options


def prepare_search(cfg: SparsearchConfig, run_dir: Path) -> SearchSetup:
    """Loads the space and data, checks the space against the model, builds the context."""
    from sparsearch.evaluate import build_model
    from sparsearch.space import load_space
    from sparsearch.sparsity.masking import prunable_layers

    space = load_space(cfg.space)
    objectives = parse_objectives(list(cfg.search.objectives))
    data = load_data(cfg)
    t = cfg.train
    ctx = EvalContext(
        data=data, model=_model_options(cfg),
        train={"epochs": t.epochs, "lr": t.lr, "weight_decay": t.weight_decay,
               "optimizer": t.optimizer, "batch_size": t.batch_size},
        seed=cfg.seed, device=t.device, threads=t.threads,
        latency_batch=(cfg.search.latency_batch_size
                       if "latency_ms" in {m for m, _ in objectives} else None),
    )
    try:
        model = build_model(ctx)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    except TypeError as err:
        # A factory that needs options the config does not give (darts_cell's genotype).
        raise ConfigError(f"not supported: model.kind={cfg.model.kind} from the config "
                          f"({err})") from None
    space.check_layers(prunable_layers(model))
    study_name = cfg.search.study_name or cfg.name
    # The same run dir and study is the same search: that is what makes a rerun a resume.
    identity = json.dumps({"run_dir": str(run_dir.resolve()), "study": study_name,
                           "strategy": cfg.search.strategy}, sort_keys=True)
    return SearchSetup(
        cfg=cfg, run_dir=run_dir, space=space, ctx=ctx,
        objectives=objectives, study_name=study_name,
        experiment=cfg.tracking.experiment or cfg.name,
        search_key=hashlib.sha256(identity.encode()).hexdigest()[:16],
    )


def config_dict(cfg: SparsearchConfig) -> dict:
    return asdict(cfg)
