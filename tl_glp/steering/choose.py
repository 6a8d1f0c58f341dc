"""Finding a direction that steers: how far plain steering moves a concept judge, and the choice of the
layer, the sign and the strength that move it most clearly.

A steering comparison means something only if plain steering moves the concept at all. On a real model
that is not a given: the concept judge (e.g. VADER sentiment) is noisy per continuation, the model may
already lean towards one side unsteered, and past a strength the text breaks and scores nothing.
:func:`concept_shift` measures the move, per strength, with a bootstrap CI over prompts;
:func:`choose_direction` builds a contrastive direction at each candidate layer, steers a set of
*calibration* stems both ways at a few strengths, and picks the (layer, target) whose best strength has
the highest lower CI bound. Judge the chosen direction on other prompts than the calibration stems: the
choice itself is selected on them, so its own shift is optimistic.

>>> import pandas as pd
>>> df = pd.DataFrame({"prompt": ["a", "b", "a", "b", "a", "b"], "method": ["none", "none", "plain", "plain", "plain", "plain"],
...                    "r": [0.0, 0.0, 0.5, 0.5, 1.0, 1.0], "concept": [0.0, 0.1, 0.5, 0.6, 0.2, 0.1]})
>>> shift = concept_shift(df, n_boot=200, seed=0)
>>> shift["best_r"], round(shift["shift"], 3), shift["steers"]
(0.5, 0.5, True)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from tl_glp.activations.collect import collect_activations
from tl_glp.steering.directions import diff_of_means
from tl_glp.steering.sweep import steering_sweep


def concept_shift(df: Any, *, n_boot: int = 1000, seed: int = 0, concept: str = "concept") -> dict[str, Any]:
    """How far plain steering moves the concept judge in a :func:`~tl_glp.steering_sweep` frame.

    For each strength, the mean over prompts of (plain concept - unsteered concept), with a 95% bootstrap CI
    over prompts. ``best_r`` is the strength with the largest mean shift; the direction ``steers`` when that
    shift's CI excludes 0. Prompts whose unsteered or steered concept is NaN are left out of that strength.
    Returns ``steers``, ``best_r``, ``unsteered`` (the mean unsteered concept), the best strength's
    ``shift``, ``ci_low``, ``ci_high``, ``n_prompts``, and ``per_r`` (the same for every strength, keyed by
    ``str(r)``)."""
    base = df[df.method == "none"].groupby("prompt")[concept].mean()
    plain = df[df.method == "plain"]
    rng = np.random.default_rng(seed)
    per_r: dict[float, dict[str, float]] = {}
    for r, rows in plain.groupby("r"):
        d = (rows.groupby("prompt")[concept].mean() - base).dropna().to_numpy()
        if len(d) == 0:
            continue
        boots = d[rng.integers(0, len(d), (n_boot, len(d)))].mean(1)
        per_r[float(r)] = {
            "shift": float(d.mean()),
            "ci_low": float(np.quantile(boots, 0.025)),
            "ci_high": float(np.quantile(boots, 0.975)),
            "n_prompts": len(d),
        }
    if not per_r:
        return {"steers": False, "best_r": float("nan"), "shift": float("nan"), "per_r": {}, "unsteered": float("nan")}
    best = max(per_r, key=lambda r: per_r[r]["shift"])
    return {
        "steers": per_r[best]["ci_low"] > 0,
        "best_r": best,
        "unsteered": float(base.mean()),
        **per_r[best],
        "per_r": {str(r): v for r, v in per_r.items()},
    }


def activation_norm_at(model: Any, texts: Sequence[str], hook_name: str, *, context_size: int = 128) -> float:
    """The typical activation norm at ``hook_name`` over ``texts``: ``sqrt(sum(mean**2 + var))``, the
    definition a prior trained there uses for :attr:`~tl_glp.GenerativePrior.act_norm` (so strengths ``r``
    chosen here mean the same later)."""
    acts = collect_activations(model, list(texts), hook_name, context_size=context_size, progress=False)
    return float((acts.mean[0].double() ** 2 + acts.var[0].double()).sum().sqrt())


@dataclass
class DirectionChoice:
    """What :func:`choose_direction` picked, and the measurements it picked from."""

    hook_name: str
    """The layer's hook whose direction steers most clearly."""
    target: str
    """The concept's side steered towards (e.g. ``"positive"`` or ``"negative"``)."""
    direction: Float[Tensor, " d_model"]
    """Unit contrastive direction at ``hook_name``, pointing towards ``target``."""
    act_norm: float
    """The activation norm at ``hook_name`` the strengths were scaled by."""
    shift: dict[str, Any]
    """:func:`concept_shift` of the chosen (hook, target) on the calibration stems."""
    table: Any = field(repr=False)
    """A pandas frame, one row per (hook, target, r): ``shift``, ``ci_low``, ``ci_high``, ``n_prompts``,
    ``unsteered``, and ``chosen`` on the rows of the pick."""


def choose_direction(
    model: Any,
    positive_texts: Sequence[str],
    negative_texts: Sequence[str],
    stems: Sequence[str],
    *,
    hook_names: Sequence[str],
    concept: Callable[[str], Any],
    targets: Sequence[str] = ("positive", "negative"),
    strengths: Sequence[float] = (0.1, 0.15, 0.25),
    norm_texts: Sequence[str] | None = None,
    max_new_tokens: int = 12,
    n_boot: int = 1000,
    seed: int = 0,
    progress: bool = True,
) -> DirectionChoice:
    """Pick the layer and the side whose contrastive direction plain steering moves the concept most clearly.

    At each hook of ``hook_names`` the direction is ``diff_of_means(positive_texts, negative_texts,
    positions="last")``; ``targets[0]`` is steered along it and ``targets[1]`` (if given) against it.
    ``concept(target)`` returns the concept scorer towards ``target`` (e.g. ``VaderScorer``). Each
    (hook, target) steers ``stems`` at every strength (``r`` times the activation norm at that hook over
    ``norm_texts``, default the stems and the contrast texts); the pick is the (hook, target) whose best
    strength has the highest lower 95% CI bound of its shift over the unsteered text (ties: the larger
    shift). Greedy decoding, so the unsteered continuations are shared by every hook.

    Example (a tiny random model, so the figures mean nothing; the shape of the answer does):
        >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
        >>> from tl_glp.studies.testbed.tokenizer import build_tokenizer
        >>> tok = build_tokenizer("the cat a dog good bad".split())
        >>> cfg = HookedTransformerConfig(n_layers=2, d_model=8, d_head=4, n_heads=2, d_mlp=16, n_ctx=16,
        ...                               d_vocab=tok.vocab_size, act_fn="relu", seed=0)
        >>> model = HookedTransformer(cfg, tokenizer=tok)
        >>> hooks = ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]
        >>> pick = choose_direction(model, ["good good", "the good"], ["bad bad", "the bad"], ["the cat", "a dog"], hook_names=hooks,
        ...     concept=lambda target: (lambda m, g: [float(len(c)) for c in g.continuations]),
        ...     strengths=(0.5,), max_new_tokens=2, n_boot=50, progress=False)
        >>> pick.hook_name in hooks, pick.target in ("positive", "negative"), len(pick.table)
        (True, True, 4)
    """
    import pandas as pd

    if not hook_names:
        raise ValueError("choose_direction needs at least one hook name to choose from.")
    if not 1 <= len(targets) <= 2:
        raise ValueError(f"targets={tuple(targets)}: give one side, or two (along and against the direction).")
    if not stems:
        raise ValueError("choose_direction needs calibration stems to steer.")
    texts_for_norm = list(norm_texts) if norm_texts else [*stems, *positive_texts, *negative_texts]
    rows, candidates = [], {}
    unsteered: dict[str, Any] = {}  # greedy decoding: one unsteered run per target serves every hook
    bar = tqdm(total=len(hook_names) * len(targets), disable=not progress, desc="choosing a direction")
    for hook in hook_names:
        w = diff_of_means(model, positive_texts, negative_texts, hook, positions="last")
        norm = activation_norm_at(model, texts_for_norm, hook)
        for sign, target in zip((1.0, -1.0), targets):
            df = steering_sweep(
                model,
                sign * w,
                list(stems),
                strengths=strengths,
                methods=("plain",),
                act_norm=norm,
                hook_name=hook,
                max_new_tokens=max_new_tokens,
                concept=concept(target),
                include_baseline=target not in unsteered,
                seed=seed,
                progress=False,
            )
            unsteered.setdefault(target, df[df.method == "none"])
            df = pd.concat([unsteered[target], df[df.method != "none"]], ignore_index=True)
            shift = concept_shift(df, n_boot=n_boot, seed=seed)
            candidates[(hook, target)] = (sign * w, norm, shift)
            for r, s in shift["per_r"].items():
                rows.append({"hook": hook, "target": target, "r": float(r), **s, "unsteered": shift["unsteered"]})
            bar.update(1)
    bar.close()
    scored = {k: v for k, v in candidates.items() if v[2]["per_r"]}
    if not scored:
        raise ValueError("choose_direction: the concept judge scored no calibration continuation (all NaN).")
    hook, target = max(scored, key=lambda k: (scored[k][2]["ci_low"], scored[k][2]["shift"]))
    direction, norm, shift = scored[(hook, target)]
    table = pd.DataFrame.from_records(rows)
    table["chosen"] = (table.hook == hook) & (table.target == target)
    return DirectionChoice(hook, target, direction.detach().float(), norm, shift, table)


def middle_layer_hooks(n_layers: int, site: str = "hook_resid_post") -> list[str]:
    """Candidate layers around the middle of an ``n_layers`` model: a third of the way in, the paper's rule
    (``n_layers / 2 - 1``) and the middle (``n_layers // 2``), without repeats.

    >>> middle_layer_hooks(30)
    ['blocks.10.hook_resid_post', 'blocks.14.hook_resid_post', 'blocks.15.hook_resid_post']
    >>> middle_layer_hooks(2)
    ['blocks.0.hook_resid_post', 'blocks.1.hook_resid_post']
    """
    if n_layers < 1:
        raise ValueError(f"n_layers={n_layers}: a model has at least one layer.")
    layers = sorted({max(0, n_layers // 3), max(0, n_layers // 2 - 1), min(n_layers - 1, n_layers // 2)})
    return [f"blocks.{layer}.{site}" for layer in layers]
