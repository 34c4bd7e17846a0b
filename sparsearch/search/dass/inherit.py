"""``search.dass.inherit``: a derived subnet starts from what its supernet learned.

DASS (Mousavi et al., arXiv 2207.06968) fine-tunes the subnet its search found, with the
HYDRA masks (Sehwag et al., arXiv 2002.10509) the search learned; training the derived
spec from a fresh model throws that away, so search and evaluation disagree. With
``inherit=scores`` (masks) or ``weights`` (masks and weights) the derived subnet trains
with the ``inherited`` recipe from a file in ``<run dir>/dass/``, recorded as that recipe.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from sparsearch.search.dass.job import LambdaOutcome
from sparsearch.spec import SubnetSpec

__all__ = ["inherited_spec"]


def inherited_spec(outcome: LambdaOutcome, *, run_dir: str | Path) -> SubnetSpec:
    """Writes the outcome's masks (and weights) and returns the spec that trains from them.

    The architecture (pattern, allocation, sparsity, layer rules) and training values are
    the derived spec's; the recipe becomes ``inherited`` and its own knobs are dropped.
    """
    from safetensors.torch import save_file

    assert outcome.spec is not None and outcome.inherited is not None
    path = Path(run_dir) / "dass" / f"inherit-{outcome.key:05d}.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(outcome.inherited, str(path))
    spec = outcome.spec
    options = {k: v for k, v in spec.options.items() if not k.startswith(f"{spec.recipe}.")}
    weights = any(k.startswith("state.") for k in outcome.inherited)
    return replace(spec, recipe="inherited",
                   options={**options, "inherited.path": str(path.resolve()),
                            "inherited.weights": weights})
