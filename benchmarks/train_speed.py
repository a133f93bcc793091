"""Training images per second: our fold loop vs a plain PyTorch loop, and speed choices.

Same tensors (the 278 real MEGC2019 flow images at 28 px), same ResNet-18
motion-only model, same optimiser, schedule and batch size (paper settings). The
plain loop is what a researcher would write by hand; ours is
:func:`ethnicmer.evaluation.training.train_model`. Issue target: ratio ≥ 0.95.

Ours and plain alternate round by round, so that drift in the machine's load
hits both alike; each figure is the median over rounds.

Speed choices measured in the same run (plain loop unless stated): torch threads
1 vs 2, channels_last memory format, a ``DataLoader`` over a ``TensorDataset``
instead of in-memory indexing, ``torch.compile`` (where it works on this CPU), the
dual-context model (two ResNet-18) for scale, and, for each input size of the
sweep (28, 64, 112 px), one process with 2 torch threads against two processes
with 1 thread each training at the same time (the benchmark's ``executor: process,
workers: 2, threads_per_fold: 1``): throughput of the whole machine.
"""

from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pandas as pd
import torch
from common import real_data, write
from torch.nn import functional as F

from ethnicmer.config import ModelConfig
from ethnicmer.evaluation.inputs import read_images
from ethnicmer.evaluation.training import TrainSettings, build_model, train_model

EPOCHS = 2
ROUNDS = 5
SIZES = (28, 64, 112)


def load_tensors(size: int = 28) -> tuple[torch.Tensor, torch.Tensor]:
    root = real_data() / "megc2019-flow"
    table = pd.read_csv(root / "combined_3_class2_for_optical_flow.csv", dtype=str)
    paths = [
        str(root / "datasets" / "STSNet_whole_norm_u_v_os" / f"{s}_{f} .png")
        for s, f in zip(table["sub"], table["filename_o"], strict=True)
    ]
    flow = torch.from_numpy(read_images(paths, size, "flows"))
    labels = torch.from_numpy(table["label"].astype(int).to_numpy())
    return flow, labels


def plain_loop(
    net: torch.nn.Module,
    flow: torch.Tensor,
    labels: torch.Tensor,
    settings: TrainSettings,
    seed: int,
    channels_last: bool = False,
    loader: bool = False,
) -> None:
    generator = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.Adam(net.parameters(), lr=settings.lr)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimiser, gamma=settings.gamma)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
        flow = flow.contiguous(memory_format=torch.channels_last)
    data = (
        torch.utils.data.DataLoader(
            torch.utils.data.TensorDataset(flow, labels),
            batch_size=settings.batch_size,
            shuffle=True,
            generator=generator,
        )
        if loader
        else None
    )
    for _ in range(settings.epochs):
        net.train()
        batches = (
            data
            if data is not None
            else (
                (flow[b], labels[b])
                for b in torch.split(
                    torch.randperm(len(labels), generator=generator), settings.batch_size
                )
            )
        )
        for x, y in batches:
            if len(y) < 2:
                continue
            optimiser.zero_grad(set_to_none=True)
            loss = F.cross_entropy(net(x)["emotion"], y)
            loss.backward()
            optimiser.step()
        scheduler.step()


def interleaved(runs: dict[str, object], n_images: int) -> dict[str, float]:
    """Images per second of each loop (``n_images`` over the median of ``ROUNDS`` calls),
    the loops alternating round by round."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(ROUNDS):
        for name, run in runs.items():
            start = time.perf_counter()
            run()  # type: ignore[operator]
            times[name].append(time.perf_counter() - start)
    return {name: n_images / float(np.median(t)) for name, t in times.items()}


def throughput(run: object, n_images: int) -> float:
    """Images per second of one loop: ``n_images`` over the median wall time of ``ROUNDS`` calls."""
    return interleaved({"run": run}, n_images)["run"]


def _train_rounds(size: int, threads: int) -> tuple[int, list[float]]:
    """Worker: images per training and ``ROUNDS`` timed trainings (seconds each)."""
    torch.set_num_threads(threads)
    flow, labels = load_tensors(size)
    settings = TrainSettings(epochs=EPOCHS, batch_size=32)
    times = []
    for _ in range(ROUNDS):
        torch.manual_seed(0)
        net = build_model(ModelConfig(name="motion"), 2)
        start = time.perf_counter()
        train_model(net, flow, None, labels, None, settings, 0)
        times.append(time.perf_counter() - start)
    return EPOCHS * len(labels), times


def machine_throughput(size: int, processes: int, threads: int) -> float:
    """Images per second of the whole machine: ``processes`` trainings at once."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=processes, mp_context=context) as pool:
        futures = [pool.submit(_train_rounds, size, threads) for _ in range(processes)]
        results = [f.result() for f in futures]
    return sum(images / float(np.median(times)) for images, times in results)


def main() -> None:
    flow, labels = load_tensors()
    settings = TrainSettings(epochs=EPOCHS, batch_size=32)
    motion = ModelConfig(name="motion")
    dual = ModelConfig(name="dual", context="ethnicity", context_input="flow")
    images = EPOCHS * len(labels)
    results: dict[str, float] = {}

    def fresh(model: ModelConfig = motion) -> torch.nn.Module:
        torch.manual_seed(0)
        return build_model(model, 2)

    for threads in (1, 2):
        torch.set_num_threads(threads)
        pair = interleaved(
            {
                "ours": lambda: train_model(fresh(), flow, None, labels, None, settings, 0),
                "plain": lambda: plain_loop(fresh(), flow, labels, settings, 0),
            },
            images,
        )
        results[f"ours_threads{threads}"] = pair["ours"]
        results[f"plain_threads{threads}"] = pair["plain"]
    torch.set_num_threads(2)
    results["plain_channels_last"] = throughput(
        lambda: plain_loop(fresh(), flow, labels, settings, 0, channels_last=True), images
    )
    results["plain_dataloader"] = throughput(
        lambda: plain_loop(fresh(), flow, labels, settings, 0, loader=True), images
    )
    context = torch.zeros_like(labels)
    results["ours_dual_flow"] = throughput(
        lambda: train_model(fresh(dual), flow, flow, labels, context, settings, 0), images
    )
    try:
        compiled = torch.compile(fresh())
        start = time.perf_counter()
        plain_loop(compiled, flow, labels, TrainSettings(epochs=1), 0)
        results["compile_first_epoch_seconds"] = time.perf_counter() - start
        results["plain_compiled"] = throughput(
            lambda: plain_loop(compiled, flow, labels, settings, 0), images
        )
    except Exception as exc:  # compile needs a C++ toolchain and may fail on CPU builds
        results["compile_error"] = f"{type(exc).__name__}: {str(exc)[:200]}"  # type: ignore[assignment]
    executors = {}
    for size in SIZES:
        one = machine_throughput(size, processes=1, threads=2)
        two = machine_throughput(size, processes=2, threads=1)
        executors[f"{size}px"] = {
            "one_process_2_threads": one,
            "two_processes_1_thread": two,
            "ratio_two_over_one": two / one,
        }
    write(
        "train_speed",
        {
            "images": len(labels),
            "input_size": 28,
            "epochs_per_round": EPOCHS,
            "rounds": ROUNDS,
            "images_per_second": results,
            "ratio_ours_over_plain_threads2": results["ours_threads2"] / results["plain_threads2"],
            "ratio_ours_over_plain_threads1": results["ours_threads1"] / results["plain_threads1"],
            "target_ratio": 0.95,
            "machine_images_per_second_by_executor": executors,
        },
    )


if __name__ == "__main__":
    main()
