"""``steering_sweep``: strengths x prompts x methods, generated in batches, scored, as a DataFrame.

Example (see ``examples/steering.py`` for a full walk-through)::

    df = tl_glp.steering_sweep(model, direction, prompts, prior=prior, strengths=[0.5, 1.0, 2.0])
    df.groupby(["method", "r"])[["concept", "nll"]].mean()
    tl_glp.plot_pareto(df, "pareto.png")
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from tl_glp._tokens import model_device
from tl_glp.steering.hooks import _resolve_hook_name, steer
from tl_glp.steering.scorers import DirectionScorer, Generations, nll_fluency, scorer_name
from tl_glp._plot import pyplot, save_figure

PAPER_STRENGTHS = tuple(round(0.2 * i, 1) for i in range(1, 11))
"""r in {0.2, 0.4, ..., 2.0}, times the activation norm (glp-method.md section 9)."""


def steering_sweep(
    model: Any,
    direction: Float[Tensor, "d_model"],
    prompts: Sequence[str],
    *,
    prior: Any = None,
    strengths: Sequence[float] = PAPER_STRENGTHS,
    methods: Sequence[str] = ("plain", "prior"),
    relative: bool = True,
    act_norm: float | None = None,
    hook_name: str | None = None,
    positions: Any = "last",
    max_new_tokens: int = 20,
    concept: Any = None,
    scorers: Sequence[Any] = (),
    include_baseline: bool = True,
    batch_size: int = 32,
    seed: int = 0,
    do_sample: bool = False,
    temperature: float = 1.0,
    t_start: float = 0.5,
    num_steps: int = 20,
    progress: bool = True,
    projection: dict[str, Any] | None = None,
    manifold_score: str | None = None,
):
    """Generate continuations of ``prompts`` at each strength with each method and score them.

    Methods: ``"plain"`` (additive steering) and ``"prior"`` (additive, then projected by
    ``prior``); ``include_baseline`` adds unsteered rows (method ``"none"``, r = 0). Strengths
    are multiples ``r`` of the activation norm when ``relative`` (default; ``act_norm`` from the
    prior unless given), else raw ``alpha``. Both methods edit the same ``positions`` (default
    ``"last"``, the reference's choice for prior-guided generation).

    Pairing: for every strength, the prompts are cut into the same batches for every method, and
    each (strength, batch) unit has one seed that all its methods share, for sampling (if
    ``do_sample``) and for the prior's projection noise. Decoding is greedy by default, as in the
    reference. The global RNG is left exactly as it was (generation runs under a forked RNG).

    Returns a pandas DataFrame with one row per generation: ``prompt``, ``method``, ``r``,
    ``alpha``, ``seed`` (the unit's), ``continuation``, ``nll`` (fluency: the unsteered model's mean NLL of the
    continuation; lower is more fluent), ``concept`` (``concept`` scorer; default: projection of
    the unsteered activations on the direction) and one column per extra scorer.

    ``projection`` holds extra projection options for the ``"prior"`` method (e.g.
    ``{"method": "heun:2"}`` or ``{"positions": OffManifold.calibrate(...)}``, see
    :func:`~tl_glp.steering.hooks.steering_hook`). ``manifold_score`` (``"denoising"`` or
    ``"log_prob"``, needs a prior) adds a column ``score_<name>``: the mean on-manifold score of
    the edited positions (``positions``) over the generation, as the model saw them (after
    steering and projection); higher = further off the manifold.
    """
    import pandas as pd

    if "prior" in methods and prior is None:
        raise ValueError("methods includes 'prior' but no prior was given.")
    unknown = set(methods) - {"plain", "prior"}
    if unknown:
        raise ValueError(f"Unknown methods {sorted(unknown)}; choose from 'plain' and 'prior'.")
    hook_name = _resolve_hook_name(model, prior, hook_name)
    if relative and act_norm is None:
        if prior is None:
            raise ValueError("relative strengths need act_norm=... or a prior.")
        act_norm = prior.act_norm
    scale = act_norm if relative else 1.0
    concept = concept or DirectionScorer(direction, hook_name)
    chunks = [list(prompts[i : i + batch_size]) for i in range(0, len(prompts), batch_size)]
    settings = ([(0.0, ("none",))] if include_baseline else []) + [(float(r), tuple(methods)) for r in strengths]
    records = []
    bar = tqdm(total=sum(len(ms) for _, ms in settings) * len(chunks), disable=not progress, desc="steering sweep")
    for r_index, (r, unit_methods) in enumerate(settings):
        for c_index, chunk in enumerate(chunks):
            unit_seed = seed + r_index * len(chunks) + c_index  # shared by every method of this unit
            alphas = torch.full((len(chunk),), r * scale)
            for method in unit_methods:
                gens = _generate(model, direction, chunk, alphas, prior if method == "prior" else None, hook_name,
                                 positions, max_new_tokens, unit_seed, do_sample, temperature, t_start, num_steps,
                                 projection=projection, recorder=_recorder(prior, manifold_score, positions))
                scores = {"nll": nll_fluency(model, gens), "concept": concept(model, gens)}
                if manifold_score is not None:
                    scores[f"score_{manifold_score}"] = gens.manifold_scores.tolist()  # type: ignore[attr-defined]
                for extra in scorers:
                    scores[scorer_name(extra)] = extra(model, gens)
                for i, p in enumerate(chunk):
                    records.append({"prompt": p, "method": method, "r": r, "alpha": float(alphas[i]), "seed": unit_seed,
                                    "continuation": gens.continuations[i], **{k: v[i] for k, v in scores.items()}})
                bar.update(1)
    bar.close()
    return pd.DataFrame.from_records(records)


def _recorder(prior: Any, score: str | None, positions: Any) -> Any:
    if score is None:
        return None
    if prior is None:
        raise ValueError("manifold_score needs a prior to score with.")
    from tl_glp.steering.adaptive import OffManifold, score_recorder

    return lambda: score_recorder(prior, score=score, positions=positions.within if isinstance(positions, OffManifold) else positions)


def _generate(model, direction, prompts, alphas, prior, hook_name, positions, max_new_tokens, seed, do_sample, temperature, t_start, num_steps,
              projection=None, recorder=None) -> Generations:
    prompt_tokens = [model.to_tokens(p)[0].cpu() for p in prompts]
    kwargs = dict(max_new_tokens=max_new_tokens, stop_at_eos=False, do_sample=do_sample, verbose=False, return_type="tokens")
    if do_sample:
        kwargs["temperature"] = temperature
    rec = recorder() if recorder is not None else None
    device = model_device(model)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        if prior is None and bool((alphas == 0).all()):
            with _recording(model, hook_name, rec):
                out = model.generate(list(prompts), **kwargs)
        else:
            extra = {"prior": prior, "t_start": t_start, "num_steps": num_steps, "seed": seed, **(projection or {})} if prior is not None else {}
            with steer(model, direction, alphas, hook_name=hook_name, positions=positions, **extra), _recording(model, hook_name, rec):
                out = model.generate(list(prompts), **kwargs)
    new = out[:, -max_new_tokens:].cpu()
    continuations = [model.to_string(row) for row in new]
    gens = Generations(list(prompts), [c if isinstance(c, str) else str(c) for c in continuations], prompt_tokens, list(new))
    if rec is not None:
        gens.manifold_scores = rec.row_means()  # type: ignore[attr-defined]
    return gens


@contextmanager
def _recording(model: Any, hook_name: str, rec: Any) -> Iterator[None]:
    """Attach a score recorder (after any steering hook at the same point) for the block's duration."""
    if rec is None:
        yield
        return
    from tl_glp import _compat

    token = _compat.attach_hook(model, hook_name, rec)
    try:
        yield
    finally:
        _compat.detach_hook(token)


def plot_pareto(df: Any, path: str | Path, concept: str = "concept", fluency: str = "nll", title: str = "Steering: concept vs fluency") -> Path:
    """Concept (x) against fluency NLL (y, lower is better) per method, one point per strength r."""
    plt = pyplot()

    summary = df.groupby(["method", "r"])[[concept, fluency]].mean().reset_index()
    fig, ax = plt.subplots(figsize=(6, 4.2))
    styles = {"plain": ("tab:red", "o-"), "prior": ("tab:blue", "s-"), "none": ("black", "*")}
    for method, part in summary.groupby("method"):
        part = part.sort_values("r")
        color, style = styles.get(method, (None, "o-"))
        label = {"plain": "plain steering", "prior": "prior-guided", "none": "unsteered"}.get(method, method)
        ax.plot(part[concept], part[fluency], style, color=color, label=label, ms=6 if method != "none" else 12)
        if method != "none":
            for _, row in part.iterrows():
                ax.annotate(f"r={row['r']:g}", (row[concept], row[fluency]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(f"{concept} (higher = stronger concept)")
    ax.set_ylabel(f"{fluency} of the unsteered model (lower = more fluent)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, path)
