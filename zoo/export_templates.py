"""The text of the scripts `zoo export` writes: ``string.Template`` pieces that
:mod:`zoo.export` fills in and joins."""

ABOUT = ("Each component is built directly from its module, with $which; nothing here "
         "reads a config or uses the zoo's registry. Seeded by zoo.engine.seed_everything "
         "and building the parts in the order `zoo run` does, it gives the numbers of "
         "`zoo run $run_args` seed for seed (same machine, same threads). Edit it freely.")

HEADER = '''\
# Train $name: a standalone script written by `zoo export` (zoo $version).
#
# Made with:  $command
# Run:        python $script [--seeds N] [--out DIR]
#
$about
"""A training script written by `zoo export` (see the comments above)."""'''

CONSTANTS = '''\
CONFIG = "$name"  # what this script was exported from
DEVICE = $device
RUNTIME = Runtime(DEVICE)  # one process: rank 0 of 1
SEEDS = $seeds  # train seeds 0..SEEDS-1 (--seeds N for others)
THREADS = $threads'''

SECTION = '''\
def section(kind, name, factory, **params):
    """A nested component section as a component receives it (zoo.schema.ComponentSpec):
    called with the kind's inputs (the parameters, for an optimizer), it builds
    ``factory(*inputs, **params)``."""

    def build(kind, config, *inputs, path=""):
        return factory(*inputs, **params)

    return ComponentSpec(kind, {"name": name, **params}, build)'''

COMMON = '''\
def build_data():
    """The dataset, and the graph the model and regularizers read (edge weights in
    edata["weight"]), both on DEVICE."""
$data
    if graph is not None and "weight" not in graph.edata:
        graph.edata["weight"] = torch.ones(graph.num_edges())  # unweighted: every edge 1
    return data.to(DEVICE), (None if graph is None else graph.to(DEVICE))


def build_model(data, task):
    """A freshly initialized model ($model_parts) for the data and the task, on DEVICE."""
    out_dim = int(task.output_size(data))
$model
    return model.to(DEVICE)


def build_regularizers():
    """The regularizers, fresh, on DEVICE, by the name their term is recorded under."""
$regularizers'''

OUTPUTS_ARG = ",\n" + " " * 34 + "outputs_of=outputs_of"  # under training_step's "("
OUTPUTS_OF = '''
    # Regularizers on packed neighbours need a graph-free model's outputs for any nodes.
    inputs_of = getattr(source, "inputs_of", None)
    outputs_of = (lambda ids: model(None, inputs_of(ids))) if inputs_of is not None else None'''

SUPERVISED_BODY = '''\
# The supervised trainer's settings.
EPOCHS = $epochs  # at most
PATIENCE = $patience  # epochs without a better monitored metric before stopping (None: never)
EVAL_EVERY = $eval_every  # evaluate after every this many epochs, and after the last


def build_optimizer(params):
    """The optimizer over the model's and the regularizers' parameters."""
$optimizer


def build_batches(data, graph):
    """Where the training batches come from (and how the model runs for evaluation)."""
$batches
    source.bind(data, graph, RUNTIME)
    return source


@torch.no_grad()
def evaluate(model, source, task, data):
    """The task's metrics (tensors) over every node, the model in eval mode."""
    model.eval()
    return task.evaluate(source.infer(model), data)


def train(model, regularizers, source, task, data, epoch_ms):
    """Train ``model`` for up to EPOCHS epochs, one pass over the batches each; keep the
    weights of the epoch with the best monitored metric and return its metrics."""
    params = [*model.parameters(), *(p for r in regularizers.values() for p in r.parameters())]
    optimizer = build_optimizer(params)$outputs_of
    best, best_epoch, best_weights, step = None, -1, None, 0
    for epoch in range(EPOCHS):
        started = time.perf_counter()
        # A step per batch: forward, the task's loss plus every regularizer's term,
        # backward, update (zoo.engine.training_step). Each term's mean over the epoch.
        totals, count = {}, 0
        for batch in source.epoch(data.labels, data.train_mask,
                                  with_reg_graph=bool(regularizers)):
            terms = training_step(model, batch, task, regularizers, optimizer,
                                  step=step$outputs_arg)
            step, count = step + 1, count + 1
            for name, value in terms.items():
                totals[name] = totals[name] + value if name in totals else value
        losses = {name: value / count for name, value in totals.items()}
        epoch_ms.append((time.perf_counter() - started) * 1000.0)
        if (epoch + 1) % EVAL_EVERY and epoch != EPOCHS - 1:
            continue
        evaluated = evaluate(model, source, task, data)
        metrics = to_floats({**losses, **evaluated})
        # Better: a better task.monitor (by task.mode), a tie going to the lower tie_break.
        if better(metrics, best, task.monitor, task.mode, task.tie_break):
            best, best_epoch = metrics, epoch
            best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if PATIENCE is not None and epoch - best_epoch >= PATIENCE:
            break  # early stopping
    model.load_state_dict(best_weights)
    return {**{k: best[k] for k in evaluated}, "best_epoch": float(best_epoch)}


$one_seed'''

ONE_SEED = '''\
def train_one_seed(seed, data, graph, task, epoch_ms):
    """Train one model from ``seed`` (what the supervised trainer does); its metrics and
    the model."""
    seed_everything(seed)
    model = build_model(data, task)
    regularizers = build_regularizers()
    source = build_batches(data, graph)
    return train(model, regularizers, source, task, data, epoch_ms), model'''

BASELINE_SEED = '''\
def train_one_seed(seed, data, graph, task, epoch_ms):
    """Train the baseline (no regularizers) and then the regularized model from ``seed``;
    the regularized model's metrics with baseline_<metric> and gain, and the model."""
    seed_everything(seed)
    baseline_model = build_model(data, task)
    source = build_batches(data, graph)
    baseline = train(baseline_model, {}, source, task, data, epoch_ms)
    # Seeded again: the regularized model starts from the baseline's initial weights and
    # draws the numbers it would draw without a baseline.
    seed_everything(seed)
    model = build_model(data, task)
    regularizers = build_regularizers()
    metrics = train(model, regularizers, source, task, data, epoch_ms)
    report = [k for k in task.report if k in baseline]
    shown = [*report, *(k for k in (task.monitor,) if k in baseline and k not in report)]
    metrics.update({f"baseline_{k}": baseline[k] for k in shown})
    if report:
        sign = 1.0 if task.mode == "max" else -1.0
        metrics["gain"] = sign * (metrics[report[0]] - baseline[report[0]])
    return metrics, model'''

TRAINER_BODY = '''\
def build_trainer():
    """The $trainer trainer with the config's settings."""
$build


def train_one_seed(seed, data, graph, task, epoch_ms):
    """Train from ``seed`` by the $trainer trainer's own loop, its fit(), given a
    TrainContext built here as `zoo run` builds it; its metrics and the model.
    The loop: $module."""
    seed_everything(seed)
    trainer = build_trainer()
    models = []  # every model the trainer builds: the last one is the trained model

    def new_model():
        models.append(build_model(data, task))
        return models[-1]

    engine = Engine()  # runs the trainer's epoch loops (Engine(log=print) shows each epoch)
    ctx = TrainContext(data=data, graph=graph, seed=seed, runtime=RUNTIME, task=task,
                       engine=engine, build_model=new_model,
                       build_regularizers=lambda: list(build_regularizers().values()))
    metrics = to_floats(trainer.fit(ctx))
    epoch_ms.extend(engine.epoch_ms)
    return metrics, models[-1]'''

MAIN = '''\
def save_weights(model, path):
    """The trained weights (on the CPU), written through a temporary file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, tmp)
    tmp.replace(path)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=SEEDS, help="train seeds 0..N-1")
    parser.add_argument("--out", type=Path, help="folder for summary.json and weights/")
    args = parser.parse_args()
    if args.seeds < 1:
        parser.error(f"--seeds must be a whole number >= 1, got {args.seeds}")
    if args.out is not None and (args.out / "summary.json").exists():
        parser.error(f"{args.out} already holds a run; choose another --out")
    if THREADS is not None:
        torch.set_num_threads(THREADS)
    started = time.perf_counter()
    task = $task
    data, graph = build_data()
    seeds, per_seed, epoch_ms = list(range(args.seeds)), [], []
    for seed in seeds:
        metrics, model = train_one_seed(seed, data, graph, task, epoch_ms)
        per_seed.append(metrics)
        shown = "  ".join(f"{k} {metrics[k]:.4f}" for k in task.report if k in metrics)
        print(f"seed {seed}: {shown}", flush=True)
        if args.out is not None:
            save_weights(model, args.out / "weights" / f"seed-{seed}.pt")
    task_info = {"name": $task_name, "monitor": task.monitor, "mode": task.mode,
                 "report": list(task.report)}
    summary = summarize({"exported_from": CONFIG}, seeds, per_seed, epoch_ms,
                        time.perf_counter() - started, task_info)
    # The task's reported metrics, and the trainer's of the same kind (baseline_...).
    suffixes = tuple(k.rpartition("_")[2] for k in task.report)
    for name, m in summary["metrics"].items():
        if name in task.report or name.endswith(suffixes):
            print(f"{name}: {m['mean']:.4f} ± {m['std']:.4f} over {len(m['values'])} seed(s)")
    if args.out is not None:
        atomic_write(args.out / "summary.json", json.dumps(summary, indent=2) + "\\n")
        print(f"summary written to {args.out / 'summary.json'}")


if __name__ == "__main__":
    main()'''
