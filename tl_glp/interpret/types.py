"""The records top activations are made of: :class:`Tail`, :class:`Example` and
:class:`TopActivationsData` (what :func:`~tl_glp.interpret.top_activations` finds, with its
persistence).

They sit below everything that computes or renders them: ``topk`` (which fills them and adds the
views, :class:`~tl_glp.interpret.TopActivations`), ``dashboard`` and ``explain`` (which read them)
all import this module, and it imports none of them.

Example:
    >>> ex = Example(doc=0, pos=2, value=3.5, tokens=["the", " cat", " sat"], acts=[0.0, 0.1, 3.5], center=2)
    >>> ex.marked_text()
    'the cat<< sat>>'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
from jaxtyping import Float, Int
from torch import Tensor

from tl_glp.core import _io

_T = TypeVar("_T", bound="TopActivationsData")

FORMAT_VERSION = 1
TENSORS_FILE = "top_activations.safetensors"
META_FILE = "top_activations.json"


@dataclass
class Tail:
    """The ``k`` extreme activations of every feature on one side, best first.

    ``values`` are the activations (NaN where fewer than ``k`` tokens exist), ``doc``/``pos``
    their document index and token position (-1 where empty), ``context`` the feature's own
    activations on the window ``pos - left .. pos + right`` (NaN outside the document or at
    special tokens).
    """

    values: Float[Tensor, "n_features k"]
    doc: Int[Tensor, "n_features k"]
    pos: Int[Tensor, "n_features k"]
    context: Float[Tensor, "n_features k window"]


@dataclass
class Example:
    """One context of one feature: the tokens of the window, the feature's activation on each, and
    which of them is the example's token."""

    doc: int
    pos: int
    value: float
    tokens: list[str]
    acts: list[float]
    center: int

    def marked_text(self, sep: str = "", left: str = "<<", right: str = ">>") -> str:
        """The window as text with the example's token between markers."""
        parts = [f"{left}{t}{right}" if i == self.center else t for i, t in enumerate(self.tokens)]
        return sep.join(parts)


@dataclass
class TopActivationsData:
    """What :func:`~tl_glp.interpret.top_activations` finds, as data: the tails, the per-feature statistics,
    the random sample and the tokens of every document an example comes from; ``save``/``load``
    round-trip through safetensors + JSON. :class:`~tl_glp.interpret.TopActivations` adds the views
    (HTML dashboards, Neuronpedia JSON)."""

    source: str
    hook_name: str
    k: int
    context: tuple[int, int]
    n_docs: int
    n_tokens: int
    top: Tail
    bottom: Tail | None
    density: Float[Tensor, " n_features"]
    density_negative: Float[Tensor, " n_features"] | None
    mean: Float[Tensor, " n_features"]
    std: Float[Tensor, " n_features"]
    histogram: Int[Tensor, "n_features bins"]
    random_doc: Int[Tensor, " n_random"]
    random_pos: Int[Tensor, " n_random"]
    random_values: Float[Tensor, "n_random n_features"]
    doc_tokens: dict[int, list[int]]
    vocab: dict[int, str]
    token_sep: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    explanations: dict[int, str] = field(default_factory=dict)
    scores: dict[int, dict[str, float]] = field(default_factory=dict)

    @property
    def n_features(self) -> int:
        return int(self.top.values.shape[0])

    @property
    def signed(self) -> bool:
        return self.bottom is not None

    def tail(self, which: str = "top") -> Tail:
        if which == "top":
            return self.top
        if which == "bottom":
            if self.bottom is None:
                raise ValueError(f"Source {self.source!r} was run unsigned: only the top tail was tracked.")
            return self.bottom
        raise ValueError(f"tail must be 'top' or 'bottom', got {which!r}.")

    def _check_feature(self, feature: int) -> int:
        if not 0 <= int(feature) < self.n_features:
            raise IndexError(f"feature {feature} is out of range: this result has {self.n_features} features.")
        return int(feature)

    def window(self, doc: int, pos: int) -> tuple[list[str], int]:
        """The token strings of the context window around ``(doc, pos)`` and the index of ``pos`` in it."""
        left, right = self.context
        toks = self.doc_tokens[int(doc)]
        lo, hi = max(0, pos - left), min(len(toks), pos + right + 1)
        return [self.vocab.get(t, f"<{t}>") for t in toks[lo:hi]], pos - lo

    def examples(self, feature: int, tail: str = "top", n: int | None = None) -> list[Example]:
        """The feature's top (or bottom) contexts, best first, with per-token activations."""
        feature = self._check_feature(feature)
        t = self.tail(tail)
        left, _ = self.context
        out = []
        for r in range(t.values.shape[1] if n is None else min(n, t.values.shape[1])):
            doc, pos = int(t.doc[feature, r]), int(t.pos[feature, r])
            if doc < 0:
                break
            tokens, center = self.window(doc, pos)
            lo = pos - center
            acts = t.context[feature, r, lo - pos + left : lo - pos + left + len(tokens)].tolist()
            value = float(t.values[feature, r])
            out.append(Example(doc, pos, value, tokens, acts, center))
        return out

    def random_examples(self, n: int | None = None) -> list[Example]:
        """Random token positions of the corpus (seeded), with every window's text; ``acts`` holds
        only the example token's activation of feature 0 (use ``random_values`` for others)."""
        out = []
        for i in range(len(self.random_doc) if n is None else min(n, len(self.random_doc))):
            doc, pos = int(self.random_doc[i]), int(self.random_pos[i])
            tokens, center = self.window(doc, pos)
            out.append(Example(doc, pos, float("nan"), tokens, [float("nan")] * len(tokens), center))
        return out

    def max_activation(self) -> Tensor:
        """Each feature's largest activation (NaN for a feature never evaluated)."""
        return self.top.values[:, 0]

    def score(self, by: str = "max") -> Tensor:
        """A per-feature score to sort by: ``max``, ``density``, ``std``, or any name stored in
        ``scores`` (``balanced_accuracy``, ``auc`` from detection scoring, ``ground_truth_auc``;
        NaN where a feature has none)."""
        if by == "max":
            return self.max_activation()
        if by == "density":
            return self.density
        if by == "std":
            return self.std
        values = torch.full((self.n_features,), float("nan"))
        for f, s in self.scores.items():
            if by in s:
                values[f] = float(s[by])
        if not any(by in s for s in self.scores.values()):
            raise ValueError(f"No scores named {by!r}: run score_explanations first, or sort by max / density / std.")
        return values

    # ------------------------------------------------------------------ persistence
    def save(self, folder: str | Path) -> Path:
        """Write ``top_activations.safetensors`` and ``top_activations.json`` (atomically) to ``folder``."""
        folder = Path(folder)
        docs = sorted(self.doc_tokens)
        width = max((len(self.doc_tokens[d]) for d in docs), default=0)
        table = torch.full((len(docs), width), -1, dtype=torch.int64)
        for i, d in enumerate(docs):
            table[i, : len(self.doc_tokens[d])] = torch.tensor(self.doc_tokens[d], dtype=torch.int64)
        tensors = {
            "top_values": self.top.values,
            "top_doc": self.top.doc,
            "top_pos": self.top.pos,
            "top_context": self.top.context,
            "density": self.density,
            "mean": self.mean,
            "std": self.std,
            "histogram": self.histogram,
            "random_doc": self.random_doc,
            "random_pos": self.random_pos,
            "random_values": self.random_values,
            "doc_ids": torch.tensor(docs, dtype=torch.int64),
            "doc_tokens": table,
        }
        if self.bottom is not None and self.density_negative is not None:
            tensors.update(
                {
                    "bottom_values": self.bottom.values,
                    "bottom_doc": self.bottom.doc,
                    "bottom_pos": self.bottom.pos,
                    "bottom_context": self.bottom.context,
                    "density_negative": self.density_negative,
                }
            )
        _io.write_tensors(folder / TENSORS_FILE, tensors)
        meta = {
            "format_version": FORMAT_VERSION,
            "source": self.source,
            "hook_name": self.hook_name,
            "k": self.k,
            "context": list(self.context),
            "n_docs": self.n_docs,
            "n_tokens": self.n_tokens,
            "token_sep": self.token_sep,
            "settings": self.settings,
            "vocab": {str(k): v for k, v in self.vocab.items()},
            "explanations": {str(k): v for k, v in self.explanations.items()},
            "scores": {str(k): v for k, v in self.scores.items()},
        }
        _io.write_json(folder / META_FILE, meta)
        return folder

    @classmethod
    def load(cls: type[_T], folder: str | Path) -> _T:
        """Read what :meth:`save` wrote."""
        folder = Path(folder)
        meta = _io.read_json(folder / META_FILE)
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{folder / META_FILE} has format version {meta.get('format_version')}, this tl_glp reads {FORMAT_VERSION}."
            )
        t = _io.read_tensors(folder / TENSORS_FILE)
        doc_tokens = {
            int(d): [int(x) for x in row if x >= 0] for d, row in zip(t["doc_ids"].tolist(), t["doc_tokens"].tolist())
        }
        bottom = (
            Tail(t["bottom_values"], t["bottom_doc"], t["bottom_pos"], t["bottom_context"])
            if "bottom_values" in t
            else None
        )
        return cls(
            source=meta["source"],
            hook_name=meta["hook_name"],
            k=int(meta["k"]),
            context=tuple(meta["context"]),  # type: ignore[arg-type]
            n_docs=int(meta["n_docs"]),
            n_tokens=int(meta["n_tokens"]),
            top=Tail(t["top_values"], t["top_doc"], t["top_pos"], t["top_context"]),
            bottom=bottom,
            density=t["density"],
            density_negative=t.get("density_negative"),
            mean=t["mean"],
            std=t["std"],
            histogram=t["histogram"],
            random_doc=t["random_doc"],
            random_pos=t["random_pos"],
            random_values=t["random_values"],
            doc_tokens=doc_tokens,
            vocab={int(k): v for k, v in meta["vocab"].items()},
            token_sep=meta.get("token_sep", ""),
            settings=meta.get("settings", {}),
            explanations={int(k): v for k, v in meta.get("explanations", {}).items()},
            scores={int(k): v for k, v in meta.get("scores", {}).items()},
        )

    def __repr__(self) -> str:
        return (
            f"TopActivations(source={self.source!r}, hook={self.hook_name!r}, n_features={self.n_features}, k={self.k}, "
            f"signed={self.signed}, n_docs={self.n_docs}, n_tokens={self.n_tokens})"
        )
