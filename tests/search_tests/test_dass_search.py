"""DASS in process: the space relaxed, alpha under the cost term, PT, derived specs, sweep."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
import yaml
from torch.nn import functional as F

from sparsearch.config import ConfigError, DassConfig, SparsearchConfig, validate
from sparsearch.data import DataSplits, iterate_batches
from sparsearch.evaluate import EvalContext, build_model, evaluate
from sparsearch.ops import Candidate, CellSupernet, MacroSupernet
from sparsearch.search.dass import LambdaJob, SweepPoint, search_lambda
from sparsearch.search.dass.bilevel import (
    AlphaSettings,
    BilevelTrainer,
    split_for_alpha,
    supernet_accuracy,
)
from sparsearch.search.dass.derive import derive_argmax, derive_pt, genotype_of
from sparsearch.search.dass.inherit import inherited_spec
from sparsearch.search.dass.job import warm_up
from sparsearch.search.dass.plan import layer_candidates, plan_supernet
from sparsearch.search.dass.retrain import dass_front, training_variants, variant_spec
from sparsearch.search.dass.sweep import next_lambda, next_step
from sparsearch.space import load_space, parse_space
from sparsearch.sparsity import prunable_layers
from sparsearch.sparsity.masking import current_masks
from sparsearch.spec import SubnetSpec
from sparsearch.train import TrainSettings, make_optimizer, train_epoch

TRAIN = {"epochs": 3, "lr": 1e-2, "weight_decay": 0.0, "optimizer": "adam", "batch_size": 64}


def context(digits: DataSplits, *, train_samples: int | None = None) -> EvalContext:
    if train_samples is not None:
        digits = DataSplits((digits.train[0][:train_samples], digits.train[1][:train_samples]),
                            digits.val, digits.test, digits.in_shape, digits.num_classes,
                            digits.name)
    return EvalContext(data=digits, model={"kind": "mlp", "hidden": [64, 64]},
                       train=dict(TRAIN), seed=0, threads=1)


def plan_for(ctx: EvalContext, space=None, **dass):
    space = space or load_space("digits_mlp")
    names = list(prunable_layers(build_model(ctx)))
    return plan_supernet(space, layer_names=names, in_shape=ctx.data.in_shape,
                         dass=DassConfig(**dass))


def test_macro_plan_relaxes_the_space_file(digits):
    plan = plan_for(context(digits), levels=4)
    assert set(plan.choices) == {"fc1", "fc2"}  # head: dense rule
    labels = [c.label for c in plan.choices["fc1"]]
    assert labels == ["unstructured @0.5", "unstructured @0.66", "unstructured @0.82",
                      "unstructured @0.98", "nm 2:4", "nm 1:4", "nm 1:8", "nm 1:16"]
    # non-architecture values: the first recipe, the middle of the log lr range
    assert plan.base.recipe == "one_shot"
    assert plan.base.hparams["lr"] == pytest.approx(math.sqrt(1e-3 * 3e-2))


def test_layer_specific_dimensions_give_that_layers_candidates():
    space = parse_space(yaml.safe_load("""
params:
  pattern: {choice: [unstructured, block]}
  sparsity: {float: [0.5, 0.9]}
  block: {choice: ["4x4"], when: {pattern: block}}
layers:
  "fc1": {sparsity: {choice: [0.1, 0.2]}, pattern: unstructured}
  "head": {dense: true}
"""), source="t")
    fc1 = layer_candidates(space, "fc1", levels=3, fixed={})
    fc2 = layer_candidates(space, "fc2", levels=3, fixed={})
    assert [c.label for c in fc1] == ["unstructured @0.1", "unstructured @0.2"]
    assert [c.label for c in fc2] == ["unstructured @0.5", "unstructured @0.7",
                                      "unstructured @0.9", "block 4x4 @0.5", "block 4x4 @0.7",
                                      "block 4x4 @0.9"]
    assert layer_candidates(space, "head", levels=3, fixed={}) == ()


def test_fixed_values_are_checked(digits):
    ctx = context(digits)
    plan = plan_for(ctx, fixed={"lr": 0.01, "recipe": "gradual"})
    assert plan.base.recipe == "gradual" and plan.base.hparams["lr"] == 0.01
    with pytest.raises(ConfigError, match="search.dass.fixed.lr"):
        plan_for(ctx, fixed={"lr": 5.0})
    with pytest.raises(ConfigError, match="not a non-architecture parameter"):
        plan_for(ctx, fixed={"sparsity": 0.5})
    with pytest.raises(ConfigError, match="not supported: search.dass.supernet=cell"):
        plan_for(ctx, supernet="cell")  # digits_mlp has layers rules
    with pytest.raises(ConfigError, match="search.dass.alpha_lr"):
        DassConfig(alpha_lr=0.0)
    with pytest.raises(ConfigError, match=r"search.dass.alpha_fraction must be in \(0, 1\)"):
        DassConfig(alpha_fraction=1.0)
    cfg = SparsearchConfig()

    def with_dass(**dass):
        return replace(cfg, search=replace(cfg.search, strategy="dass",
                                           dass=replace(cfg.search.dass, **dass)))

    with pytest.raises(ConfigError, match="search.dass.inherit must be one of"):
        validate(with_dass(inherit="all"))
    with pytest.raises(ConfigError, match="not supported: search.dass.inherit with supernet"):
        validate(with_dass(inherit="weights", supernet="cell"))
    validate(with_dass(inherit="scores", supernet="space"))


def test_higher_lambda_gives_lower_expected_density(digits):
    ctx = context(digits, train_samples=512)
    dass = DassConfig(levels=3, warmup_epochs=1, search_epochs=2, finetune_epochs=1,
                      alpha_lr=0.05)
    plan = plan_for(ctx, levels=3)
    warm = warm_up(plan, ctx, dass)
    outcomes = [search_lambda(LambdaJob(lam=lam, key=0, plan=plan, ctx=ctx, dass=dass,
                                        warm_state=warm)) for lam in (0.0, 4.0)]
    low, high = outcomes
    assert low.status == high.status == "derived"
    assert high.expected_cost < low.expected_cost - 0.02
    assert high.cost <= low.cost
    # the derived spec: one exact-name rule per layer, layerwise, and it trains
    assert [r.glob for r in high.spec.layers] == ["fc1", "fc2", "head"]
    assert high.spec.allocation == "layerwise" and high.spec.layers[2].dense
    result, model = evaluate(high.spec, replace(ctx, train={**TRAIN, "epochs": 2}))
    assert result.status == "complete"
    assert result.metrics["density"] == pytest.approx(high.cost, abs=2e-3)


def test_the_space_supernet_derives_a_spec_random_search_could_draw(digits):
    ctx = context(digits, train_samples=256)
    dass = DassConfig(supernet="space", levels=2, warmup_epochs=1, search_epochs=1,
                      finetune_epochs=0, alpha_lr=0.1)
    plan = plan_for(ctx, supernet="space", levels=2)
    assert plan.kind == "space" and len(plan.targets) == 3 * 2 + 4
    warm = warm_up(plan, ctx, dass)
    out = search_lambda(LambdaJob(lam=8.0, key=0, plan=plan, ctx=ctx, dass=dass,
                                  warm_state=warm))
    assert out.status == "derived" and out.spec in plan.targets
    probs = out.snapshot["decisions"]["target"]["softmax"]
    # argmax derivation; the cost term pulled alpha to a sparse target
    assert probs.index(max(probs)) == plan.targets.index(out.spec) and out.cost < 0.5
    # no layer rules beyond the space's own (head dense): allocation and sparsity say it
    assert [r.glob for r in out.spec.layers] == ["head"]
    result, _ = evaluate(out.spec, replace(ctx, train={**TRAIN, "epochs": 1}))
    assert result.status == "complete"
    assert result.metrics["density"] == pytest.approx(out.cost, abs=2e-3)


def test_alpha_follows_the_cost_term_alone(digits):
    ctx = context(digits)
    net = MacroSupernet(build_model(ctx), {"fc2": (Candidate("unstructured", sparsity=0.2),
                                                   Candidate("unstructured", sparsity=0.9))},
                        example=digits.train[0][:1])
    weights_data, alpha_data = split_for_alpha(digits.train, fraction=0.5, seed=0)
    trainer = BilevelTrainer(net, weights_data=weights_data, alpha_data=alpha_data,
                             settings=TrainSettings(batch_size=64),
                             alpha=AlphaSettings(lr=0.1, lam=100.0, cost="density"),
                             generator=torch.Generator().manual_seed(0))
    trainer.run_phase("warmup", 1)
    # masks are off in the warm-up: alpha takes no step there
    assert trainer.alpha_steps == 0 and trainer.steps > 0
    assert torch.equal(net.alpha("fc2").detach(), torch.zeros(2))
    warm_steps = trainer.steps
    trainer.run_phase("search", 2)  # half the train split: half the steps of an epoch
    assert trainer.alpha_steps == trainer.steps - warm_steps
    p = net.probs("fc2")
    assert p[1] > 0.9  # the sparse op wins when the cost dominates


def _rows(x: torch.Tensor) -> set[bytes]:
    return {row.numpy().tobytes() for row in x.detach().cpu().flatten(1)}


def test_alpha_and_pt_never_see_a_validation_or_test_sample(digits):
    ctx = context(digits, train_samples=256)
    dass = DassConfig(levels=2, warmup_epochs=1, search_epochs=1, finetune_epochs=1,
                      alpha_lr=0.05, derive="pt", pt_tune_epochs=1)
    plan = plan_for(ctx, levels=2)
    train = ctx.data.train
    weights_part, alpha_part = split_for_alpha(train, fraction=dass.alpha_fraction,
                                               seed=ctx.seed)
    weight_rows, alpha_rows = _rows(weights_part[0]), _rows(alpha_part[0])
    assert not weight_rows & alpha_rows and len(weight_rows) + len(alpha_rows) >= 250
    # digits repeats a few images across splits: a row is "val/test" only if train lacks it
    held_back = (_rows(digits.val[0]) | _rows(digits.test[0])) - _rows(train[0])
    seen: list[set[bytes]] = []
    alpha_batches: list[set[bytes]] = []
    hooked: list[MacroSupernet] = []  # kept alive: a freed supernet's id may come back

    def record(module, inputs):
        # Every forward of the supernet (weights, alpha, PT accuracy, PT tuning) is recorded;
        # alpha's gradient hook marks the batch alpha was trained on: the last one seen.
        if not isinstance(module, MacroSupernet):
            return
        seen.append(_rows(inputs[0]))
        if not any(module is known for known in hooked):
            hooked.append(module)
            for alpha in module.arch_parameters():
                alpha.register_hook(lambda g: alpha_batches.append(seen[-1]) or g)

    handle = torch.nn.modules.module.register_module_forward_pre_hook(record)
    try:
        warm = warm_up(plan, ctx, dass)
        out = search_lambda(LambdaJob(lam=1.0, key=0, plan=plan, ctx=ctx, dass=dass,
                                      warm_state=warm))
    finally:
        handle.remove()
    assert out.status == "derived" and out.snapshot["pt_accuracy_without"]
    everything = set().union(*seen)
    assert everything <= _rows(train[0]) and not everything & held_back
    # alpha trained on the held-out part only, and it did train
    assert alpha_batches and set().union(*alpha_batches) <= alpha_rows - weight_rows
    # PT's accuracies come from the held-out part: full-batch forwards of exactly it
    assert any(rows == alpha_rows for rows in seen)


def test_second_order_step_moves_alpha(digits):
    ctx = context(digits, train_samples=128)
    plan = plan_for(ctx, levels=2)
    dass = DassConfig(levels=2, warmup_epochs=0, search_epochs=1, finetune_epochs=0,
                      alpha_lr=0.05, second_order=True)
    out = search_lambda(LambdaJob(lam=1.0, key=0, plan=plan, ctx=ctx, dass=dass,
                                  warm_state=warm_up(plan, ctx, dass)))
    probs = out.snapshot["decisions"]["fc1"]["softmax"]
    assert max(probs) - min(probs) > 1e-3


def trained_mlp(digits: DataSplits) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model(context(digits))
    opt = make_optimizer(model.parameters(), TrainSettings(lr=1e-2))
    gen = torch.Generator().manual_seed(0)
    for _ in range(4):
        train_epoch(model, iterate_batches(digits.train, 64, generator=gen), opt)
    return model


def test_pt_keeps_the_candidate_whose_removal_hurts_most(digits):
    # alpha favours a 99%-sparse fc1 (argmax picks it), but the mixture's accuracy rests on
    # the dense candidate: removing it collapses the net, removing the sparse one does not.
    net = MacroSupernet(trained_mlp(digits), {"fc1": (Candidate("unstructured", sparsity=0.99),
                                                      Candidate("dense"))},
                        example=digits.train[0][:1])
    net.set_phase("finetune")
    with torch.no_grad():
        net.alpha("fc1").copy_(torch.tensor([0.4, 0.0]))
    assert derive_argmax(net).choices["fc1"] == 0
    tuned = []
    derivation = derive_pt(net, accuracy=lambda: supernet_accuracy(net, digits.val),
                           tune=lambda: tuned.append(1), seed=0)
    without_sparse, without_dense = derivation.pt["fc1"]
    assert without_dense < 0.5 < without_sparse
    assert derivation.choices["fc1"] == 1 and tuned == [1]
    assert torch.equal(net.overrides["fc1"], torch.tensor([0.0, 1.0]))
    net.eval()
    assert F.cross_entropy(net(digits.val[0]), digits.val[1]) < 1.0


def test_sweep_listed_first_then_refines_then_stops():
    listed = [1.0, 0.0]
    assert next_lambda(listed, [], refine=True, min_cost=0.05) == 1.0
    a = SweepPoint(lam=1.0, key=0, digest="a", cost=0.1, accuracy=0.9)
    b = SweepPoint(lam=0.0, key=1, digest="b", cost=0.5, accuracy=0.95)
    assert next_lambda(listed, [a], refine=True, min_cost=0.05) == 0.0
    assert next_lambda(listed, [a, b], refine=False, min_cost=0.05) is None
    # the gap between 0 and 1 (0.4 * 0.95) beats going beyond 1 (0.05 * 0.9)
    assert next_lambda(listed, [a, b], refine=True, min_cost=0.05) == 0.5
    c = SweepPoint(lam=0.5, key=2, digest="a", cost=0.1, duplicate_of=0)
    # a repeated subnet closes its gaps: only "beyond" is left
    assert next_lambda(listed, [a, b, c], refine=True, min_cost=0.05) == 2.0
    d = SweepPoint(lam=2.0, key=3, digest="d", cost=0.05, accuracy=0.8)
    e = SweepPoint(lam=1.4142135623730951, key=4, digest="d", cost=0.05, duplicate_of=3)
    assert next_lambda(listed, [a, b, c, d, e], refine=True, min_cost=0.05) is None
    # the round is complete: the next one starts from the listed lambdas
    assert next_step(listed, [a, b, c, d, e], refine=True, min_cost=0.05) == (1, 1.0)
    again = [replace(a, round=1, duplicate_of=0, key=5), replace(b, round=1, duplicate_of=1, key=6)]
    assert next_step(listed, [a, b, c, d, e, *again], refine=True, min_cost=0.05) == (1, 2.0)
    again.append(replace(d, round=1, duplicate_of=3, key=7))
    # a round that found nothing new ends the search
    assert next_step(listed, [a, b, c, d, e, *again], refine=True, min_cost=0.05) is None


def test_cell_derivations_keep_two_edges_per_node_and_no_none(digits):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = CellSupernet(in_shape=digits.in_shape, num_classes=10, init_channels=4, cells=2,
                       sparsities=(0.5, 0.9))
    net.set_phase("finetune")
    val = (digits.val[0][:32], digits.val[1][:32])
    with torch.no_grad():
        net.alpha_normal[:, 0] = 3.0  # "none" dominates every edge: argmax must skip it
    argmax = derive_argmax(net)
    # PT from the argmax ops (one op per edge keeps each evaluation cheap): every edge is
    # re-decided by accuracy drops, then the topology is pruned to 2 inputs per node.
    for d, i in argmax.choices.items():
        net.set_override(d, net.one_hot(d, i))
    tuned: list[int] = []
    pt = derive_pt(net, accuracy=lambda: supernet_accuracy(net, val),
                   tune=lambda: tuned.append(1), seed=0)
    # a tune per normal/reduce pair of edges (14), after sparsity, after each edge dropped
    assert len(tuned) == 14 + 1 + 2 * (1 + 2 + 3)
    for derivation in (argmax, pt):
        genotype = genotype_of(net, derivation)
        for kind in ("normal", "reduce"):
            cell = genotype[kind]
            assert len(cell) == 8 and all(op != "none" for op, _ in cell)
            for node in range(4):
                inputs = [j for _, j in cell[2 * node:2 * node + 2]]
                assert len(set(inputs)) == 2 and max(inputs) < 2 + node
    assert all(scores[0] is None for d, scores in pt.pt.items() if d != "sparsity")
    dropped = [d for d, w in net.overrides.items() if d != "sparsity" and float(w.sum()) == 0]
    assert len(dropped) == 2 * (14 - 8)  # 6 edges per cell pruned by the topology step


def test_retrain_variants_and_front():
    space = load_space("digits_mlp")
    fixed = {"recipe": "one_shot", "lr": 0.01}
    variants = training_variants(space, fixed, levels=3)
    assert len(variants) == 2 * 3 and variants[0]["recipe"] == "one_shot"  # nearest first
    spec = SubnetSpec(pattern="unstructured", sparsity=0.5, recipe="one_shot",
                      hparams={"lr": 0.01}, options={"one_shot.prune_at": 0.3,
                                                     "cell.genotype": "{}"})
    again = variant_spec(spec, {"recipe": "gradual", "lr": 0.003}, fixed)
    assert again.recipe == "gradual" and again.hparams == {"lr": 0.003}
    assert again.options == {"cell.genotype": "{}"} and again.layers == spec.layers
    points = [SweepPoint(lam=0.0, key=0, digest="a", cost=0.4, accuracy=0.97),
              SweepPoint(lam=1.0, key=1, digest="b", cost=0.2, accuracy=0.97),
              SweepPoint(lam=2.0, key=2, digest="c", cost=0.1, accuracy=0.95),
              SweepPoint(lam=4.0, key=3, digest="c", cost=0.1, duplicate_of=2),
              SweepPoint(lam=2.0, key=4, digest="d", cost=0.1, accuracy=0.99, retrain_of=2)]
    assert [p.key for p in dass_front(points)] == [2, 1]
    # retrains take no part in the sweep
    assert next_step([0.0, 1.0, 2.0, 4.0], points, refine=True, min_cost=0.1) == \
        next_step([0.0, 1.0, 2.0, 4.0], points[:4], refine=True, min_cost=0.1)


def test_cost_aware_pt_trades_the_accuracy_drop_against_the_kept_cost(digits):
    net = MacroSupernet(trained_mlp(digits), {"fc1": (Candidate("unstructured", sparsity=0.99),
                                                      Candidate("dense"))},
                        example=digits.train[0][:1])
    net.set_phase("finetune")
    plain = derive_pt(net, accuracy=lambda: supernet_accuracy(net, digits.val),
                      tune=lambda: None, seed=0)
    net.overrides.clear()
    priced = derive_pt(net, accuracy=lambda: supernet_accuracy(net, digits.val),
                       tune=lambda: None, seed=0, lam=4.0, cost="density")
    assert plain.choices["fc1"] == 1 and not plain.pt_cost  # removing dense hurts most
    sparse_cost, dense_cost = priced.pt_cost["fc1"]
    assert dense_cost == pytest.approx(1.0) and sparse_cost < 0.6
    # 4 * (1 - 0.54) outweighs the accuracy the dense candidate holds up
    assert priced.choices["fc1"] == 0


def test_pt_scores_on_batch_statistics_and_leaves_the_running_ones(digits):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = CellSupernet(in_shape=digits.in_shape, num_classes=10, init_channels=4, cells=2,
                       sparsities=(0.5, 0.9))
    net.set_phase("finetune")
    pair = (digits.val[0][:64], digits.val[1][:64])
    norms = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    before = {k: v.clone() for k, v in net.state_dict().items()}
    modes: list[bool] = []
    handles = [m.register_forward_pre_hook(lambda m, _: modes.append(m.training))
               for m in norms]
    supernet_accuracy(net, pair, batch_stats=True)
    for h in handles:
        h.remove()
    assert modes and all(modes)  # every BN normalised with the batch's statistics
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not any(m.training for m in net.modules())


def test_a_phase_can_run_at_another_lr(digits):
    def one_step(lr: float | None) -> torch.Tensor:
        torch.manual_seed(0)
        net = MacroSupernet(build_model(context(digits)),
                            {"fc1": (Candidate("unstructured", sparsity=0.5),)},
                            example=digits.train[0][:1])
        weights_data, alpha_data = split_for_alpha(digits.train, fraction=0.5, seed=0)
        trainer = BilevelTrainer(net, weights_data=weights_data, alpha_data=alpha_data,
                                 settings=TrainSettings(lr=1e-2, optimizer="adam",
                                                        batch_size=64),
                                 alpha=AlphaSettings(lr=0.1, lam=0.0, cost="density"),
                                 generator=torch.Generator().manual_seed(0))
        head = net.backbone.head.weight.detach().clone()
        trainer.run_phase("finetune", 1 / trainer.batches_per_epoch(), lr=lr)
        assert trainer.steps == 1
        return (net.backbone.head.weight.detach() - head).abs().max()

    # Adam's first step moves each weight by about lr: a tenth of the lr, a tenth the step
    assert float(one_step(1e-3) / one_step(None)) == pytest.approx(0.1, rel=1e-3)


@pytest.mark.parametrize("supernet", ["macro", "space"])
def test_derived_subnets_inherit_the_supernets_masks_and_weights(digits, tmp_path, supernet):
    ctx = context(digits, train_samples=512)
    dass = DassConfig(supernet=supernet, levels=2, warmup_epochs=2, search_epochs=1,
                      finetune_epochs=1, alpha_lr=0.1, inherit="weights")
    plan = plan_for(ctx, supernet=supernet, levels=2)
    out = search_lambda(LambdaJob(lam=0.0, key=3, plan=plan, ctx=ctx, dass=dass,
                                  warm_state=warm_up(plan, ctx, dass)))
    masks = {k[len("mask."):]: v for k, v in out.inherited.items() if k.startswith("mask.")}
    assert set(masks) == {"fc1", "fc2"}  # head: dense rule
    kept = sum(int(m.sum()) for m in masks.values()) + 10 * 64 + 0.0
    assert kept / (64 * 64 * 2 + 10 * 64) == pytest.approx(out.cost, abs=2e-3)
    spec = inherited_spec(out, run_dir=tmp_path)
    assert spec.recipe == "inherited" and spec.options["inherited.weights"] is True
    assert (tmp_path / "dass" / "inherit-00003.safetensors").exists()
    # no training at all: the inherited weights already classify, a fresh model does not
    untrained = replace(ctx, train={**TRAIN, "epochs": 0})
    result, model = evaluate(spec, untrained)
    assert result.status == "complete" and result.metrics["accuracy"] > 0.6
    assert all(torch.equal(current_masks(model)[n], m) for n, m in masks.items())
    masks_only = replace(spec, options={**spec.options, "inherited.weights": False})
    fresh, _ = evaluate(masks_only, untrained)
    assert fresh.metrics["accuracy"] < result.metrics["accuracy"] - 0.2
    assert fresh.metrics["density"] == pytest.approx(result.metrics["density"])


def test_paper_mode_fixes_the_keep_fraction_and_searches_operations(digits):
    # DASS as published: one keep fraction per search (here 0.1, 90% sparse), HYDRA scores,
    # alpha over the cell's operations; every derived layer is pruned at that fraction.
    space = parse_space(yaml.safe_load("""
params:
  pattern: {choice: [unstructured]}
  sparsity: {float: [0.5, 0.8]}
  recipe: {choice: [scores]}
"""), source="paper")
    ctx = replace(context(digits, train_samples=256), train={**TRAIN, "epochs": 1})
    plan = plan_for(ctx, space, supernet="cell", keep=0.1, levels=4, init_channels=4,
                    cells=2)
    assert plan.sparsities == (0.9,)  # the space's 0.5..0.8 grid is not searched
    free = plan_for(ctx, space, supernet="cell", levels=4, init_channels=4, cells=2)
    assert free.sparsities == pytest.approx((0.5, 0.6, 0.7, 0.8))
    dass = DassConfig(supernet="cell", keep=0.1, init_channels=4, cells=2, warmup_epochs=1,
                      search_epochs=1, finetune_epochs=0, batch_size=128)
    out = search_lambda(LambdaJob(lam=1.0, key=0, plan=plan, ctx=ctx, dass=dass,
                                  warm_state=warm_up(plan, ctx, dass)))
    assert out.status == "derived" and out.spec is not None
    assert out.spec.sparsity == pytest.approx(0.9) and out.spec.recipe == "scores"
    assert out.model is not None and out.model["kind"] == "darts_cell"
    with pytest.raises(ConfigError, match=r"search.dass.keep must be in \(0, 1\]"):
        DassConfig(supernet="cell", keep=0.0)
    with pytest.raises(ConfigError, match="use it with search.dass.supernet=cell"):
        DassConfig(supernet="space", keep=0.5)


def test_retraining_goes_on_over_finer_grids_without_training_anything_twice(tmp_path):
    # A DASS search that has swept everything spends the rest of its budget retraining its
    # front: first over search.dass.levels points of each range, then over grids twice as
    # fine, which hold the coarser points exactly (so none is proposed again), and it ends
    # only after the finest.
    import json

    from sparsearch.search.dass.retrain import retrain_levels
    from sparsearch.search.dass.run import _digest, next_retrain
    from sparsearch.search.setup import prepare_search
    from sparsearch.search.trial import trial_dir
    from tests.test_bad_input import compose

    space = tmp_path / "space.yaml"
    space.write_text("params:\n  sparsity: {float: [0.5, 0.9]}\n  recipe: {fixed: one_shot}\n"
                     "  lr: {float: [1.0e-3, 1.0e-1], log: true}\n")
    cfg = validate(compose([f"space={space}", "model.hidden=[16]", "search.strategy=dass",
                            "search.dass.levels=2"]))
    setup = prepare_search(cfg, tmp_path / "run")
    folder = trial_dir(setup.run_dir, 0)
    folder.mkdir(parents=True)
    (folder / "spec.json").write_text(SubnetSpec(pattern="unstructured", sparsity=0.5,
                                                 recipe="one_shot",
                                                 hparams={"lr": 0.01}).to_json())
    points = [SweepPoint(lam=0.0, key=0, digest=json.dumps("swept"), cost=0.5, accuracy=0.9)]
    lrs = []
    while (retrain := next_retrain(setup, points)) is not None:
        source, outcome = retrain
        assert source.key == 0 and outcome.spec is not None
        lrs.append(outcome.spec.hparams["lr"])
        points.append(SweepPoint(lam=0.0, key=len(points), digest=_digest(outcome), cost=0.5,
                                 accuracy=0.8, retrain_of=0))
        assert len(lrs) <= 100, "retraining does not end"
    finest = retrain_levels(2)[-1]
    assert len(lrs) == len(set(lrs)) == finest == 17
    assert lrs[:2] == pytest.approx([1e-3, 1e-1]) and lrs[2] == pytest.approx(1e-2)
    assert sorted(lrs) == pytest.approx([1e-3 * 100 ** (i / 16) for i in range(17)])


def test_probe_axes_take_hparams_then_the_recipe_and_skip_what_is_fixed():
    from sparsearch.search.dass.probe import probe_axes

    space = parse_space(yaml.safe_load("""
params:
  sparsity: {float: [0.5, 0.9]}
  recipe: {choice: [one_shot, gradual]}
  gradual.end: {float: [0.5, 0.9], when: {recipe: gradual}}
  lr: {float: [1.0e-3, 1.0e-1], log: true}
  weight_decay: {choice: [0.0, 1.0e-4]}
  epochs: {fixed: 3}
"""), source="t")
    axes = probe_axes(space, levels=3, fixed={}, recipe=True)
    assert [name for name, _ in axes] == ["lr", "weight_decay", "recipe"]
    assert axes[0][1] == pytest.approx([1e-3, 1e-2, 1e-1])
    assert [n for n, _ in probe_axes(space, levels=3, fixed={"lr": 0.01}, recipe=False)] == \
        ["weight_decay"]


def test_probe_settles_one_dimension_at_a_time_on_the_best_accuracy():
    from sparsearch.search.dass.probe import next_probe, variant_key

    axes = [("lr", [0.001, 0.01, 0.1]), ("recipe", ["one_shot", "gradual"])]
    start = {"lr": 0.01, "recipe": "one_shot"}
    finished = {variant_key(start): 0.80}
    step = next_probe(axes, start, finished, set())
    # the start's own value was trained (the source subnet): the others are next, in order
    assert step.action == "train" and step.values == {"lr": 0.001, "recipe": "one_shot"}
    assert next_probe(axes, start, finished, {variant_key(step.values)}).values == \
        {"lr": 0.1, "recipe": "one_shot"}
    # a dimension is settled only when all its values are back
    pending = {variant_key({"lr": 0.001, "recipe": "one_shot"}),
               variant_key({"lr": 0.1, "recipe": "one_shot"})}
    assert next_probe(axes, start, finished, pending).action == "wait"
    finished[variant_key({"lr": 0.001, "recipe": "one_shot"})] = None  # failed: never wins
    finished[variant_key({"lr": 0.1, "recipe": "one_shot"})] = 0.85
    step = next_probe(axes, start, finished, set())
    assert step.action == "train" and step.values == {"lr": 0.1, "recipe": "gradual"}
    finished[variant_key(step.values)] = 0.85  # a tie keeps the current value
    assert next_probe(axes, start, finished, set()) == \
        type(step)("done", {"lr": 0.1, "recipe": "one_shot"})
    finished[variant_key(step.values)] = 0.86
    assert next_probe(axes, start, finished, set()).values == {"lr": 0.1, "recipe": "gradual"}


def test_a_variant_of_an_inherited_subnet_keeps_its_file():
    spec = SubnetSpec(pattern="unstructured", sparsity=0.5, recipe="inherited",
                      hparams={"lr": 0.01},
                      options={"inherited.path": "/x.safetensors", "inherited.weights": True})
    out = variant_spec(spec, {"lr": 0.03}, {})
    assert out.recipe == "inherited" and out.hparams["lr"] == 0.03
    assert out.options == spec.options
