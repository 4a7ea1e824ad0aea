"""Trainer ``gam``: co-training of Graph Agreement Models (Stretcu et al., NeurIPS 2019).

Iteration 0 trains the plain classifier (the baseline). Every later iteration

1. trains the agreement model g on pairs of labeled nodes (original plus self-labeled),
2. trains the classifier f with the ``agreement`` regularizer, which g now weights,
3. self-labels up to ``num_samples_to_label`` of the unlabeled nodes f is most confident
   about (never validation nodes; test nodes only in the transductive setting,
   ``inductive: false``, as the reference does), extending the labeled set both models
   learn from in the next iteration.

It stops when a round labels nothing new or after ``max_iterations``; the reported
accuracies are those of the iteration with the best validation accuracy (the first of
equals), as in the reference implementation (tensorflow/neural-structured-learning,
``research/gam``).
"""

from __future__ import annotations

import math
import time
from typing import Annotated

import torch

import zoo
from zoo.contracts import ClassifiesNodes, UsesAgreementModel
from zoo.engine import better
from zoo.schema import Ge, Kind, Le
from zoo_plugins.trainers.agreement_model import (
    AgreementModel,
    AgreementOptions,
    edge_and_random_agreement_pairs,
    graph_agreement_pairs,
    propagate_features,
    random_agreement_pairs,
    train_agreement_model,
)
from zoo_plugins.trainers.self_label import class_quotas, select_self_labels

PHASES = ("classifier", "agreement", "self_label", "evaluation")
RENAMED = {f"agreement_{key}": f"agreement.{key}" for key in (
    "encoder", "batch_size", "steps", "patience", "eval_every", "val_ratio", "pairs",
    "propagation")}
RENAMED.update({"aggregation": "agreement.aggregation",
                "projection_dim": "agreement.projection_dim",
                "predictor_hidden": "agreement.predictor_hidden",
                "agreement_lr": "agreement.optimizer.lr",
                "agreement_weight_decay": "agreement.optimizer.weight_decay",
                "lr": "optimizer.lr", "weight_decay": "optimizer.weight_decay",
                "batch_size": "batches.batch_size", "threads": "/threads"})


class GAM:
    """Graph Agreement Models: co-train the classifier with an agreement model and self-labels.

    Needs a regularizer that uses an agreement model (``zoo.UsesAgreementModel``: the
    ``agreement`` regularizer; its ``use_graph: false`` gives the paper's GAM*) and a
    classification task. Any classifier works (the config's ``encoder``/``model``), on
    any batch source (``batches``: the whole graph, or mini-batches). Steps and patience
    count optimizer steps; one engine epoch is ``eval_every`` steps, followed by an
    evaluation.

    Args:
        steps: maximum optimizer steps of the classifier per iteration.
        patience: stop the classifier after this many steps without a better validation
            accuracy (null: train all steps).
        eval_every: classifier steps between two evaluations.
        optimizer: the classifier's optimizer section.
        batches: the classifier's batch source section (full_graph, or mini-batches:
            neighbor_sampler for node models, packed_neighbors for encoders).
        max_iterations: co-training iterations after the baseline (iteration 0).
        num_samples_to_label: nodes self-labeled per iteration at most.
        min_confidence: least top-class probability for a node to be self-labeled.
        keep_label_proportions: split each round's self-labels across classes in the
            proportions of the original labeled nodes.
        warm_start_classifier: continue from the previous iteration's classifier instead
            of re-initializing it.
        warm_start_agreement: continue from the previous agreement model.
        inductive: true (the default): self-label only nodes outside the validation and
            test sets. false: the transductive setting of the reference implementation
            (its default), where test nodes, whose features and edges the classifier
            already sees, may be self-labeled as well; their true labels are never read,
            and validation nodes are never self-labeled.
        agreement: the agreement model and how it trains (encoder, aggregation,
            optimizer, pairs, ...).
        threads: unused, kept so that the configs of earlier runs still load; CPU
            threads are the top-level ``threads`` setting.
    """

    renamed_params = RENAMED
    # A quick run for zoo.testing's conformance check: two iterations of a few steps.
    sample_config = {"steps": 10, "patience": None, "max_iterations": 1,
                     "num_samples_to_label": 10,
                     "agreement": {"steps": 10, "eval_every": 5, "batch_size": 16}}
    sample_experiment = {"regularizers": [{"name": "agreement"}]}

    def __init__(self, *, steps: Annotated[int, Ge(1)] = 2000,
                 patience: Annotated[int, Ge(1)] | None = 500,
                 eval_every: Annotated[int, Ge(1)] = 5,
                 optimizer: Annotated[dict, Kind("optimizer")] = {  # noqa: B006
                     "name": "adam", "lr": 0.001, "weight_decay": 0.0},
                 batches: Annotated[dict, Kind("batch_source")] = {  # noqa: B006
                     "name": "full_graph"},
                 max_iterations: Annotated[int, Ge(0)] = 10,
                 num_samples_to_label: Annotated[int, Ge(0)] = 200,
                 min_confidence: Annotated[float, Ge(0), Le(1)] = 0.4,
                 keep_label_proportions: bool = True, warm_start_classifier: bool = False,
                 warm_start_agreement: bool = False, inductive: bool = True,
                 agreement: AgreementOptions = AgreementOptions(),  # noqa: B008
                 threads: Annotated[int, Ge(1)] | None = None) -> None:
        self.steps, self.patience, self.eval_every = steps, patience, eval_every
        self.optimizer, self.batches = optimizer, batches
        self.max_iterations = max_iterations
        self.num_samples_to_label, self.min_confidence = num_samples_to_label, min_confidence
        self.keep_label_proportions = keep_label_proportions
        self.warm_start_classifier = warm_start_classifier
        self.warm_start_agreement = warm_start_agreement
        self.inductive = inductive
        self.agreement = agreement
        self.agreement_features: torch.Tensor | None = None
        self.timings: dict[str, float] = dict.fromkeys(PHASES, 0.0)
        self.self_label_accuracy = float("nan")
        self.agreement_val_pairs = 0

    def check_setup(self, task: zoo.Task, regularizers: list[torch.nn.Module]) -> None:
        """A ConfigError, before anything runs, when the config lacks what GAM needs."""
        if not any(isinstance(r, UsesAgreementModel) for r in regularizers):
            raise zoo.ConfigError("trainer 'gam' needs the agreement regularizer; add "
                                  "'regularizers: [{name: agreement}]' to the config")
        if not isinstance(task, ClassifiesNodes):
            raise zoo.ConfigError("trainer 'gam' self-labels nodes with the classifier's "
                                  "class probabilities, so it needs a classification task "
                                  "(task: node_classification)")

    # -- the parts of one iteration -----------------------------------------------------
    def build_agreement_model(self, ctx: zoo.TrainContext) -> AgreementModel:
        """A fresh agreement model with the configured encoder, on the run's device."""
        opts = self.agreement
        encoder = opts.encoder(ctx.data.num_features, None)
        return AgreementModel(encoder, aggregation=opts.aggregation,
                              projection_dim=opts.projection_dim,
                              predictor_hidden=opts.predictor_hidden).to(ctx.runtime.device)

    def _agreement_features(self, ctx: zoo.TrainContext) -> torch.Tensor:
        if self.agreement_features is None:
            hops = self.agreement.propagation
            self.agreement_features = (propagate_features(ctx.graph, ctx.data.features, hops)
                                       if hops > 0 else ctx.data.features)
        return self.agreement_features

    def train_classifier(self, ctx: zoo.TrainContext, model: torch.nn.Module,
                         regularizers: list[torch.nn.Module], labels: torch.Tensor,
                         labeled: torch.Tensor, iteration: int) -> dict[str, float]:
        """Train ``model`` on the current labeled set; return its best-validation metrics."""
        patience = None if not self.patience else max(math.ceil(self.patience /
                                                                 self.eval_every), 1)
        result = ctx.train(model, optimizer=self.optimizer, batches=self.batches,
                           regularizers=regularizers,
                           epochs=max(math.ceil(self.steps / self.eval_every), 1),
                           patience=patience, steps_per_epoch=self.eval_every, labels=labels,
                           labeled=labeled, phase=f"iter {iteration} classifier",
                           record={"iteration": iteration})
        self.timings["classifier"] += result.seconds - result.eval_seconds
        self.timings["evaluation"] += result.eval_seconds
        return result.evaluation

    def train_agreement(self, ctx: zoo.TrainContext, model: AgreementModel,
                        labels: torch.Tensor, labeled: torch.Tensor, use_graph: bool,
                        iteration: int) -> float | None:
        """Train the agreement model on the labeled pairs; its held-out accuracy, or None
        when the labeled set offers no agreeing and disagreeing pairs to learn from."""
        start = time.perf_counter()
        opts = self.agreement
        source = opts.pairs
        if source == "auto":
            source = "edges" if use_graph else "random"
        if source == "random":
            pairs = random_agreement_pairs(labels, labeled, opts.val_ratio)
        else:
            src, dst = ctx.graph.edges()
            make = graph_agreement_pairs if source == "edges" else edge_and_random_agreement_pairs
            pairs = make(src, dst, labels, labeled, opts.val_ratio)
        accuracy, eval_seconds = None, 0.0
        self.agreement_val_pairs = int(pairs.val_target.numel())
        if pairs.trainable:
            accuracy, result = train_agreement_model(
                model, self._agreement_features(ctx), pairs, ctx.engine,
                optimizer=opts.optimizer, batch_size=opts.batch_size, steps=opts.steps,
                patience=opts.patience, eval_every=opts.eval_every,
                phase=f"iter {iteration} agreement", record={"iteration": iteration})
            eval_seconds = result.eval_seconds
        self.timings["evaluation"] += eval_seconds
        self.timings["agreement"] += time.perf_counter() - start - eval_seconds
        return accuracy

    @torch.no_grad()
    def self_label(self, ctx: zoo.TrainContext, model: torch.nn.Module, labels: torch.Tensor,
                   labeled: torch.Tensor, quotas: torch.Tensor | None) -> int:
        """Label the most confident unlabeled nodes in place; how many were labeled."""
        start = time.perf_counter()
        data = ctx.data
        model.eval()
        probs = ctx.task.probabilities(ctx.batch_source(self.batches).infer(model))
        candidates = ~labeled & ~data.val_mask
        if self.inductive:
            candidates &= ~data.test_mask
        nodes, new_labels = select_self_labels(probs, candidates, self.num_samples_to_label,
                                               self.min_confidence, quotas)
        labels[nodes] = new_labels
        labeled[nodes] = True
        self.timings["self_label"] += time.perf_counter() - start
        # For the record only (as the reference logs it): how many self-labels are right.
        self.self_label_accuracy = (float((new_labels == data.labels[nodes]).float().mean())
                                    if nodes.numel() else float("nan"))
        return int(nodes.numel())

    # -- co-training ------------------------------------------------------------------
    def fit(self, ctx: zoo.TrainContext) -> dict[str, float]:
        """Co-train on ``ctx``; the metrics of the best-validation iteration plus the
        baseline's, the agreement model's held-out accuracy and the labeled-set size."""
        return self._cotrain(ctx)

    def _cotrain(self, ctx: zoo.TrainContext) -> dict[str, float]:
        self.timings = dict.fromkeys(PHASES, 0.0)
        self.agreement_features = None
        data, task = ctx.data, ctx.task
        regularizers = ctx.build_regularizers()
        self.check_setup(task, regularizers)
        agreement_regs = [r for r in regularizers if isinstance(r, UsesAgreementModel)]
        use_graph = bool(agreement_regs[0].use_graph)
        for reg in agreement_regs:
            reg.set_agreement_model(None)
        # Labels of nodes outside the labeled set are never read; zero them so that
        # nothing downstream could see a true label by mistake.
        labeled = data.train_mask.clone()
        labels = torch.where(labeled, data.labels, torch.zeros_like(data.labels))
        quotas = (class_quotas(data.labels[labeled], data.num_classes,
                               self.num_samples_to_label)
                  if self.keep_label_proportions else None)

        model, agreement_model = None, None
        best: dict[str, float] | None = None
        baseline: dict[str, float] = {}
        agreement_accuracy = float("nan")
        iteration = 0
        best_weights: dict[str, torch.Tensor] | None = None
        for iteration in range(self.max_iterations + 1):
            ctx.engine.set_round(iteration, self.max_iterations + 1)
            started = time.perf_counter()
            agr_acc = None
            if iteration > 0:
                if agreement_model is None or not self.warm_start_agreement:
                    agreement_model = self.build_agreement_model(ctx)
                agr_acc = self.train_agreement(ctx, agreement_model, labels, labeled,
                                               use_graph, iteration)
                if agr_acc is not None:
                    agreement_accuracy = agr_acc
                    for reg in agreement_regs:
                        reg.set_agreement_model(agreement_model,
                                                self._agreement_features(ctx))
            if model is None or not self.warm_start_classifier:
                model = ctx.build_model()
            metrics = self.train_classifier(ctx, model, regularizers, labels, labeled,
                                            iteration)
            if iteration == 0:
                baseline = metrics
            # The first of equally good iterations, as the reference keeps it.
            if better(metrics, best, task.monitor, task.mode):
                best = {**metrics, "iteration": float(iteration)}
                best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
            num_labeled = int(labeled.sum())
            added, self.self_label_accuracy = 0, float("nan")
            if 0 < iteration < self.max_iterations:
                added = self.self_label(ctx, model, labels, labeled, quotas)
            ctx.engine.log({
                "phase": "gam", "iteration": iteration, "labeled": num_labeled,
                "self_labeled": added, "self_label_accuracy": self.self_label_accuracy,
                "agreement_accuracy": agr_acc if agr_acc is not None else float("nan"),
                # Early on the held-out pairs are a handful of labeled-labeled edges, or
                # none (0: the accuracy is the last training batch's).
                "agreement_val_pairs": self.agreement_val_pairs if iteration > 0 else 0,
                **{k: metrics[k] for k in task.report if k in metrics},
                "seconds": round(time.perf_counter() - started, 3)})
            if iteration > 0 and added == 0:
                break
        assert best is not None and best_weights is not None and model is not None
        # The model the run keeps (and saves) is the best iteration's, whose metrics it
        # reports, not the last one's.
        model.load_state_dict(best_weights)
        report = [k for k in task.report if k in baseline]
        return {
            **{k: v for k, v in best.items() if k != "iteration"},
            **{f"baseline_{k}": baseline[k] for k in report},
            "agreement_accuracy": agreement_accuracy,
            "iterations": float(iteration),
            "best_iteration": best["iteration"],
            "labeled": float(labeled.sum()),
            **{f"seconds_{phase}": round(value, 3) for phase, value in self.timings.items()},
        }


@zoo.hookimpl
def zoo_register(registry) -> None:
    registry.add("trainer", "gam", GAM)
