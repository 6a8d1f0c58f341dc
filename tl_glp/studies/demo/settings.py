"""What a demo run is sized by (:class:`DemoSettings`), the stages it announces, and what it returns
(:class:`DemoResult`).

>>> DemoSettings.quick().prior_steps < DemoSettings().prior_steps < DemoSettings.full().prior_steps
True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STAGES = (
    "model",
    "activations",
    "prior",
    "steering",
    "steering head to head",
    "probing",
    "ground-truth monosemanticity",
    "off-manifold detection",
)
"""The demo's stages on the testbed in order, as its progress lines number them (``[k/N]``)."""
TESTBED_ONLY_STAGES = ("ground-truth monosemanticity",)
REAL_STAGES = (STAGES[0], "direction", *(s for s in STAGES[1:] if s not in TESTBED_ONLY_STAGES))
"""On a real model: no ground-truth monosemanticity, and a stage that chooses the steering direction's layer
and side before the activations are collected at that layer."""


@dataclass
class DemoSettings:
    """Sizes of each step. The defaults are a lighter version of ``full()`` (the run behind the README's tables):
    fewer prior and SAE steps, fewer samples, prompts and probe candidates; ``quick()`` is the smoke run the
    test suite uses."""

    n_docs: int = 3000
    """Testbed documents whose activations train the prior and the SAE (``full()``: 6000)."""
    prior_steps: int = 2000
    """Prior training steps (``full()``: 5000)."""
    prior_batch: int = 512
    """Training batch of the prior."""
    prior_lr: float = 2e-3
    """Peak learning rate of the prior (cosine decay after 1% warmup)."""
    prior_final_lr_frac: float = 0.01
    """The cosine schedule ends at this share of ``prior_lr`` (2e-5; the paper ends at 5e-6). Measured
    on the testbed (FD at 10,000 samples per side, 5000 steps): ending at 0.1x (2e-4) gave 75, at
    0.01x 42, at 0.001x 46; 8000 steps at 0.01x gave 44. Real rows of other documents score 25 there."""
    n_blocks: int = 3
    """Denoiser blocks of the prior."""
    prior_d_hidden: int = 512
    """Most hidden width of the prior: ``d_hidden = min(2 * d_input, prior_d_hidden)`` and ``d_mlp = 2 *
    d_hidden`` (the paper's widths up to d_input 256; the testbed's are unchanged). A CPU trains SmolLM2's
    paper-width prior (d_input 576: d_hidden 1152, d_mlp 2304) about 4x slower; 0 lifts the cap."""
    eval_samples: int = 4000
    """Generated and held-out activations per side for the Frechet distance (FD-infinity) and c2st (``full()``: 10,000)."""
    sample_steps: int = 50
    """Sampler steps used to generate the activations that FD and c2st compare."""
    fd_boot: int = 10
    """Bootstrap resamples (of the rows on both sides) behind each FD-infinity's 95% CI; each costs one
    FD-infinity (``full()``: 20)."""
    sae_steps: int = 400
    """Training steps of the reference TopK SAE (SAE-Lens; ``full()``: 1000)."""
    d_sae: int = 1024
    """Latents of that SAE."""
    sae_k: int = 16
    """Active latents per activation of that SAE (TopK k)."""
    lm_eval_docs: int = 200
    """Documents (not used for activations) on which delta LM loss is measured."""
    steer_prompts: int = 24
    """Prompts continued at every strength in the steering sweep (``full()``: 48)."""
    strengths: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0, 2.0)
    """Steering strengths r (times the activation norm)."""
    new_tokens: int = 12
    """Tokens generated per steered continuation."""
    probe_top_k: int = 128
    """Candidate features per source kept for the 1-D probes (SAE-Probes' protocol and ``full()``: 512)."""
    c2st_steps: int = 300
    """Training steps of the classifier two-sample test."""
    manifold_rows: int = 200
    """Natural (and per condition, off-manifold) activations in the off-manifold detection section."""
    manifold_log_prob_probes: int = 2
    """Hutchinson probes for the log_prob score there (0: leave log_prob out; exact is too slow on CPU)."""
    gt_docs: int = 200
    """Held-out testbed documents whose every token the ground-truth monosemanticity section scores."""
    seed: int = 0
    """Seed of the data order, prior, SAE, noise and bootstraps (the testbed model stays the shipped one)."""
    # --- steering head to head (tl_glp.studies.steering_map; issue 20) ---
    map_prompts: int = 12
    """Prompts of the steering head-to-head (every projector x positions x strength); 0 leaves the section out."""
    map_strengths: tuple[float, ...] = (0.5, 1.0, 1.25, 1.5, 1.75, 2.0)
    """Its strengths r: finer between 1 and 2, where plain steering's grammar breaks on the testbed."""
    map_positions: str = "last"
    """Comma-separated positions it steers (each a front of its own)."""
    map_new_tokens: int = 12
    """Tokens generated per continuation in the head-to-head."""
    map_pca_k: int = 16
    """Principal components the PCA projector keeps."""
    map_guided: str = "cheap"
    """Projectors that keep the concept in the head-to-head (``tl_glp.studies.steering_map.guided_projectors``):
    ``cheap`` (the prior with the direction kept, the score pull, the norm clamps: at most the prior's cost per
    token), ``all`` (also the likelihood gate and the keep-w projection inside the prior's meta-neuron
    subspace) or ``none``."""
    map_diagnose: int = 60
    """Held-out document prefixes the projection diagnosis measures (last token)."""
    map_probe_prefixes: int = 800
    """Prefixes the ground-truth latent probes of the diagnosis train on."""

    # --- on a real model (tl_glp.studies.demo.real; issue 25) ---
    judge_model: str = "gemma3-270m"
    """Real models: the fluency judge, a model of another family than the steered one (a registered name,
    a ``.gguf`` file or a model folder; ``""`` leaves the NLL judge out, distinct-2 stays)."""
    real_strengths: tuple[float, ...] = (0.05, 0.1, 0.15, 0.25, 0.5)
    """Real models: strengths r of the steering sweep. SmolLM2-135M's text breaks past r = 0.5 (``act_norm``
    there is the root-mean-square row norm, about 1.3x the median row's): at r = 1 and 2 VADER read no
    sentiment at all in the default run at commit 5d27221, and its largest shift was at r = 0.1."""
    real_map_strengths: tuple[float, ...] = (0.15, 0.25, 0.5)
    """Real models: strengths r of the head to head (SmolLM2's text breaks past r = 0.5, the testbed's near 1.5)."""
    direction_layers: str = "auto"
    """Real models without ``--hook``: the layers the steering direction is chosen over (comma-separated
    indices; ``auto``: a third of the way in, ``n_layers / 2 - 1`` (the paper's rule) and ``n_layers // 2``;
    ``""``: no choice, the middle layer towards ``positive``). The prior is trained at the chosen layer."""
    direction_targets: str = "positive,negative"
    """Real models: the sides steered towards in the choice (the first along the contrastive direction,
    the second against it)."""
    direction_stems: int = 12
    """Real models: calibration stems the choice steers (other stems than the sweep's)."""
    direction_strengths: tuple[float, ...] = (0.15, 0.25)
    """Real models: strengths r the choice tries at every layer and side."""
    probe_datasets: int = 24
    """Real models without ``--dataset``: SAE-Probes datasets probed, spread over the 113 (0: all 113)."""
    probe_examples: int = 300
    """Real models without ``--dataset``: prompts per probed dataset, half of each class (0: all; a CPU
    forward over all 334k prompts takes hours)."""
    probe_context: int = 256
    """Real models: the most tokens kept per probing prompt (BOS and the last ones, as SAE-Probes truncates;
    SAE-Probes keeps 1024, which makes the long-text datasets dominate a CPU run)."""

    @classmethod
    def from_overrides(cls, base: DemoSettings, overrides: list[str]) -> DemoSettings:
        """``base`` with ``FIELD=VALUE`` strings applied (what ``tl-glp demo --set`` passes), each
        value parsed as the field's type; unknown fields and bad values raise with the valid names.

        >>> DemoSettings.from_overrides(DemoSettings(), ["prior_steps=10", "strengths=0.5,1"]).strengths
        (0.5, 1.0)
        """
        from dataclasses import fields, replace

        types = {f.name: type(getattr(base, f.name)) for f in fields(cls)}
        changes: dict[str, Any] = {}
        for item in overrides:
            key, sep, value = item.partition("=")
            key = key.strip().replace("-", "_")
            if not sep or key not in types:
                raise ValueError(f"--set {item!r}: expected FIELD=VALUE with FIELD one of {sorted(types)}.")
            try:
                changes[key] = (
                    tuple(float(v) for v in value.split(",") if v.strip()) if types[key] is tuple else types[key](value)
                )
            except ValueError as err:
                raise ValueError(f"--set {item!r}: {value!r} is not a valid {types[key].__name__} ({err}).") from err
        return replace(base, **changes)

    @classmethod
    def quick(cls) -> DemoSettings:
        """A smoke run of every step (what the test suite runs): about a minute once the testbed is loaded."""
        return cls(
            n_docs=500,
            prior_steps=60,
            prior_batch=256,
            eval_samples=400,
            sample_steps=10,
            fd_boot=3,
            sae_steps=60,
            d_sae=256,
            lm_eval_docs=30,
            steer_prompts=3,
            strengths=(0.25, 1.0),
            new_tokens=6,
            probe_top_k=64,
            manifold_rows=60,
            manifold_log_prob_probes=0,
            gt_docs=100,
            map_prompts=2,
            map_strengths=(1.0, 2.0),
            map_new_tokens=4,
            map_diagnose=16,
            map_probe_prefixes=300,
            real_strengths=(0.1, 0.25),
            real_map_strengths=(0.15, 0.5),
            direction_stems=4,
            direction_strengths=(0.15,),
            probe_datasets=4,
            probe_examples=200,
        )

    @classmethod
    def real(cls) -> DemoSettings:
        """The default sizes on a real pretrained model (what ``tl-glp demo --model NAME`` starts from): lighter
        than the testbed's where a real model's forward passes dominate (1500 documents, 1000 prior steps, 6
        bootstrap resamples per FD, 100 documents for delta LM loss, 30 prefixes in the projection diagnosis, 12
        probed datasets of 200 prompts). SmolLM2-135M ran every stage in 24.1, 25.3 and 28.4 minutes (three
        seeds) on 2 idle CPU cores; the goal is 25. The run at commit 1fa8176 with 2000 documents, 1500 steps,
        10 resamples, 60 prefixes, 16 datasets and four head-to-head strengths took 33.5 minutes there (the head
        to head 14 of them). Each field can still be set (``--set probe_datasets=0`` probes all 113 datasets,
        for hours on a CPU).

        >>> DemoSettings.real().n_docs < DemoSettings().n_docs
        True
        """
        return cls(
            n_docs=1500,
            prior_steps=1000,
            fd_boot=6,
            lm_eval_docs=100,
            map_diagnose=30,
            probe_datasets=12,
            probe_examples=200,
        )

    @classmethod
    def full(cls) -> DemoSettings:
        """The full-size run behind the three-seed tables of the documentation's results page (5000 prior
        steps, 10,000 samples per side, 1000 SAE steps): 20.2-20.6 minutes for each of three seeds run side by
        side on 2 CPU cores, one thread each (commit 974f5b6). The default is a lighter version of it."""
        return cls(
            n_docs=6000,
            prior_steps=5000,
            eval_samples=10_000,
            fd_boot=20,
            sae_steps=1000,
            steer_prompts=48,
            probe_top_k=512,
            manifold_rows=300,
            gt_docs=400,
            map_prompts=24,
            map_positions="last,all",
            map_diagnose=200,
            map_probe_prefixes=1500,
        )


@dataclass
class DemoResult:
    """What :func:`~tl_glp.studies.demo.run_demo` returns: the output folder, the numbers written to
    ``numbers.json``, the tables (pandas frames and markdown) and the figures' file names."""

    out_dir: Path
    numbers: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, Any] = field(default_factory=dict)
    figures: list[str] = field(default_factory=list)
