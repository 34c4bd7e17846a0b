"""sdgf: Structure-Decay Gradient Flow, the N:M pattern tightens frame by frame.

Bambhaniya et al., "Progressive Gradient Flow for Robust N:M Sparsity Training in
Transformers", arXiv 2402.04744. Binary masks recomputed from |W| every step with a
straight-through backward; the sparse phase is cut into equal frames, each with its own
N:M:

- stepwise ("sparsify"): (M-1):M, then (M/2^i):M down to the target, e.g. 1:8 goes
  7:8 -> 4:8 -> 2:8 -> 1:8 (log2(M/N) + 1 frames);
- geometric ("fine"): 4 frames of (N*2^(3-i)):(M*2^(3-i)), the same sparsity with groups
  shrinking coarse to fine, e.g. 8:64 -> 4:32 -> 2:16 -> 1:8.

Frames are equal slices of the sparse phase counted in optimiser steps (PGF switches at
epoch boundaries; counting steps gives the same frames when epochs divide evenly and still
works for runs shorter than the schedule). Layers that are not N:M step their sparsity up
in 4 equal steps (stepwise) or keep their final sparsity (geometric). A final fine-tune uses
strict binary masks.
"""

from __future__ import annotations

from sparsearch.sparsity.plan import LayerSparsity
from sparsearch.sparsity.recipes._base import register_recipe
from sparsearch.sparsity.recipes._dynamic_mask import DynamicMask, with_sparsity
from sparsearch.sparsity.recipes._progressive import ProgressiveRecipe

SCHEDULES = ("stepwise", "geometric")


def nm_frames(n: int, m: int, *, schedule: str) -> list[tuple[int, int]]:
    """The N:M of each frame, ending at ``n:m``."""
    if schedule == "geometric":
        return [(n * 2 ** (3 - i), m * 2 ** (3 - i)) for i in range(4)]
    kept = [m - 1]
    i = 1
    while m // 2 ** i > n:
        kept.append(m // 2 ** i)
        i += 1
    kept.append(n)
    return [(k, m) for k in dict.fromkeys(v for v in kept if n <= v < m)]


def frame_plan(plan: LayerSparsity, progress: float, *, schedule: str) -> LayerSparsity:
    """The layer's pattern in the frame that ``progress`` in [0, 1] falls in."""
    if plan.pattern == "nm":
        assert plan.nm is not None
        frames = nm_frames(*plan.nm, schedule=schedule)
        return with_sparsity(plan, nm=frames[min(int(progress * len(frames)), len(frames) - 1)])
    if schedule == "geometric":
        return plan
    frame = min(int(progress * 4), 3)
    return with_sparsity(plan, sparsity=plan.sparsity * (frame + 1) / 4)


@register_recipe
class SDGF(ProgressiveRecipe):
    name = "sdgf"
    # schedule: stepwise | geometric (see the module docstring);
    # dense / fine_tune: fractions of the epochs trained dense first / with fixed masks last.
    knobs = {"schedule": "stepwise", "dense": 0.0, "fine_tune": 0.2}

    def validate(self) -> None:
        if self.options["schedule"] not in SCHEDULES:
            raise ValueError(f"sdgf.schedule must be one of {list(SCHEDULES)}, "
                             f"got {self.options['schedule']!r}")

    def set_progress(self, handles: dict[str, DynamicMask], plans: dict[str, LayerSparsity],
                     progress: float | None) -> None:
        schedule = str(self.options["schedule"])
        for name, handle in handles.items():
            handle.plan = frame_plan(plans[name], progress or 0.0, schedule=schedule)
            # The dense phase sees every weight; frames see only the kept ones.
            handle.alpha = 1.0 if progress is None else 0.0
