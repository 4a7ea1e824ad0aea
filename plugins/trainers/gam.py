"""Trainer ``gam``: co-training of Graph Agreement Models (Stretcu et al., NeurIPS 2019).

Iteration 0 trains the plain classifier (the baseline). Every later iteration

1. trains the agreement model g on pairs of labeled nodes (original plus self-labeled),
2. trains the classifier f with the ``agreement`` regularizer, which g now weights,
3. self-labels up to ``num_samples_to_label`` of the unlabeled nodes f is most confident
   about (never validation or test nodes), extending the labeled set both models learn
   from in the next iteration.

It stops when a round labels nothing new or after ``max_iterations``; the reported
accuracies are those of the iteration with the best validation accuracy (the first of
equals), as in the reference implementation (tensorflow/neural-structured-learning,
``research/gam``).
"""

from __future__ import annotations

import math
import time
from typing import Annotated, Literal

import torch

import zoo
from zoo.engine import (
    Metrics,
    TrainContext,
    evaluate_full_graph,
    full_graph_step,
    torch_threads,
)
from zoo.errors import ConfigError
from zoo.schema import Kind
from zoo_plugins.trainers.agreement_model import (
    Aggregation,
    AgreementModel,
    edge_and_random_agreement_pairs,
    graph_agreement_pairs,
    propagate_features,
    random_agreement_pairs,
    train_agreement_model,
)
from zoo_plugins.trainers.self_label import class_quotas, select_self_labels

PHASES = ("classifier", "agreement", "self_label", "evaluation")
AgreementSource = Literal["auto", "edges", "random", "edges_and_random"]


class GAM:
    """Graph Agreement Models: co-train the classifier with an agreement model and self-labels.

    Needs the ``agreement`` regularizer in the config's ``regularizers`` (its
    ``use_graph: false`` gives the paper's GAM*). Any classifier works (the config's
    ``encoder``/``model``). Steps and patience count optimizer steps; one engine epoch
    is ``eval_every`` steps, followed by an evaluation.

    Args:
        lr: Adam learning rate of the classifier.
        weight_decay: L2 penalty on the classifier's parameters.
        steps: maximum optimizer steps of the classifier per iteration.
        patience: stop the classifier after this many steps without a better validation
            accuracy (null: train all steps).
        eval_every: classifier steps between two evaluations.
        batch_size: labeled nodes in the cross-entropy of one step (null: all of them).
        max_iterations: co-training iterations after the baseline (iteration 0).
        num_samples_to_label: nodes self-labeled per iteration at most.
        min_confidence: least top-class probability for a node to be self-labeled.
        keep_label_proportions: split each round's self-labels across classes in the
            proportions of the original labeled nodes.
        warm_start_classifier: continue from the previous iteration's classifier instead
            of re-initializing it.
        warm_start_agreement: continue from the previous agreement model.
        agreement_encoder: encoder section of the agreement model, shared by both nodes
            (built with no output size).
        aggregation: how the agreement model merges the two embeddings: 'dist'
            (element-wise squared difference), 'add', 'concat', or 'project_*' (each
            embedding first projected by a learned layer).
        projection_dim: output size of the projection for 'project_*' aggregations.
        predictor_hidden: hidden units of the agreement predictor (0: linear).
        agreement_lr: Adam learning rate of the agreement model (the reference's 0.001
            barely moves it from 0.5 on row-normalized features in 2000 steps).
        agreement_weight_decay: L2 penalty on the agreement model's parameters.
        agreement_batch_size: pairs per agreement step (half agreeing, half not).
        agreement_steps: maximum optimizer steps of the agreement model per iteration.
        agreement_patience: stop the agreement model after this many steps without a
            better held-out accuracy.
        agreement_eval_every: agreement steps between two evaluations.
        agreement_val_ratio: share of the labeled pairs (or nodes, without the graph)
            held out to measure the agreement model's accuracy.
        agreement_pairs: what the agreement model learns from: 'edges' (labeled-labeled
            edges, topped up with random disagreeing labeled pairs; the paper's GAM),
            'random' (random labeled pairs; GAM*), 'edges_and_random' (both in every
            batch), or 'auto' (edges, or random pairs when the agreement regularizer
            has use_graph false).
        agreement_propagation: average the features the agreement model sees over this
            many hops of the graph first (symmetric-normalized adjacency with self-loops,
            as SGC); 0 gives it the raw node features, as in the paper.
        threads: torch CPU threads while this trainer runs, restored afterwards (null:
            leave torch's setting). On a shared machine 1 is often many times faster:
            OpenMP threads wait at every operation for a peer the OS has descheduled.
    """

    def __init__(self, *, lr: float = 0.001, weight_decay: float = 0.0, steps: int = 2000,
                 patience: int | None = 500, eval_every: int = 5,
                 batch_size: int | None = None, max_iterations: int = 10,
                 num_samples_to_label: int = 200, min_confidence: float = 0.4,
                 keep_label_proportions: bool = True, warm_start_classifier: bool = False,
                 warm_start_agreement: bool = False,
                 agreement_encoder: Annotated[dict, Kind("encoder")] = {  # noqa: B006
                     "name": "mlp", "hidden": 128, "layers": 1, "dropout": 0.0,
                     "activation": "leaky_relu"},
                 aggregation: Aggregation = "dist", projection_dim: int = 64,
                 predictor_hidden: int = 0, agreement_lr: float = 0.01,
                 agreement_weight_decay: float = 0.0, agreement_batch_size: int = 128,
                 agreement_steps: int = 2000, agreement_patience: int = 500,
                 agreement_eval_every: int = 10, agreement_val_ratio: float = 0.1,
                 agreement_pairs: AgreementSource = "auto", agreement_propagation: int = 0,
                 threads: int | None = None) -> None:
        for name, value in (("steps", steps), ("eval_every", eval_every),
                            ("agreement_steps", agreement_steps),
                            ("agreement_eval_every", agreement_eval_every),
                            ("agreement_batch_size", agreement_batch_size)):
            if value < 1:
                raise ConfigError(f"trainer 'gam': {name} must be >= 1, got {value}")
        if max_iterations < 0 or num_samples_to_label < 0 or agreement_propagation < 0:
            raise ConfigError("trainer 'gam': max_iterations, num_samples_to_label and "
                              "agreement_propagation must be >= 0")
        if threads is not None and threads < 1:
            raise ConfigError(f"trainer 'gam': threads must be >= 1 or null, got {threads}")
        if not 0.0 <= agreement_val_ratio < 1.0:
            raise ConfigError(f"trainer 'gam': agreement_val_ratio must be in [0, 1), got "
                              f"{agreement_val_ratio}")
        self.lr, self.weight_decay = lr, weight_decay
        self.steps, self.patience, self.eval_every = steps, patience, eval_every
        self.batch_size = batch_size
        self.max_iterations = max_iterations
        self.num_samples_to_label, self.min_confidence = num_samples_to_label, min_confidence
        self.keep_label_proportions = keep_label_proportions
        self.warm_start_classifier = warm_start_classifier
        self.warm_start_agreement = warm_start_agreement
        self.agreement_encoder = dict(agreement_encoder)
        self.agreement_options = {"aggregation": aggregation, "projection_dim": projection_dim,
                                  "predictor_hidden": predictor_hidden}
        self.agreement_lr, self.agreement_weight_decay = agreement_lr, agreement_weight_decay
        self.agreement_batch_size = agreement_batch_size
        self.agreement_steps, self.agreement_patience = agreement_steps, agreement_patience
        self.agreement_eval_every = agreement_eval_every
        self.agreement_val_ratio = agreement_val_ratio
        self.agreement_propagation = agreement_propagation
        self.agreement_pairs = agreement_pairs
        self.agreement_features: torch.Tensor | None = None
        self.threads = threads
        self.timings: dict[str, float] = dict.fromkeys(PHASES, 0.0)
        self.self_label_accuracy = float("nan")
        self.agreement_val_pairs = 0

    # -- the parts of one iteration -----------------------------------------------------
    def build_agreement_model(self, ctx: TrainContext) -> AgreementModel:
        """A fresh agreement model with the configured encoder."""
        encoder = ctx.build("encoder", self.agreement_encoder, ctx.data.num_features, None)
        return AgreementModel(encoder, **self.agreement_options)

    def _agreement_features(self, ctx: TrainContext) -> torch.Tensor:
        if self.agreement_features is None:
            self.agreement_features = (
                propagate_features(ctx.graph, ctx.data.features, self.agreement_propagation)
                if self.agreement_propagation > 0 else ctx.data.features)
        return self.agreement_features

    def train_classifier(self, ctx: TrainContext, model: torch.nn.Module,
                         regularizers: list[torch.nn.Module], labels: torch.Tensor,
                         labeled: torch.Tensor, iteration: int) -> Metrics:
        """Train ``model`` on the current labeled set; return its best-validation metrics."""
        params = list(model.parameters()) + [p for r in regularizers for p in r.parameters()]
        optimizer = torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)
        labeled_idx = labeled.nonzero().squeeze(1)
        batch = self.batch_size
        counter = {"step": 0}

        def train_step(epoch: int) -> Metrics:
            total: dict[str, float] = {}
            for _ in range(self.eval_every):
                idx = labeled_idx
                if batch is not None and batch < labeled_idx.numel():
                    idx = labeled_idx[torch.randperm(labeled_idx.numel())[:batch]]
                metrics = full_graph_step(model, optimizer, ctx, regularizers, idx, labels,
                                          labeled, counter["step"])
                counter["step"] += 1
                for k, v in metrics.items():
                    total[k] = total.get(k, 0.0) + v / self.eval_every
            return total

        def evaluate() -> Metrics:
            start = time.perf_counter()
            metrics = evaluate_full_graph(model, ctx)
            self.timings["evaluation"] += time.perf_counter() - start
            return metrics

        patience = None if not self.patience else max(math.ceil(self.patience /
                                                                 self.eval_every), 1)
        start, eval_before = time.perf_counter(), self.timings["evaluation"]
        result = ctx.engine.fit(model, train_step=train_step, evaluate=evaluate,
                                epochs=max(math.ceil(self.steps / self.eval_every), 1),
                                patience=patience, phase=f"iter {iteration} classifier",
                                record={"iteration": iteration})
        self.timings["classifier"] += (time.perf_counter() - start
                                       - (self.timings["evaluation"] - eval_before))
        return result.best

    def train_agreement(self, ctx: TrainContext, model: AgreementModel, labels: torch.Tensor,
                        labeled: torch.Tensor, use_graph: bool, iteration: int) -> float | None:
        """Train the agreement model on the labeled pairs; its held-out accuracy, or None
        when the labeled set offers no agreeing and disagreeing pairs to learn from."""
        start, eval_before = time.perf_counter(), self.timings["evaluation"]
        source = self.agreement_pairs
        if source == "auto":
            source = "edges" if use_graph else "random"
        if source == "random":
            pairs = random_agreement_pairs(labels, labeled, self.agreement_val_ratio)
        else:
            src, dst = ctx.graph.edges()
            make = graph_agreement_pairs if source == "edges" else edge_and_random_agreement_pairs
            pairs = make(src, dst, labels, labeled, self.agreement_val_ratio)
        accuracy = None
        self.agreement_val_pairs = int(pairs.val_target.numel())
        if pairs.trainable:
            accuracy = train_agreement_model(
                model, self._agreement_features(ctx), pairs, ctx.engine, lr=self.agreement_lr,
                weight_decay=self.agreement_weight_decay,
                batch_size=self.agreement_batch_size, steps=self.agreement_steps,
                patience=self.agreement_patience, eval_every=self.agreement_eval_every,
                phase=f"iter {iteration} agreement", record={"iteration": iteration},
                timer=self.timings)
        self.timings["agreement"] += (time.perf_counter() - start
                                      - (self.timings["evaluation"] - eval_before))
        return accuracy

    @torch.no_grad()
    def self_label(self, ctx: TrainContext, model: torch.nn.Module, labels: torch.Tensor,
                   labeled: torch.Tensor, quotas: torch.Tensor | None) -> int:
        """Label the most confident unlabeled nodes in place; how many were labeled."""
        start = time.perf_counter()
        data = ctx.data
        model.eval()
        probs = torch.softmax(model(ctx.graph, data.features).logits, dim=-1)
        candidates = ~labeled & ~data.val_mask & ~data.test_mask
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
    def fit(self, ctx: TrainContext) -> Metrics:
        """Co-train on ``ctx``; the metrics of the best-validation iteration plus the
        baseline's, the agreement model's held-out accuracy and the labeled-set size."""
        with torch_threads(self.threads):
            return self._cotrain(ctx)

    def _cotrain(self, ctx: TrainContext) -> Metrics:
        self.timings = dict.fromkeys(PHASES, 0.0)
        self.agreement_features = None
        data = ctx.data
        regularizers = ctx.build_regularizers()
        agreement_regs = [r for r in regularizers if hasattr(r, "set_agreement_model")]
        if not agreement_regs:
            raise ConfigError("trainer 'gam' needs the agreement regularizer; add "
                              "'regularizers: [{name: agreement}]' to the config")
        use_graph = bool(getattr(agreement_regs[0], "use_graph", True))
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
        baseline: Metrics = {}
        agreement_accuracy = float("nan")
        iteration = 0
        for iteration in range(self.max_iterations + 1):
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
            if best is None or metrics["val_accuracy"] > best["val_accuracy"]:
                best = {**metrics, "iteration": float(iteration)}
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
                "val_accuracy": metrics["val_accuracy"],
                "test_accuracy": metrics["test_accuracy"],
                "seconds": round(time.perf_counter() - started, 3)})
            if iteration > 0 and added == 0:
                break
        assert best is not None
        return {
            "test_accuracy": best["test_accuracy"],
            "val_accuracy": best["val_accuracy"],
            "baseline_test_accuracy": baseline["test_accuracy"],
            "baseline_val_accuracy": baseline["val_accuracy"],
            "agreement_accuracy": agreement_accuracy,
            "iterations": float(iteration),
            "best_iteration": best["iteration"],
            "labeled": float(labeled.sum()),
            **{f"seconds_{phase}": round(value, 3) for phase, value in self.timings.items()},
        }


@zoo.hookimpl
def zoo_register(registry) -> None:
    registry.add("trainer", "gam", GAM)
