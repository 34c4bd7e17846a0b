"""Structured configs: every config node is a dataclass registered in Hydra's ConfigStore.

The YAML under ``conf/`` only chooses and overrides; the fields, their meaning and their
units live here. ``validate`` checks values Hydra's types cannot (ranges, names) and raises
``ConfigError`` with one line naming the field and what is allowed; the app turns that
into exit code 2 before any work starts.

Importing this module must stay cheap (no torch, no mlflow): ``--help`` goes through it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ConfigError",
    "DassConfig",
    "DataConfig",
    "ExportConfig",
    "ModelConfig",
    "RunnerConfig",
    "SearchConfig",
    "SparsearchConfig",
    "TrackingConfig",
    "TrainConfig",
    "register_configs",
    "validate",
]


class ConfigError(ValueError):
    """Bad input: one line naming the field and what is allowed (exit code 2)."""


@dataclass
class DataConfig:
    # Dataset: digits (ships with scikit-learn) | mnist1d (generated offline) | cifar10 |
    # imagefolder | custom (data.target).
    name: str = "digits"
    # Local folder of the dataset (cifar10: the python pickle batches; imagefolder: class dirs).
    root: str | None = None
    # Fraction of all samples held out for validation (drives the search); of the training
    # samples for a data set with its own test split (mnist1d).
    val_fraction: float = 0.2
    # Fraction of all samples held out for test (read for Pareto subnets only); unused by a
    # data set with its own test split (mnist1d).
    test_fraction: float = 0.2
    # Seed of the train/val/test split (fixed, independent of the search seed).
    split_seed: int = 0
    # Side of the square images after resizing (imagefolder only; null keeps the size).
    image_size: int | None = None
    # Use at most this many samples of the dataset (null: all); for quick runs.
    limit: int | None = None
    # Samples generated for mnist1d (null: the paper's 5000, split 4000 train / 1000 test).
    num_samples: int | None = None
    # A user's data (name=custom): "package.module:function" returning torch Datasets.
    target: str | None = None
    # Largest data set, in MB of float32 inputs, read into memory (custom, imagefolder,
    # cifar10); a larger one streams through a DataLoader (images from disk or uint8 CIFAR
    # pixels, a custom set from its Datasets).
    max_memory_mb: float = 2048.0
    # DataLoader worker processes of a streamed data set (0: read in the training process).
    workers: int = 0
    # Train on timm's standard training augmentation (imagefolder, cifar10; streams the train
    # split).
    augment: bool = False


@dataclass
class ModelConfig:
    # Model family: mlp | cnn | cnn1d (MNIST-1D paper's 1-D CNN) | timm | custom.
    kind: str = "mlp"
    # timm model name (kind=timm), e.g. resnet18; built with pretrained=False.
    name: str = "resnet18"
    # Hidden widths of the MLP (kind=mlp).
    hidden: list[int] = field(default_factory=lambda: [256, 256])
    # Channels of the three convolutions of the small CNN (kind=cnn, cnn1d).
    channels: list[int] = field(default_factory=lambda: [32, 64, 64])
    # Dropout between MLP layers.
    dropout: float = 0.0
    # Image size passed to timm models that take one (ViTs); null: the model's default.
    img_size: int | None = None
    # Factory of a user's own model (kind=custom): "package.module:function" -> nn.Module;
    # Hydra's spelling +model._target_=package.module.function sets it too.
    target: str | None = None
    # Keyword options passed to the factory of kind=custom or to timm.create_model
    # (+model.options.width=64, +model.options.patch_size=2).
    options: dict[str, Any] = field(default_factory=dict)
    # Dense weights to start from (any kind): a .safetensors file or a torch state dict,
    # read with weights_only=True; recipes then skip their dense-training phase.
    checkpoint: str | None = None


@dataclass
class TrainConfig:
    # Epochs per trial, all recipe phases together (a space's `epochs` param overrides it).
    epochs: int = 20
    # Learning rate (a space's `lr` param overrides it).
    lr: float = 1.0e-2
    # L2 weight decay (a space's `weight_decay` param overrides it).
    weight_decay: float = 0.0
    # Optimiser: adam | sgd (momentum 0.9).
    optimizer: str = "adam"
    # Training batch size (a space's `batch_size` param overrides it).
    batch_size: int = 64
    # Device: cpu | cuda | auto (cuda when available).
    device: str = "cpu"
    # torch threads per trial (null: torch's default).
    threads: int | None = None


@dataclass
class DassConfig:
    # Supernet: macro (per-layer choice over the space's patterns) | space (one choice
    # over the space's (pattern, allocation, sparsity) points) | cell (DARTS cells).
    supernet: str = "macro"
    # Points each continuous space dimension is discretised to for the supernet.
    levels: int = 4
    # Cost weights swept for the Pareto front; one derived subnet per value.
    lambdas: list[float] = field(default_factory=lambda: [0.0, 0.5, 1.0, 2.0])
    # Cost term: density | flops (expected under softmax(alpha)).
    cost: str = "density"
    # Epochs of dense warm-up, mask learning and fine-tune (the three DASS phases).
    warmup_epochs: int = 2
    search_epochs: int = 6
    finetune_epochs: int = 2
    # Architecture-parameter learning rate (Adam, betas 0.5/0.999 as in DARTS).
    alpha_lr: float = 3.0e-3
    # Derivation of the subnet: argmax | pt (perturbation-based, DARTS-PT).
    derive: str = "argmax"
    # Use the second-order (unrolled) architecture gradient.
    second_order: bool = False
    # Cell supernet size (supernet=cell): initial channels (>= 4) and number of cells.
    init_channels: int = 8
    cells: int = 3
    # Values of the space's non-architecture parameters (recipe, lr, knobs) for the derived
    # subnets; unset ones take the first choice or the middle of the range.
    fixed: dict[str, Any] = field(default_factory=dict)
    # Train the first derived subnet again under the space's other training values (lr,
    # hparams, recipe; one dimension at a time, ranges at `levels` points) before the sweep
    # goes on; the later subnets train with the best (search/dass/probe.py).
    probe: bool = True
    # Keep adding lambdas (between neighbours whose subnets differ, beyond the largest)
    # while budget is left after the listed ones.
    refine: bool = True
    # DARTS-PT: epochs of supernet fine-tuning after each decision (derive=pt).
    pt_tune_epochs: int = 1
    # Supernet batch size (null: the subnets' training batch size); larger batches mean
    # fewer mask updates per epoch, so a faster search.
    batch_size: int | None = None
    # Part of the train split held out for alpha and every DARTS-PT decision (DARTS: half);
    # the weights and scores train on the rest. The val split only scores derived subnets.
    alpha_fraction: float = 0.5
    # Scale the phase epochs down when the warm-up and the first lambda would not fit in
    # half of search.timeout_s (measured on the first supernet steps); false: only warn.
    fit_budget: bool = False
    # What derived subnets start from: none (a fresh model, the space's recipe), scores
    # (the supernet's learned masks) or weights (its masks and weights), fine-tuned with
    # the masks fixed (recipe inherited, as DASS and HYDRA do).
    inherit: str = "none"
    # Paper mode (supernet=cell): the keep fraction of every sparse layer, fixed for the
    # search as in DASS (its default 0.01, 99% sparse), so alpha chooses operations only;
    # null: a choice over the space's sparsity levels.
    keep: float | None = None
    # strategy=dass_tpe: a derived subnet whose cost (dense = 1) is within this of the
    # trial's target_density is a hit (absolute, in (0, 1)).
    target_tolerance: float = 0.03
    # strategy=dass_tpe: supernet searches (lambdas) per trial at most before it trains the
    # subnet nearest its target (>= 1).
    max_bisections: int = 3
    # strategy=dass_tpe with supernet=space: train the derived pattern and allocation at the
    # trial's target_density (its sparsity solved on the space's range) rather than at the
    # supernet's grid level (`levels` points) nearest it; false: the grid level.
    exact_target: bool = True

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha_fraction < 1.0:
            raise ConfigError(f"search.dass.alpha_fraction must be in (0, 1), got "
                              f"{self.alpha_fraction}")
        for key in ("warmup_epochs", "search_epochs", "finetune_epochs", "pt_tune_epochs"):
            if getattr(self, key) < 0:
                raise ConfigError(f"search.dass.{key} must be >= 0, got {getattr(self, key)}")
        if self.alpha_lr <= 0:
            raise ConfigError(f"search.dass.alpha_lr must be > 0, got {self.alpha_lr}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigError(f"search.dass.batch_size must be >= 1 or null, got "
                              f"{self.batch_size}")
        if self.cells < 1:
            raise ConfigError(f"search.dass.cells must be >= 1, got {self.cells}")
        if self.keep is not None and not 0.0 < self.keep <= 1.0:
            raise ConfigError(f"search.dass.keep must be in (0, 1] or null, got {self.keep}")
        if self.keep is not None and self.supernet != "cell":
            raise ConfigError(f"search.dass.keep fixes the cell supernet's keep fraction; "
                              f"use it with search.dass.supernet=cell, got supernet="
                              f"{self.supernet}")
        if not 0.0 < self.target_tolerance < 1.0:
            raise ConfigError(f"search.dass.target_tolerance must be in (0, 1), got "
                              f"{self.target_tolerance}")
        if self.max_bisections < 1:
            raise ConfigError(f"search.dass.max_bisections must be >= 1, got "
                              f"{self.max_bisections}")
        if self.init_channels < 4:
            # Narrower cells corrupt the heap in oneDNN's single-thread CPU conv backward
            # (torch 2.14.1, oneDNN 3.12).
            raise ConfigError(f"search.dass.init_channels must be >= 4, got "
                              f"{self.init_channels}")


@dataclass
class SearchConfig:
    # Strategy: random | tpe | nsga2 (Optuna samplers) | dass (differentiable) | dass_tpe
    # (TPE over training values and a target density, DASS placing the zeros).
    strategy: str = "tpe"
    # Trial budget (null: only timeout_s bounds the search).
    n_trials: int | None = 20
    # Wall-clock budget in seconds (null: only n_trials bounds the search).
    timeout_s: float | None = None
    # Objectives as "metric:direction"; metrics: accuracy, loss, density, nnz, flops,
    # latency_ms, train_s; directions: max | min.
    objectives: list[str] = field(default_factory=lambda: ["accuracy:max", "density:min"])
    # Hypervolume reference per metric (missing: accuracy 0, density 1, nnz/flops dense).
    reference: dict[str, float] = field(default_factory=dict)
    # Optuna study name (null: the experiment name).
    study_name: str | None = None
    # Optuna storage URL (null: sqlite file optuna.db in the run dir, so reruns resume).
    storage: str | None = None
    # Batch size at which latency_ms is measured (with the kernels export would choose).
    latency_batch_size: int = 1
    # TPE (and dass_tpe): random trials before the model kicks in.
    n_startup_trials: int = 10
    # NSGA-II: population size.
    population_size: int = 16
    # Run each of these strategies in turn on the same space and budget, each as its own
    # parent run (e.g. [random, dass]); empty: run `strategy` alone. An entry may carry a
    # scheduler as STRATEGY_SCHEDULER (e.g. random_asha).
    compare: list[str] = field(default_factory=list)
    # Early stopping: none | asha (multi-objective asynchronous successive halving) |
    # hyperband (several ASHA brackets).
    scheduler: str = "none"
    # First rung of the scheduler, in epochs (later rungs: min_epochs * eta**k).
    min_epochs: int = 1
    # Reduction factor of the scheduler: the best 1/eta at each rung go on (>= 2).
    eta: int = 3
    # What a rung's accuracy is measured on: current (the masks the recipe has applied at
    # that epoch; a dense-first recipe is measured dense) | final (the subnet pruned to its
    # final masks at that point, on a copy).
    rung_masks: str = "current"
    # Differentiable search settings (strategy=dass and dass_tpe).
    dass: DassConfig = field(default_factory=DassConfig)


@dataclass
class RunnerConfig:
    # Runner: local (in-process) | ray (Ray Tune).
    kind: str = "local"
    # Ray cluster address: null starts a local Ray; auto or HOST:PORT joins a cluster.
    address: str | None = None
    # Resources of one trial (cpu, gpu; fractional gpu allowed).
    resources_per_trial: dict[str, float] = field(
        default_factory=lambda: {"cpu": 1.0, "gpu": 0.0})
    # Trials running at once (null: as many as the resources allow).
    max_concurrent_trials: int | None = None
    # Retries of a trial whose worker died.
    max_failures: int = 1
    # Where Ray Tune keeps its state (null: <run dir>/ray); must be shared on a cluster.
    storage_path: str | None = None
    # CPUs of the local Ray that runner.address=null starts (null: all of this machine's).
    num_cpus: int | None = None
    # Seconds to wait for the cluster at runner.address to answer before giving up.
    connect_timeout_s: float = 15.0


@dataclass
class TrackingConfig:
    # MLflow tracking URI: sqlite:///path.db or an http:// server.
    uri: str = "sqlite:///outputs/mlflow.db"
    # MLflow experiment name (null: the experiment name of the config).
    experiment: str | None = None
    # Seconds an http(s) tracking server has to answer before the search gives up (also
    # MLflow's per-request timeout; its retries follow MLFLOW_HTTP_REQUEST_MAX_RETRIES).
    timeout_s: float = 10.0


@dataclass
class ExportConfig:
    # Export every Pareto subnet with measured sparse kernels.
    enabled: bool = True
    # Batch-size classes at which kernels are timed against dense.
    batch_sizes: list[int] = field(default_factory=lambda: [1, 32, 256])
    # Register each export in the MLflow model registry (alias per Pareto rank).
    register: bool = True


@dataclass
class SparsearchConfig:
    # Name of this search (MLflow experiment, study name, output folder).
    name: str = "sparsearch"
    # Seed of sampling, initialisation and data order.
    seed: int = 0
    # Search space: a name from search_spaces/ or a path to a space YAML file.
    space: str = "digits_mlp"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    runner: RunnerConfig = field(default_factory=RunnerConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    export: ExportConfig = field(default_factory=ExportConfig)


def register_configs() -> None:
    """Registers the schema of the top config in the ConfigStore.

    Group files (conf/data/*.yaml, ...) merge into its typed fields, so a misspelt key or a
    wrong type in any group is rejected by Hydra before the app starts.
    """
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="base_config", node=SparsearchConfig)


METRICS = ("accuracy", "loss", "density", "nnz", "flops", "latency_ms", "train_s")
# Objectives whose hypervolume bound cannot come from the dense baseline.
NO_DEFAULT_REFERENCE = ("train_s",)


def take_hydra_target(dict_cfg: Any) -> None:
    """Reads Hydra's spelling of a factory, ``+model._target_=pkg.module.factory``, as
    ``model.target`` (in place, on the composed config before it is typed).

    Raises:
        ConfigError: both are given and name different factories.
    """
    from omegaconf import open_dict

    model = dict_cfg.get("model")
    if model is None or "_target_" not in model:
        return
    with open_dict(model):
        hydra_target = model.pop("_target_")
    given = model.get("target")

    def dotted(name: object) -> str:
        return str(name).replace(":", ".")

    if given is not None and dotted(given) != dotted(hydra_target):
        raise ConfigError(f"model._target_ {hydra_target!r} and model.target {given!r} name "
                          f"different factories: give one of them")
    model.target = None if hydra_target is None else str(hydra_target)


def _one_of(key: str, value: Any, allowed: tuple[str, ...] | list[str]) -> None:
    if value not in allowed:
        raise ConfigError(f"{key} must be one of {list(allowed)}, got {value!r}")


def parse_objectives(objectives: list[str]) -> list[tuple[str, str]]:
    """["accuracy:max", ...] -> [("accuracy", "max"), ...], checked."""
    out = []
    for text in objectives:
        metric, _, direction = str(text).partition(":")
        _one_of("search.objectives metric", metric, METRICS)
        _one_of(f"search.objectives direction of {metric}", direction, ("max", "min"))
        out.append((metric, direction))
    if not out:
        raise ConfigError("search.objectives must name at least one metric:direction")
    if len({m for m, _ in out}) != len(out):
        raise ConfigError(f"search.objectives names a metric twice: {objectives}")
    return out


def _at_least(key: str, value: Any, low: float, *, optional: bool = False) -> None:
    """``value`` is a finite number >= ``low`` (or null when ``optional``)."""
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value < low:
        null = " or null" if optional else ""
        raise ConfigError(f"{key} must be >= {low:g}{null}, got {value!r}")


def _positive(key: str, value: Any, *, optional: bool = False) -> None:
    """``value`` is a finite number > 0 (or null when ``optional``)."""
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value <= 0:
        null = " or null" if optional else ""
        raise ConfigError(f"{key} must be > 0{null}, got {value!r}")


def _validate_model(cfg: SparsearchConfig) -> None:
    m = cfg.model
    if m.kind == "mlp" and (not m.hidden or any(w < 1 for w in m.hidden)):
        raise ConfigError(f"model.hidden must be a non-empty list of widths >= 1, "
                          f"got {list(m.hidden)}")
    if m.kind in ("cnn", "cnn1d") and (len(m.channels) != 3 or any(c < 1 for c in m.channels)):
        raise ConfigError(f"model.channels must be three channel counts >= 1, "
                          f"got {list(m.channels)}")
    if not 0.0 <= m.dropout < 1.0:
        raise ConfigError(f"model.dropout must be in [0, 1), got {m.dropout}")
    if m.kind == "timm" and not m.name.strip():
        raise ConfigError("model.name must name a timm model (kind=timm), got ''")
    _at_least("model.img_size", m.img_size, 1, optional=True)


def split_compare_entry(entry: str) -> tuple[str, str | None]:
    """"random_asha" -> ("random", "asha"); an entry with no scheduler suffix -> (entry, None)."""
    from sparsearch.schedulers import list_schedulers

    strategy, _, scheduler = entry.rpartition("_")
    if strategy and scheduler in list_schedulers():
        return strategy, scheduler
    return entry, None


def _validate_scheduler(cfg: SparsearchConfig, objectives: list[tuple[str, str]]) -> None:
    from sparsearch.evaluate import RUNG_MASKS
    from sparsearch.schedulers import RUNG_METRICS, list_schedulers

    s = cfg.search
    _one_of("search.scheduler", s.scheduler, list_schedulers())
    if s.eta < 2:
        raise ConfigError(f"search.eta must be an integer >= 2, got {s.eta}")
    if s.min_epochs < 1:
        raise ConfigError(f"search.min_epochs must be >= 1, got {s.min_epochs}")
    _one_of("search.rung_masks", s.rung_masks, list(RUNG_MASKS))
    if s.scheduler == "none":
        return
    if s.min_epochs >= cfg.train.epochs:
        raise ConfigError(f"search.min_epochs must be < train.epochs ({cfg.train.epochs}) "
                          f"for search.scheduler={s.scheduler}, got {s.min_epochs}")
    if not {m for m, _ in objectives} & {"accuracy", "loss"}:
        raise ConfigError(f"search.scheduler={s.scheduler} ranks trials on what they measure "
                          f"at a rung: search.objectives must include accuracy or loss "
                          f"(known at a rung: {list(RUNG_METRICS)})")
    if s.strategy in ("dass", "dass_tpe"):
        raise ConfigError(f"search.scheduler must be none for search.strategy={s.strategy} "
                          f"(it trains a supernet, not trials)")


def validate(cfg: SparsearchConfig) -> SparsearchConfig:
    """Checks ranges and names of a composed config.

    Raises:
        ConfigError: the first bad field, in one line.
    """
    from sparsearch.data import DATASETS
    from sparsearch.models._registry import MODELS
    from sparsearch.runners import RUNNERS
    from sparsearch.search.strategies import STRATEGIES

    DATASETS.check(cfg.data.name)
    if cfg.data.name == "custom" and not cfg.data.target:
        raise ConfigError("data.target must name a function returning torch Datasets for "
                          "data.name=custom, e.g. data.target=my_pkg.data:splits")
    if cfg.data.augment and cfg.data.name not in ("imagefolder", "cifar10"):
        raise ConfigError(f"not supported: data.augment for data.name={cfg.data.name}; "
                          f"allowed: imagefolder, cifar10")
    if cfg.data.workers < 0:
        raise ConfigError(f"data.workers must be >= 0, got {cfg.data.workers}")
    if cfg.data.max_memory_mb <= 0:
        raise ConfigError(f"data.max_memory_mb must be > 0, got {cfg.data.max_memory_mb}")
    if cfg.data.num_samples is not None and cfg.data.num_samples < 100:
        raise ConfigError(f"data.num_samples must be >= 100 or null, got {cfg.data.num_samples}")
    for key in ("val_fraction", "test_fraction"):
        value = getattr(cfg.data, key)
        if not 0.0 < value < 0.5:
            raise ConfigError(f"data.{key} must be in (0, 0.5), got {value}")
    _at_least("data.image_size", cfg.data.image_size, 1, optional=True)
    _at_least("data.limit", cfg.data.limit, 1, optional=True)
    MODELS.check(cfg.model.kind)
    _validate_model(cfg)
    if cfg.model.options and cfg.model.kind not in ("custom", "timm"):
        raise ConfigError(f"model.options is for model.kind=custom or timm, not "
                          f"{cfg.model.kind}: set model.kind or drop model.options")
    if cfg.model.target and cfg.model.kind != "custom":
        raise ConfigError(f"model.target is for model.kind=custom (model=custom), not "
                          f"{cfg.model.kind}")
    if cfg.train.epochs < 1:
        raise ConfigError(f"train.epochs must be >= 1, got {cfg.train.epochs}")
    if cfg.train.lr <= 0:
        raise ConfigError(f"train.lr must be > 0, got {cfg.train.lr}")
    if cfg.train.batch_size < 1:
        raise ConfigError(f"train.batch_size must be >= 1, got {cfg.train.batch_size}")
    _at_least("train.weight_decay", cfg.train.weight_decay, 0)
    _at_least("train.threads", cfg.train.threads, 1, optional=True)
    _one_of("train.optimizer", cfg.train.optimizer, ("adam", "sgd"))
    _one_of("train.device", cfg.train.device, ("cpu", "cuda", "auto"))
    STRATEGIES.check(cfg.search.strategy)
    for entry in cfg.search.compare:
        if split_compare_entry(entry)[0] not in STRATEGIES:
            from sparsearch.schedulers import list_schedulers

            raise ConfigError(f"search.compare item must be one of {STRATEGIES.names()}, "
                              f"optionally as STRATEGY_SCHEDULER with a scheduler of "
                              f"{list_schedulers()} (e.g. random_asha), got {entry!r}")
    if cfg.search.n_trials is None and cfg.search.timeout_s is None:
        raise ConfigError("search.n_trials and search.timeout_s are both null: set a budget")
    if cfg.search.n_trials is not None and cfg.search.n_trials < 1:
        raise ConfigError(f"search.n_trials must be >= 1 or null, got {cfg.search.n_trials}")
    if cfg.search.timeout_s is not None and cfg.search.timeout_s <= 0:
        raise ConfigError(f"search.timeout_s must be > 0 or null, got {cfg.search.timeout_s}")
    objectives = parse_objectives(list(cfg.search.objectives))
    _validate_scheduler(cfg, objectives)
    if cfg.search.latency_batch_size < 1:
        raise ConfigError(f"search.latency_batch_size must be >= 1, "
                          f"got {cfg.search.latency_batch_size}")
    _at_least("search.n_startup_trials", cfg.search.n_startup_trials, 0)
    _at_least("search.population_size", cfg.search.population_size, 2)
    for metric, bound in cfg.search.reference.items():
        _at_least(f"search.reference.{metric}", bound, -math.inf)
        if metric not in {m for m, _ in objectives}:
            raise ConfigError(f"search.reference.{metric} is not one of the objectives "
                              f"{[m for m, _ in objectives]}")
    for metric, _ in objectives:
        if metric in NO_DEFAULT_REFERENCE and metric not in cfg.search.reference:
            raise ConfigError(f"search.reference.{metric} must be set when {metric} is an "
                              f"objective (it has no default hypervolume bound): add "
                              f"+search.reference.{metric}=VALUE")
    _one_of("search.dass.supernet", cfg.search.dass.supernet, ("macro", "space", "cell"))
    _one_of("search.dass.cost", cfg.search.dass.cost, ("density", "flops"))
    _one_of("search.dass.derive", cfg.search.dass.derive, ("argmax", "pt"))
    _one_of("search.dass.inherit", cfg.search.dass.inherit, ("none", "scores", "weights"))
    if cfg.search.dass.inherit != "none" and cfg.search.dass.supernet == "cell":
        raise ConfigError("not supported: search.dass.inherit with supernet=cell (a derived "
                          "cell network has other layers than the supernet); use inherit=none")
    if cfg.search.dass.levels < 2:
        raise ConfigError(f"search.dass.levels must be >= 2, got {cfg.search.dass.levels}")
    if not cfg.search.dass.lambdas or any(v < 0 for v in cfg.search.dass.lambdas):
        raise ConfigError(f"search.dass.lambdas must be a non-empty list of values >= 0, "
                          f"got {list(cfg.search.dass.lambdas)}")
    _one_of("runner.kind", cfg.runner.kind, RUNNERS.names())
    for key, amount in cfg.runner.resources_per_trial.items():
        _one_of("runner.resources_per_trial key", key, ("cpu", "gpu"))
        if amount < 0:
            raise ConfigError(f"runner.resources_per_trial.{key} must be >= 0, got {amount}")
    gpus = cfg.runner.resources_per_trial.get("gpu", 0.0)
    if cfg.runner.kind == "ray" and gpus > 0 and cfg.train.device == "cpu":
        raise ConfigError(f"runner.resources_per_trial.gpu is {gpus} but train.device is cpu: "
                          f"each trial would hold a GPU it never uses; set train.device=cuda "
                          f"(or auto) or runner.resources_per_trial.gpu=0")
    if cfg.runner.max_failures < 0:
        raise ConfigError(f"runner.max_failures must be >= 0, got {cfg.runner.max_failures}")
    _at_least("runner.max_concurrent_trials", cfg.runner.max_concurrent_trials, 1,
              optional=True)
    _at_least("runner.num_cpus", cfg.runner.num_cpus, 1, optional=True)
    _positive("runner.connect_timeout_s", cfg.runner.connect_timeout_s)
    _positive("tracking.timeout_s", cfg.tracking.timeout_s)
    if not (cfg.tracking.uri.startswith(("sqlite:///", "http://", "https://", "postgresql",
                                         "mysql", "databricks"))):
        raise ConfigError(f"tracking.uri must be sqlite:///PATH or an http(s):// MLflow server "
                          f"(MLflow 3 has no file store), got {cfg.tracking.uri!r}")
    if not cfg.export.batch_sizes or any(b < 1 for b in cfg.export.batch_sizes):
        raise ConfigError(f"export.batch_sizes must be a non-empty list of sizes >= 1, "
                          f"got {list(cfg.export.batch_sizes)}")
    return cfg
