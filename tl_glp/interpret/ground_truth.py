"""A ground-truth monosemanticity score: how well single units detect known per-token latents.

Where every token carries known latent values (the testbed language: topic, sentiment, tense,
number, negation), each feature's per-token ROC-AUC for each latent value (one value against the
rest) says how cleanly that one unit detects it. Per source this gives:

- the best feature for every latent value (and its AUC);
- the share of latent values that some single feature detects with AUC >= 0.9;
- the distribution of each feature's best AUC over all latent values.

Signed units (raw dimensions, meta-neurons) may detect a value with either tail, so their AUC is
``max(auc, 1 - auc)``; one-sided units (SAE latents, MLP neurons) only with high activations.

Example:
    >>> import torch
    >>> labels = {"tense": ["past"] * 50 + ["present"] * 50}
    >>> feats = torch.randn(100, 5, generator=torch.Generator().manual_seed(0))
    >>> feats[:, 2] = torch.arange(100) < 50                       # a unit that copies "past"
    >>> report = monosemanticity({"toy": feats}, labels, signed={"toy": False})
    >>> row = report.best.iloc[0]
    >>> row.source, row.latent, row.value, int(row.feature), float(row.auc)
    ('toy', 'tense', 'past', 2, 1.0)
    >>> report.share_detected()["toy"]
    0.5
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from tl_glp.core import _io
from tl_glp.core._plot import pyplot, save_figure
from tl_glp.core.prior import GenerativePrior
from tl_glp.interpret.features import flat_token_features, is_signed, resolve_source
from tl_glp.probing.probes import average_ranks
from tl_glp.probing.sources import FeatureSource

DETECT_AUC = 0.9


def latent_aucs(
    features: Float[Tensor, "n_tokens n_features"],
    labels: Mapping[str, Sequence[str]],
    *,
    signed: bool = False,
    chunk: int = 2048,
) -> tuple[Float[Tensor, "n_values n_features"], list[tuple[str, str]]]:
    """Per-token ROC-AUC of every feature for every latent value (one-vs-rest, ties averaged).

    ``labels`` maps a latent name to one value per token (row of ``features``). Values that hold
    for all tokens or none are skipped. With ``signed`` the AUC is ``max(auc, 1 - auc)``.
    Returns ``(auc [n_values, n_features], [(latent, value), ...])``.
    """
    n, n_feat = features.shape
    targets, names = [], []
    for latent, values in labels.items():
        if len(values) != n:
            raise ValueError(f"Latent {latent!r} has {len(values)} values but there are {n} tokens.")
        for value in sorted(set(values)):
            y = torch.tensor([v == value for v in values])
            if 0 < int(y.sum()) < n:
                targets.append(y)
                names.append((latent, value))
    if not targets:
        raise ValueError("No latent value both holds and fails on some token: nothing to detect.")
    Y = torch.stack(targets, dim=1).double()  # [n, V]
    n1 = Y.sum(0)
    n0 = n - n1
    out = torch.empty(len(targets), n_feat, dtype=torch.float64)
    for start in range(0, n_feat, chunk):
        ranks = average_ranks(features[:, start : start + chunk].double())  # [n, c]
        rank_sum = Y.T @ ranks  # [V, c]
        out[:, start : start + chunk] = (rank_sum - (n1 * (n1 + 1) / 2)[:, None]) / (n1 * n0)[:, None]
    if signed:
        out = torch.maximum(out, 1 - out)
    return out.float(), names


@dataclass
class MonosemanticityReport:
    """Per source: every feature's AUC for every latent value, and the summaries built on them."""

    aucs: dict[str, Tensor]
    values: list[tuple[str, str]]
    signed: dict[str, bool]
    n_tokens: int
    threshold: float = DETECT_AUC

    @property
    def best(self) -> Any:
        """DataFrame: the best feature of each source for each latent value, and its AUC."""
        import pandas as pd

        rows = []
        for source, auc in self.aucs.items():
            best, idx = auc.max(dim=1)
            for v, (latent, value) in enumerate(self.values):
                rows.append(
                    {
                        "source": source,
                        "latent": latent,
                        "value": value,
                        "feature": int(idx[v]),
                        "auc": round(float(best[v]), 6),
                    }
                )
        return pd.DataFrame(rows)

    def share_detected(self, threshold: float | None = None) -> dict[str, float]:
        """Share of latent values that some single feature detects with AUC >= ``threshold``."""
        thr = self.threshold if threshold is None else threshold
        return {s: float((auc.max(dim=1).values >= thr).double().mean()) for s, auc in self.aucs.items()}

    def feature_best_auc(self) -> dict[str, Tensor]:
        """Each feature's best AUC over all latent values (its distribution is in :meth:`summary`)."""
        return {s: auc.max(dim=0).values for s, auc in self.aucs.items()}

    def summary(self) -> Any:
        """DataFrame, one row per source: features, share of values detected, mean best AUC per
        value, quantiles of the per-feature best AUC and the share of features above threshold."""
        import pandas as pd

        share = self.share_detected()
        rows = []
        for s, auc in self.aucs.items():
            per_feature = auc.max(dim=0).values
            q = torch.quantile(per_feature.double(), torch.tensor([0.5, 0.9, 0.99], dtype=torch.float64)).tolist()
            rows.append(
                {
                    "source": s,
                    "n_features": auc.shape[1],
                    "signed": self.signed[s],
                    f"values_detected_auc>={self.threshold:g}": share[s],
                    "mean_best_auc_per_value": float(auc.max(dim=1).values.mean()),
                    "feature_best_auc_median": q[0],
                    "feature_best_auc_p90": q[1],
                    "feature_best_auc_p99": q[2],
                    f"features_auc>={self.threshold:g}": int((per_feature >= self.threshold).sum()),
                }
            )
        return pd.DataFrame(rows)

    def value_table(self) -> Any:
        """DataFrame: latent value x source, the best single-feature AUC."""
        return self.best.pivot_table(
            index=["latent", "value"], columns="source", values="auc", sort=False
        ).reset_index()

    def to_csv(self, folder: str | Path) -> list[Path]:
        """Write ``monosemanticity_summary.csv`` and ``monosemanticity_best.csv`` into ``folder``."""

        folder = Path(folder)
        paths = [folder / "monosemanticity_summary.csv", folder / "monosemanticity_best.csv"]
        for frame, path in zip((self.summary(), self.best), paths):
            with _io.atomic_path(path) as tmp:
                frame.to_csv(tmp, index=False)
        return paths

    def plot(self, path: str | Path) -> Path:
        """Two panels: best single-feature AUC per latent value, and the ECDF of per-feature best AUC."""

        plt = pyplot()
        fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.5), gridspec_kw={"width_ratios": [1.4, 1]})
        labels = [f"{latent}={value}" for latent, value in self.values]
        width = 0.8 / max(1, len(self.aucs))
        for i, (s, auc) in enumerate(self.aucs.items()):
            best = auc.max(dim=1).values.numpy()
            left.bar([j + i * width for j in range(len(labels))], best, width=width, label=s)
            per_feature, _ = torch.sort(auc.max(dim=0).values)
            ecdf = torch.arange(1, len(per_feature) + 1) / len(per_feature)
            right.plot(per_feature.numpy(), ecdf.numpy(), label=f"{s} ({len(per_feature)})")
        left.axhline(self.threshold, color="k", lw=0.8, ls="--")
        left.set_xticks([j + 0.4 - width / 2 for j in range(len(labels))], labels, rotation=60, ha="right", fontsize=8)
        left.set_ylim(0.5, 1.0)
        left.set_ylabel("best single-feature AUC")
        left.set_title("Ground truth: best unit per latent value")
        left.legend(fontsize=8)
        right.axvline(self.threshold, color="k", lw=0.8, ls="--")
        right.set_xlabel("feature's best AUC over latent values")
        right.set_ylabel("share of features <= x")
        right.set_title("Distribution over features")
        right.legend(fontsize=8)
        return save_figure(fig, path, dpi=110)


def monosemanticity(
    features: Mapping[str, Tensor],
    labels: Mapping[str, Sequence[str]],
    *,
    signed: Mapping[str, bool] | None = None,
    threshold: float = DETECT_AUC,
) -> MonosemanticityReport:
    """:func:`latent_aucs` for every source's per-token features (``{name: [n_tokens, n_features]}``)."""
    signed = dict(signed or {})
    aucs, names = {}, None
    n = None
    for s, feats in features.items():
        n = feats.shape[0] if n is None else n
        if feats.shape[0] != n:
            raise ValueError(
                f"Source {s!r} has {feats.shape[0]} tokens, the others {n}: compute all on the same tokens."
            )
        aucs[s], names = latent_aucs(feats, labels, signed=signed.setdefault(s, False))
    if names is None:
        raise ValueError("No feature sources given.")
    return MonosemanticityReport(aucs, names, signed, int(n or 0), threshold)


def labels_from_documents(documents: Sequence[Any]) -> tuple[list[str], list[dict[str, list[str]]]]:
    """``(texts, latents)`` from documents with ``.text`` and ``.latents`` (``{name: one value per
    word}``), as the testbed language's :class:`Document` has them."""
    return [d.text for d in documents], [dict(d.latents) for d in documents]


def ground_truth(
    model: Any,
    sources: Mapping[str, FeatureSource | str] | Sequence[FeatureSource],
    texts: Sequence[str],
    latents: Sequence[Mapping[str, Sequence[str]]],
    hook_name: str,
    *,
    prior: GenerativePrior | None = None,
    batch_size: int = 32,
    context_size: int = 128,
    threshold: float = DETECT_AUC,
    progress: bool = True,
) -> MonosemanticityReport:
    """The ground-truth monosemanticity of every source on documents with per-token latents.

    ``latents[d]`` maps each latent name to one value per real (non-special) token of document
    ``d`` in order (for the testbed's word-level tokenizer: per word); documents truncated to
    ``context_size`` use the first values.
    """
    if len(texts) != len(latents):
        raise ValueError(f"{len(texts)} texts but {len(latents)} latent records: give one per document.")
    named = dict(sources) if isinstance(sources, Mapping) else {s.name: s for s in sources}
    feats: dict[str, Tensor] = {}
    signed: dict[str, bool] = {}
    doc = None
    for name, src in tqdm(named.items(), disable=not progress, desc="ground truth", unit="source"):
        source = resolve_source(src, prior)
        feats[name], doc, _ = flat_token_features(
            model, source, texts, hook_name, batch_size=batch_size, context_size=context_size
        )
        signed[name] = is_signed(source)
    assert doc is not None
    counts = torch.bincount(doc, minlength=len(texts)).tolist()
    labels: dict[str, list[str]] = {name: [] for name in latents[0]}
    for d, n in enumerate(counts):
        for name in labels:
            values = list(latents[d][name])
            if len(values) < n:
                raise ValueError(f"Document {d} has {n} real tokens but only {len(values)} values of latent {name!r}.")
            labels[name].extend(values[:n])
    return monosemanticity(feats, labels, signed=signed, threshold=threshold)
