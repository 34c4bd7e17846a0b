"""DASS's sparse ops, DARTS's mixed op and primitives, and the supernets.

- ``MaskedLinear`` / ``MaskedConv1d`` / ``MaskedConv2d``: learned top-k score masks with a
  straight-through gradient and HYDRA's scaled score init (DASS, arXiv 2207.06968; HYDRA, arXiv 2002.10509).
- ``MixedOp`` and the 8 DARTS primitives (arXiv 1806.09055), as a registry.
- ``MacroSupernet``: each prunable layer of a fixed backbone chooses its (pattern, sparsity).
- ``SpaceSupernet``: every layer shares one choice over the space's (pattern, allocation,
  sparsity) points.
- ``CellSupernet``: DARTS normal and reduction cells with every parametric op sparse;
  ``CellNetwork`` (model ``darts_cell``) is the network a genotype derives.
"""

from sparsearch.ops.cells import CellNetwork, CellSupernet
from sparsearch.ops.macro import MacroSupernet
from sparsearch.ops.masks import Candidate
from sparsearch.ops.mixed import MixedOp
from sparsearch.ops.primitives import create_primitive, list_primitives, register_primitive
from sparsearch.ops.space import SpaceSupernet
from sparsearch.ops.sparse import MaskChoice, MaskedConv1d, MaskedConv2d, MaskedLinear
from sparsearch.ops.supernet import Supernet

# What a user builds or extends; the mechanisms behind them (score masks, mask caches,
# phases) are imported from their modules by the code that needs them.
__all__ = [
    "Candidate",
    "CellNetwork",
    "CellSupernet",
    "MacroSupernet",
    "MaskChoice",
    "MaskedConv1d",
    "MaskedConv2d",
    "MaskedLinear",
    "MixedOp",
    "SpaceSupernet",
    "Supernet",
    "create_primitive",
    "list_primitives",
    "register_primitive",
]
