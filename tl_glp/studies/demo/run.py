"""``run_demo``: the demo's eight stages in order (see :mod:`tl_glp.studies.demo`), each announced as
``[k/N]`` with the seconds elapsed, and every longer step inside it with a bar or a line."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from tl_glp.activations.collect import collect_activations
from tl_glp.activations.sources import InMemoryActivations
from tl_glp.core.prior import GenerativePrior
from tl_glp.core.projection import ProjectionConfig
from tl_glp.evaluation import compare_delta_lm_loss
from tl_glp.manifold.detection import detect_off_manifold
from tl_glp.models import load_model
from tl_glp.probing import MetaNeurons, MLPNeurons, PCAFeatures, RawActivations, SAEFeatures, load_dataset, run_probing
from tl_glp.saes import load_sae, sae_reconstruction_hook, train_sae
from tl_glp.steering import (
    VaderScorer,
    diff_of_means,
    matched_concept_gain,
    plot_pareto,
    projection_hook,
    steering_sweep,
)
from tl_glp.steering.choose import choose_direction, middle_layer_hooks
from tl_glp.studies.demo.corpus import corpus_texts, split_dataset_args
from tl_glp.studies.demo.quality import heavy_tail_quality
from tl_glp.studies.demo.real import (
    CALIBRATION_STEMS,
    NEUTRAL_STEMS,
    REAL_NEGATIVE,
    REAL_POSITIVE,
    direction_check,
    offline_texts,
    outside_judges,
    probing_subsets,
)
from tl_glp.studies.demo.report import library_versions, write_report
from tl_glp.studies.demo.settings import REAL_STAGES, STAGES, DemoResult, DemoSettings
from tl_glp.studies.demo.verdicts import conclusions, steering_table, summary_text
from tl_glp.studies.interpret_run import ground_truth_section
from tl_glp.studies.splits import held_out_split, other_document_rows
from tl_glp.studies.steering_map import direction_check_line, model_steering_map, testbed_steering_map
from tl_glp.studies.testbed import MIDDLE_HOOK, load
from tl_glp.studies.testbed.tasks import concept_scorer, grammatical_scorer, judgement_prefixes, steering_prompts
from tl_glp.training.config import TrainConfig
from tl_glp.training.metrics import classifier_two_sample_auc, frechet_distance_infinity_ci, gaussian_like
from tl_glp.training.trainer import train


class _Progress:
    """Prints ``[k/N] stage`` lines and indented step lines, each with the seconds elapsed since the start,
    so that no stretch of the demo passes silently; ``enabled=False`` prints nothing."""

    def __init__(self, stages: tuple[str, ...], enabled: bool) -> None:
        self.stages, self.enabled, self.start = stages, enabled, time.perf_counter()

    def stage(self, name: str, detail: str = "") -> None:
        k = self.stages.index(name) + 1
        self._print(f"[{k}/{len(self.stages)}] {name}{': ' + detail if detail else ''}")

    def step(self, text: str) -> None:
        self._print(f"      {text}")

    def _print(self, text: str) -> None:
        if self.enabled:
            print(f"{text}  ({time.perf_counter() - self.start:.0f} s)", flush=True)


def frechet_numbers(
    references: Sequence[tuple[str, Tensor]],
    held: Tensor,
    *,
    n_boot: int,
    seed: int,
    say: _Progress | None = None,
) -> dict[str, Any]:
    """FD-infinity of each ``(name, rows)`` reference to ``held`` with its bootstrap CI, as the
    demo's numbers: ``fd_<name>`` (the estimate), ``fd_<name>_ci`` (``[low, high]``, 95%),
    ``fd_<name>_se`` (bootstrap standard error) and ``fd_<name>_at_n`` (FD at all rows), plus
    ``fd_boot`` (the resamples behind each CI)."""
    numbers: dict[str, Any] = {"fd_boot": n_boot}
    for i, (name, other) in enumerate(references):
        if say is not None:
            say.step(
                f"Frechet distance {i + 1}/{len(references)} ({name}, {len(held)} rows per side, {n_boot} bootstrap resamples)"
            )
        r = frechet_distance_infinity_ci(other, held, n_boot=n_boot, seed=seed)
        numbers.update(
            {
                f"fd_{name}": r.fd_inf,
                f"fd_{name}_ci": [r.ci_low, r.ci_high],
                f"fd_{name}_se": r.std_error,
                f"fd_{name}_at_n": r.estimate.fd_at_n[-1],
            }
        )
    return numbers


def run_demo(
    out_dir: str | Path = "demo_out",
    *,
    quick: bool = False,
    full: bool = False,
    model_name: str = "testbed",
    hook: str | None = None,
    sae: str | None = None,
    datasets: list[str] | None = None,
    device: str | None = None,
    progress: bool = True,
    settings: DemoSettings | None = None,
    bridge: bool = False,
) -> DemoResult:
    """Run every step and write ``report.md`` + figures into ``out_dir``; returns the numbers.

    ``settings`` (sizes and steps) wins over ``quick`` (:meth:`DemoSettings.quick`) and ``full``
    (:meth:`DemoSettings.full`, the README's full-size run); without any of them a real model starts from
    :meth:`DemoSettings.real` and the testbed from ``DemoSettings()``; ``bridge`` loads a real ``model_name``
    through ``TransformerBridge`` (see :func:`tl_glp.models.load_model`: registered names such as
    ``smollm2-135m``, local ``.gguf`` files, folders and Hub ids)."""

    if quick and full:
        raise ValueError("run_demo: pass quick=True or full=True, not both.")
    default = DemoSettings() if model_name == "testbed" else DemoSettings.real()
    cfg = settings or (DemoSettings.quick() if quick else DemoSettings.full() if full else default)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result = DemoResult(out)
    clock = time.perf_counter()
    torch.manual_seed(cfg.seed)
    stages = STAGES if model_name == "testbed" else REAL_STAGES
    if cfg.map_prompts <= 0:
        stages = tuple(s for s in stages if s != "steering head to head")
    say = _Progress(stages, progress)

    # 1. the model ------------------------------------------------------------------------------
    say.stage("model", "the shipped testbed" if model_name == "testbed" else model_name)
    testbed = None
    if model_name == "testbed":
        testbed = load(progress=progress)  # the shipped testbed model; the demo's seed varies everything after it
        model, hook = testbed.model, hook or MIDDLE_HOOK
        result.numbers["testbed_lm_loss"] = testbed.metrics["lm_loss"]
        result.numbers["testbed_entropy_floor"] = testbed.metrics["entropy_floor"]
        texts = testbed.language.sample_texts(cfg.n_docs + cfg.lm_eval_docs, seed=cfg.seed + 1)
    else:
        model = load_model(model_name, device=device, bridge=bridge, progress=progress)
        if datasets:
            corpus, probe_args = split_dataset_args(datasets)
            texts = corpus_texts(corpus, probe_args, cfg.n_docs + cfg.lm_eval_docs)
        else:  # offline: the SAE-Probes texts, split so that no evaluation text is in training
            say.step("the SAE-Probes corpus, split into training and evaluation documents (no near duplicates across)")
            train_part, eval_part = offline_texts(cfg.n_docs, cfg.lm_eval_docs, seed=cfg.seed, progress=progress)
            texts = train_part + eval_part
    train_texts, eval_texts = texts[: cfg.n_docs], texts[cfg.n_docs :]
    target = "positive"
    if testbed is None:  # 1b. the steering direction's layer and side, chosen before the prior is trained there
        hook, target = _choose_direction(model, hook, train_texts, cfg, result, say, progress)

    # 2. activations ----------------------------------------------------------------------------
    say.stage("activations", f"{cfg.n_docs} documents at {hook}")
    acts = collect_activations(model, train_texts, hook, progress=progress)
    data = acts[0 : len(acts)]
    n_held = max(200, min(len(data) // 5, 2 * cfg.eval_samples))
    train_rows, held_a, held_b = held_out_split(
        data, n_held, cfg.seed
    )  # the last quarter of the documents, never trained on
    result.numbers["activation_rows"] = len(acts)

    # 3. the prior --------------------------------------------------------------------------------
    width = 2 * data.shape[-1] if cfg.prior_d_hidden <= 0 else min(2 * data.shape[-1], cfg.prior_d_hidden)
    say.stage(
        "prior",
        f"{cfg.n_blocks} blocks of width {width} (MLP {2 * width}), {cfg.prior_steps} steps of {cfg.prior_batch} rows",
    )

    train_src = InMemoryActivations(train_rows[:, None], [hook], acts.model_name, acts.model_processing)
    prior = GenerativePrior.from_activations(train_src, n_blocks=cfg.n_blocks, d_hidden=width, d_mlp=2 * width)
    run = train(
        prior,
        train_src,
        TrainConfig(
            batch_size=cfg.prior_batch,
            lr=cfg.prior_lr,
            final_lr_frac=cfg.prior_final_lr_frac,
            max_steps=cfg.prior_steps,
            eval_every=max(1, cfg.prior_steps // 4),
            checkpoint_every=cfg.prior_steps,
            fd_samples=min(1000, cfg.eval_samples),
            progress=progress,
            seed=cfg.seed,
            device=device,
        ),
        out_dir=out / "prior",
        resume=False,
    )  # a demo always trains afresh (its data may have changed)
    result.figures.append("prior/loss.png")
    n = min(cfg.eval_samples, len(held_a), len(held_b))
    gen = torch.Generator().manual_seed(cfg.seed)
    say.step(f"sampling {n} activations from the prior ({cfg.sample_steps} Euler steps)")
    samples = prior.sample(n, num_steps=cfg.sample_steps, generator=gen).cpu()
    gaussian = gaussian_like(train_rows, n, seed=cfg.seed)
    other_docs = other_document_rows(train_rows, n, cfg.seed + 1)  # the FD lower bound (tl_glp.studies.splits)
    references = (
        ("prior", samples),
        ("lower_bound", other_docs),
        ("held_out_halves", held_b[:n]),
        ("gaussian", gaussian),
    )
    result.numbers.update({"prior_final_train_loss": run.final_loss, "eval_samples": n})
    result.numbers.update(frechet_numbers(references, held_a[:n], n_boot=cfg.fd_boot, seed=cfg.seed, say=say))
    say.step("Frechet distance on normalised rows (the prior's statistics; robust median/MAD with a norm cap)")
    result.numbers.update(heavy_tail_quality(prior, train_rows, held_a[:n], references, out, seed=cfg.seed))
    result.figures.append("norms.png")
    for i, (name, other) in enumerate((("prior", samples), ("gaussian", gaussian), ("held_out", held_b[:n]))):
        say.step(f"classifier two-sample test {i + 1}/3 ({name}: {cfg.c2st_steps} steps)")
        result.numbers[f"c2st_auc_{name}"] = classifier_two_sample_auc(
            held_a[:n], other, seed=cfg.seed, steps=cfg.c2st_steps
        )
    if sae:
        say.step(f"loading the SAE {sae}")
        sae_model = load_sae(sae, device)
    else:
        say.step(f"training an SAE-Lens TopK SAE ({cfg.d_sae} latents, k={cfg.sae_k}, {cfg.sae_steps} steps)")
        sae_model = train_sae(
            train_src,
            d_sae=cfg.d_sae,
            k=cfg.sae_k,
            steps=cfg.sae_steps,
            seed=cfg.seed,
            device=device or "cpu",
            progress=progress,
        )
    with torch.no_grad():
        recon = sae_model.decode(sae_model.encode(held_a[:n].to(next(sae_model.parameters()).device))).cpu()
    result.numbers["sae_fraction_variance_unexplained"] = float(
        ((recon - held_a[:n]) ** 2).sum() / ((held_a[:n] - held_a[:n].mean(0)) ** 2).sum()
    )
    say.step(f"delta LM loss on {len(eval_texts)} documents: clean, prior projection, SAE reconstruction")
    lm = compare_delta_lm_loss(
        model,
        eval_texts,
        hook,
        {
            "prior": projection_hook(prior, ProjectionConfig(seed=cfg.seed), positions=slice(1, None)),
            "sae": sae_reconstruction_hook(sae_model),
        },
        seed=cfg.seed,
        progress=progress,
    )
    result.numbers["lm_loss_clean"] = lm.clean.mean()
    for name in ("prior", "sae"):
        d, lo, hi = lm.delta(name)
        result.numbers.update({f"delta_lm_loss_{name}": d, f"delta_lm_loss_{name}_ci": [lo, hi]})
    d, lo, hi = lm.difference("prior", "sae")
    result.numbers.update(
        {
            "delta_lm_loss_prior_minus_sae": d,
            "delta_lm_loss_prior_minus_sae_ci": [lo, hi],
            "lm_eval_docs": len(eval_texts),
            "lm_eval_tokens": int(lm.clean.counts.sum()),
        }
    )

    # 4. steering ---------------------------------------------------------------------------------
    strengths = cfg.strengths if testbed is not None else cfg.real_strengths
    say.stage(
        "steering",
        f"{cfg.steer_prompts} prompts x {len(strengths)} strengths x plain/prior, {cfg.new_tokens} new tokens",
    )
    if testbed is not None:
        docs = list(testbed.language.documents(600, seed=cfg.seed + 2))
        positive, negative = judgement_prefixes(docs, "positive"), judgement_prefixes(docs, "negative")
        prompts = steering_prompts(testbed.language, cfg.steer_prompts, seed=cfg.seed + 3)
        scorers: list[Any] = [grammatical_scorer(testbed.language)]
        concept: Any = concept_scorer(testbed.language)
        fluencies: tuple[str, ...] = ("grammatical", "nll")
    else:  # judges nobody here wrote: VADER for concept, another family's NLL and distinct-2 for fluency
        positive, negative = (REAL_POSITIVE, REAL_NEGATIVE) if target == "positive" else (REAL_NEGATIVE, REAL_POSITIVE)
        prompts = NEUTRAL_STEMS[: cfg.steer_prompts]
        say.step(f"the judges: VADER, distinct-2 and the NLL under {cfg.judge_model or '(no judge model)'}")
        concept, scorers, fluencies, result.numbers["judges"] = outside_judges(
            cfg.judge_model, target=target, device=device, progress=progress
        )
    # a contrastive direction where it matters: at the last token of sentences that carry the sentiment
    direction = diff_of_means(model, positive, negative, hook, positions="last")
    df = steering_sweep(
        model,
        direction,
        prompts,
        prior=prior,
        strengths=strengths,
        hook_name=hook,
        max_new_tokens=cfg.new_tokens,
        concept=concept,
        scorers=scorers,
        seed=cfg.seed,
        progress=progress,
    )
    df.to_csv(out / "steering.csv", index=False)
    plot_pareto(df, out / "steering_pareto.png", title="Sentiment steering: concept vs fluency")
    result.figures.append("steering_pareto.png")
    result.tables["steering"] = steering_table(df)
    for fluency in fluencies:
        if fluency in df.columns:
            gain = matched_concept_gain(df, fluency=fluency, seed=cfg.seed)
            result.numbers[f"steering_gain_{fluency}"] = gain.to_dict()
    # check the direction first: does plain steering move the concept judge at all?
    check = direction_check(df, seed=cfg.seed)
    result.numbers["direction_check"] = check
    if testbed is None:
        say.step(
            f"direction check: plain steering moves VADER by {check['shift']:+.3f} [{check['ci_low']:+.3f}, "
            f"{check['ci_high']:+.3f}] at r = {check['best_r']} ({'steers' if check['steers'] else 'does not steer'})"
            if check["per_r"]
            else "direction check: no prompt was scored"
        )
    mid = sorted(strengths)[len(strengths) // 2]
    chosen = df[df.r.isin([0.0, mid])].sort_values(["prompt", "method"], kind="stable")
    examples = chosen[chosen.prompt.isin(list(dict.fromkeys(df.prompt))[:4])]  # none / plain / prior side by side
    result.tables["steering_examples"] = examples[["prompt", "method", "r", "continuation"]]

    # 4b. steering head to head (tl_glp.studies.steering_map) -- begin --------------------------------------------
    if cfg.map_prompts > 0 and testbed is None and not check["steers"]:
        result.numbers["steering_map_skipped"] = (
            "plain steering does not move the concept judge clearly (the CI of its best shift holds 0), so "
            "projectors are not compared: a head to head would measure noise"
        )
        say.stage("steering head to head", "left out")
        say.step(result.numbers["steering_map_skipped"])
    elif cfg.map_prompts > 0:
        map_strengths = cfg.map_strengths if testbed is not None else cfg.real_map_strengths
        say.stage(
            "steering head to head", f"{cfg.map_prompts} prompts x {len(map_strengths)} strengths x every projector"
        )
        map_args: dict[str, Any] = dict(
            hook_name=hook,
            out_dir=out,
            n_prompts=cfg.map_prompts,
            strengths=map_strengths,
            positions=[p.strip() for p in cfg.map_positions.split(",") if p.strip()],
            max_new_tokens=cfg.map_new_tokens,
            pca_k=cfg.map_pca_k,
            n_diagnose=cfg.map_diagnose,
            guided=cfg.map_guided,
            calibration=held_b,  # held-out rows: the likelihood gate's natural range (guided="all")
            seed=cfg.seed,
            progress=progress,
        )
        if testbed is not None:  # ground truth: concept, grammar, probes of every latent
            steering_map = testbed_steering_map(
                testbed, prior, train_rows, sae_model, direction, n_probe_prefixes=cfg.map_probe_prefixes, **map_args
            )
        else:  # the same sweep and diagnosis on prefixes of held-out text, concept along the direction, NLL fluency
            steering_map = model_steering_map(
                model,
                prior,
                train_rows,
                sae_model,
                direction,
                eval_texts,
                concept=concept,
                scorers=scorers,
                fluencies=fluencies,
                prompts=prompts,  # the stems the direction check just passed on, not document prefixes
                **map_args,
            )
            say.step(direction_check_line(steering_map.direction_check))
        result.numbers.update(steering_map.numbers)
        result.tables["steering_map_md"] = steering_map.markdown
        result.figures += steering_map.figures
    # 4b. steering head to head -- end ----------------------------------------------------------------------------

    # 5. probing ----------------------------------------------------------------------------------
    say.stage("probing")
    sources = [MetaNeurons(prior), RawActivations(), MLPNeurons(), PCAFeatures(64), SAEFeatures(sae_model)]
    if testbed is not None:
        probe_sets: Any = [load_dataset(frame, name=name) for name, frame in testbed.datasets.items()]
    elif datasets:
        probe_sets = split_dataset_args(datasets)[1]
    else:
        probe_sets = probing_subsets(cfg.probe_datasets, cfg.probe_examples, seed=cfg.seed)
    probing = run_probing(
        model,
        prior,
        sources,
        probe_sets,
        hook_name=hook,
        top_k=cfg.probe_top_k,
        context_size=None if testbed is not None else cfg.probe_context,
        progress=progress,
    )
    probing.to_csv(out / "probing.csv")
    probing.plot(out / "probing.png", a="meta", b="raw")
    result.figures.append("probing.png")
    result.tables["probing_summary"] = probing.summary()
    result.tables["probing"] = (
        probing.table[~probing.table.control]
        .pivot_table(index="dataset", columns="source", values="test_auc")
        .reset_index()
    )
    result.tables["probing_wins"] = probing.wins()
    result.tables["probing_paired"] = probing.paired("meta", seed=cfg.seed)

    if testbed is not None:  # 6. ground-truth monosemanticity of single units (tl_glp.interpret)
        say.stage("ground-truth monosemanticity", f"{cfg.gt_docs} documents, 4 sources")
        gt_sources = {
            "meta": MetaNeurons(prior),
            "sae": SAEFeatures(sae_model),
            "raw": RawActivations(),
            "mlp": MLPNeurons(),
        }
        gt_docs = list(testbed.language.documents(cfg.gt_docs, seed=cfg.seed + 4))
        gt_numbers, result.tables["interpret_md"] = ground_truth_section(
            model, gt_sources, gt_docs, hook, out, progress=progress
        )
        result.numbers.update(gt_numbers)
        result.figures.append("monosemanticity.png")

    # 7. off-manifold detection (tl_glp.manifold.detection) ------------------------------------------------------
    say.stage("off-manifold detection", f"{cfg.manifold_rows} natural rows per condition")
    result.tables["manifold"] = _off_manifold_section(
        model, prior, eval_texts, hook, direction, sae_model, cfg, progress
    )
    result.tables["manifold"].to_csv(out / "off_manifold.csv", index=False)

    result.numbers["seconds"] = time.perf_counter() - clock
    result.numbers["versions"] = library_versions()
    result.tables["conclusions"] = conclusions(result)
    write_report(result, cfg, model_name, hook)
    if progress:
        print(summary_text(result))
    return result


def _choose_direction(
    model: Any,
    hook: str | None,
    texts: Sequence[str],
    cfg: DemoSettings,
    result: DemoResult,
    say: _Progress,
    progress: bool,
) -> tuple[str, str]:
    """The hook and the side (``"positive"``/``"negative"``) the real-model demo steers and trains the prior at:
    ``hook`` if given (then only the side is chosen), else the layer of ``cfg.direction_layers`` whose
    contrastive direction plain steering moves VADER most clearly on the calibration stems. Records the
    measurements in ``numbers["direction_choice"]``."""
    n_layers = model.cfg.n_layers
    targets = [t.strip() for t in cfg.direction_targets.split(",") if t.strip()]
    if hook is not None:
        hooks = [hook]
    elif cfg.direction_layers.strip() == "auto":
        hooks = middle_layer_hooks(n_layers)
    elif cfg.direction_layers.strip():
        layers = [int(v) for v in cfg.direction_layers.split(",") if v.strip()]
        bad = [v for v in layers if not 0 <= v < n_layers]
        if bad:
            raise ValueError(f"direction_layers={cfg.direction_layers!r}: layers {bad} are not in 0..{n_layers - 1}.")
        hooks = [f"blocks.{v}.hook_resid_post" for v in layers]
    else:
        hooks, targets = [f"blocks.{n_layers // 2}.hook_resid_post"], targets[:1]
    if len(hooks) * len(targets) == 1:
        say.stage("direction", f"{hooks[0]} towards {targets[0]} (nothing to choose)")
        return hooks[0], targets[0]
    stems = CALIBRATION_STEMS[: cfg.direction_stems]
    say.stage(
        "direction",
        f"{len(hooks)} layers x {'/'.join(targets)} x r {', '.join(f'{r:g}' for r in cfg.direction_strengths)} "
        f"on {len(stems)} calibration stems, judged by VADER",
    )
    choice = choose_direction(
        model,
        REAL_POSITIVE,
        REAL_NEGATIVE,
        stems,
        hook_names=hooks,
        concept=VaderScorer,
        targets=targets,
        strengths=cfg.direction_strengths,
        norm_texts=list(texts[:32]),
        max_new_tokens=cfg.new_tokens,
        seed=cfg.seed,
        progress=progress,
    )
    result.numbers["direction_choice"] = {
        "hook": choice.hook_name,
        "target": choice.target,
        "act_norm": choice.act_norm,
        "calibration_stems": len(stems),
        **{k: v for k, v in choice.shift.items() if k != "per_r"},
        "candidates": choice.table.drop(columns="chosen").to_dict(orient="records"),
    }
    choice.table.to_csv(result.out_dir / "direction_choice.csv", index=False)
    say.step(
        f"chosen: {choice.hook_name} towards {choice.target} (calibration shift {choice.shift['shift']:+.3f} "
        f"[{choice.shift['ci_low']:+.3f}, {choice.shift['ci_high']:+.3f}] at r = {choice.shift['best_r']:g})"
    )
    return choice.hook_name, choice.target


def _off_manifold_section(
    model: Any,
    prior: GenerativePrior,
    texts: list[str],
    hook: str,
    direction: Any,
    sae: Any,
    cfg: DemoSettings,
    progress: bool,
) -> Any:
    """ROC-AUC of each on-manifold score for natural vs steered (sentiment and random directions)
    vs shuffled-word activations, as a wide table: one row per condition, one column per score."""

    scores = ["denoising", "mahalanobis", "sae_error"] + (["log_prob"] if cfg.manifold_log_prob_probes > 0 else [])
    log_prob_kwargs = {"method": "hutchinson", "n_probes": cfg.manifold_log_prob_probes, "rtol": 1e-3, "atol": 1e-3}
    df = detect_off_manifold(
        model,
        prior,
        texts,
        hook_name=hook,
        directions={"sentiment": direction},
        strengths=(0.05, 0.1, 0.25),
        sae=sae,
        scores=scores,
        max_rows=cfg.manifold_rows,
        log_prob_kwargs=log_prob_kwargs,
        seed=cfg.seed,
        progress=progress,
    )
    wide = df.pivot_table(index=["condition", "r"], columns="score", values="auc").reset_index()
    counts = df.groupby(["condition", "r"])[["n_natural", "n_off"]].first().reset_index()
    return wide.merge(counts, on=["condition", "r"])
