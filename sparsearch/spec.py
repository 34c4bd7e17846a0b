"""SubnetSpec: one concrete point of a search space.

A SubnetSpec says everything needed to build and train one sparse subnet: the sparsity
pattern, how much, how it is spread over layers, per-layer exceptions and the training
recipe with its knobs. It is plain data: it serialises to JSON, it is the MLflow params of
a trial and the manifest of an export. The same spec with the same seed gives the same
subnet.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["LayerRule", "SubnetSpec", "parse_block", "parse_nm", "pattern_names"]


def pattern_names() -> list[str]:
    """The pattern catalogue's names (``sparsity.patterns``; imports torch on first use)."""
    from sparsearch.sparsity.patterns import list_patterns

    return list_patterns()


def parse_nm(text: str) -> tuple[int, int]:
    """Parses an N:M pattern such as ``"2:4"`` into ``(2, 4)``.

    Raises:
        ValueError: if the text is not ``N:M`` with integers ``0 < N < M``.
    """
    try:
        n_text, m_text = str(text).split(":")
        n, m = int(n_text), int(m_text)
    except ValueError as err:
        raise ValueError(f"N:M pattern must look like '2:4', got {text!r}") from err
    if not 0 < n < m:
        raise ValueError(f"N:M pattern needs 0 < N < M, got {text!r}")
    return n, m


def parse_block(text: str) -> tuple[int, int]:
    """Parses a block shape such as ``"4x4"`` into ``(4, 4)`` (rows x columns)."""
    try:
        h_text, w_text = str(text).lower().split("x")
        h, w = int(h_text), int(w_text)
    except ValueError as err:
        raise ValueError(f"block shape must look like '4x4', got {text!r}") from err
    if h < 1 or w < 1:
        raise ValueError(f"block shape needs positive sides, got {text!r}")
    return h, w


@dataclass(frozen=True)
class LayerRule:
    """Per-layer exception selected by a glob over module names.

    Attributes:
        glob: fnmatch pattern over module names (``"features.*.conv"``).
        dense: never prune the matching layers.
        sparsity: the matching layers' own sparsity (overrides the allocation).
        pattern: the matching layers' own pattern (None: the spec's pattern).
        nm: the matching layers' own N:M (with ``pattern == "nm"``).
        block: the matching layers' own block shape (with ``pattern == "block"``).
    """

    glob: str
    dense: bool = False
    sparsity: float | None = None
    pattern: str | None = None
    nm: str | None = None
    block: str | None = None

    def matches(self, layer_name: str) -> bool:
        return fnmatch.fnmatchcase(layer_name, self.glob)


@dataclass(frozen=True)
class SubnetSpec:
    """One point of a search space.

    Attributes:
        pattern: dense | unstructured | nm | block | channel.
        sparsity: global target sparsity in [0, 1) for unstructured, block and channel
            (N:M fixes its own sparsity, 1 - N/M).
        nm: N:M pattern as ``"N:M"`` when ``pattern == "nm"``.
        block: block shape as ``"HxW"`` when ``pattern == "block"``.
        allocation: how the global target is spread over layers
            (uniform | erk | global | layerwise).
        recipe: how the subnet is trained (one_shot | gradual | ...).
        hparams: training hyperparameters (lr, epochs, batch_size, weight_decay).
        options: namespaced knobs of the recipe and allocation (``"sr_ste.lambda_w"``).
        layers: per-layer rules, the first matching rule wins.
    """

    pattern: str = "unstructured"
    sparsity: float = 0.0
    nm: str | None = None
    block: str | None = None
    allocation: str = "uniform"
    recipe: str = "one_shot"
    hparams: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    layers: tuple[LayerRule, ...] = ()

    def __post_init__(self) -> None:
        if self.pattern not in pattern_names():
            raise ValueError(f"pattern must be one of {pattern_names()}, got {self.pattern!r}")
        if not 0.0 <= float(self.sparsity) < 1.0:
            raise ValueError(f"sparsity must be in [0, 1), got {self.sparsity!r}")
        if self.pattern == "nm":
            parse_nm(self.nm or "")
        if self.pattern == "block":
            parse_block(self.block or "")
        for rule in self.layers:
            if rule.sparsity is not None and not 0.0 <= float(rule.sparsity) < 1.0:
                raise ValueError(
                    f"layers.{rule.glob}.sparsity must be in [0, 1), got {rule.sparsity!r}"
                )

    @property
    def target_sparsity(self) -> float:
        """The global sparsity this spec aims at (N:M's is fixed by N and M)."""
        if self.pattern == "dense":
            return 0.0
        if self.pattern == "nm":
            n, m = parse_nm(self.nm or "")
            return 1.0 - n / m
        return float(self.sparsity)

    def rule_for(self, layer_name: str) -> LayerRule | None:
        """Returns the first layer rule whose glob matches ``layer_name``."""
        for rule in self.layers:
            if rule.matches(layer_name):
                return rule
        return None

    def option(self, key: str, default: Any) -> Any:
        """Returns a namespaced knob (``"sr_ste.lambda_w"``) or its default."""
        return self.options.get(key, default)

    def hparam(self, key: str, default: Any) -> Any:
        return self.hparams.get(key, default)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["layers"] = [
            {k: v for k, v in asdict(rule).items() if v not in (None, False) or k == "glob"}
            for rule in self.layers
        ]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SubnetSpec:
        data = dict(data)
        data["layers"] = tuple(LayerRule(**rule) for rule in data.get("layers", ()))
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def digest(self) -> str:
        """A short stable hash of the spec, for names and caches."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:12]

    def flat_params(self) -> dict[str, Any]:
        """Flattens the spec into ``{"pattern": ..., "layers.fc1.sparsity": ...}``."""
        flat: dict[str, Any] = {
            "pattern": self.pattern,
            "allocation": self.allocation,
            "recipe": self.recipe,
        }
        if self.pattern in ("unstructured", "block", "channel"):
            flat["sparsity"] = self.sparsity
        if self.pattern == "nm":
            flat["nm"] = self.nm
        if self.pattern == "block":
            flat["block"] = self.block
        flat.update(self.hparams)
        flat.update(self.options)
        for rule in self.layers:
            for key, value in asdict(rule).items():
                if key != "glob" and value not in (None, False):
                    flat[f"layers.{rule.glob}.{key}"] = value
        return flat
