"""DASS in process: the space relaxed, alpha under the cost term, PT, derived specs, sweep."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
import yaml
from torch.nn import functional as F

from sparsearch.config import ConfigError, DassConfig
from sparsearch.data import DataSplits, iterate_batches
from sparsearch.evaluate import EvalContext, build_model, evaluate
from sparsearch.ops import Candidate, CellSupernet, MacroSupernet
from sparsearch.search.dass import LambdaJob, SweepPoint, search_lambda
from sparsearch.search.dass.bilevel import AlphaSettings, BilevelTrainer, supernet_accuracy
from sparsearch.search.dass.derive import derive_argmax, derive_pt, genotype_of
from sparsearch.search.dass.job import warm_up
from sparsearch.search.dass.plan import layer_candidates, plan_supernet
from sparsearch.search.dass.retrain import dass_front, training_variants, variant_spec
from sparsearch.search.dass.sweep import next_lambda, next_step
from sparsearch.space import load_space, parse_space
from sparsearch.sparsity import prunable_layers
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


def test_alpha_follows_the_cost_term_alone(digits):
    ctx = context(digits)
    net = MacroSupernet(build_model(ctx), {"fc2": (Candidate("unstructured", sparsity=0.2),
                                                   Candidate("unstructured", sparsity=0.9))},
                        example=digits.train[0][:1])
    trainer = BilevelTrainer(net, digits, settings=TrainSettings(batch_size=64),
                             alpha=AlphaSettings(lr=0.1, lam=100.0, cost="density"),
                             generator=torch.Generator().manual_seed(0))
    trainer.run_phase("search", 1)
    p = net.probs("fc2")
    assert p[1] > 0.9  # the sparse op wins when the cost dominates


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
    pt = derive_pt(net, accuracy=lambda: supernet_accuracy(net, val), tune=lambda: None, seed=0)
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
