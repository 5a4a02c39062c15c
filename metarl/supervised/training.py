"""The few-shot training loop: meta-train, keep the best weights on validation, meta-test.

:func:`run` is what ``scripts/fewshot.py`` calls with a :class:`FewShotConfig`: prototypical
networks or MAML / FOMAML / Meta-SGD on a benchmark of :mod:`metarl.supervised.benchmarks`. The run
folder ``<out>/<timestamp>-fewshot-<dataset>-<method>/`` is laid out like the RL runs
(:mod:`metarl.runlog`): ``config.json``, ``metrics.jsonl`` (one JSON line per iteration and per
validation), ``checkpoints/`` (``last.pt``, ``best.pt`` by validation accuracy, the last few
``iter_*.pt``) and ``test.json`` (the meta-test result).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from metarl.maml import MAML, MetaSGD
from metarl.runlog import RunDir
from metarl.supervised import (
    BENCHMARKS,
    Benchmark,
    ConsecutiveLabels,
    ConvClassifier,
    ConvEmbedding,
    KShots,
    LoadData,
    MetaDataset,
    NWays,
    ProtoNet,
    RemapLabels,
    TaskDataset,
    load_benchmark,
    maml_episode,
    mean_confidence_interval,
    split_episode,
)
from metarl.threads import CpuShare

__all__ = ["METHODS", "FewShotConfig", "check_config", "prepare", "run"]

METHODS = ("protonets", "maml")


@dataclass
class FewShotConfig:
    """Everything a few-shot run depends on; saved as ``config.json`` in the run folder.

    Attributes:
        method: protonets (Snell et al. 2017) or maml (Finn et al. 2017; see --first-order and
            --meta-sgd).
        dataset: glyphs (rendered from local fonts, no download), omniglot or mini-imagenet.
        ways: classes per task (N of N-way).
        shots: support samples per class (K of K-shot).
        queries: query samples per class in meta-training tasks.
        test_queries: query samples per class in validation and test tasks.
        train_ways: classes per meta-training task, 0 for --ways (ProtoNets often train with
            more ways than they test; MAML needs the same).
        iterations: meta-training iterations (outer updates).
        meta_batch: tasks per meta-training iteration; 0 for the method's usual value (1
            episode for ProtoNets as in Snell et al., 32 tasks for MAML as in Finn et al.).
        meta_lr: Adam learning rate of the outer loop.
        inner_lr: MAML: inner-loop learning rate (Meta-SGD: the initial rates).
        inner_steps: MAML: inner gradient steps during meta-training.
        test_inner_steps: MAML: inner gradient steps on validation and test tasks.
        first_order: MAML: first-order approximation (FOMAML).
        meta_sgd: MAML: learn a learning rate per parameter entry (Meta-SGD).
        hidden: filters per conv layer of the conv-4 backbone (64 in the literature).
        eval_every: iterations between validations (0: never; the final weights are tested).
        val_tasks: fixed meta-validation tasks; the weights that do best on them are tested
            (0: no validation, the final weights are tested).
        test_tasks: fixed meta-test tasks for the reported accuracy and its 95 percent interval.
        seed: seed of model initialisation and of the meta-training tasks.
        data_seed: seed of the glyph build, the glyph class split and the fixed validation and
            test tasks (kept apart from --seed so that every training seed meets the same tests).
        glyph_classes: glyphs: number of characters (classes).
        glyph_samples: glyphs: drawings per character.
        data_root: data folder ('' for ~/.cache/metarl/<dataset>).
        download: download missing Omniglot / mini-ImageNet data into the data folder.
        out: folder in which the run folder <time>-fewshot-<dataset>-<method> is created.
        device: torch device, e.g. cpu or cuda.
        threads: torch CPU threads (0: torch's default, lowered to the cores other processes
            leave free).
        workers: DataLoader worker processes that load meta-training tasks (0: in-process).
        progress: show a progress bar.
    """

    method: str = "protonets"
    dataset: str = "glyphs"
    ways: int = 5
    shots: int = 1
    queries: int = 15
    test_queries: int = 15
    train_ways: int = 0
    iterations: int = 2000
    meta_batch: int = 0
    meta_lr: float = 1e-3
    inner_lr: float = 0.4
    inner_steps: int = 1
    test_inner_steps: int = 3
    first_order: bool = False
    meta_sgd: bool = False
    hidden: int = 64
    eval_every: int = 250
    val_tasks: int = 100
    test_tasks: int = 600
    seed: int = 0
    data_seed: int = 0
    glyph_classes: int = 400
    glyph_samples: int = 20
    data_root: str = ""
    download: bool = False
    out: str = "runs"
    device: str = "cpu"
    threads: int = 0
    workers: int = 0
    progress: bool = True


def check_config(cfg: FewShotConfig, bench: Benchmark) -> None:
    """Raise ``ValueError`` naming the fix for a configuration the benchmark cannot serve."""
    positive = ("ways", "shots", "queries", "test_queries", "iterations", "test_tasks", "hidden")
    for name in positive:
        if getattr(cfg, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(cfg, name)}")
    for name in ("meta_batch", "train_ways", "eval_every", "val_tasks", "threads", "workers"):
        if getattr(cfg, name) < 0:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(cfg, name)}")
    if cfg.method == "maml" and cfg.train_ways not in (0, cfg.ways):
        raise ValueError("MAML's classifier head has --ways outputs; leave --train-ways at 0")
    splits = [("meta-train", bench.train, train_ways(cfg), cfg.queries)]
    splits.append(("meta-test", bench.test, cfg.ways, cfg.test_queries))
    if cfg.val_tasks > 0:
        splits.append(("meta-validation", bench.validation, cfg.ways, cfg.test_queries))
    for split, meta, ways, queries in splits:
        if ways > len(meta.labels):
            raise ValueError(
                f"{ways}-way tasks need {ways} classes but the {split} split of {bench.name} has "
                f"{len(meta.labels)}; lower --ways / --train-ways"
                + (" or raise --glyph-classes" if bench.name == "glyphs" else "")
            )
        fewest = min(len(ix) for ix in meta.labels_to_indices.values())
        if cfg.shots + queries > fewest:
            raise ValueError(
                f"tasks need shots + queries = {cfg.shots + queries} samples per class but some "
                f"{split} classes of {bench.name} have only {fewest}; lower --shots / --queries / "
                "--test-queries" + (" or raise --glyph-samples" if bench.name == "glyphs" else "")
            )


def check_names(cfg: FewShotConfig) -> None:
    """Raise ``ValueError`` for an unknown method or dataset, listing the known ones."""
    if cfg.method not in METHODS:
        raise ValueError(f"unknown method {cfg.method!r}; choose --method from {list(METHODS)}")
    if cfg.dataset not in BENCHMARKS:
        raise ValueError(
            f"unknown dataset {cfg.dataset!r}; choose --dataset from {list(BENCHMARKS)}"
        )


def train_ways(cfg: FewShotConfig) -> int:
    """Classes per meta-training task."""
    return cfg.train_ways or cfg.ways


def meta_batch(cfg: FewShotConfig) -> int:
    """Tasks per meta-training iteration."""
    return cfg.meta_batch or {"protonets": 1, "maml": 32}[cfg.method]


def make_tasks(
    meta: MetaDataset, ways: int, shots: int, queries: int, num_tasks: int, seed: int
) -> TaskDataset:
    """N-way (shots + queries)-shot tasks with labels 0..N-1, each class contiguous."""
    transforms = [
        NWays(ways),
        KShots(shots + queries),
        LoadData(),
        RemapLabels(),
        ConsecutiveLabels(),
    ]
    return TaskDataset(meta, transforms, num_tasks=num_tasks, seed=seed, epoch_length=10_000)


def make_learner(cfg: FewShotConfig, bench: Benchmark) -> nn.Module:
    """A :class:`ProtoNet` or a :class:`MAML` / :class:`MetaSGD` around the conv-4 backbone."""
    if cfg.method == "protonets":
        return ProtoNet(ConvEmbedding(bench.channels, cfg.hidden))
    model = ConvClassifier(bench.channels, cfg.ways, bench.image_size, cfg.hidden)
    wrapper = MetaSGD if cfg.meta_sgd else MAML
    return wrapper(model, lr=cfg.inner_lr, first_order=cfg.first_order)


def episode(
    cfg: FewShotConfig, learner: nn.Module, task: tuple[Tensor, Tensor], ways: int, train: bool
) -> tuple[Tensor, Tensor]:
    """Loss and accuracy of one task; differentiable for meta-training when ``train``."""
    x, y = (t.to(cfg.device) for t in task)
    support_x, support_y, query_x, query_y = split_episode(x, y, cfg.shots)
    if isinstance(learner, ProtoNet):
        return learner.episode(support_x, support_y, query_x, query_y, ways)
    assert isinstance(learner, MAML)
    steps = cfg.inner_steps if train else cfg.test_inner_steps
    return maml_episode(
        learner, support_x, support_y, query_x, query_y, steps, first_order=None if train else True
    )


def evaluate(cfg: FewShotConfig, learner: nn.Module, tasks: TaskDataset) -> tuple[float, float]:
    """Mean accuracy over a fixed task set and its 95% confidence half-width."""
    learner.eval()
    accuracies = []
    for i in range(len(tasks)):
        if isinstance(learner, ProtoNet):
            with torch.no_grad():
                _, acc = episode(cfg, learner, tasks[i], cfg.ways, train=False)
        else:  # MAML needs gradients for its inner steps
            _, acc = episode(cfg, learner, tasks[i], cfg.ways, train=False)
        accuracies.append(acc.item())
    learner.train()
    return mean_confidence_interval(accuracies)


def task_stream(cfg: FewShotConfig, tasks: TaskDataset) -> Iterator[tuple[Tensor, Tensor]]:
    """Fresh meta-training tasks forever, from worker processes when ``--workers`` > 0."""
    if cfg.workers == 0:
        while True:
            yield tasks.sample()
    generator = torch.Generator().manual_seed(cfg.seed)
    loader = DataLoader(
        tasks,
        batch_size=None,
        num_workers=cfg.workers,
        persistent_workers=True,
        generator=generator,
    )
    while True:
        yield from loader


def prepare(cfg: FewShotConfig) -> Benchmark:
    """Check the names, load the benchmark and check the configuration against it.

    Raises:
        ValueError, FileNotFoundError: with the fix in the message.
    """
    check_names(cfg)
    bench = load_benchmark(
        cfg.dataset,
        root=cfg.data_root or None,
        download=cfg.download,
        glyph_classes=cfg.glyph_classes,
        glyph_samples=cfg.glyph_samples,
        data_seed=cfg.data_seed,
    )
    check_config(cfg, bench)
    return bench


def method_name(cfg: FewShotConfig) -> str:
    """``protonets``, ``maml``, ``maml-fo``, ``maml-metasgd`` or ``maml-metasgd-fo``."""
    if cfg.method != "maml":
        return cfg.method
    return "maml" + ("-metasgd" if cfg.meta_sgd else "") + ("-fo" if cfg.first_order else "")


def run(cfg: FewShotConfig, bench: Benchmark) -> dict[str, Any]:
    """Meta-train, validate and meta-test as configured; return the ``test.json`` record."""
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    share = None if cfg.threads > 0 else CpuShare()
    torch.manual_seed(cfg.seed)
    config = dataclasses.asdict(cfg)
    run_dir = RunDir.create(cfg.out, f"fewshot-{cfg.dataset}", cfg.method, config)
    learner = make_learner(cfg, bench).to(cfg.device)
    optimizer = torch.optim.Adam(learner.parameters(), lr=cfg.meta_lr)
    ways, batch = train_ways(cfg), meta_batch(cfg)
    train_tasks = make_tasks(bench.train, ways, cfg.shots, cfg.queries, -1, cfg.seed)
    val_tasks = None
    if cfg.val_tasks > 0 and cfg.eval_every > 0:
        val_tasks = make_tasks(
            bench.validation, cfg.ways, cfg.shots, cfg.test_queries, cfg.val_tasks, cfg.data_seed
        )
    stream = task_stream(cfg, train_tasks)
    best_acc, best_iteration = -1.0, cfg.iterations
    train_seconds = 0.0
    bar = tqdm(range(1, cfg.iterations + 1), disable=not cfg.progress, desc="meta-train")
    for iteration in bar:
        if share:
            share.update()
        start = time.perf_counter()
        optimizer.zero_grad()
        loss_sum, acc_sum = 0.0, 0.0
        for _ in range(batch):
            loss, acc = episode(cfg, learner, next(stream), ways, train=True)
            (loss / batch).backward()
            loss_sum += loss.item()
            acc_sum += acc.item()
        optimizer.step()
        seconds = time.perf_counter() - start
        train_seconds += seconds
        row = {
            "iteration": iteration,
            "loss": loss_sum / batch,
            "accuracy": acc_sum / batch,
            "seconds": seconds,
        }
        run_dir.log_metrics(row)
        bar.set_postfix(loss=f"{row['loss']:.3f}", acc=f"{row['accuracy']:.3f}", refresh=False)
        if val_tasks is not None and (
            iteration % cfg.eval_every == 0 or iteration == cfg.iterations
        ):
            val_acc, val_ci = evaluate(cfg, learner, val_tasks)
            run_dir.log_metrics(
                {"iteration": iteration, "val_accuracy": val_acc, "val_ci95": val_ci}
            )
            tqdm.write(
                f"iteration {iteration}: train acc {row['accuracy']:.3f}, "
                f"validation acc {val_acc:.4f} +- {val_ci:.4f}"
            )
            if val_acc > best_acc:
                best_acc, best_iteration = val_acc, iteration
            state = {"agent": learner.state_dict(), "optimizer": optimizer.state_dict()}
            run_dir.save(iteration, {**state, "iteration": iteration}, score=val_acc)
    state = {"agent": learner.state_dict(), "optimizer": optimizer.state_dict()}
    run_dir.save(cfg.iterations, {**state, "iteration": cfg.iterations})
    weights = "last"
    if val_tasks is not None:
        learner.load_state_dict(run_dir.load("best", cfg.device)["agent"])
        weights = "best"
    test_tasks = make_tasks(
        bench.test, cfg.ways, cfg.shots, cfg.test_queries, cfg.test_tasks, cfg.data_seed
    )
    test_start = time.perf_counter()
    test_acc, test_ci = evaluate(cfg, learner, test_tasks)
    result = {
        "method": method_name(cfg),
        "dataset": cfg.dataset,
        "ways": cfg.ways,
        "shots": cfg.shots,
        "test_tasks": cfg.test_tasks,
        "test_classes": len(bench.test.labels),
        "accuracy": test_acc,
        "ci95": test_ci,
        "weights": weights,
        "weights_iteration": best_iteration,
        "best_val_accuracy": best_acc if val_tasks is not None else None,
        "iterations": cfg.iterations,
        "meta_batch": batch,
        "train_seconds": train_seconds,
        "test_seconds": time.perf_counter() - test_start,
    }
    run_dir.write_json("test.json", result)
    print(
        f"{cfg.ways}-way {cfg.shots}-shot meta-test accuracy of {result['method']} on "
        f"{cfg.dataset}: {100 * test_acc:.2f}% +- {100 * test_ci:.2f}% (95% CI, "
        f"{cfg.test_tasks} tasks); training {train_seconds:.0f} s; run folder {run_dir.path}"
    )
    return result
