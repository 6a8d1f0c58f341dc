"""The steering head-to-head: the prior's projection against the other ways back to the manifold,
and what each one changes (the demo's steering-map section).

:func:`steering_map` runs one :func:`~tl_glp.steering.steering_sweep` over strength x projector x
positions (paired seeds: every projector and positions of a (strength, batch) unit share its
seed), reads each projector's fluency gain over plain steering at matched concept
(:func:`~tl_glp.steering.matched_concept_gains`, bootstrap CIs over prompts), draws one Pareto
front per projector and positions, and diagnoses the projections
(:func:`~tl_glp.steering.diagnose.diagnose_projections`) with linear probes of other concepts.
It also reads the generation cost per token relative to plain steering
(:func:`~tl_glp.steering.sweep.cost_table`). It returns tables, markdown and numbers.

:func:`standard_projectors` builds the projectors the maps compare: the established ones and those
that keep the concept (:func:`guided_projectors`: the prior with the direction kept, the score
pull, the norm clamps, and with ``guided="all"`` the likelihood gate and the keep-w projection
inside the prior's meta-neuron subspace).

:func:`testbed_steering_map` is the testbed's version: projectors built from natural activations
and an SAE, probes of the ground-truth latents (sentiment, tense, number, negation, each topic)
trained on the last token of document prefixes, and the answer to "which latent does the prior's
projection (and each other projector) flip beyond plain steering where plain steering's grammar
breaks?".

Example::

    tb = tl_glp.studies.testbed.load()
    m = testbed_steering_map(tb, prior, natural_rows, sae, direction, out_dir="map", n_prompts=24)
    print(m.markdown)
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from jaxtyping import Float
from torch import Tensor

from tl_glp.activations.collect import collect_activations
from tl_glp.activations.sources import InMemoryActivations
from tl_glp.core import _io
from tl_glp.core.positions import Positions
from tl_glp.core.prior import GenerativePrior
from tl_glp.core.projection import ProjectionConfig
from tl_glp.probing.extract import last_token_activations
from tl_glp.saes import train_sae
from tl_glp.steering.choose import concept_shift
from tl_glp.steering.diagnose import LinearProbe, ProjectionDiagnosis, diagnose_projections, fit_probes
from tl_glp.steering.directions import diff_of_means
from tl_glp.steering.pareto import matched_concept_gains
from tl_glp.steering.projectors import (
    DirectionPreserving,
    GaussianShrinkage,
    Identity,
    LikelihoodGated,
    NormClamp,
    PCAProjector,
    PriorProjector,
    Projector,
    SAEProjector,
    ScorePull,
    meta_neuron_subspace,
)
from tl_glp.steering.sweep import cost_table, plot_pareto, steering_sweep
from tl_glp.studies.testbed import MIDDLE_HOOK, load
from tl_glp.studies.testbed.tasks import concept_scorer, grammatical_scorer, judgement_prefixes, steering_prompts
from tl_glp.training.config import TrainConfig
from tl_glp.training.trainer import train

MAP_STRENGTHS = (0.5, 1.0, 1.25, 1.5, 1.75, 2.0)
"""A finer grid around where plain steering breaks on the testbed (between r = 1 and 2)."""

Guided = Literal["none", "cheap", "all"]
"""Which of the projectors that keep the concept a map adds (:func:`guided_projectors`)."""


@dataclass
class SteeringMap:
    """What :func:`steering_map` returns."""

    sweep: Any
    """The sweep's DataFrame (one row per generation)."""
    gains: dict[str, Any]
    """``{fluency column: matched_concept_gains table}`` (each projector and positions vs plain)."""
    cost: Any
    """:func:`~tl_glp.steering.sweep.cost_table` of the sweep: seconds per generated token and the cost relative to plain."""
    diagnosis: ProjectionDiagnosis | None
    flips: Any
    """Per projector and r: each probe's flip rate beyond plain steering's (None without probes)."""
    direction_check: dict[str, Any] = field(default_factory=dict)
    """:func:`~tl_glp.steering.choose.concept_shift` of the sweep: does plain steering move the concept on
    *these* prompts? Where it does not (``steers`` False), the gains compare fluency at an unchanged concept."""
    markdown: str = ""
    numbers: dict[str, Any] = field(default_factory=dict)
    figures: list[str] = field(default_factory=list)


def standard_projectors(
    prior: GenerativePrior,
    natural: Float[Tensor, "n d"],
    sae: Any = None,
    *,
    direction: Float[Tensor, " d"] | None = None,
    pca_k: int = 16,
    projection: ProjectionConfig | None = None,
    gaussian_quantile: float = 0.99,
    guided: Guided = "cheap",
    calibration: Float[Tensor, "n d"] | None = None,
) -> list[Projector]:
    """Every way back to the manifold the map compares: plain, the prior (``projection``, default the
    reference), the SAE round trip with and without the unsteered error (when ``sae`` is given),
    PCA with ``pca_k`` components and the Gaussian Mahalanobis cap, the last two fitted on
    ``natural`` activations; then the projectors that keep the concept (:func:`guided_projectors`,
    ``guided``: ``"cheap"``, ``"all"`` or ``"none"``)."""
    if guided not in ("none", "cheap", "all"):
        raise ValueError(f"guided must be 'none', 'cheap' or 'all', got {guided!r}.")
    prior_projector = PriorProjector(prior, projection or ProjectionConfig(), name="prior")
    out: list[Projector] = [Identity(), prior_projector]
    if sae is not None:
        out += [SAEProjector(sae), SAEProjector(sae, keep_error=True)]
    out += [PCAProjector.fit(natural, pca_k), GaussianShrinkage.fit(natural, quantile=gaussian_quantile)]
    if guided != "none":
        out += guided_projectors(
            prior_projector, natural, direction, calibration=calibration, cheap_only=guided == "cheap", k=pca_k
        )
    return out


def guided_projectors(
    prior_projector: PriorProjector,
    natural: Float[Tensor, "n d"],
    direction: Float[Tensor, " d"] | None,
    *,
    calibration: Float[Tensor, "n d"] | None = None,
    cheap_only: bool = True,
    k: int = 16,
) -> list[Projector]:
    """The projectors that keep the concept (:mod:`tl_glp.steering.projectors.guided`), built around
    ``prior_projector`` (named ``"prior"`` in the map):

    - ``prior (keep w)``: :class:`~tl_glp.steering.projectors.DirectionPreserving` around the prior
      (needs ``direction``; as many network evaluations as the prior);
    - ``score pull t=0.1``: :class:`~tl_glp.steering.projectors.ScorePull` with its defaults (3
      evaluations, the move capped at 0.25 act_norm);
    - ``norm clamp (raw)``: :class:`~tl_glp.steering.projectors.NormClamp` into the 0.01-0.99 quantiles of
      ``natural`` norms (no network);
    - ``norm clamp (std) + prior``: the same in the prior's standardized space, before the prior;

    and unless ``cheap_only``, the ones that cost more than the prior's projection per token or a fit:

    - ``gated prior``: :class:`~tl_glp.steering.projectors.LikelihoodGated` at the 0.99 quantile of
      the denoising scores of ``calibration`` rows (held-out natural rows; default ``natural``);
    - ``prior (keep w, x0 outside k)``: the keep-w projection acting only inside the ``k``-dimensional
      subspace of the prior's most variable meta-neurons (:func:`~tl_glp.steering.projectors.meta_neuron_subspace`).
    """
    prior = prior_projector.prior
    out: list[Projector] = []
    if direction is not None:
        out.append(DirectionPreserving(prior_projector, direction, name=f"{prior_projector.name} (keep w)"))
    out += [
        ScorePull(prior),
        NormClamp.fit(natural),
        NormClamp.fit(natural, space="standardized", then=prior_projector),
    ]
    if not cheap_only:
        gate = LikelihoodGated.fit(
            prior, natural if calibration is None else calibration, config=prior_projector.config, name="gated prior"
        )
        out.append(gate)
        if direction is not None:
            u = meta_neuron_subspace(prior, natural, k)
            name = f"{prior_projector.name} (keep w, x0 outside k={k})"
            out.append(DirectionPreserving(prior_projector, direction, keep_outside=u, name=name))
    return out


def steering_map(
    model: Any,
    prior: GenerativePrior,
    direction: Float[Tensor, " d_model"],
    prompts: Sequence[str],
    projectors: Sequence[Projector],
    *,
    hook_name: str,
    out_dir: str | Path,
    strengths: Sequence[float] = MAP_STRENGTHS,
    positions: Sequence[Positions] = ("last", "all"),
    max_new_tokens: int = 12,
    concept: Any = None,
    scorers: Sequence[Any] = (),
    fluencies: Sequence[str] = ("grammatical", "nll"),
    probes: dict[str, LinearProbe] | None = None,
    diagnose_prompts: Sequence[str] = (),
    diagnose_strengths: Sequence[float] | None = None,
    seed: int = 0,
    n_boot: int = 1000,
    progress: bool = True,
) -> SteeringMap:
    """The head-to-head (module docstring); writes ``steering_map.csv``, ``steering_map_pareto*.png``,
    ``steering_diagnosis.csv`` and ``steering_diagnosis.png`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    methods = ["plain", *[p for p in projectors if not isinstance(p, Identity)]]
    df = steering_sweep(
        model,
        direction,
        prompts,
        prior=prior,
        strengths=strengths,
        methods=methods,
        positions=list(positions),
        hook_name=hook_name,
        max_new_tokens=max_new_tokens,
        concept=concept,
        scorers=scorers,
        seed=seed,
        progress=progress,
    )
    df.to_csv(out / "steering_map.csv", index=False)
    figures = []
    gains = {}
    for fluency in [f for f in fluencies if f in df.columns]:
        gains[fluency] = matched_concept_gains(df, fluency=fluency, n_boot=n_boot, seed=seed)
        name = f"steering_map_pareto_{fluency}.png"
        plot_pareto(df, out / name, fluency=fluency, title=f"Every way back to the manifold: concept vs {fluency}")
        figures.append(name)
    diagnosis, flips = None, None
    if diagnose_prompts:
        diagnosis = diagnose_projections(
            model,
            diagnose_prompts,
            direction,
            projectors,
            hook_name=hook_name,
            strengths=diagnose_strengths or strengths,
            prior=prior,
            probes=probes,
            seed=seed,
            progress=progress,
        )
        diagnosis.to_csv(out / "steering_diagnosis.csv")
        diagnosis.plot(out / "steering_diagnosis.png")
        figures.append("steering_diagnosis.png")
        if probes:
            flips = diagnosis.flips()
    result = SteeringMap(
        df,
        gains,
        cost_table(df, max_new_tokens=max_new_tokens),
        diagnosis,
        flips,
        direction_check=concept_shift(df, n_boot=n_boot, seed=seed),
        figures=figures,
    )
    result.numbers = map_numbers(result)
    result.markdown = map_markdown(result)
    return result


def map_numbers(m: SteeringMap) -> dict[str, Any]:
    """Headline numbers: each projector's gain (with CI) per fluency and positions, the generation
    cost (``map_cost_seconds``: per projector and positions, seconds per token and the ratio to
    plain), and, per projector and r, the probe it flips most beyond plain steering."""
    numbers: dict[str, Any] = {}
    for fluency, table in m.gains.items():
        for row in table.to_dict("records"):
            key = f"map_gain_{fluency}_{row['method']}" + (f"_{row['positions']}" if "positions" in row else "")
            numbers[key] = {"gain": row["gain"], "ci": [row["ci_low"], row["ci_high"]], "reason": row["reason"]}
    cost = {}  # wall clock: one key ending in "seconds", which run-to-run comparisons leave out
    for row in m.cost.to_dict("records"):
        key = row["method"] + (f" @ {row['positions']}" if "positions" in row else "")
        cost[key] = {"seconds_per_token": row["seconds_per_token"], "vs_plain": row["cost_vs_plain"]}
    numbers["map_cost_seconds"] = cost
    if m.direction_check:
        numbers["map_direction_check"] = m.direction_check
    if m.flips is not None:
        for row in m.flips.to_dict("records"):
            numbers[f"map_most_flipped_{row['projector']}_r{row['r']:g}"] = {
                "latent": row["most_flipped"],
                "excess": row["excess"],
            }
    return numbers


def direction_check_line(check: dict[str, Any]) -> str:
    """One sentence on the map's own direction check (:attr:`SteeringMap.direction_check`).

    >>> direction_check_line({"steers": False, "best_r": 0.25, "shift": 0.05, "ci_low": -0.1, "ci_high": 0.2,
    ...                       "per_r": {"0.25": {}}})
    'On these prompts plain steering moves the concept by +0.050 [-0.100, +0.200] at its best r (0.25): it does not steer here, so the gains above compare fluency at an unchanged concept and say nothing about keeping it.'
    """
    if not check.get("per_r"):
        return "On these prompts no plain steering was scored, so the concept shift is unknown."
    text = (
        f"On these prompts plain steering moves the concept by {check['shift']:+.3f} [{check['ci_low']:+.3f}, "
        f"{check['ci_high']:+.3f}] at its best r ({check['best_r']:g})"
    )
    if check["steers"]:
        return text + ": it steers here."
    return (
        text + ": it does not steer here, so the gains above compare fluency at an unchanged concept and say "
        "nothing about keeping it."
    )


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "n/a" if v != v else f"{v:+.3f}" if abs(v) < 10 else f"{v:.1f}"
    return str(v)


def _md(frame: Any) -> str:
    cols = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(_fmt(v).replace("|", "/") for v in row) + " |")
    return "\n".join(lines)


def gains_table(m: SteeringMap) -> Any:
    """One row per projector and positions: the gain and CI for each fluency, side by side."""
    import pandas as pd

    parts = []
    for fluency, table in m.gains.items():
        keys = ["method"] + (["positions"] if "positions" in table.columns else [])
        t = table[keys].copy()
        t[f"{fluency} gain [95% CI]"] = [
            f"{g:+.3f} [{lo:+.3f}, {hi:+.3f}]" if g == g else f"n/a ({why})"
            for g, lo, hi, why in zip(table.gain, table.ci_low, table.ci_high, table.reason)
        ]
        parts.append(t.set_index(keys))
    return pd.concat(parts, axis=1).reset_index() if parts else pd.DataFrame()


def map_markdown(m: SteeringMap) -> str:
    """The report section: gains per projector and positions, the fronts, the diagnosis."""
    lines = [
        "## Steering head to head: every way back to the manifold",
        "",
        "Each projector against plain steering at the same positions, at matched concept (mean gap between the Pareto "
        "fronts; positive = more fluent than plain; 95% bootstrap CI over prompts; `grammatical` in share of grammatical "
        "continuations, `nll` in nats with the sign flipped). One sweep: strength x projector x positions, every projector "
        "of a (strength, batch) unit on the same seed.",
        "",
        _md(gains_table(m)),
        "",
    ]
    if m.direction_check:
        lines += [direction_check_line(m.direction_check), ""]
    lines += [
        "Cost of generation per token, relative to plain steering at the same positions (wall clock, steering and "
        "projection included, scoring not):",
        "",
        _md(m.cost),
        "",
    ]
    lines += [f"![{f}]({f})" for f in m.figures if f.startswith("steering_map_pareto")]
    if m.diagnosis is not None:
        s = m.diagnosis.summary()
        keep = [
            "projector",
            "r",
            "moved",
            "kept",
            "off_direction",
            "kl",
            "noised_norm_ratio",
            "gate_t",
            "evaluations",
            "denoising_steered",
            "denoising_projected",
        ]
        keep += [c for c in s.columns if c.startswith("flip_")]
        lines += [
            "",
            "### What each projection changes",
            "",
            "At the last token of held-out document prefixes, steered by `r * act_norm`: `moved` distance the projection moved "
            "the steered activation (/ act_norm), `kept` share of the steering displacement kept along the direction, "
            "`off_direction` displacement orthogonal to it (/ alpha), `kl` next-token KL to the unsteered model (nats), "
            "`noised_norm_ratio` norm of the prior's noised input over a natural one's at the same time, `gate_t` the "
            "likelihood gate's time (0 = left alone), `evaluations` the prior's network evaluations per activation, "
            "`denoising_*` the "
            "prior's denoising score before/after, `flip_<latent>` share of activations whose probe decision flips.",
            "",
            _md(s[[c for c in keep if c in s.columns]]),
            "",
            "![diagnosis](steering_diagnosis.png)",
            "",
        ]
    if m.flips is not None:
        cols = ["projector", "r", "most_flipped", "excess"]
        lines += [
            "Which concept each projector flips beyond plain steering (flip rate minus plain's at the same r):",
            "",
            _md(m.flips[cols]),
            "",
        ]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the testbed
LATENT_LABELS = {"sentiment": "positive", "tense": "past", "number": "plural", "negation": "negated"}


def testbed_prefixes(language: Any, n: int, seed: int) -> tuple[list[str], dict[str, list[bool]]]:
    """``n`` document prefixes cut at random words, and the ground-truth latents at each prefix's last
    word (sentiment, tense, number, negation, and each topic against the rest)."""
    from tl_glp.studies.testbed.language import TOPICS

    rng = random.Random(seed)
    prompts: list[str] = []
    labels: dict[str, list[bool]] = {k: [] for k in [*LATENT_LABELS, *[f"topic_{t}" for t in TOPICS]]}
    for doc in language.documents(n, seed=seed):
        i = rng.randrange(2, len(doc.words) - 1)
        prompts.append(" ".join(doc.words[: i + 1]))
        for k, v in LATENT_LABELS.items():
            labels[k].append(doc.latents[k][i] == v)
        for t in TOPICS:
            labels[f"topic_{t}"].append(doc.latents["topic"][i] == t)
    return prompts, labels


def text_prefixes(texts: Sequence[str], n: int, *, min_words: int = 3, max_words: int = 12, seed: int = 0) -> list[str]:
    """``n`` prompts cut from ``texts``: each text's first k words, k drawn in ``[min_words, max_words]``
    (seeded; texts shorter than ``min_words`` words are skipped). What a real model's map steers and
    diagnoses when no ground truth says where a concept lives.

    >>> text_prefixes(["one two three four five", "a b", "x y z w"], 5, max_words=3)
    ['one two three', 'x y z']
    """
    rng = random.Random(seed)
    out = []
    for text in texts:
        words = text.split()
        if len(words) < min_words:
            continue
        out.append(" ".join(words[: rng.randint(min_words, min(max_words, len(words)))]))
        if len(out) == n:
            break
    return out


def model_steering_map(
    model: Any,
    prior: GenerativePrior,
    natural: Float[Tensor, "n d"],
    sae: Any,
    direction: Float[Tensor, " d_model"],
    texts: Sequence[str],
    *,
    hook_name: str,
    out_dir: str | Path,
    n_prompts: int = 24,
    strengths: Sequence[float] = MAP_STRENGTHS,
    positions: Sequence[Positions] = ("last", "all"),
    max_new_tokens: int = 12,
    pca_k: int = 16,
    guided: Guided = "cheap",
    calibration: Float[Tensor, "n d"] | None = None,
    n_diagnose: int = 200,
    concept: Any = None,
    scorers: Sequence[Any] = (),
    fluencies: Sequence[str] = ("nll",),
    prompts: Sequence[str] | None = None,
    seed: int = 0,
    n_boot: int = 1000,
    progress: bool = True,
) -> SteeringMap:
    """:func:`steering_map` on any model (what ``tl-glp demo --model gpt2`` runs): prompts cut from the
    first half of held-out ``texts`` (or the first ``n_prompts`` of ``prompts``: pass the prompts on which
    the direction was checked to steer, since a direction that moves the concept on neutral stems need not
    move it on document prefixes) and diagnosis prefixes from the second half (:func:`text_prefixes`),
    the concept read by the default :class:`~tl_glp.steering.scorers.DirectionScorer` (the unsteered
    model's activations along ``direction``), fluency as the unsteered model's NLL, and no probes (no
    ground truth): the diagnosis reports distance moved, share kept along the direction, the
    noised input's norm ratio and denoising score, and the next-token KL. The projectors are
    :func:`standard_projectors` (``guided`` and ``calibration``, held-out natural rows for the
    likelihood gate, are its).

    Judges nobody here wrote replace or join these: ``concept`` (e.g.
    :class:`~tl_glp.steering.scorers.VaderScorer`), ``scorers`` (extra columns, e.g.
    :class:`~tl_glp.steering.scorers.ForeignNLL` and :class:`~tl_glp.steering.scorers.DistinctN`) and
    ``fluencies`` (the columns each projector's gain is read on, e.g. ``("nll_gemma", "distinct_2")``:
    report both an NLL and a repetition measure, so that degenerate text cannot win).

    Example (a tiny random model, an untrained prior, one strength)::

        m = model_steering_map(model, prior, rows, None, w, texts, hook_name=hook, out_dir="map",
                               n_prompts=4, strengths=(1.0,), positions=("last",), n_diagnose=8)
        m.gains["nll"]  # each projector vs plain at matched concept
    """
    half = len(texts) // 2  # prompts from the first half, diagnosis prefixes from the second: never the same text
    if prompts is None:
        prompts = text_prefixes(list(texts)[:half], n_prompts, seed=seed + 3)
    else:
        prompts = list(prompts)[:n_prompts]
    diag_prompts = text_prefixes(list(texts)[half:], n_diagnose, seed=seed + 6)
    if len(prompts) < 2 or not diag_prompts:
        raise ValueError(
            f"model_steering_map: {len(prompts)} prompts and {len(diag_prompts)} diagnosis prefixes from "
            f"{len(texts)} texts (the map needs 2 or more prompts and 1 or more prefixes; each prefix needs a text "
            "of 3 or more words; prompts, unless passed, come from the first half): pass more text or prompts."
        )
    return steering_map(
        model,
        prior,
        direction,
        prompts,
        standard_projectors(
            prior, natural, sae, direction=direction, pca_k=pca_k, guided=guided, calibration=calibration
        ),
        hook_name=hook_name,
        out_dir=out_dir,
        strengths=strengths,
        positions=positions,
        max_new_tokens=max_new_tokens,
        concept=concept,
        scorers=scorers,
        fluencies=fluencies,
        diagnose_prompts=diag_prompts,
        seed=seed,
        n_boot=n_boot,
        progress=progress,
    )


def testbed_probes(model: Any, language: Any, hook_name: str, n: int = 1500, seed: int = 0) -> dict[str, LinearProbe]:
    """Linear probes of every ground-truth latent, trained on the last token of ``n`` prefixes."""
    prompts, labels = testbed_prefixes(language, n, seed)
    acts = last_token_activations(model, prompts, [hook_name])[hook_name]
    return fit_probes(acts, {k: torch.tensor(v) for k, v in labels.items()})


def testbed_steering_map(
    testbed: Any,
    prior: GenerativePrior,
    natural: Float[Tensor, "n d"],
    sae: Any,
    direction: Float[Tensor, " d_model"],
    *,
    hook_name: str,
    out_dir: str | Path,
    n_prompts: int = 24,
    strengths: Sequence[float] = MAP_STRENGTHS,
    positions: Sequence[Positions] = ("last", "all"),
    max_new_tokens: int = 12,
    pca_k: int = 16,
    guided: Guided = "cheap",
    calibration: Float[Tensor, "n d"] | None = None,
    n_probe_prefixes: int = 1500,
    n_diagnose: int = 200,
    seed: int = 0,
    n_boot: int = 1000,
    progress: bool = True,
) -> SteeringMap:
    """:func:`steering_map` on the testbed: ground-truth concept and grammaticality, probes of the
    ground-truth latents, and the numbers ``map_flips_where_plain_breaks`` (per projector, the latent
    it flips most beyond plain steering, at the strengths where plain steering's share of
    grammatical continuations falls below 0.5, if any; :func:`flips_where_plain_breaks`) and
    ``map_prior_flips_where_plain_breaks`` (the prior's). The projectors are
    :func:`standard_projectors` (``guided``; ``calibration``: held-out natural rows for the gate)."""
    language = testbed.language
    prompts = steering_prompts(language, n_prompts, seed=seed + 3)
    probes = testbed_probes(testbed.model, language, hook_name, n=n_probe_prefixes, seed=seed + 5)
    diag_prompts, _ = testbed_prefixes(language, n_diagnose, seed=seed + 6)
    projectors = standard_projectors(
        prior, natural, sae, direction=direction, pca_k=pca_k, guided=guided, calibration=calibration
    )
    m = steering_map(
        testbed.model,
        prior,
        direction,
        prompts,
        projectors,
        hook_name=hook_name,
        out_dir=out_dir,
        strengths=strengths,
        positions=positions,
        max_new_tokens=max_new_tokens,
        concept=concept_scorer(language),
        scorers=[grammatical_scorer(language)],
        probes=probes,
        diagnose_prompts=diag_prompts,
        seed=seed,
        n_boot=n_boot,
        progress=progress,
    )
    plain = m.sweep[(m.sweep.method == "plain")].groupby(["positions", "r"]).grammatical.mean()
    broken = sorted({r for (pos, r), g in plain.items() if g < 0.5})
    m.numbers["map_plain_breaks_at"] = broken
    if m.flips is not None:
        import pandas as pd

        where = flips_where_plain_breaks(m.flips, broken)
        if where:
            m.numbers["map_flips_where_plain_breaks"] = where
            if "prior" in where:
                m.numbers["map_prior_flips_where_plain_breaks"] = where["prior"]
                top = where["prior"]
                m.markdown += (
                    f"\nWhere plain steering's grammar breaks (r in {broken}), the prior's projection flips "
                    f"**{top['latent']}** most beyond plain steering (flip rate +{top['excess']:.2f} over plain's, "
                    "averaged over those r).\n"
                )
            table = [{"projector": p, "most flipped": v["latent"], "excess": v["excess"]} for p, v in where.items()]
            m.markdown += (
                "\nEvery projector there (flip rate beyond plain's, mean over those r):\n\n"
                + _md(pd.DataFrame(table))
                + "\n"
            )
        else:
            m.markdown += "\nPlain steering stays mostly grammatical (>= 0.5) at every strength mapped here.\n"
    return m


def flips_where_plain_breaks(flips: Any, broken: Sequence[float]) -> dict[str, Any]:
    """Per projector, at the strengths ``broken``: each probe's flip rate beyond plain's averaged over
    those r, and the latent it flips most (``{projector: {latent, excess, excess_by_latent}}``;
    empty when ``broken`` is)."""
    out: dict[str, Any] = {}
    at = flips[flips.r.isin(list(broken))]
    cols = [c for c in at.columns if c.startswith("excess_flip_")]
    for proj, part in at.groupby("projector", sort=False):
        excess = part[cols].mean()
        out[str(proj)] = {
            "latent": excess.idxmax().removeprefix("excess_flip_"),
            "excess": float(excess.max()),
            "excess_by_latent": {k.removeprefix("excess_flip_"): float(v) for k, v in excess.items()},
        }
    return out


def run_testbed_map(
    out_dir: str | Path,
    *,
    seed: int = 0,
    n_docs: int = 2500,
    prior_steps: int = 1000,
    sae_steps: int = 500,
    n_prompts: int = 24,
    strengths: Sequence[float] = MAP_STRENGTHS,
    positions: Sequence[Positions] = ("last", "all"),
    max_new_tokens: int = 12,
    n_probe_prefixes: int = 1500,
    n_diagnose: int = 200,
    guided: Guided = "all",
    progress: bool = False,
) -> SteeringMap:
    """The README's larger steering map for one seed, end to end on the shipped testbed: activations of
    ``n_docs`` documents at ``blocks.2.hook_resid_post`` (the last quarter held out of training), a
    3-block prior trained ``prior_steps`` steps of 512 (lr 2e-3 decaying to 1%), an SAE-Lens TopK SAE
    (1024 latents, k 16, ``sae_steps`` steps), the demo's sentiment direction, then
    :func:`testbed_steering_map` with every projector that keeps the concept (``guided="all"``; the
    likelihood gate calibrated on the held-out quarter). Writes its files, ``map.md`` and
    ``numbers.json`` (with the seconds of each part) into ``out_dir``.

    Example::

        for seed in (0, 1, 2):
            run_testbed_map(f"map_seed{seed}", seed=seed)
    """
    out = Path(out_dir)
    clock = time.perf_counter()
    torch.manual_seed(seed)
    tb = load(progress=progress)
    acts = collect_activations(
        tb.model, tb.language.sample_texts(n_docs, seed=seed + 1), MIDDLE_HOOK, progress=progress
    )
    data = acts[0 : len(acts)]
    natural, held_out = data[: -max(len(data) // 4, 200)], data[-max(len(data) // 4, 200) :]
    source = InMemoryActivations(natural[:, None], [MIDDLE_HOOK], acts.model_name, acts.model_processing)
    prior = GenerativePrior.from_activations(source, n_blocks=3)
    cfg = TrainConfig(
        batch_size=512,
        lr=2e-3,
        final_lr_frac=0.01,
        max_steps=prior_steps,
        eval_every=0,
        checkpoint_every=prior_steps,
        progress=progress,
        seed=seed,
    )
    run = train(prior, source, cfg, out_dir=out / "prior", resume=False)
    seconds = {"seconds_prior": time.perf_counter() - clock}
    tick = time.perf_counter()
    sae = train_sae(source, d_sae=1024, k=16, steps=sae_steps, seed=seed)
    seconds["seconds_sae"] = time.perf_counter() - tick
    tick = time.perf_counter()
    docs = list(tb.language.documents(600, seed=seed + 2))
    direction = diff_of_means(
        tb.model,
        judgement_prefixes(docs, "positive"),
        judgement_prefixes(docs, "negative"),
        MIDDLE_HOOK,
        positions="last",
    )
    m = testbed_steering_map(
        tb,
        prior,
        natural,
        sae,
        direction,
        hook_name=MIDDLE_HOOK,
        out_dir=out,
        n_prompts=n_prompts,
        strengths=strengths,
        positions=positions,
        max_new_tokens=max_new_tokens,
        n_probe_prefixes=n_probe_prefixes,
        n_diagnose=n_diagnose,
        guided=guided,
        calibration=held_out,
        seed=seed,
        progress=progress,
    )
    seconds["seconds_map"] = time.perf_counter() - tick
    m.numbers.update(seconds, final_loss=run.final_loss, seed=seed, prior_steps=prior_steps, n_docs=n_docs)
    with _io.atomic_path(out / "map.md") as tmp:
        tmp.write_text(m.markdown)
    _io.write_json(out / "numbers.json", m.numbers)
    return m
