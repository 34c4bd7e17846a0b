"""Any timm model by name, built without pretrained weights (nothing is downloaded)."""

from __future__ import annotations

from torch import nn

from sparsearch.models._registry import register_model


@register_model("timm")
def timm_model(*, in_shape: tuple[int, ...], num_classes: int, name: str = "resnet18",
               img_size: int | None = None, options: dict[str, object] | None = None,
               **_: object) -> nn.Module:
    import timm

    if len(in_shape) != 3:
        raise ValueError(f"model.kind=timm needs image data (C, H, W), got input shape {in_shape}")
    if name not in timm.list_models():
        raise ValueError(f"model.name must be a timm model name, got {name!r}")
    kwargs: dict[str, object] = {"pretrained": False, "num_classes": num_classes,
                                 "in_chans": in_shape[0]}
    if img_size is not None:
        kwargs["img_size"] = img_size
    # The model's own keyword arguments (a ViT's patch_size, drop_rate, ...).
    kwargs.update(options or {})
    try:
        return timm.create_model(name, **kwargs)
    except TypeError as err:
        raise ValueError(f"timm model {name!r} with model.options {sorted(options or {})}: "
                         f"{err}") from None
