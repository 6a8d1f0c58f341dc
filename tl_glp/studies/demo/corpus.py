"""Where the demo's texts come from on a real model: ``--dataset`` values sorted into a text corpus and
probing datasets, the corpus's documents, and the sentiment sentences its steering direction is built from
(the testbed brings its own).

>>> split_dataset_args(["my_probes.csv"])
(None, ['my_probes.csv'])
>>> split_dataset_args(["NeelNanda/pile-10k", "all"])
('NeelNanda/pile-10k', 'all')
"""

from __future__ import annotations

from typing import Any

from tl_glp.activations.collect import HFText

DEMO_POSITIVE = [
    "it was a lovely day and we were happy .",
    "the kind people were great to us .",
    "what a bright and lovely song .",
]
DEMO_NEGATIVE = [
    "it was an awful day and we were sad .",
    "the cruel people were terrible to us .",
    "what a gloomy and awful song .",
]


def is_csv(name: str) -> bool:
    """Whether a ``--dataset`` value names a local CSV file (optionally compressed)."""
    return str(name).endswith((".csv", ".csv.gz", ".csv.zst"))


def split_dataset_args(datasets: list[str] | None) -> tuple[str | None, Any]:
    """For a real model, ``--dataset`` values are a text corpus (a Hugging Face id with a "/"),
    SAE-Probes dataset names (or "all") and local CSV files with ``prompt`` and ``target`` columns
    (probing datasets). Returns (corpus, probing datasets): the corpus defaults to
    ``NeelNanda/pile-10k``, or to ``None`` when CSV files are given (then their prompts are the
    corpus, so the demo runs offline); the probing datasets default to "all"."""
    names = datasets or []
    csvs = [d for d in names if is_csv(d)]
    corpora = [d for d in names if "/" in d and not is_csv(d)]
    probes = [d for d in names if "/" not in d and not is_csv(d)]
    corpus = corpora[0] if corpora else (None if csvs else "NeelNanda/pile-10k")
    if csvs and not probes:
        return corpus, csvs
    return corpus, ("all" if not probes or "all" in probes else probes + csvs)


def corpus_texts(corpus: str | None, probe_args: Any, n: int) -> list[str]:
    """``n`` documents: streamed from the Hugging Face dataset ``corpus`` (needs the Hub), or,
    with ``corpus=None``, the prompts of the CSV probing datasets repeated as often as needed."""
    if corpus is not None:
        stream = iter(HFText(corpus))
        return [next(stream) for _ in range(n)]
    import pandas as pd

    prompts: list[str] = []
    for path in [p for p in probe_args if is_csv(p)]:
        frame = pd.read_csv(path)
        if "prompt" not in frame.columns:
            raise ValueError(
                f"{path} has no 'prompt' column (found {list(frame.columns)}); a probing CSV needs 'prompt' and 'target'."
            )
        prompts += [str(t) for t in frame["prompt"].dropna()]
    if not prompts:
        raise ValueError(
            "No texts for the activations: pass a Hugging Face text dataset id or a CSV with prompts as --dataset."
        )
    return [prompts[i % len(prompts)] for i in range(n)]
