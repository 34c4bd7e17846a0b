"""DASS's sparse ops: MaskedLinear, MaskedConv1d and MaskedConv2d with learned top-k masks.

Mousavi et al., "DASS: Differentiable Architecture Search for Sparse Neural Networks"
(arXiv 2207.06968), ``DASS/layers.py`` (``SubnetConv``, ``SubnetLinear``): every
parametric op of the search space is built from these layers. The mask is HYDRA's
(Sehwag et al., arXiv 2002.10509): ``M = TopK(|S|, k)`` with k the keep fraction, a
straight-through backward to the scores S and the scaled score init (see ``masks``).

One mechanism serves both the fixed layers and the supernets: a ``ScoredWeight``
parametrization (``W -> W * M``) reading a ``MaskChoice``, the mask a group of layers
applies now. A single keep fraction is a one-candidate choice; the layer-wise supernet
gives each layer a choice over (pattern, sparsity) candidates mixed by softmax(alpha);
the cell supernet shares one choice over keep levels between all of its layers (DASS
prunes every layer at the same k). ``attach_scores`` puts the same parametrization on any
existing Linear / Conv1d / Conv2d, so module names and forwards stay those of the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import torch
from torch import nn
from torch.nn.utils import parametrize

from sparsearch.ops.masks import Candidate, MaskCache, mixed_mask, scaled_score_init

__all__ = ["MaskChoice", "MaskedConv1d", "MaskedConv2d", "MaskedLinear", "ScoredWeight",
           "attach_scores", "sparse_weights"]


class MaskChoice:
    """The mask a group of sparse layers applies now.

    Attributes:
        candidates: the candidate sparse ops (pattern at a sparsity).
        probs: their mixing weights, e.g. softmax(alpha), set by the supernet before each
            forward; None mixes the candidates uniformly (DARTS's alpha = 0).
        enabled: False makes the layers dense (DASS's warm-up, k = 1).
        learn_scores: pass the straight-through gradient to the scores (mask learning);
            False freezes the masks (fine-tune).
    """

    def __init__(self, candidates: Sequence[Candidate]) -> None:
        if not candidates:
            raise ValueError("a MaskChoice needs at least one candidate")
        self.candidates = tuple(candidates)
        self.probs: torch.Tensor | None = None
        self.enabled = True
        self.learn_scores = True

    @classmethod
    def keep_fraction(cls, keep: float) -> MaskChoice:
        """One unstructured candidate keeping ``keep`` of the weights (DASS's k)."""
        if not 0.0 < keep <= 1.0:
            raise ValueError(f"keep fraction must be in (0, 1], got {keep!r}")
        return cls([Candidate("unstructured", sparsity=1.0 - float(keep))])

    def weights(self, like: torch.Tensor) -> torch.Tensor:
        if self.probs is not None:
            return self.probs.to(like.dtype)
        return like.new_full((len(self.candidates),), 1.0 / len(self.candidates))


class ScoredWeight(nn.Module):
    """Parametrization ``W -> W * sum_i p_i TopK_i(|S|)`` with trainable scores ``S``."""

    def __init__(self, weight: torch.Tensor, choice: MaskChoice) -> None:
        super().__init__()
        self.scores = nn.Parameter(scaled_score_init(weight).clone())
        self.choice = choice
        self.cache = MaskCache()

    @torch.no_grad()
    def reset_scores(self, weight: torch.Tensor) -> None:
        """HYDRA's scaled score init from the current weight (start of mask learning)."""
        self.scores.copy_(scaled_score_init(weight))

    def binary_masks(self) -> torch.Tensor:
        """The candidates' keep-masks now, stacked ``[C, *weight.shape]`` (bool)."""
        return self.cache.stacked(self.scores, self.choice.candidates, torch.float32).bool()

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        choice = self.choice
        if not choice.enabled:
            return weight
        mask = mixed_mask(self.scores, choice.candidates, choice.weights(weight),
                          cache=self.cache, straight_through=choice.learn_scores)
        return weight * mask


def attach_scores(layer: nn.Module, choice: MaskChoice) -> ScoredWeight:
    """Makes an existing Linear / Conv2d sparse: its weight becomes ``W * M(S)``."""
    sparse = ScoredWeight(cast(torch.Tensor, layer.weight), choice)
    parametrize.register_parametrization(layer, "weight", sparse, unsafe=True)
    return sparse


def sparse_weights(model: nn.Module) -> dict[str, ScoredWeight]:
    """Every ScoredWeight of ``model``, by the name of the layer it masks."""
    out = {}
    for name, module in model.named_modules():
        if parametrize.is_parametrized(module, "weight"):
            # ``parametrizations`` is set by torch at run time; mypy sees Tensor | Module.
            parametrized: Any = module
            for p in parametrized.parametrizations.weight:
                if isinstance(p, ScoredWeight):
                    out[name] = p
    return out


def _scored_weight(layer: nn.Module) -> ScoredWeight:
    # The ScoredWeight that ``attach_scores`` registered first; ``parametrizations`` is set
    # by torch at run time, so mypy sees it as Tensor | Module.
    parametrized: Any = layer
    return cast(ScoredWeight, parametrized.parametrizations.weight[0])


class _ScoreMasked(nn.Module):
    """What the three masked layers share: their ScoredWeight, as ``layer.sparse``."""

    @property
    def sparse(self) -> ScoredWeight:
        return _scored_weight(self)


class MaskedLinear(_ScoreMasked, nn.Linear):
    """A Linear whose weight is masked by learned top-k scores (DASS's SparseLinear).

    Args:
        in_features, out_features, bias: as ``nn.Linear``.
        keep: keep fraction k (1.0 = dense), used when no ``choice`` is given.
        choice: a MaskChoice shared with other layers (overrides ``keep``).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 keep: float = 1.0, choice: MaskChoice | None = None) -> None:
        super().__init__(in_features, out_features, bias)
        attach_scores(self, choice or MaskChoice.keep_fraction(keep))


class MaskedConv2d(_ScoreMasked, nn.Conv2d):
    """A Conv2d whose weight is masked by learned top-k scores (DASS's SparseConv).

    Args:
        in_channels, out_channels, kernel_size: as ``nn.Conv2d``.
        keep: keep fraction k (1.0 = dense), used when no ``choice`` is given.
        choice: a MaskChoice shared with other layers (overrides ``keep``).
        **conv: stride, padding, dilation, groups, bias of ``nn.Conv2d``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *,
                 keep: float = 1.0, choice: MaskChoice | None = None, **conv: Any) -> None:
        super().__init__(in_channels, out_channels, kernel_size, **conv)
        attach_scores(self, choice or MaskChoice.keep_fraction(keep))


class MaskedConv1d(_ScoreMasked, nn.Conv1d):
    """A Conv1d whose weight is masked by learned top-k scores (DASS's SparseConv in 1-D).

    Args:
        in_channels, out_channels, kernel_size: as ``nn.Conv1d``.
        keep: keep fraction k (1.0 = dense), used when no ``choice`` is given.
        choice: a MaskChoice shared with other layers (overrides ``keep``).
        **conv: stride, padding, dilation, groups, bias of ``nn.Conv1d``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *,
                 keep: float = 1.0, choice: MaskChoice | None = None, **conv: Any) -> None:
        super().__init__(in_channels, out_channels, kernel_size, **conv)
        attach_scores(self, choice or MaskChoice.keep_fraction(keep))
