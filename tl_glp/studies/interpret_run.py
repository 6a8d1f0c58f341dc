"""Several feature sources inspected side by side: top activations, dashboards, optional explanations,
and (where per-token latents are known) the ground-truth monosemanticity table and figure.

``tl-glp interpret`` and the demo call :func:`run_interpret`; it only needs a model, named sources,
texts, and optionally documents with per-token latents (anything with ``.text`` and ``.latents``).

Example::

    out = run_interpret(model, {"meta": MetaNeurons(prior), "sae": SAEFeatures(sae), "raw": RawActivations()},
                        texts, hook, "interpret_out", documents=testbed_docs)
    print(out.markdown)
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tl_glp.core import _io
from tl_glp.interpret.explain import explain, score_explanations
from tl_glp.interpret.ground_truth import MonosemanticityReport, ground_truth, labels_from_documents
from tl_glp.interpret.topk import TopActivations, top_activations
from tl_glp.probing.sources import FeatureSource
from tl_glp.studies.reporting import markdown_table as _md_table


@dataclass
class InterpretResult:
    """What :func:`run_interpret` produced: per-source top activations, the ground-truth report,
    the paths it wrote, the numbers and a markdown summary."""

    out_dir: Path
    results: dict[str, TopActivations] = field(default_factory=dict)
    report: MonosemanticityReport | None = None
    numbers: dict[str, float] = field(default_factory=dict)
    markdown: str = ""


def run_interpret(
    model: Any,
    sources: Mapping[str, FeatureSource],
    texts: Sequence[str],
    hook_name: str,
    out_dir: str | Path,
    *,
    documents: Sequence[Any] | None = None,
    k: int = 20,
    pages: int = 50,
    judge: Callable[[str], str] | None = None,
    explain_top: int = 20,
    batch_size: int = 32,
    context_size: int = 128,
    progress: bool = True,
) -> InterpretResult:
    """Top activations + dashboards for every source over ``texts``; ground truth on ``documents``.

    For each source ``name`` it writes ``out_dir/name/`` (results, safetensors + JSON) and
    ``out_dir/name/dashboard/index.html`` (``pages`` feature pages, sorted by the feature's best
    ground-truth AUC when ``documents`` are given, else by max activation). With a ``judge``, the
    ``explain_top`` first features of each source are explained and detection-scored. With
    ``documents`` it also writes ``monosemanticity_summary.csv``, ``monosemanticity_best.csv``,
    ``monosemanticity.png`` and ``interpret.md``, and ``out_dir/index.html`` links everything.
    """
    out = Path(out_dir)
    result = InterpretResult(out)
    clock = time.perf_counter()
    report = None
    if documents is not None:
        gt_texts, latents = labels_from_documents(documents)
        report = ground_truth(
            model,
            sources,
            gt_texts,
            latents,
            hook_name,
            batch_size=batch_size,
            context_size=context_size,
            progress=progress,
        )
        report.to_csv(out)
        report.plot(out / "monosemanticity.png")
        result.report = report
        share = report.share_detected()
        for name in sources:
            result.numbers[f"gt_values_detected_{name}"] = share[name]
            result.numbers[f"gt_mean_best_auc_{name}"] = float(report.aucs[name].max(dim=1).values.mean())
    for name, source in sources.items():
        res = top_activations(
            model,
            source,
            texts,
            hook_name=hook_name,
            k=k,
            batch_size=batch_size,
            context_size=context_size,
            progress=progress,
        )
        order_by, notes = "max", {}
        if report is not None:
            auc = report.aucs[name]
            best, idx = auc.max(dim=0)
            for f in range(res.n_features):
                latent, value = report.values[int(idx[f])]
                res.scores.setdefault(f, {})["ground_truth_auc"] = float(best[f])
                notes[f] = f"ground truth: best per-token AUC {float(best[f]):.3f}, for {latent}={value}"
            order_by = "ground_truth_auc"
        if judge is not None:
            chosen = torch.argsort(res.score(order_by).nan_to_num(-1e30), descending=True, stable=True)[
                :explain_top
            ].tolist()
            explain(res, judge, features=chosen, progress=progress)
            table = score_explanations(
                res, {f: res.explanations[f] for f in chosen if f in res.explanations}, judge, progress=progress
            )
            if len(table):
                result.numbers[f"detection_balanced_accuracy_{name}"] = float(table.balanced_accuracy.mean())
        res.save(out / name)
        res.to_html(out / name / "dashboard", order_by=order_by, max_features=pages, notes=notes)
        result.results[name] = res
    result.numbers["interpret_seconds"] = time.perf_counter() - clock
    result.markdown = _markdown(result, hook_name, len(texts), len(documents or []))
    if report is not None:
        with _io.atomic_path(out / "interpret.md") as tmp:
            tmp.write_text(result.markdown)
    _write_index(result)
    return result


def _markdown(result: InterpretResult, hook: str, n_texts: int, n_docs: int) -> str:
    lines = [
        f"Top activations of every source at `{hook}` over {n_texts} documents; dashboards in "
        + ", ".join(f"`{name}/dashboard/index.html`" for name in result.results)
        + "."
    ]
    if result.report is not None:
        summary = result.report.summary()
        lines += [
            "",
            f"Ground truth on {n_docs} held-out documents ({result.report.n_tokens} tokens): per-token ROC-AUC of every feature "
            f"for every latent value (one value vs the rest; signed units may use either tail). "
            f"`values_detected_auc>={result.report.threshold:g}`: share of the {len(result.report.values)} latent values that some single "
            "feature detects that well; `features_auc>=...`: how many single features detect some value that well.",
            "",
            "![monosemanticity](monosemanticity.png)",
            "",
            _md_table(summary),
            "",
            "Best single feature per latent value (AUC):",
            "",
            _md_table(result.report.value_table()),
        ]
    if any(k.startswith("detection_") for k in result.numbers):
        lines += [
            "",
            "Detection scoring of explanations (mean balanced accuracy): "
            + ", ".join(
                f"{k.removeprefix('detection_balanced_accuracy_')} {v:.3f}"
                for k, v in result.numbers.items()
                if k.startswith("detection_")
            ),
        ]
    return "\n".join(lines) + "\n"


def _write_index(result: InterpretResult) -> None:
    links = "".join(
        f'<li><a href="{html.escape(name)}/dashboard/index.html">{html.escape(name)}</a> '
        f"({res.n_features} features)</li>"
        for name, res in result.results.items()
    )
    extra = ""
    if result.report is not None:
        table = result.report.summary().to_html(index=False, float_format=lambda v: f"{v:.3f}", border=0)
        extra = f'<h2>Ground-truth monosemanticity</h2>{table}<p><img src="monosemanticity.png" alt="monosemanticity" style="max-width:100%"></p>'
    page = (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>tl-glp interpret</title></head>'
        f'<body style="font-family:system-ui,sans-serif;margin:1.5em"><h1>Feature sources side by side</h1><ul>{links}</ul>{extra}</body></html>\n'
    )
    with _io.atomic_path(result.out_dir / "index.html") as tmp:
        tmp.write_text(page, encoding="utf-8")


def ground_truth_section(
    model: Any,
    sources: Mapping[str, FeatureSource],
    documents: Sequence[Any],
    hook_name: str,
    out_dir: str | Path,
    *,
    progress: bool = False,
) -> tuple[dict[str, float], str]:
    """The demo's section: ground-truth monosemanticity only (no dashboards), as numbers and markdown;
    writes ``monosemanticity.png`` and the two CSVs into ``out_dir``."""
    texts, latents = labels_from_documents(documents)
    report = ground_truth(model, sources, texts, latents, hook_name, progress=progress)
    report.to_csv(out_dir)
    report.plot(Path(out_dir) / "monosemanticity.png")
    share = report.share_detected()
    numbers = {f"gt_values_detected_{s}": share[s] for s in sources}
    numbers.update({f"gt_mean_best_auc_{s}": float(report.aucs[s].max(dim=1).values.mean()) for s in sources})
    lines = [
        "## 7. Looking inside: ground-truth monosemanticity",
        "",
        f"Every token of {len(documents)} held-out documents ({report.n_tokens} tokens) carries known latents. For every unit of every "
        "source, the per-token ROC-AUC with which it alone detects each latent value (signed units may use either tail); "
        f"`values_detected_auc>={report.threshold:g}`: share of the {len(report.values)} latent values some single unit detects that well. "
        "`tl-glp interpret` adds dashboards of every source.",
        "",
        "![monosemanticity](monosemanticity.png)",
        "",
        _md_table(report.summary()),
        "",
        "Best single unit per latent value (AUC):",
        "",
        _md_table(report.value_table()),
        "",
    ]
    return numbers, "\n".join(lines)
