"""Weight formats: how one layer's sparse weight matrix is stored and handed to kernels.

A format holds the 2-D GEMM view of a weight, ``[out, reduction]``, as a few plain tensors
(safetensors-friendly: no pickle, no sparse layouts on disk) plus JSON-able params:

- dense: ``weight``.
- csr: compressed sparse rows ``crow_indices, col_indices, values``.
- bsr: block CSR with ``params["block"] = [h, w]``; ``values`` is ``[blocks, h, w]``.
- nm: N:M (Zhou et al., "Learning N:M Fine-grained Structured Sparse Neural Networks From
  Scratch", arXiv 2102.04010): every group of M consecutive weights of a row keeps N;
  ``values [out, groups, N]`` and their positions in the group ``indices [out, groups, N]``
  (uint8, ascending). ``params = {"n": N, "m": M}``.
- semi24: 2:4 with NVIDIA's CUTLASS metadata, the layout of torch's
  ``SparseSemiStructuredTensorCUTLASS``: ``values [out, reduction / 2]`` (fp32, kept in
  full precision) and ``meta`` (int16). The metadata is computed on CPU by torch's own
  reference conversion, so a CUDA loader can wrap it without recompressing.

Index tensors are narrowed to the smallest integer type that holds them (the file is what
they are for); ``to_dense`` and the kernels widen them again.
"""

from __future__ import annotations

import contextlib
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from sparsearch.catalogue import Catalogue

__all__ = [
    "FORMATS",
    "SEMI24_MIN_SHAPE",
    "SparseWeight",
    "WeightFormat",
    "encode_weight",
    "get_format",
    "list_formats",
    "quiet_sparse_beta",
    "register_format",
]

# CUTLASS fp16/bf16 rule for the sparse operand (rows, reduction): multiples of (32, 64).
SEMI24_MIN_SHAPE = (32, 64)


@dataclass
class SparseWeight:
    """One layer's weight matrix in one format.

    Attributes:
        format: a registered format name.
        shape: the 2-D GEMM shape ``(out, reduction)``.
        tensors: the format's tensors by part name (``values``, ``indices``, ...).
        params: JSON-able format parameters (``block``, ``n``, ``m``).
    """

    format: str
    shape: tuple[int, int]
    tensors: dict[str, torch.Tensor]
    params: dict[str, Any] = field(default_factory=dict)

    def to_dense(self) -> torch.Tensor:
        """The ``[out, reduction]`` matrix with explicit zeros."""
        return get_format(self.format).decode(self)

    @property
    def nnz(self) -> int:
        """Stored non-zero weights (explicit zeros kept by a format are not counted)."""
        if self.format == "dense":
            return int(torch.count_nonzero(self.tensors["weight"]))
        return int(torch.count_nonzero(self.tensors["values"]))

    @property
    def density(self) -> float:
        return self.nnz / (self.shape[0] * self.shape[1])

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors.values())

    def to(self, device: torch.device | str) -> SparseWeight:
        tensors = {k: v.to(device) for k, v in self.tensors.items()}
        return SparseWeight(self.format, self.shape, tensors, dict(self.params))


class WeightFormat(ABC):
    """Encodes a dense ``[out, reduction]`` matrix into a format and decodes it back."""

    name: str

    @abstractmethod
    def encode(self, weight: torch.Tensor, **params: Any) -> SparseWeight:
        """Raises ValueError when the weight does not fit the format."""

    @abstractmethod
    def decode(self, weight: SparseWeight) -> torch.Tensor: ...


# One instance per format: formats are stateless, a SparseWeight holds the tensors.
FORMATS: Catalogue[WeightFormat] = Catalogue("weight format")


def register_format(name: str) -> Callable[[type[WeightFormat]], type[WeightFormat]]:
    """Class decorator: registers one instance of the format under ``name``."""

    def wrap(cls: type[WeightFormat]) -> type[WeightFormat]:
        cls.name = name
        FORMATS.register(name, cls())
        return cls

    return wrap


def list_formats() -> list[str]:
    return FORMATS.names()


def sparse_formats() -> tuple[str, ...]:
    """Every registered format but dense: what a kernel that decodes any weight serves."""
    return tuple(name for name in FORMATS.names() if name != "dense")


def get_format(name: str) -> WeightFormat:
    """The format registered as ``name``; ``UnknownName`` (one line) when there is none."""
    return FORMATS.get(name)


def encode_weight(weight: torch.Tensor, format: str, **params: Any) -> SparseWeight:
    """Encodes a 2-D weight (explicit zeros = pruned) into ``format``."""
    if weight.dim() != 2:
        raise ValueError(f"formats hold 2-D GEMM views, got shape {tuple(weight.shape)}")
    return get_format(format).encode(weight.detach(), **params)


@contextlib.contextmanager
def quiet_sparse_beta() -> Iterator[None]:
    """Silences torch's one-time "Sparse CSR/BSR tensor support is in beta" warning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse (CSR|BSR) tensor support is in beta")
        yield


def _narrow(index: torch.Tensor, upper: int) -> torch.Tensor:
    """The smallest signed int type that holds values up to ``upper`` (for the file)."""
    for dtype in (torch.int16, torch.int32):
        if upper <= torch.iinfo(dtype).max:
            return index.to(dtype)
    return index.to(torch.int64)


@register_format("dense")
class DenseFormat(WeightFormat):
    def encode(self, weight: torch.Tensor, **params: Any) -> SparseWeight:
        return SparseWeight("dense", tuple(weight.shape), {"weight": weight.contiguous()})

    def decode(self, weight: SparseWeight) -> torch.Tensor:
        return weight.tensors["weight"]


@register_format("csr")
class CsrFormat(WeightFormat):
    def encode(self, weight: torch.Tensor, **params: Any) -> SparseWeight:
        with quiet_sparse_beta():
            csr = weight.to_sparse_csr()
        rows, cols = weight.shape
        tensors = {
            "crow_indices": _narrow(csr.crow_indices(), int(csr.values().numel())),
            "col_indices": _narrow(csr.col_indices(), cols),
            "values": csr.values().contiguous(),
        }
        return SparseWeight("csr", (rows, cols), tensors)

    def decode(self, weight: SparseWeight) -> torch.Tensor:
        t = weight.tensors
        # Stored indices come from a file: check them (a bad index would read out of bounds).
        with quiet_sparse_beta():
            return torch.sparse_csr_tensor(t["crow_indices"].long(), t["col_indices"].long(),
                                           t["values"], weight.shape,
                                           check_invariants=True).to_dense()


@register_format("bsr")
class BsrFormat(WeightFormat):
    def encode(self, weight: torch.Tensor, **params: Any) -> SparseWeight:
        bh, bw = (int(v) for v in params["block"])
        rows, cols = weight.shape
        if rows % bh or cols % bw:
            raise ValueError(f"bsr block {bh}x{bw} does not tile shape {rows}x{cols}")
        with quiet_sparse_beta():
            bsr = weight.to_sparse_bsr((bh, bw))
        tensors = {
            "crow_indices": _narrow(bsr.crow_indices(), int(bsr.values().shape[0])),
            "col_indices": _narrow(bsr.col_indices(), cols // bw),
            "values": bsr.values().contiguous(),
        }
        return SparseWeight("bsr", (rows, cols), tensors, {"block": [bh, bw]})

    def decode(self, weight: SparseWeight) -> torch.Tensor:
        t = weight.tensors
        with quiet_sparse_beta():
            return torch.sparse_bsr_tensor(t["crow_indices"].long(), t["col_indices"].long(),
                                           t["values"], weight.shape,
                                           check_invariants=True).to_dense()


def nm_positions(weight: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Positions (ascending, ``[out, groups, n]``) of the N kept weights of each M-group.

    Groups with fewer than N non-zeros are filled with zero positions so every group
    stores exactly N entries (a kept weight that happens to be 0 costs nothing).

    Raises:
        ValueError: when the reduction size is not a multiple of M, or a group holds more
            than N non-zeros.
    """
    rows, cols = weight.shape
    if not 0 < n < m or cols % m:
        raise ValueError(f"{n}:{m} needs 0 < N < M and M dividing the reduction size {cols}")
    groups = weight.reshape(rows, cols // m, m)
    nonzero = groups != 0
    if nonzero.numel() and int(nonzero.sum(-1).max()) > n:
        raise ValueError(f"weight has groups with more than {n} non-zeros of {m}")
    # Non-zeros first (stable: by position), then pad with zero entries.
    order = torch.argsort((~nonzero).to(torch.uint8), dim=-1, stable=True)[..., :n]
    return order.sort(dim=-1).values


@register_format("nm")
class NMFormat(WeightFormat):
    def encode(self, weight: torch.Tensor, **params: Any) -> SparseWeight:
        n, m = int(params["n"]), int(params["m"])
        pos = nm_positions(weight, n, m)
        rows, cols = weight.shape
        values = torch.gather(weight.reshape(rows, cols // m, m), -1, pos)
        tensors = {"values": values.contiguous(), "indices": pos.to(torch.uint8)}
        return SparseWeight("nm", (rows, cols), tensors, {"n": n, "m": m})

    def decode(self, weight: SparseWeight) -> torch.Tensor:
        rows, cols = weight.shape
        m = weight.params["m"]
        values = weight.tensors["values"]
        dense = values.new_zeros(rows, cols // m, m)
        dense.scatter_(-1, weight.tensors["indices"].long(), values)
        return dense.reshape(rows, cols)


def _semi24_mask(meta: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """The kept positions that CUTLASS metadata ``meta`` encodes, as a boolean matrix."""
    from torch.sparse._semi_structured_conversions import (
        sparse_semi_structured_to_dense_cutlass,
    )

    ones = torch.ones(shape[0], shape[1] // 2, dtype=torch.float16, device=meta.device)
    return sparse_semi_structured_to_dense_cutlass(ones, meta) != 0


@register_format("semi24")
class Semi24Format(WeightFormat):
    def encode(self, weight: torch.Tensor, **params: Any) -> SparseWeight:
        from torch.sparse._semi_structured_conversions import (
            sparse_semi_structured_from_dense_cutlass,
        )

        rows, cols = weight.shape
        min_rows, min_cols = SEMI24_MIN_SHAPE
        if rows % min_rows or cols % min_cols:
            raise ValueError(f"semi24 needs a shape in multiples of {SEMI24_MIN_SHAPE}, "
                             f"got {rows}x{cols}")
        nm_positions(weight, 2, 4)  # validates the 2:4 pattern
        # Metadata from the non-zero pattern, not from a half copy of the values: fp16
        # would flush tiny weights to zero and move the kept positions.
        _, meta = sparse_semi_structured_from_dense_cutlass((weight != 0).to(torch.float16))
        values = weight[_semi24_mask(meta, (rows, cols))].reshape(rows, cols // 2)
        return SparseWeight("semi24", (rows, cols), {"values": values.contiguous(), "meta": meta},
                            {"n": 2, "m": 4})

    def decode(self, weight: SparseWeight) -> torch.Tensor:
        values = weight.tensors["values"]
        dense = values.new_zeros(weight.shape)
        dense[_semi24_mask(weight.tensors["meta"], weight.shape)] = values.flatten()
        return dense


def nm_view(weight: SparseWeight) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """``(values [out, groups, n], positions [out, groups, n] uint8, n, m)`` of an N:M weight.

    Works for ``nm`` directly and for ``semi24`` by reading the positions off its metadata.
    """
    if weight.format == "nm":
        t = weight.tensors
        return t["values"], t["indices"], weight.params["n"], weight.params["m"]
    if weight.format == "semi24":
        nm = encode_weight(weight.to_dense(), "nm", n=2, m=4)
        return nm.tensors["values"], nm.tensors["indices"], 2, 4
    raise ValueError(f"{weight.format!r} is not an N:M format")
