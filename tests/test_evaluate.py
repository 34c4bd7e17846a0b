"""evaluate() on real digits data: real training, exact counts, failures recorded."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from sparsearch.evaluate import EvalContext, accuracy_on_test, build_model, evaluate
from sparsearch.metrics import dense_flops, sparse_flops
from sparsearch.sparsity.masking import apply_masks, prunable_layers
from sparsearch.sparsity.patterns import unstructured_mask
from sparsearch.sparsity.recipes import list_recipes
from sparsearch.spec import LayerRule, SubnetSpec

TRAIN = {"epochs": 4, "lr": 1e-2, "weight_decay": 0.0, "optimizer": "adam", "batch_size": 64}


@pytest.fixture()
def ctx(digits):
    return EvalContext(data=digits, model={"kind": "mlp", "hidden": [64, 64]}, train=TRAIN)


def test_dense_mlp_learns_digits(ctx):
    result, model = evaluate(SubnetSpec(pattern="dense"), ctx)
    assert result.status == "complete"
    assert result.metrics["accuracy"] > 0.9
    assert result.metrics["density"] == 1.0
    assert accuracy_on_test(model, ctx.data) > 0.85


@pytest.mark.parametrize("recipe", ["one_shot", "gradual"])
def test_unstructured_subnet_has_exact_density(ctx, recipe):
    spec = SubnetSpec(pattern="unstructured", sparsity=0.9, recipe=recipe,
                      layers=(LayerRule("head", dense=True),))
    result, model = evaluate(spec, ctx)
    assert result.status == "complete", result.reason
    layers = prunable_layers(model)
    # The allocation is exact over the pruned layers together (to within one weight).
    kept = sum(int(torch.count_nonzero(layers[n].weight)) for n in ("fc1", "fc2"))
    total = sum(layers[n].weight.numel() for n in ("fc1", "fc2"))
    assert abs(kept - (total - round(0.9 * total))) <= 1
    assert int(torch.count_nonzero(layers["head"].weight)) == layers["head"].weight.numel()
    assert result.metrics["accuracy"] > 0.7


def test_nm_subnet_keeps_n_of_every_m(ctx):
    result, model = evaluate(SubnetSpec(pattern="nm", nm="1:8"), ctx)
    assert result.status == "complete", result.reason
    w = prunable_layers(model)["fc2"].weight
    assert int((w.reshape(w.shape[0], -1, 8) != 0).sum(-1).max()) <= 1
    assert result.metrics["density"] == pytest.approx(1 / 8, abs=0.01)


def test_same_spec_and_seed_give_the_same_subnet(ctx):
    spec = SubnetSpec(pattern="unstructured", sparsity=0.8, recipe="one_shot")
    a, model_a = evaluate(spec, ctx)
    b, model_b = evaluate(spec, ctx)
    assert a.metrics["accuracy"] == b.metrics["accuracy"]
    for (_, pa), (_, pb) in zip(model_a.state_dict().items(), model_b.state_dict().items()):
        assert torch.equal(pa, pb)


def test_diverging_trial_is_failed_with_reason(ctx):
    spec = SubnetSpec(pattern="unstructured", sparsity=0.5, hparams={"lr": 1e12})
    result, model = evaluate(spec, ctx)
    assert result.status == "failed"
    assert model is None
    assert "diverged" in result.reason


def test_flops_scale_with_density(digits):
    ctx = EvalContext(data=digits, model={"kind": "mlp", "hidden": [64, 64]}, train=TRAIN)
    model = build_model(ctx)
    x = digits.val[0][:1]
    total, per_layer = dense_flops(model, x)
    assert total == sum(per_layer.values())  # an MLP's FLOPs are all in its Linear layers
    apply_masks(model, {"fc2": unstructured_mask(model.fc2.weight, 0.75)})
    assert sparse_flops(model, x) == total - round(per_layer["fc2"] * 0.75)


def test_cnn_and_timm_models_build(digits):
    cnn = build_model(EvalContext(data=digits, model={"kind": "cnn", "channels": [8, 8, 8]},
                                  train=TRAIN))
    assert set(prunable_layers(cnn)) == {"conv1", "conv2", "conv3", "head"}
    timm_model = build_model(EvalContext(data=digits, model={"kind": "timm", "name": "resnet10t"},
                                         train=TRAIN))
    out = timm_model(digits.val[0][:2])
    assert out.shape == (2, 10)


def test_latency_is_measured_on_the_masked_model_at_the_asked_batch(digits):
    from dataclasses import replace

    from sparsearch.export import KernelLinear

    ctx = EvalContext(data=digits, model={"kind": "mlp", "hidden": [64, 64]},
                      train={**TRAIN, "epochs": 1})
    result, _ = evaluate(SubnetSpec(pattern="unstructured", sparsity=0.9), ctx)
    assert "latency_ms" not in result.metrics

    # Every forward pass of the run, seen by a global hook: the last input and output of
    # each module; the modules that are not the trained model's are the latency measurement's.
    seen: dict[int, tuple[torch.nn.Module, torch.Tensor, torch.Tensor]] = {}

    def record(module, args, output):
        if args:  # parametrizations are called with no input
            seen[id(module)] = (module, args[0].detach().clone(), output.detach().clone())

    handle = torch.nn.modules.module.register_module_forward_hook(record)
    try:
        result, model = evaluate(SubnetSpec(pattern="unstructured", sparsity=0.9),
                                 replace(ctx, latency_batch=3))
    finally:
        handle.remove()
    assert result.status == "complete" and result.metrics["latency_ms"] > 0
    own = {id(m) for m in model.modules()}
    timed = [(m, x, y) for key, (m, x, y) in seen.items() if key not in own]
    nets = [(x, y) for m, x, y in timed if type(m) is type(model)]
    # The copies timed (the swapped model and the dense reference it is checked against)
    # ran at latency_batch, the swapped one last on the first validation inputs, and all
    # compute what the trained model computes with its masks: not the dense weights, not an
    # untrained net.
    assert nets and all(x.shape[0] == 3 for x, _ in nets)
    assert any(torch.equal(x, digits.val[0][:3]) for x, _ in nets)
    model.eval()
    with torch.no_grad():
        for x, y in nets:
            assert torch.allclose(y, model(x), rtol=1e-4, atol=1e-5)
    # Its sparse layers were tuned for that batch only (the class it is recorded under).
    for m, _, _ in timed:
        if isinstance(m, KernelLinear):
            assert list(m.kernel_names()) == [3]


@pytest.mark.parametrize("recipe", list_recipes())
def test_every_recipe_reports_each_epoch_and_can_be_stopped(ctx, recipe):
    spec = SubnetSpec(pattern="nm", nm="2:4", recipe=recipe)
    seen: list[tuple[int, dict[str, float]]] = []

    def report(epoch: int, metrics: dict[str, float]) -> bool:
        seen.append((epoch, metrics))
        return False

    result, model = evaluate(spec, ctx, report=report)
    assert result.status == "complete", result.reason
    assert [e for e, _ in seen] == [1, 2, 3, 4]
    # The last report measured the trained subnet the result describes.
    assert seen[-1][1]["accuracy"] == result.metrics["accuracy"]
    # The rung knows the final shape of the subnet from the start.
    assert seen[0][1]["density"] == pytest.approx(result.metrics["density"], abs=0.01)

    series: list[tuple[str, float, int]] = []
    stopped, none = evaluate(spec, ctx, report=lambda epoch, m: epoch == 2,
                             log_metric=lambda k, v, s: series.append((k, v, s)))
    assert stopped.status == "pruned" and none is None
    assert stopped.metrics["stopped_at_epoch"] == 2 and stopped.metrics["max_epochs"] == 4
    assert stopped.metrics["accuracy"] == seen[1][1]["accuracy"]
    assert [s for k, _, s in series if k == "val_accuracy"] == [1, 2]


def test_rung_masks_final_measures_a_dense_first_recipe_at_its_final_masks(ctx):
    # one_shot trains dense for 2 of its 4 epochs: with rung_masks=final the scheduler sees
    # the accuracy of the subnet it will become (pruned to 95% now), not of a dense net
    # beside a 5% density; from the pruning on the two are the same measurement.
    ctx = replace(ctx, rung_masks="final")
    spec = SubnetSpec(pattern="unstructured", sparsity=0.95, recipe="one_shot")
    reported: list[float] = []
    series: dict[str, dict[int, float]] = {}

    def report(epoch: int, metrics: dict[str, float]) -> bool:
        reported.append(metrics["accuracy"])
        return False

    def log(key: str, value: float, step: int) -> None:
        series.setdefault(key, {})[step] = value

    result, model = evaluate(spec, ctx, report=report, log_metric=log)
    dense, at_target = series["val_accuracy"], series["val_accuracy_at_target"]
    assert reported == [at_target[e] for e in (1, 2, 3, 4)]
    assert at_target[1] < dense[1] and at_target[2] < dense[2]
    assert at_target[3] == dense[3] and at_target[4] == dense[4]
    # The measurement prunes a copy: training goes on exactly as without a scheduler.
    plain, plain_model = evaluate(spec, ctx)
    assert plain.metrics["accuracy"] == result.metrics["accuracy"]
    for (_, a), (_, b) in zip(model.state_dict().items(), plain_model.state_dict().items()):
        assert torch.equal(a, b)
