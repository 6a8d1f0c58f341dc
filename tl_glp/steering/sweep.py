"""``steering_sweep``: strengths x prompts x ways back to the manifold, generated in batches, scored, as a DataFrame.

Example (see ``examples/steering.py`` for a full walk-through)::

    df = tl_glp.steering_sweep(model, direction, prompts, prior=prior, strengths=[0.5, 1.0, 2.0],
                               methods=["plain", *[ProjectionConfig(t_start=t) for t in (0.1, 0.3, 0.5)]])
    df.groupby(["method", "r"])[["concept", "nll"]].mean()
    tl_glp.plot_pareto(df, "pareto.png")      # one front per method
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from tl_glp.core import _compat, padding
from tl_glp.core._plot import pyplot, save_figure
from tl_glp.core._tokens import model_device
from tl_glp.core.positions import Positions, check_positions
from tl_glp.core.prior import GenerativePrior
from tl_glp.core.projection import ProjectionConfig
from tl_glp.manifold.adaptive import score_recorder
from tl_glp.steering.hooks import _resolve_hook_name, steer
from tl_glp.steering.projectors import PriorProjector, Projector
from tl_glp.steering.scorers import DirectionScorer, Generations, higher_is_better, nll_fluency, scorer_name

PAPER_STRENGTHS = tuple(round(0.2 * i, 1) for i in range(1, 11))
"""r in {0.2, 0.4, ..., 2.0}, times the activation norm (glp-method.md section 9)."""

Method = str | ProjectionConfig | Projector
"""A sweep method: ``"plain"``, ``"prior"`` (the prior with ``projection``), a :class:`ProjectionConfig`
(the prior with those settings), or any projector object."""


def method_label(method: Method, projection: ProjectionConfig | None = None) -> str:
    """The ``method`` column's value for a sweep method.

    Example:
        >>> method_label("plain"), method_label("prior"), method_label(ProjectionConfig(t_start=0.3))
        ('plain', 'prior', 'prior reference t=0.3')
    """
    if isinstance(method, str):
        return method
    if isinstance(method, ProjectionConfig):
        return f"prior {method.label}"
    return str(getattr(method, "name", type(method).__name__))


def steering_sweep(
    model: Any,
    direction: Float[Tensor, " d_model"],
    prompts: Sequence[str],
    *,
    prior: GenerativePrior | None = None,
    strengths: Sequence[float] = PAPER_STRENGTHS,
    methods: Sequence[Method] = ("plain", "prior"),
    projection: ProjectionConfig | None = None,
    relative: bool = True,
    act_norm: float | None = None,
    hook_name: str | None = None,
    positions: Positions | Sequence[Positions] = "last",
    max_new_tokens: int = 20,
    concept: Any = None,
    scorers: Sequence[Any] = (),
    include_baseline: bool = True,
    batch_size: int = 32,
    seed: int = 0,
    do_sample: bool = False,
    temperature: float = 1.0,
    progress: bool = True,
    manifold_score: str | None = None,
):
    """Generate continuations of ``prompts`` at each strength with each method and score them.

    Methods: ``"plain"`` (additive steering), ``"prior"`` (additive, then projected by ``prior``
    with ``projection``, default the reference), a :class:`~tl_glp.ProjectionConfig` (the prior
    with those settings: pass several to map strength x noise level in one run), or any projector
    (:mod:`tl_glp.steering.projectors`). ``include_baseline`` adds unsteered rows (method
    ``"none"``, r = 0). Strengths are multiples ``r`` of the activation norm when ``relative``
    (default; ``act_norm`` from the prior unless given), else raw ``alpha``. Every method edits
    the same ``positions`` (default ``"last"``, the reference's choice for prior-guided generation);
    a list (e.g. ``["last", "all"]``) maps strength x method x positions in one run, with a
    ``positions`` column (the unsteered rows edit nothing and carry ``"-"``).

    Pairing: for every strength, the prompts are cut into the same batches for every method, and
    each (strength, batch) unit has one seed that all its methods share, for sampling (if
    ``do_sample``) and for the prior's projection noise (a fresh draw at every forward call from
    a generator seeded with the unit's seed). Decoding is greedy by default, as in the reference.
    The global RNG is left exactly as it was (generation runs under a forked RNG).

    Returns a pandas DataFrame with one row per generation: ``prompt``, ``method`` (its label,
    :func:`method_label`), ``r``, ``alpha``, ``seed`` (the unit's), ``continuation``, ``seconds``
    (wall-clock seconds of generating it: the unit's generation time, steering and projection
    included, scoring not, shared evenly over the unit's prompts; :func:`cost_table` reads the cost
    per generated token relative to plain steering off it), ``nll``
    (fluency: the unsteered model's mean NLL of the continuation; lower is more fluent),
    ``concept`` (``concept`` scorer; default: projection of the unsteered activations on the
    direction) and one column per extra scorer. ``manifold_score`` (``"denoising"`` or
    ``"log_prob"``, needs a prior) adds a column ``score_<name>``: the mean on-manifold score of
    the edited positions over the generation, as the model saw them (after steering and
    projection); higher = further off the manifold.
    """
    import pandas as pd

    named = _named_methods(methods, prior, projection)
    hook_name = _resolve_hook_name(model, prior, hook_name)
    if relative and act_norm is None:
        if prior is None:
            raise ValueError("relative strengths need act_norm=... or a prior.")
        act_norm = prior.act_norm
    if manifold_score is not None and prior is None:
        raise ValueError("manifold_score needs a prior to score with.")
    scale = act_norm if relative else 1.0
    concept = concept or DirectionScorer(direction, hook_name)
    chunks = [list(prompts[i : i + batch_size]) for i in range(0, len(prompts), batch_size)]
    position_list = _position_list(positions)
    settings = ([(0.0, [("none", "-", position_list[0])])] if include_baseline else []) + [
        (float(r), [(m, position_label(p), p) for p in position_list for m in named]) for r in strengths
    ]
    records = []
    bar = tqdm(total=sum(len(ms) for _, ms in settings) * len(chunks), disable=not progress, desc="steering sweep")
    for r_index, (r, unit_methods) in enumerate(settings):
        for c_index, chunk in enumerate(chunks):
            unit_seed = seed + r_index * len(chunks) + c_index  # shared by every method and positions of this unit
            alphas = torch.full((len(chunk),), r * scale)
            for label, pos_label, pos in unit_methods:
                projector = _unit_projector(named.get(label), unit_seed)
                recorder = score_recorder(prior, score=manifold_score, positions=pos) if manifold_score else None
                tick = time.perf_counter()
                gens = _generate(
                    model,
                    direction,
                    chunk,
                    alphas,
                    projector,
                    prior,
                    hook_name,
                    pos,
                    max_new_tokens,
                    unit_seed,
                    do_sample,
                    temperature,
                    recorder,
                )
                seconds = (time.perf_counter() - tick) / len(chunk)
                scores = {"nll": nll_fluency(model, gens), "concept": concept(model, gens)}
                if recorder is not None:
                    scores[f"score_{manifold_score}"] = recorder.row_means().tolist()  # type: ignore[attr-defined]
                for extra in scorers:
                    scores[scorer_name(extra)] = extra(model, gens)
                for i, p in enumerate(chunk):
                    records.append(
                        {
                            "prompt": p,
                            "method": label,
                            "positions": pos_label,
                            "r": r,
                            "alpha": float(alphas[i]),
                            "seed": unit_seed,
                            "continuation": gens.continuations[i],
                            "seconds": seconds,
                            **{k: v[i] for k, v in scores.items()},
                        }
                    )
                bar.update(1)
    bar.close()
    return pd.DataFrame.from_records(records)


def position_label(positions: Positions) -> str:
    """The ``positions`` column's value: the name (``"last"``, ``"all"``), a slice as ``start:stop``,
    ``"mask"`` for a boolean mask.

    >>> position_label("last"), position_label(slice(1, None)), position_label(slice(None, 4))
    ('last', '1:', ':4')
    """
    if isinstance(positions, str):
        return positions
    if isinstance(positions, slice):
        start = "" if positions.start is None else str(positions.start)
        stop = "" if positions.stop is None else str(positions.stop)
        return f"{start}:{stop}" + ("" if positions.step is None else f":{positions.step}")
    return "mask"


def cost_table(df: Any, *, max_new_tokens: int | None = None, reference: str = "plain") -> Any:
    """Generation cost per method (and positions): mean wall-clock ``seconds`` per generated token
    (when ``max_new_tokens`` is given), and ``cost_vs_plain``: the method's total generation time over
    the ``reference``'s at the same positions (1 = as cheap as plain steering; the sweep runs every
    method on the same strengths and prompts, so the totals compare like with like). Reads the
    sweep's ``seconds`` column; the unsteered rows are left out.

    Example:
        >>> import pandas as pd
        >>> df = pd.DataFrame({"method": ["plain", "plain", "prior", "prior"], "positions": "last",
        ...                    "r": [1.0, 2.0, 1.0, 2.0], "seconds": [0.1, 0.1, 0.3, 0.5]})
        >>> cost_table(df, max_new_tokens=10)[["method", "seconds_per_token", "cost_vs_plain"]].round(3).values.tolist()
        [['plain', 0.01, 1.0], ['prior', 0.04, 4.0]]
    """
    import pandas as pd

    if "seconds" not in df.columns:
        raise ValueError("cost_table needs the sweep's 'seconds' column (steering_sweep writes it).")
    keys = ["method", "positions"] if "positions" in df.columns else ["method"]
    totals = df[df.method != "none"].groupby(keys, sort=False).seconds.agg(["sum", "mean"]).reset_index()
    ref = {tuple(r[k] for k in keys[1:]): r["sum"] for r in totals.to_dict("records") if r["method"] == reference}
    rows = []
    for row in totals.to_dict("records"):
        base = ref.get(tuple(row[k] for k in keys[1:]), float("nan"))
        rows.append(
            {
                **{k: row[k] for k in keys},
                "seconds_per_token": row["mean"] / max_new_tokens if max_new_tokens else float("nan"),
                "cost_vs_plain": row["sum"] / base if base else float("nan"),
            }
        )
    return pd.DataFrame(rows)


def _position_list(positions: Any) -> list[Any]:
    """One positions value, or several (a list or tuple of them), as a checked list with distinct labels."""
    many = list(positions) if isinstance(positions, (list, tuple)) else [positions]
    if not many:
        raise ValueError(
            "positions is an empty list: give one positions value ('last', 'all', a slice, a mask) or several."
        )
    for p in many:
        check_positions(p)
    labels = [position_label(p) for p in many]
    if len(set(labels)) != len(labels):
        raise ValueError(f"positions has repeated entries {labels}; give each positions value once.")
    return many


def _named_methods(
    methods: Sequence[Method], prior: GenerativePrior | None, projection: ProjectionConfig | None
) -> dict[str, Any]:
    """``{label: projector or None}`` in the given order; one clear error for a bad method."""
    named: dict[str, Any] = {}
    for method in methods:
        label = method_label(method, projection)
        if isinstance(method, str):
            if method not in ("plain", "prior"):
                raise ValueError(
                    f"Unknown method {method!r}; use 'plain', 'prior', a ProjectionConfig or a projector object."
                )
            if method == "prior" and prior is None:
                raise ValueError("methods includes 'prior' but no prior was given.")
            value = None if method == "plain" else PriorProjector(prior, projection)  # type: ignore[arg-type]
        elif isinstance(method, ProjectionConfig):
            if prior is None:
                raise ValueError(f"The method {label!r} projects with the prior, but no prior was given.")
            value = PriorProjector(prior, method, name=label)
        elif callable(getattr(method, "project", None)):
            value = method
        else:
            raise ValueError(
                f"A sweep method must be 'plain', 'prior', a ProjectionConfig or a projector, got {method!r}."
            )
        if label in named or label == "none":
            raise ValueError(f"Two sweep methods share the label {label!r}; give projectors distinct names.")
        named[label] = value
    return named


def _unit_projector(projector: Any, unit_seed: int) -> Any:
    """The projector a (strength, batch) unit uses: a copy whose noise (and its inner projector's) is
    seeded with the unit's seed (:meth:`~tl_glp.steering.projectors.BaseProjector.reseeded`); other
    objects are reset."""
    if callable(getattr(projector, "reseeded", None)):
        return projector.reseeded(unit_seed)
    if projector is not None and hasattr(projector, "reset"):
        projector.reset()
    return projector


def _generate(
    model,
    direction,
    prompts,
    alphas,
    projector,
    prior,
    hook_name,
    positions,
    max_new_tokens,
    seed,
    do_sample,
    temperature,
    recorder=None,
) -> Generations:
    prompt_tokens = [model.to_tokens(p)[0].cpu() for p in prompts]
    kwargs = dict(
        max_new_tokens=max_new_tokens, stop_at_eos=False, do_sample=do_sample, verbose=False, return_type="tokens"
    )
    if do_sample:
        kwargs["temperature"] = temperature
    device = model_device(model)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        if projector is None and bool((alphas == 0).all()):
            with _recording(model, hook_name, recorder):
                out = model.generate(list(prompts), **kwargs)
        else:
            with (
                steer(
                    model,
                    direction,
                    alphas,
                    prior=prior if projector is not None else None,
                    projector=projector,
                    hook_name=hook_name,
                    positions=positions,
                ),
                _recording(model, hook_name, recorder),
            ):
                out = model.generate(list(prompts), **kwargs)
    new = out[:, -max_new_tokens:].cpu()
    continuations = [model.to_string(row) for row in new]
    return Generations(
        list(prompts), [c if isinstance(c, str) else str(c) for c in continuations], prompt_tokens, list(new)
    )


@contextmanager
def _recording(model: Any, hook_name: str, rec: Any) -> Iterator[None]:
    """Attach a score recorder (after any steering hook at the same point) for the block's duration."""
    if rec is None:
        yield
        return
    token = _compat.attach_hook(model, hook_name, rec)
    follower = padding.follow_padding(model)  # the recorder skips the prompts' left padding
    try:
        yield
    finally:
        follower.remove()
        _compat.detach_hook(token)


def plot_pareto(
    df: Any,
    path: str | Path,
    concept: str = "concept",
    fluency: str = "nll",
    title: str = "Steering: concept vs fluency",
    *,
    annotate: bool = True,
) -> Path:
    """Concept (x) against fluency (y) with one front per method (and per positions, when the sweep
    mapped several: solid for the first, dashed, dotted ... for the others), one point per strength r.
    For ``nll*`` and ``repeated*`` columns lower is more fluent; for any other fluency column (e.g.
    ``grammatical``, ``distinct_2``) higher is (:func:`~tl_glp.steering.scorers.higher_is_better`)."""
    plt = pyplot()

    keys = ["method", "positions"] if "positions" in df.columns else ["method"]
    summary = df.groupby([*keys, "r"])[[concept, fluency]].mean().reset_index()
    position_values = [p for p in dict.fromkeys(df["positions"]) if p != "-"] if "positions" in df.columns else []
    dashes = {p: ls for p, ls in zip(position_values, ("-", "--", ":", "-."))}
    several = len(position_values) > 1
    fig, ax = plt.subplots(figsize=(7, 4.8) if several or df.method.nunique() > 3 else (6, 4.2))
    styles = {"plain": ("tab:red", "o"), "prior": ("tab:blue", "s"), "none": ("black", "*")}
    palette = iter(
        ["tab:green", "tab:orange", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan", "tab:gray"]
    )
    colors: dict[str, Any] = {}
    for key, part in summary.groupby(keys, sort=False):
        method, pos = (key[0], key[1]) if len(keys) == 2 else (key[0] if isinstance(key, tuple) else key, None)
        part = part.sort_values("r")
        if method not in colors:
            colors[method] = styles[method][0] if method in styles else next(palette, None)
        marker = styles.get(method, (None, "o"))[1]
        label = {"plain": "plain steering", "prior": "prior-guided", "none": "unsteered"}.get(method, method)
        if several and method != "none":
            label = f"{label} @ {pos}"
        line = "" if method == "none" else dashes.get(pos, "-")
        ax.plot(
            part[concept],
            part[fluency],
            marker + line,
            color=colors[method],
            label=label,
            ms=6 if method != "none" else 12,
        )
        if annotate and method != "none" and not several:
            for _, row in part.iterrows():
                ax.annotate(
                    f"r={row['r']:g}",
                    (row[concept], row[fluency]),
                    fontsize=7,
                    xytext=(3, 3),
                    textcoords="offset points",
                )
    better = "higher" if higher_is_better(fluency) else "lower"
    ax.set_xlabel(f"{concept} (higher = stronger concept)")
    ax.set_ylabel(f"{fluency} ({better} = more fluent)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7 if several else None)
    return save_figure(fig, path)
