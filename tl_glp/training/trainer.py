"""``train``: fit a :class:`~tl_glp.GenerativePrior` to activations, resumably, on one or many devices.

Example (a few steps on random data, in memory):
    >>> import torch
    >>> from tl_glp import GenerativePrior, TrainConfig, train
    >>> acts = torch.randn(2048, 8)
    >>> prior = GenerativePrior.from_activations(acts, n_blocks=1)
    >>> result = train(prior, acts, TrainConfig(batch_size=128, lr=1e-3, max_steps=5, progress=False, eval_every=0))
    >>> result.steps
    5
"""

from __future__ import annotations

import inspect
import json
import math
import queue
import shutil
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from tl_glp.activations.sources import ActivationSource, Batch, as_source
from tl_glp.core import _io
from tl_glp.core._plot import pyplot, save_figure
from tl_glp.core.flow import add_noise, draw_noise_and_times, velocity_target
from tl_glp.core.prior import GenerativePrior
from tl_glp.training import accel
from tl_glp.training import checkpoint as ckpt
from tl_glp.training import distributed as dist
from tl_glp.training.config import TrainConfig
from tl_glp.training.metrics import frechet_distance
from tl_glp.training.schedule import lr_factor

METRICS_FILE = "metrics.jsonl"
CONFIG_FILE = "train_config.json"


@dataclass
class TrainResult:
    """What :func:`train` returns: the trained prior and the logged metrics."""

    prior: GenerativePrior
    steps: int
    metrics: list[dict[str, Any]] = field(default_factory=list)
    out_dir: Path | None = None
    resumed_from: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    """Wall time of this call by phase: ``steps`` (the optimisation loop itself), ``eval``
    (validation loss and FD), ``checkpoint`` (writing checkpoints and the final prior) and ``setup``."""

    @property
    def final_loss(self) -> float:
        losses = [m["loss"] for m in self.metrics if "loss" in m]
        return losses[-1] if losses else float("nan")

    def plot(self, path: str | Path) -> Path:
        """Save the loss curve (train and validation) as a PNG."""
        return plot_losses(self.metrics, Path(path))


class _LossModule(nn.Module):
    """Wraps the flow loss in a ``forward`` so DistributedDataParallel can synchronise gradients."""

    def __init__(self, prior: GenerativePrior) -> None:
        super().__init__()
        self.prior = prior

    def forward(self, z0: Tensor, eps: Tensor, t: Tensor, depth: Tensor | None) -> Tensor:
        return self.prior.flow_loss(z0, eps, t, depth)


def train(
    prior: GenerativePrior,
    source: Any,
    cfg: TrainConfig | None = None,
    out_dir: str | Path | None = None,
    resume: bool = True,
    **overrides: Any,
) -> TrainResult:
    """Train ``prior`` on ``source`` (a tensor, an ``ActivationCache`` or an activation store).

    ``overrides`` set :class:`~tl_glp.TrainConfig` fields, e.g. ``train(prior, cache, max_steps=500)``.

    With ``out_dir`` the run writes resumable checkpoints (every ``cfg.checkpoint_every`` steps),
    ``metrics.jsonl`` and ``loss.png``, and saves the final prior there
    (``GenerativePrior.from_pretrained(out_dir)``). With ``resume=True`` a second call on the same
    ``out_dir`` continues from the newest whole checkpoint and ends with the same weights as an
    uninterrupted run (a folder holding another run, on other data or settings, is refused);
    ``resume=False`` starts over and deletes the folder's old checkpoints. Under ``torchrun`` the global batch is split over the processes (DDP):
    from a store or tensor each process reads only its slice of every global batch.

    ``source`` may be a :class:`~tl_glp.activations.streaming.StreamingActivations`: the model runs
    over the documents as training consumes them (``cfg.max_steps`` is required; validation uses the
    stream's held-out rows; under torchrun each process streams its own share of the documents, and when
    any process runs out all of them stop at that step with one :class:`StreamExhausted` error).
    Its checkpoints record each process's stream position; see that module for what a resume
    reproduces exactly.
    """
    call_start = time.perf_counter()
    cfg = cfg or TrainConfig()
    cfg = cfg.replace(**overrides) if overrides else cfg
    src = as_source(source)
    streaming = bool(getattr(src, "is_streaming", False))
    _check_compatible(prior, src)
    resuming = out_dir is not None and resume and bool(ckpt.list_checkpoints(Path(out_dir)))
    if not resuming and bool(torch.all(prior.mean == 0)) and bool(torch.all(prior.var == 1)):
        prior.fit_normalizer(src)  # a never-fitted normaliser: fit it to this data (a stream: its warm-up)
    world, rank = dist.world_size(), dist.rank()
    if cfg.batch_size % world:
        raise ValueError(f"batch_size {cfg.batch_size} must divide evenly over {world} processes.")
    device = dist.rank_device(cfg.device)  # "cuda" / None under torchrun: cuda:LOCAL_RANK
    if device.type == "cuda" and world > 1:
        torch.cuda.set_device(device)  # NCCL collectives (barrier, gathers) run on the current device
    use_bf16 = accel.use_autocast(device, cfg.bf16)
    prior.to(device).train()
    out = Path(out_dir) if out_dir is not None else None

    if streaming:
        if cfg.max_steps is None:
            raise ValueError(
                "Training from a stream needs TrainConfig.max_steps: a stream has no length to make an epoch of."
            )
        val_src = src.validation
        train_rows, val_rows, per_epoch = np.arange(0), np.arange(len(val_src) if val_src is not None else 0), 1
    else:
        val_src = src
        train_rows, val_rows = src.split(cfg.val_fraction, cfg.max_val_rows)
        per_epoch = len(train_rows) * src.n_hooks // cfg.batch_size
        if per_epoch < 1:
            raise ValueError(
                f"Only {len(train_rows) * src.n_hooks} training examples: fewer than one batch of {cfg.batch_size}. Lower batch_size or collect more."
            )
    total = cfg.max_steps or per_epoch
    hook_layers = _hook_layers(prior, src)

    optimizer = torch.optim.AdamW(
        prior.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay, **accel.optimizer_options(device)
    )
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    state: dict[str, Any] = {"step": 0, "epoch": 0, "batch": 0}
    fingerprint = _fingerprint(prior, src, cfg, total, world)
    if out is not None and resume:
        found = ckpt.list_checkpoints(out)
        if found:
            _check_same_run(out, fingerprint)
            state = ckpt.load_checkpoint(found[-1], prior, optimizer, generator)
            state = {k: v for k, v in state.items() if k in ("step", "epoch", "batch", "stream")}
            prior.cfg.statistics = _io.read_json(found[-1] / "cfg.json").get("statistics", prior.cfg.statistics)
    if out is not None and not resume and rank == 0:
        shutil.rmtree(
            out / "checkpoints", ignore_errors=True
        )  # starting over: old checkpoints must not be resumed later
    start_step = state["step"]
    metrics = _read_metrics(out, upto=start_step) if out is not None else []
    if world > 1 and out is not None:
        dist.barrier()  # every rank has read the folder (fingerprint, checkpoint, metrics) before rank 0 rewrites it
    if rank == 0 and out is not None:
        out.mkdir(parents=True, exist_ok=True)
        _write_metrics(out, metrics)
        with _io.atomic_path(out / CONFIG_FILE) as tmp:
            tmp.write_text(
                json.dumps(
                    {**cfg.to_dict(), "source": src.describe(), "fingerprint": fingerprint}, indent=2, default=str
                )
            )
    loss_module: nn.Module = _LossModule(prior)
    if world > 1:
        loss_module = data_parallel(loss_module, device)
    loss_module = accel.compile_module(loss_module, cfg.compile, cfg.compile_backend)
    wandb_run = _wandb(cfg, rank)

    depth = accel.prefetch_depth(cfg.prefetch, device, src)
    if streaming:
        stream_state = state["stream"][rank] if "stream" in state else None
        batches = _prefetch(
            accel.pinned(_stream_batches(src, cfg, stream_state, rank, world), device, cfg.pin_memory), depth
        )
    else:
        batches = _prefetch(
            accel.pinned(
                _batch_stream(src, train_rows, cfg, state["epoch"], state["batch"], per_epoch, rank, world),
                device,
                cfg.pin_memory,
            ),
            depth,
        )  # pinned in the prefetch thread
    votes = dist.cpu_group() if streaming and world > 1 else None  # ranks agree each step that all have a batch
    layers_on_device = None if hook_layers is None else hook_layers.to(device)
    local = cfg.batch_size // world
    mine = slice(rank * local, (rank + 1) * local)
    bar = tqdm(total=total, initial=start_step, disable=not cfg.progress or rank != 0, desc="train", unit="step")
    window_start, window_rows = time.perf_counter(), 0
    loop_start = window_start
    seconds = {"setup": loop_start - call_start, "eval": 0.0, "checkpoint": 0.0}
    try:
        for step in range(start_step, total):
            data_state, batch = _next_batch(batches, votes)
            eps, t = draw_noise_and_times(cfg.batch_size, prior.cfg.d_input, generator, device)
            layers = (
                None if layers_on_device is None else layers_on_device[batch.hook_idx.to(device, non_blocking=True)]
            )  # batches hold this rank's slice only
            # the normaliser itself, unchecked: prior.normalize's input checks would synchronise with the GPU
            # every step (the data was checked finite when it was collected; the layers when the run started)
            z0 = prior.normalizer.normalize(batch.acts.to(device, non_blocking=True), layers)
            factor = lr_factor(
                step, total, warmup_frac=cfg.warmup_frac, start=cfg.warmup_start, final=cfg.final_lr_frac
            )
            for group in optimizer.param_groups:
                group["lr"] = cfg.lr * factor
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                loss = loss_module(z0, eps[mine], t[mine], prior.layer_depth(layers))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = nn.utils.clip_grad_norm_(prior.parameters(), cfg.grad_clip if cfg.grad_clip else float("inf"))
            optimizer.step()
            state = {"step": step + 1, **data_state}
            window_rows += cfg.batch_size
            done = step + 1
            if done % cfg.log_every == 0 or done == total:
                loss_value = float(dist.mean_across(loss.detach()))
                rate = window_rows / max(time.perf_counter() - window_start, 1e-9)
                window_start, window_rows = time.perf_counter(), 0
                row = {
                    "step": done,
                    "loss": loss_value,
                    "lr": cfg.lr * factor,
                    "grad_norm": float(grad_norm),
                    "samples_per_s": rate,
                }
                bar.set_postfix(loss=f"{loss_value:.4f}", samples_s=f"{rate:.0f}", refresh=False)
                _log(row, metrics, out, wandb_run, rank)
            if rank == 0 and cfg.eval_every and (done % cfg.eval_every == 0 or done == total):
                tick = time.perf_counter()
                _log(
                    {"step": done, **evaluate(prior, val_src, val_rows, cfg, hook_layers, device)},
                    metrics,
                    out,
                    wandb_run,
                    rank,
                )
                prior.train()
                seconds["eval"] += time.perf_counter() - tick
            due = out is not None and (
                done % cfg.checkpoint_every == 0 or done == total or done in cfg.checkpoint_steps
            )
            if due and streaming:  # every process's stream position goes into the one checkpoint
                state = {"step": done, "stream": dist.gather_objects(state["stream"].to_dict())}
            if due and rank == 0:
                tick = time.perf_counter()
                ckpt.save_checkpoint(
                    out, prior, optimizer, generator, state, cfg.keep_checkpoints, protect=cfg.checkpoint_steps
                )
                seconds["checkpoint"] += time.perf_counter() - tick
            bar.update(1)
    finally:
        batches.close()  # stops and joins the prefetch thread, also after an exception
    bar.close()
    prior.eval()
    loop_end = time.perf_counter()
    seconds["steps"] = loop_end - loop_start - seconds["eval"] - seconds["checkpoint"]
    if out is not None and rank == 0:
        prior.save_pretrained(out)
        if cfg.plot:
            plot_losses(metrics, out / "loss.png")
    seconds["checkpoint"] += time.perf_counter() - loop_end
    dist.barrier()
    if wandb_run is not None:
        wandb_run.finish()
    return TrainResult(prior, total, metrics, out, resumed_from=start_step, seconds=seconds)


@torch.no_grad()
def evaluate(
    prior: GenerativePrior,
    src: ActivationSource,
    val_rows: np.ndarray,
    cfg: TrainConfig,
    hook_layers: Tensor | None,
    device: torch.device,
) -> dict[str, float]:
    """Validation loss at each of ``cfg.eval_times`` (fixed noise) and the Frechet distance of
    ``cfg.fd_samples`` generated activations vs held-out ones (first hook of the source)."""
    prior.eval()
    if len(val_rows) == 0:
        return {}
    batch = src.gather(val_rows[: cfg.max_val_rows] * src.n_hooks)  # hook 0 of each held-out row
    layer = None if hook_layers is None else int(hook_layers[0])
    x = batch.acts.to(device)
    z0 = prior.normalize(x, layer)
    rows = prior.layer_rows(layer, x.shape[:-1], device)
    g = torch.Generator().manual_seed(cfg.seed + 1)
    eps = torch.randn(z0.shape, generator=g).to(device)
    out: dict[str, float] = {}
    for t in cfg.eval_times:
        times = torch.full((z0.shape[0],), t, device=device)
        v = prior.velocity(add_noise(z0, eps, times), times, prior.layer_depth(rows))
        out[f"val_loss_t{t:g}"] = float(torch.mean((v - velocity_target(z0, eps)) ** 2))
    out["val_loss"] = sum(out.values()) / len(out)
    if cfg.fd_samples and x.shape[0] >= 2:
        n = min(cfg.fd_samples, x.shape[0])
        fake = prior.sample(
            n,
            num_steps=cfg.fd_num_steps,
            layer=layer,
            generator=torch.Generator(device=device).manual_seed(cfg.seed + 2),
        )
        out["fd"] = frechet_distance(fake, x[:n])
    return out


def plot_losses(metrics: list[dict[str, Any]], path: Path) -> Path:
    """Training loss (and validation loss where logged) against steps, saved as a PNG."""
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(6, 3.5))
    train_pts = [(m["step"], m["loss"]) for m in metrics if "loss" in m]
    val_pts = [(m["step"], m["val_loss"]) for m in metrics if "val_loss" in m]
    if train_pts:
        ax.plot(*zip(*train_pts), label="train loss", lw=1)
    if val_pts:
        ax.plot(*zip(*val_pts), "o-", label="validation loss", ms=3)
    ax.set_xlabel("step")
    ax.set_ylabel("flow-matching loss")
    ax.set_title("GenerativePrior training")
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, path)


# --------------------------------------------------------------------------- helpers
def _check_compatible(prior: GenerativePrior, src: ActivationSource) -> None:
    cfg = prior.cfg
    if src.d_input != cfg.d_input:
        raise ValueError(
            f"The activations have width {src.d_input} but the prior models d_input={cfg.d_input}; they come from another hook or model."
        )
    if not cfg.is_multi_layer and src.n_hooks != 1:
        raise ValueError(
            f"The source holds {src.n_hooks} hooks {src.hook_names}; a single-site prior trains on one (pass hook_names=[...] to as_source)."
        )
    if cfg.hook_names and src.hook_names and not set(src.hook_names) <= set(cfg.hook_names):
        warnings.warn(
            f"The prior was configured for hook(s) {cfg.hook_names} but the activations come from {src.hook_names}.",
            UserWarning,
            stacklevel=3,
        )
    if cfg.model_name and src.model_name and cfg.model_name != src.model_name:
        warnings.warn(
            f"The prior was configured for model {cfg.model_name!r} but the activations come from {src.model_name!r}.",
            UserWarning,
            stacklevel=3,
        )
    known = {"processed", "unprocessed"}
    if cfg.model_processing in known and src.model_processing in known and cfg.model_processing != src.model_processing:
        warnings.warn(
            f"The prior expects {cfg.model_processing} residuals but the activations are {src.model_processing} (HookedTransformer.from_pretrained folds and centres weights; from_pretrained_no_processing does not).",
            UserWarning,
            stacklevel=3,
        )


def _fingerprint(
    prior: GenerativePrior, src: ActivationSource, cfg: TrainConfig, total: int, world: int = 1
) -> dict[str, Any]:
    """What must match for a checkpoint in ``out_dir`` to be resumed: the prior's shape, the data
    (size, hooks, statistics; for a stream its settings and the number of processes) and the
    settings that fix the data order and the schedule."""
    shape = {
        k: v
        for k, v in prior.cfg.to_dict().items()
        if k in ("d_input", "d_hidden", "d_mlp", "n_blocks", "n_llm_layers")
    }
    if getattr(src, "is_streaming", False):
        return {
            "prior": shape,
            "stream": src.describe(),
            "processes": world,
            "batch_size": cfg.batch_size,
            "total_steps": total,
            "seed": cfg.seed,
        }
    return {
        "prior": shape,
        "rows": len(src),
        "hook_names": list(src.hook_names),
        "data_mean_sum": round(float(src.mean.double().sum()), 4),
        "data_var_sum": round(float(src.var.double().sum()), 4),
        "batch_size": cfg.batch_size,
        "total_steps": total,
        "seed": cfg.seed,
    }


def _check_same_run(out: Path, fingerprint: dict[str, Any]) -> None:
    saved_path = out / CONFIG_FILE
    if not saved_path.is_file():
        return
    saved = json.loads(saved_path.read_text()).get("fingerprint")
    if saved is not None and saved != fingerprint:
        changed = sorted(k for k in fingerprint if saved.get(k) != fingerprint[k])
        raise ValueError(
            f"{out} holds checkpoints of another run (different {', '.join(changed)}). Resuming would mix "
            "two runs: pass a new out_dir, or resume=False to start over there."
        )


def _hook_layers(prior: GenerativePrior, src: ActivationSource) -> Tensor | None:
    if not prior.cfg.is_multi_layer:
        return None
    layers = []
    for name in src.hook_names:
        layer = prior.cfg.layer_of(name)
        if layer is None or layer >= prior.cfg.n_llm_layers:
            raise ValueError(f"Hook {name!r} does not map to one of the prior's {prior.cfg.n_llm_layers} LLM layers.")
        layers.append(layer)
    return torch.tensor(layers)


def _batch_stream(
    src: ActivationSource,
    rows: np.ndarray,
    cfg: TrainConfig,
    epoch: int,
    start: int,
    per_epoch: int,
    rank: int = 0,
    world: int = 1,
) -> Iterator[tuple[dict[str, int], Batch]]:
    """``(data position after the batch, this rank's slice of the global batch)``, epoch after epoch."""
    while True:
        for i, batch in enumerate(
            src.batches(cfg.batch_size, rows=rows, seed=cfg.seed, epoch=epoch, start=start, part=(rank, world))
        ):
            done = start + i + 1
            yield {"epoch": epoch + done // per_epoch, "batch": done % per_epoch}, batch
        epoch, start = epoch + 1, 0


class StreamExhausted(ValueError):
    """A streamed run's documents ran out before ``TrainConfig.max_steps``."""


def _stream_batches(
    src: Any, cfg: TrainConfig, state: dict[str, Any] | None, rank: int, world: int
) -> Iterator[tuple[dict[str, Any], Batch]]:
    """``({"stream": position after the batch}, batch)`` from a streaming source: this rank's documents."""
    produced = 0
    for batch, position in src.iter_batches(
        cfg.batch_size // world, seed=cfg.seed, state=state, rank=rank, world=world
    ):
        produced += 1
        yield {"stream": position}, Batch(batch.acts, batch.hook_idx)
    raise StreamExhausted(
        f"The stream ran out of documents after {produced} more batches (rank {rank} of {world}); "
        f"max_steps={cfg.max_steps} needs more data, or lower max_steps."
    )


def _next_batch(batches: Iterator[Any], votes: Any) -> Any:
    """The next ``(data position, batch)``. With ``votes`` (a CPU process group: a streamed run under torchrun,
    where each rank reads its own documents and may run out first) every rank says whether it has one, and
    all raise together when any has not: a rank that stopped alone would leave the others waiting forever
    in the gradient all-reduce."""
    try:
        item, error = next(batches), None
    except StreamExhausted as err:
        item, error = None, err
    if votes is None:
        if error is not None:
            raise error
        return item
    have = dist.flags_of_all_ranks(item is not None, votes)
    if not all(have):
        empty = [r for r, ok in enumerate(have) if not ok]
        raise StreamExhausted(
            f"The stream ran out of documents on rank(s) {empty} of {len(have)} (each rank reads every "
            f"{len(have)}-th document), so every rank stops here. Give the stream more documents or lower max_steps."
            + (f" This rank: {error}" if error is not None else "")
        )
    return item


def data_parallel(module: nn.Module, device: torch.device) -> nn.Module:
    """``module`` in DistributedDataParallel on this rank's ``device`` (``device_ids=[index]`` on CUDA).

    No per-step buffer broadcast (``forward_sync_buffers=False``; ``broadcast_buffers=False`` before PyTorch
    2.13): the only buffers are the normaliser's statistics, fixed during training; DDP copies rank 0's
    parameters and buffers to every rank once, when it wraps the module, so the per-step broadcast of the
    statistics (``n_llm_layers x d_input`` floats twice) would only cost time.
    """
    if device.type == "cuda" and device.index is None:
        raise ValueError(f"DistributedDataParallel needs a CUDA device with an index, got {device}.")
    ddp = nn.parallel.DistributedDataParallel
    params = inspect.signature(ddp).parameters
    no_sync = {"forward_sync_buffers": False} if "forward_sync_buffers" in params else {"broadcast_buffers": False}
    return ddp(module, device_ids=[device.index] if device.type == "cuda" else None, **no_sync)


def _prefetch(stream: Iterator[Any], depth: int) -> Iterator[Any]:
    """Run ``stream`` in a daemon thread, ``depth`` items ahead (order preserved)."""
    if depth <= 0:
        yield from stream
        return
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: Any) -> bool:
        """Queue ``item`` unless the consumer has stopped (then never block: it will not read again)."""
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in stream:
                if not put(item):
                    return
        except BaseException as err:  # surfaced in the consumer, if it still reads
            put(err)

    thread = threading.Thread(target=work, daemon=True, name="tl-glp-prefetch")
    thread.start()
    try:
        while True:
            item = q.get()
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()  # never leave the reader running into interpreter shutdown


def _log(row: dict[str, Any], metrics: list[dict[str, Any]], out: Path | None, wandb_run: Any, rank: int) -> None:
    if rank != 0:
        return
    metrics.append(row)
    if out is not None:
        with open(out / METRICS_FILE, "a") as f:
            f.write(json.dumps(row) + "\n")
    if wandb_run is not None:
        wandb_run.log({k: v for k, v in row.items() if k != "step"}, step=row["step"])


def _read_metrics(out: Path, upto: int) -> list[dict[str, Any]]:
    path = out / METRICS_FILE
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by a crash
        if row.get("step", math.inf) <= upto:
            rows.append(row)
    return rows


def _write_metrics(out: Path, rows: list[dict[str, Any]]) -> None:

    with _io.atomic_path(out / METRICS_FILE) as tmp:
        tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _wandb(cfg: TrainConfig, rank: int) -> Any:
    if not cfg.wandb_project or rank != 0:
        return None
    try:
        import wandb
    except ImportError as err:
        raise ImportError("TrainConfig.wandb_project is set but wandb is not installed: pip install wandb") from err
    return wandb.init(project=cfg.wandb_project, config=cfg.to_dict())
