"""SearchSpace: a declarative space file compiled to Optuna define-by-run.

A space file (YAML) has ``params`` (global dimensions) and ``layers`` (per-layer groups
selected by glob over module names). Dimension kinds: ``choice``, ``float``, ``int`` (with
``log``, ``step``) and ``fixed``; ``when: {param: value-or-list}`` makes a dimension exist
only when another parameter has one of those values (conditional spaces, which no Hydra
sweeper can express). ``SearchSpace.suggest(trial)`` asks an Optuna trial for every active
dimension and ``to_spec`` turns the values into a SubnetSpec.

Every mistake in a space file raises ``ConfigError`` with one line naming the file, the
field and what is allowed.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from sparsearch.config import ConfigError
from sparsearch.spec import LayerRule, SubnetSpec, parse_block, parse_nm, pattern_names

__all__ = ["Dimension", "LayerGroup", "SearchSpace", "list_spaces", "load_space", "parse_space",
           "parse_space_text", "resolve_space"]

KINDS = ("choice", "float", "int", "fixed")
HPARAMS = {"lr": float, "epochs": int, "batch_size": int, "weight_decay": float}
CORE = ("pattern", "sparsity", "nm", "block", "allocation", "recipe")
LAYER_KEYS = ("dense", "sparsity", "pattern", "nm", "block")


@dataclass(frozen=True)
class Dimension:
    """One searchable (or fixed) value.

    Attributes:
        name: the parameter name in Optuna and MLflow (``sparsity``, ``layers.fc1.sparsity``).
        kind: choice | float | int | fixed.
        values: the choices (choice).
        low, high: bounds (float, int).
        log: sample on a log scale (float, int).
        step: discretisation step (float, int).
        value: the value (fixed).
        when: conditions ``{param: allowed values}``; all must hold.
    """

    name: str
    kind: str
    values: tuple[Any, ...] = ()
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    value: Any = None
    when: dict[str, tuple[Any, ...]] = field(default_factory=dict)

    def active(self, chosen: dict[str, Any]) -> bool:
        return all(key in chosen and chosen[key] in allowed for key, allowed in self.when.items())

    def possible_values(self) -> list[Any]:
        """Every value a choice/fixed dimension can take (bounds for float/int)."""
        if self.kind == "choice":
            return list(self.values)
        if self.kind == "fixed":
            return [self.value]
        return [self.low, self.high]

    def suggest(self, trial: Any) -> Any:
        if self.kind == "fixed":
            return self.value
        if self.kind == "choice":
            return trial.suggest_categorical(self.name, list(self.values))
        if self.kind == "float":
            return trial.suggest_float(self.name, self.low, self.high, log=self.log,
                                       step=self.step)
        return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log,
                                 step=int(self.step or 1))

    def grid(self, levels: int) -> list[Any]:
        """``levels`` evenly spaced points (log-spaced with ``log``) of a float/int range."""
        if self.kind in ("choice", "fixed"):
            return self.possible_values()
        lo, hi = float(self.low), float(self.high)
        if levels < 2 or lo == hi:
            return [self.low]
        if self.log:
            points = [math.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * i / (levels - 1))
                      for i in range(levels)]
        else:
            points = [lo + (hi - lo) * i / (levels - 1) for i in range(levels)]
        if self.kind == "int":
            return sorted({int(round(p)) for p in points})
        return points


@dataclass(frozen=True)
class LayerGroup:
    """Layers selected by ``glob``, with their own dimensions or ``dense: true``."""

    glob: str
    dense: bool
    dims: dict[str, Dimension]


# What Optuna can store as a categorical choice, and what a spec serialises as-is.
_SCALARS = (str, int, float, bool, type(None))


def _scalar(where: str, value: Any) -> Any:
    if not isinstance(value, _SCALARS) or isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where}: values must be finite numbers, strings, booleans or null, "
                          f"got {value!r}")
    return value


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value)


def _mapping(where: str, raw: Any, what: str) -> dict[str, Any]:
    """``raw`` as a mapping with string keys (a YAML list or scalar here is a mistake)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: must be a mapping of {what}, got {type(raw).__name__} "
                          f"{_short(raw)}")
    for key in raw:
        if not isinstance(key, str):
            raise ConfigError(f"{where}: keys must be names, got {key!r}")
    return raw


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _parse_dimension(where: str, name: str, raw: Any) -> Dimension:
    if not isinstance(raw, dict):
        # A bare value is a fixed dimension: `sparsity: 0.3`.
        return Dimension(name=name, kind="fixed", value=_scalar(where, raw))
    kinds = [k for k in raw if k in KINDS]
    unknown = [k for k in raw if k not in (*KINDS, "log", "step", "when")]
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; allowed: "
                          f"{list(KINDS)} with log, step, when")
    if len(kinds) != 1:
        raise ConfigError(f"{where}: needs exactly one kind of {list(KINDS)}, got {kinds}")
    kind = kinds[0]
    spec = raw[kind]
    when = {}
    for ref, allowed in _mapping(f"{where}.when", raw.get("when"),
                                 "parameter -> value or list of values").items():
        values = allowed if isinstance(allowed, list) else [allowed]
        when[ref] = tuple(_scalar(f"{where}.when.{ref}", v) for v in values)
    log, step = raw.get("log", False), raw.get("step")
    if not isinstance(log, bool):
        raise ConfigError(f"{where}.log: must be true or false, got {log!r}")
    if kind in ("fixed", "choice") and ("log" in raw or "step" in raw):
        raise ConfigError(f"{where}: log and step apply to float and int ranges only, "
                          f"not to {kind}")
    if kind == "fixed":
        return Dimension(name=name, kind=kind, value=_scalar(f"{where}.fixed", spec), when=when)
    if kind == "choice":
        if not isinstance(spec, list) or not spec:
            raise ConfigError(f"{where}.choice: must be a non-empty list, got {_short(spec)}")
        return Dimension(name=name, kind=kind,
                         values=tuple(_scalar(f"{where}.choice", v) for v in spec), when=when)
    if not (isinstance(spec, list) and len(spec) == 2 and all(_number(v) for v in spec)):
        raise ConfigError(f"{where}.{kind}: must be [low, high] of finite numbers, "
                          f"got {_short(spec)}")
    low, high = spec
    if kind == "int" and not all(float(v).is_integer() for v in spec):
        raise ConfigError(f"{where}.int: bounds must be whole numbers, got [{low}, {high}]")
    if low > high:
        raise ConfigError(f"{where}.{kind}: low must be <= high, got [{low}, {high}]")
    if log and low <= 0:
        raise ConfigError(f"{where}.{kind}: log scale needs low > 0, got {low}")
    if step is not None:
        if log:
            raise ConfigError(f"{where}: log and step cannot be combined")
        if not _number(step) or step <= 0 or kind == "int" and not float(step).is_integer():
            allowed = "a whole number >= 1" if kind == "int" else "a number > 0"
            raise ConfigError(f"{where}.step: must be {allowed}, got {step!r}")
    return Dimension(name=name, kind=kind, low=low, high=high, log=log, step=step, when=when)


def _check_values(where: str, dim: Dimension, key: str, *, recipes: Iterable[str],
                  allocations: Iterable[str]) -> None:
    """Checks the values a dimension can take for the parameter ``key``."""
    values = dim.possible_values()
    if key == "sparsity":
        for v in values:
            if not _number(v) or not 0.0 <= float(v) < 1.0:
                raise ConfigError(f"{where}: sparsity must lie in [0, 1), got {v!r}")
    elif key == "pattern":
        for v in values:
            if v not in pattern_names():
                raise ConfigError(f"{where}: pattern must be one of {pattern_names()}, "
                                  f"got {v!r}")
    elif key == "nm":
        for v in values:
            try:
                n, m = parse_nm(v)
            except ValueError as err:
                raise ConfigError(f"{where}: {err}") from None
            if m > 32:
                raise ConfigError(f"{where}: N:M supports M up to 32, got {v!r}")
    elif key == "block":
        for v in values:
            try:
                parse_block(v)
            except ValueError as err:
                raise ConfigError(f"{where}: {err}") from None
    elif key == "recipe":
        for v in values:
            if v not in recipes:
                raise ConfigError(f"{where}: recipe must be one of {sorted(recipes)}, got {v!r}")
    elif key == "allocation":
        for v in values:
            if v not in allocations:
                raise ConfigError(
                    f"{where}: allocation must be one of {sorted(allocations)}, got {v!r}")
    elif key in HPARAMS:
        for v in values:
            if not _number(v) or v <= 0 and key != "weight_decay" or v < 0:
                raise ConfigError(f"{where}: {key} must be a positive number, got {v!r}")
            if HPARAMS[key] is int and not float(v).is_integer():
                raise ConfigError(f"{where}: {key} must be a whole number, got {v!r}")
        if HPARAMS[key] is int and dim.kind == "float":
            raise ConfigError(f"{where}: {key} is a whole number: use int, not float")


@dataclass
class SearchSpace:
    """A parsed, validated space file.

    Attributes:
        source: where it came from (for messages).
        description: the file's one-line description.
        params: global dimensions, in sampling order (conditions after their parents).
        layers: per-layer groups, in file order (the first matching glob wins).
    """

    source: str
    description: str
    params: dict[str, Dimension]
    layers: list[LayerGroup]

    @property
    def dimensions(self) -> list[Dimension]:
        """Every dimension: global params, then the layer groups'."""
        dims = list(self.params.values())
        for group in self.layers:
            dims.extend(group.dims.values())
        return dims

    def suggest(self, trial: Any) -> dict[str, Any]:
        """Asks ``trial`` for every active dimension; returns all values by name."""
        chosen: dict[str, Any] = {}
        for dim in self.dimensions:
            if dim.active(chosen):
                chosen[dim.name] = dim.suggest(trial)
        return chosen

    def to_spec(self, values: dict[str, Any]) -> SubnetSpec:
        """Builds the SubnetSpec of a set of parameter values (from ``suggest``)."""
        core = {k: values[k] for k in CORE if k in values}
        pattern = core.get("pattern", "unstructured")
        recipe = core.get("recipe", "one_shot")
        allocation = core.get("allocation", "uniform")
        hparams = {k: HPARAMS[k](values[k]) for k in HPARAMS if k in values}
        # Only the chosen recipe's and allocation's knobs reach the spec.
        options = {k: v for k, v in values.items()
                   if "." in k and not k.startswith("layers.")
                   and k.split(".", 1)[0] in (recipe, allocation)}
        rules = []
        for group in self.layers:
            fields: dict[str, Any] = {"glob": group.glob, "dense": group.dense}
            for key, dim in group.dims.items():
                if dim.name in values:
                    fields[key] = values[dim.name]
            rules.append(LayerRule(**fields))
        return SubnetSpec(
            pattern=pattern,
            sparsity=float(core.get("sparsity", 0.0)) if pattern in
            ("unstructured", "block", "channel") else 0.0,
            nm=core.get("nm") if pattern == "nm" else None,
            block=core.get("block") if pattern == "block" else None,
            allocation=allocation,
            recipe=recipe,
            hparams=hparams,
            options=options,
            layers=tuple(rules),
        )

    def sample(self, trial: Any) -> SubnetSpec:
        """``to_spec(suggest(trial))``: one SubnetSpec from an Optuna trial."""
        return self.to_spec(self.suggest(trial))

    def check_layers(self, layer_names: Iterable[str]) -> None:
        """Raises ConfigError for a layer glob that matches none of ``layer_names``."""
        names = list(layer_names)
        for group in self.layers:
            if not fnmatch.filter(names, group.glob):
                raise ConfigError(f"space {self.source}: layers.{group.glob!r} matches no "
                                  f"prunable layer; layers are {names}")


def _order_by_conditions(where: str, dims: dict[str, Dimension]) -> dict[str, Dimension]:
    ordered: dict[str, Dimension] = {}
    pending = dict(dims)
    while pending:
        ready = [n for n, d in pending.items() if all(k in ordered for k in d.when)]
        if not ready:
            raise ConfigError(f"{where}: conditions form a cycle among {sorted(pending)}")
        for name in ready:
            ordered[name] = pending.pop(name)
    return ordered


def parse_space(raw: Any, *, source: str) -> SearchSpace:
    """Parses and validates the content of a space file.

    Raises:
        ConfigError: one line naming the file, the field and what is allowed.
    """
    from sparsearch.sparsity.allocation import allocation_options, list_allocations
    from sparsearch.sparsity.recipes import list_recipes, recipe_knobs

    where = f"space {source}"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: must be a mapping with 'params' and optional 'layers'")
    unknown_top = [k for k in raw if k not in ("description", "params", "layers")]
    if unknown_top:
        raise ConfigError(f"{where}: unknown top-level key {unknown_top[0]!r}; "
                          f"allowed: description, params, layers")
    recipes, allocations = list_recipes(), list_allocations()
    params: dict[str, Dimension] = {}
    for name, dim_raw in _mapping(f"{where}: params", raw.get("params"),
                                  "parameter -> dimension").items():
        at = f"{where}: params.{name}"
        dim = _parse_dimension(at, name, dim_raw)
        if name in CORE or name in HPARAMS:
            _check_values(at, dim, name, recipes=recipes, allocations=allocations)
        elif "." in name:
            owner, knob = name.split(".", 1)
            if owner in recipes:
                allowed = recipe_knobs(owner)
            elif owner in allocations:
                allowed = allocation_options(owner)
            else:
                raise ConfigError(f"{at}: unknown parameter; a dotted name must start with a "
                                  f"recipe {recipes} or an allocation {allocations}")
            if knob not in allowed:
                raise ConfigError(f"{at}: {owner} has no option {knob!r}; allowed: "
                                  f"{sorted(allowed)}")
        else:
            raise ConfigError(f"{at}: unknown parameter; allowed: {list(CORE)}, "
                              f"{list(HPARAMS)} or '<recipe>.<knob>' / '<allocation>.<option>'")
        params[name] = dim
    for name, dim in params.items():
        for key in dim.when:
            if key not in params:
                raise ConfigError(f"{where}: params.{name}.when refers to {key!r}, which is "
                                  f"not a parameter of this space")
    params = _order_by_conditions(where, params)
    patterns = set(params["pattern"].possible_values()) if "pattern" in params else set()
    for needed in ("nm", "block"):
        if needed in patterns and needed not in params:
            raise ConfigError(f"{where}: pattern can be {needed!r} but there is no "
                              f"params.{needed}")
    if (patterns & {"unstructured", "channel", "block"} or not patterns) \
            and "sparsity" not in params and "pattern" in params:
        raise ConfigError(f"{where}: pattern can be "
                          f"{'/'.join(sorted(patterns & {'unstructured', 'channel', 'block'}))} "
                          f"but there is no params.sparsity")
    layers = []
    for glob, group_raw in _mapping(f"{where}: layers", raw.get("layers"),
                                    "layer glob -> group").items():
        at = f"{where}: layers.{glob}"
        if not isinstance(group_raw, dict):
            raise ConfigError(f"{at}: must be a mapping of {list(LAYER_KEYS)}")
        unknown = [k for k in group_raw if k not in LAYER_KEYS]
        if unknown:
            raise ConfigError(f"{at}: unknown key {unknown[0]!r}; "
                              f"allowed: {list(LAYER_KEYS)}")
        dense = group_raw.get("dense", False)
        if not isinstance(dense, bool):
            raise ConfigError(f"{at}.dense: must be true or false, got {dense!r}")
        dims = {}
        for key in LAYER_KEYS[1:]:
            if key in group_raw:
                dim = _parse_dimension(f"{at}.{key}", f"layers.{glob}.{key}", group_raw[key])
                _check_values(f"{at}.{key}", dim, key, recipes=recipes, allocations=allocations)
                for ref in dim.when:
                    if ref not in params:
                        raise ConfigError(f"{at}.{key}.when refers to {ref!r}, which is not a "
                                          f"parameter of this space")
                dims[key] = dim
        layers.append(LayerGroup(glob=glob, dense=dense, dims=dims))
    return SearchSpace(source=source, description=str(raw.get("description", "")),
                       params=params, layers=layers)


def list_spaces() -> list[str]:
    """Names of the space files shipped in search_spaces/."""
    folder = resources.files("sparsearch.search_spaces")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def resolve_space(ref: str) -> Path:
    """A space name from search_spaces/ or a path to a YAML file -> the file's path."""
    if ref.endswith((".yaml", ".yml")) or "/" in ref:
        path = Path(ref).expanduser()
        if not path.is_file():
            raise ConfigError(f"space: file {ref!r} does not exist")
        return path
    candidate = resources.files("sparsearch.search_spaces") / f"{ref}.yaml"
    if not candidate.is_file():
        raise ConfigError(f"space must be one of {list_spaces()} or a path to a .yaml file, "
                          f"got {ref!r}")
    return Path(str(candidate))


def parse_space_text(text: str, *, source: str) -> SearchSpace:
    """Parses the YAML text of a space file (``source`` names it in messages).

    Raises:
        ConfigError: one line naming the file, the field and what is allowed.
    """
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"space {source}: not valid YAML{at}") from None
    except ValueError as err:
        # PyYAML builds dates and tagged scalars eagerly: `2020-13-45`, `!!int abc`.
        raise ConfigError(f"space {source}: not valid YAML ({err})") from None
    except RecursionError:
        raise ConfigError(f"space {source}: not valid YAML (nested too deeply)") from None
    return parse_space(raw, source=source)


def load_space(ref: str) -> SearchSpace:
    """Reads, parses and validates a space file by name or path."""
    path = resolve_space(ref)
    source = path.name if "/" not in ref else str(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as err:
        raise ConfigError(f"space {source}: cannot be read ({err.strerror})") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"space {source}: not UTF-8 text (byte {err.start}); a space file "
                          f"is YAML") from None
    return parse_space_text(text, source=source)
