"""Any timm model by name: random weights, or a local pretrained file loaded by timm itself.

Nothing is downloaded. A local file (``model.checkpoint``) goes through timm's own
pretrained loading (``pretrained=True, pretrained_cfg_overlay=dict(file=...)``), so timm
adapts it as it adapts its published weights: a classifier head of another size (a
1000-class ImageNet file on a 10-class task) is left freshly initialised, and the first
convolution is adapted to ``in_chans``. timm reads ``.safetensors`` or a torch file with
``weights_only=True``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from sparsearch.models._registry import register_model


@register_model("timm")
def timm_model(*, in_shape: tuple[int, ...], num_classes: int, name: str = "resnet18",
               img_size: int | None = None, options: dict[str, object] | None = None,
               checkpoint: str | None = None, **_: object) -> nn.Module:
    import pickle

    import timm

    if len(in_shape) != 3:
        raise ValueError(f"model.kind=timm needs image data (C, H, W), got input shape {in_shape}")
    if name not in timm.list_models():
        raise ValueError(f"model.name must be a timm model name, got {name!r}")
    kwargs: dict[str, Any] = {"pretrained": False, "num_classes": num_classes,
                              "in_chans": in_shape[0]}
    if checkpoint is not None:
        if not Path(checkpoint).is_file():
            raise ValueError(f"model.checkpoint {checkpoint!r} does not exist")
        kwargs.update(pretrained=True, pretrained_cfg_overlay={"file": str(checkpoint)})
    if img_size is not None:
        kwargs["img_size"] = img_size
    # The model's own keyword arguments (a ViT's patch_size, drop_rate, ...).
    kwargs.update(options or {})
    try:
        return timm.create_model(name, **kwargs)
    except TypeError as err:
        raise ValueError(f"timm model {name!r} with model.options {sorted(options or {})}: "
                         f"{err}") from None
    except (RuntimeError, OSError, EOFError, pickle.UnpicklingError) as err:
        if checkpoint is None:
            raise
        # timm's load_state_dict names every mismatched key over many lines: keep the first.
        lines = [ln.strip() for ln in str(err).strip().splitlines() if ln.strip()]
        detail = lines[1] if len(lines) > 1 and lines[0].endswith(":") else \
            (lines[0] if lines else type(err).__name__)
        raise ValueError(f"model.checkpoint {checkpoint!r} does not fit timm model {name!r}: "
                         f"{detail}") from None
