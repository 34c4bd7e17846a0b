"""SearchSetup: everything a search needs, built and checked before any trial runs.

Bad input (an unknown space, a layer glob that matches nothing, a missing data path)
fails here with one ConfigError line, before any training, storage or MLflow run exists.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from torch import nn

from sparsearch.config import ConfigError, SparsearchConfig, parse_objectives
from sparsearch.data import DataSplits
from sparsearch.evaluate import EvalContext
from sparsearch.space import SearchSpace

__all__ = ["SearchSetup", "check_input_shape", "load_data", "prepare_search"]


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
    # What the loader takes of the settings (a generated set has no image size, a user's
    # own no root, only an image folder streams).
    settings = {"val_fraction": d.val_fraction, "test_fraction": d.test_fraction,
                "seed": d.split_seed, "image_size": d.image_size, "limit": d.limit,
                "num_samples": d.num_samples, "target": d.target,
                "max_memory_mb": d.max_memory_mb, "workers": d.workers, "augment": d.augment}
    common = {k: v for k, v in settings.items() if k in params}
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
        options: dict[str, object] = {"kind": "mlp", "hidden": list(m.hidden),
                                      "dropout": m.dropout}
    elif m.kind in ("cnn", "cnn1d"):
        options = {"kind": m.kind, "channels": list(m.channels)}
    elif m.kind == "custom":
        options = {"kind": "custom", "target": m.target, "options": dict(m.options)}
    elif m.kind == "timm":
        options = {"kind": "timm", "name": m.name}
        if m.img_size is not None:
            options["img_size"] = m.img_size
        if m.options:
            options["options"] = dict(m.options)
    else:
        # A model of the catalogue without options in the config (a plug-in's own).
        options = {"kind": m.kind}
    if m.checkpoint:
        path = Path(m.checkpoint).expanduser()
        if not path.is_file():
            raise ConfigError(f"model.checkpoint {m.checkpoint!r} does not exist")
        # Absolute: Ray workers need not share this process's working directory.
        options["checkpoint"] = str(path.resolve())
    return options


def _model_name(cfg: SparsearchConfig) -> str:
    m = cfg.model
    return {"timm": f"timm {m.name}", "custom": f"{m.target}"}.get(m.kind, m.kind)


def check_input_shape(model: nn.Module, data: DataSplits, *, name: str) -> None:
    """One forward pass of two val samples: the model must take them and give class logits.

    Raises:
        ConfigError: naming the model, the input shape and the model's own message.
    """
    import torch

    sample = data.val[0][:2]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(sample)
    except Exception as err:  # noqa: BLE001  (any model's own error is reported, not raised)
        text = str(err).strip().splitlines()
        message = f"{type(err).__name__}: {text[0] if text else ''}".rstrip(": ")
        raise ConfigError(f"model {name} cannot take the input shape {tuple(data.in_shape)} of "
                          f"data.name={data.name}: {message}") from None
    finally:
        model.train(was_training)
    expected = (len(sample), data.num_classes)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != expected:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ConfigError(f"model {name} on input shape {tuple(data.in_shape)} returns {got}, "
                          f"not (batch, {data.num_classes}) logits for data.name={data.name}")


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
        rung_masks=cfg.search.rung_masks,
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
    check_input_shape(model, data, name=_model_name(cfg))
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
