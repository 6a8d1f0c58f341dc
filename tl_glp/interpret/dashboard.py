"""Self-contained HTML dashboards for any feature source: one page per feature and a sorted index.

No decoder is needed (meta-neurons have none): a page shows what the streaming pass measured, the
top (and, for signed units, bottom) contexts with every token highlighted by the feature's
activation, the activation density, a histogram, and the explanation with its detection score
when present. Pages carry their CSS and a few lines of JavaScript inline and load nothing from the
network, so they open from disk anywhere.

Each token is ``<span class="tok" data-act="...">``, coloured orange for positive and blue for
negative activations, with opacity proportional to ``|act| / max |act|`` of the feature.

Example::

    res = tl_glp.interpret.top_activations(model, MetaNeurons(prior), texts)
    index = res.to_html("dash/", order_by="max", max_features=200)   # dash/index.html
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from pathlib import Path

import torch

from tl_glp.core import _io
from tl_glp.interpret.histogram import histogram_edges
from tl_glp.interpret.types import Example, TopActivationsData

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.5em;color:#222;max-width:1100px}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.4em}
table{border-collapse:collapse}td,th{padding:3px 8px;border-bottom:1px solid #eee;text-align:left;vertical-align:top}
.ctx{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:13px;white-space:pre-wrap;line-height:1.7}
.tok{border-radius:2px;padding:0 1px}.tok.center{outline:1.5px solid #333}
.num{font-family:ui-monospace,monospace;text-align:right}
.expl{background:#f6f6f0;padding:.6em;border-left:3px solid #c90}
#hover{position:fixed;bottom:0;right:0;background:#333;color:#fff;padding:4px 10px;font-family:monospace}
.muted{color:#777}
"""

_JS = """
(function(){
  var box = document.getElementById('hover');
  document.addEventListener('mouseover', function(e){
    var t = e.target;
    if (t && t.classList && t.classList.contains('tok')) { box.textContent = 'activation ' + t.getAttribute('data-act'); }
  });
  var filter = document.getElementById('filter');
  if (filter) {
    filter.addEventListener('input', function(){
      var q = filter.value.toLowerCase();
      var rows = document.querySelectorAll('tr.feature');
      for (var i = 0; i < rows.length; i++) { rows[i].style.display = rows[i].textContent.toLowerCase().indexOf(q) >= 0 ? '' : 'none'; }
    });
  }
  document.body.setAttribute('data-js', 'ok');
})();
"""


def _page(title: str, body: str) -> str:
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f'<style>{_CSS}</style></head><body>\n{body}\n<div id="hover">hover a token</div><script>{_JS}</script></body></html>\n'
    )


def _fmt(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.4g}"


def _token_span(token: str, act: float, scale: float, center: bool) -> str:
    text = html.escape(token.replace("\n", "\u23ce"))
    if act is None or math.isnan(act):
        return f'<span class="tok{" center" if center else ""}" data-act="none">{text}</span>'
    alpha = min(1.0, abs(act) / scale) if scale > 0 else 0.0
    rgb = "255,140,0" if act >= 0 else "30,120,255"
    return (
        f'<span class="tok{" center" if center else ""}" data-act="{act:.4g}" '
        f'style="background-color:rgba({rgb},{alpha:.3f})" title="{act:.4g}">{text}</span>'
    )


def context_html(example: Example, scale: float, sep: str = "") -> str:
    """One example's window as highlighted token spans."""
    spans = [
        _token_span(t, a, scale, i == example.center) for i, (t, a) in enumerate(zip(example.tokens, example.acts))
    ]
    return f'<span class="ctx">{html.escape(sep).join(spans)}</span>'


def histogram_svg(counts: Sequence[int], width: int = 520, height: int = 110) -> str:
    """An inline SVG bar chart of a feature's histogram (log-scaled counts, signed log-magnitude bins)."""
    counts = [int(c) for c in counts]
    n = len(counts)
    top = max(math.log1p(c) for c in counts) or 1.0
    edges = histogram_edges().tolist()
    bar_w = width / n
    bars = []
    for i, c in enumerate(counts):
        h = (height - 20) * math.log1p(c) / top
        colour = "#f80" if i > n // 2 else ("#1e78ff" if i < n // 2 else "#999")
        bars.append(
            f'<rect x="{i * bar_w:.1f}" y="{height - 18 - h:.1f}" width="{max(bar_w - 1, 1):.1f}" height="{h:.1f}" fill="{colour}">'
            f"<title>[{edges[i]:.3g}, {edges[i + 1]:.3g}): {c}</title></rect>"
        )
    labels = []
    for i in (0, n // 4, n // 2, 3 * n // 4, n):
        value = edges[min(i, n)]
        labels.append(
            f'<text x="{min(i * bar_w, width - 30):.1f}" y="{height - 4}" font-size="10" fill="#555">{value:.0e}</text>'
        )
    return f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">{"".join(bars)}{"".join(labels)}</svg>'


def feature_page(res: TopActivationsData, feature: int, n_examples: int | None = None, note: str = "") -> str:
    """The HTML of one feature's page (``note``: a line of text shown under the statistics)."""
    top = res.examples(feature, "top", n_examples)
    bottom = res.examples(feature, "bottom", n_examples) if res.signed else []
    acts = [a for e in top + bottom for a in e.acts if not math.isnan(a)]
    scale = max((abs(a) for a in acts), default=1.0)
    title = f"{res.source} feature {feature}"
    stats = [
        ("hook", res.hook_name),
        ("max activation", _fmt(float(res.top.values[feature, 0]))),
        ("mean", _fmt(float(res.mean[feature]))),
        ("std", _fmt(float(res.std[feature]))),
        ("density (act > threshold)", _fmt(float(res.density[feature]))),
    ]
    if res.bottom is not None and res.density_negative is not None:
        stats.insert(2, ("min activation", _fmt(float(res.bottom.values[feature, 0]))))
        stats.append(("negative density", _fmt(float(res.density_negative[feature]))))
    stats.append(("corpus", f"{res.n_docs} documents, {res.n_tokens} tokens"))
    parts = [f"<h1>{html.escape(title)}</h1>", '<p><a href="index.html">&larr; index</a></p>', "<table>"]
    parts += [f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in stats]
    parts.append("</table>")
    if note:
        parts.append(f"<p>{html.escape(note)}</p>")
    if feature in res.explanations:
        score = res.scores.get(feature, {})
        detail = ", ".join(
            f"{k} {_fmt(float(score[k]))}"
            for k in ("balanced_accuracy", "auc", "n_positive", "n_negative")
            if k in score
        )
        parts.append(f'<h2>Explanation</h2><p class="expl">{html.escape(res.explanations[feature])}</p>')
        if detail:
            parts.append(f'<p class="muted">detection scoring: {html.escape(detail)}</p>')
    parts.append("<h2>Activation histogram</h2>" + histogram_svg(res.histogram[feature].tolist()))
    for name, examples in (("Top activations", top), ("Bottom activations", bottom)):
        if not examples and name.startswith("Bottom"):
            continue
        rows = "".join(
            f'<tr><td class="num">{e.value:.4g}</td><td>{context_html(e, scale, res.token_sep)}</td></tr>'
            for e in examples
        )
        parts.append(f"<h2>{name}</h2><table><tr><th>activation</th><th>context</th></tr>{rows}</table>")
    return _page(title, "\n".join(parts))


def write_dashboards(
    res: TopActivationsData,
    folder: str | Path,
    *,
    order_by: str = "max",
    features: Sequence[int] | None = None,
    max_features: int = 500,
    descending: bool = True,
    n_examples: int | None = None,
    notes: dict[int, str] | None = None,
) -> Path:
    """Write ``feature_{i}.html`` for the chosen features and ``index.html`` sorted by ``order_by``.

    ``order_by`` is any :meth:`~tl_glp.interpret.types.TopActivationsData.score` name (``max``, ``density``, ``std``,
    ``balanced_accuracy``, ``auc``); features without a score sort last. ``features`` picks them
    explicitly; otherwise the first ``max_features`` in the sort order get pages. ``notes`` adds a
    line of text to chosen features' pages. Returns the path of ``index.html``.
    """
    folder = Path(folder)
    score = res.score(order_by)
    if features is None:
        key = torch.where(torch.isnan(score), torch.full_like(score, -math.inf), score if descending else -score)
        order = torch.argsort(key, descending=True, stable=True).tolist()[:max_features]
    else:
        order = [res._check_feature(f) for f in features]
    rows = []
    for f in order:
        _write_text(folder / f"feature_{f}.html", feature_page(res, f, n_examples, (notes or {}).get(f, "")))
        best = res.examples(f, "top", 1)
        snippet = context_html(best[0], max(abs(best[0].value), 1e-12), res.token_sep) if best else ""
        rows.append(
            f'<tr class="feature"><td><a href="feature_{f}.html">{f}</a></td><td class="num">{_fmt(float(score[f]))}</td>'
            f'<td class="num">{_fmt(float(res.top.values[f, 0]))}</td><td class="num">{_fmt(float(res.density[f]))}</td>'
            f"<td>{html.escape(res.explanations.get(f, ''))}</td><td>{snippet}</td></tr>"
        )
    body = (
        f"<h1>{html.escape(res.source)} features at {html.escape(res.hook_name)}</h1>"
        f'<p class="muted">{res.n_features} features, {res.n_docs} documents, {res.n_tokens} tokens; {len(order)} pages, '
        f"sorted by {html.escape(order_by)} ({'descending' if descending else 'ascending'}).</p>"
        '<p><input id="filter" placeholder="filter rows" size="40"></p>'
        f"<table><tr><th>feature</th><th>{html.escape(order_by)}</th><th>max</th><th>density</th><th>explanation</th><th>top context</th></tr>"
        + "".join(rows)
        + "</table>"
    )
    index = folder / "index.html"
    _write_text(index, _page(f"{res.source} features", body))
    return index


def _write_text(path: Path, text: str) -> None:
    with _io.atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
