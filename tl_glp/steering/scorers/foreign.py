"""Fluency judged by another model: mean NLL per token of the continuation under a model that was not
steered, with its own tokenizer (e.g. Gemma-3-270M judging SmolLM2's text), so that the steered model
does not grade itself.

The text is re-tokenised: the prompt and the continuation are tokenised separately with the judge's
tokenizer (no special tokens), the judge's BOS is put in front, and the NLL averages over the
continuation's tokens only: ``-mean_j log p(c_j | BOS, prompt, c_<j)``. Tokenising the two parts
separately keeps the boundary exact (no token straddles prompt and continuation).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from tl_glp.core._tokens import model_device, pad_right
from tl_glp.steering.scorers.base import Generations


def load_causal_lm(path: str | Path, *, device: str | None = None) -> tuple[Any, Any]:
    """A Hugging Face causal LM and its tokenizer from a local folder (``save_pretrained`` layout) or a
    local ``.gguf`` file (read by transformers, needs the ``gguf`` package), in float32 and eval mode."""
    path = Path(path)
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as e:
        raise ImportError("Loading a judge model by path needs transformers: pip install transformers") from e
    if path.is_dir():
        kwargs: dict[str, Any] = {"local_files_only": True}
        folder = path
    elif path.is_file() and path.suffix == ".gguf":
        kwargs, folder = {"gguf_file": path.name}, path.parent
    else:
        raise ValueError(
            f"ForeignNLL: {str(path)!r} is neither a local model folder nor a .gguf file. Pass a loaded model "
            "(a HookedTransformer, a TransformerBridge or a transformers causal LM) and its tokenizer instead."
        )
    tokenizer = AutoTokenizer.from_pretrained(folder, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(folder, **kwargs).float().eval()  # float32 on any transformers
    return (model.to(device) if device else model), tokenizer


class ForeignNLL:
    """Mean NLL per token of each continuation given its prompt under a judge model (lower = more fluent).

    ``model``: a TransformerLens model (``HookedTransformer`` or ``TransformerBridge``), any transformers
    causal LM (called as ``model(input_ids=..., attention_mask=...).logits``), or a path to a local
    model folder or ``.gguf`` file (:func:`load_causal_lm`). ``tokenizer``: the judge's Hugging Face
    tokenizer (default: ``model.tokenizer``, which TransformerLens models carry). The steered model the
    sweep passes in is ignored. ``name`` must start with ``"nll"`` (so the Pareto code reads it as
    lower-is-better, :func:`~tl_glp.steering.scorers.higher_is_better`). A continuation with no tokens
    scores NaN. ``uniform_nll`` is ``ln(vocabulary size)``: the NLL of guessing uniformly.

    Example (any judge; here a tiny random Llama)::

        judge = ForeignNLL("/path/to/gemma-3-270m", name="nll_gemma")
        df = steering_sweep(model, w, prompts, prior=prior, scorers=[judge])   # adds a column nll_gemma
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any = None,
        *,
        name: str = "nll_foreign",
        batch_size: int = 16,
        device: str | None = None,
        prepend_bos: bool = True,
        progress: bool = False,
    ) -> None:
        if not str(name).startswith("nll"):
            raise ValueError(
                f"ForeignNLL: name {name!r} must start with 'nll' (the Pareto code reads such columns as lower-is-better)."
            )
        if isinstance(model, (str, Path)):
            model, loaded_tokenizer = load_causal_lm(model, device=device)
            tokenizer = tokenizer or loaded_tokenizer
        tokenizer = tokenizer or getattr(model, "tokenizer", None)
        if tokenizer is None:
            raise ValueError(
                "ForeignNLL: the judge model has no tokenizer; pass tokenizer=... (its Hugging Face tokenizer)."
            )
        if batch_size < 1:
            raise ValueError(f"ForeignNLL: batch_size must be at least 1, got {batch_size}.")
        self.model, self.tokenizer, self.name = model, tokenizer, name
        self.batch_size, self.prepend_bos, self.progress = batch_size, prepend_bos, progress
        self._cache: tuple[Any, list[float]] | None = None

    @property
    def uniform_nll(self) -> float:
        """``ln(V)`` for the judge's ``V`` output logits (the NLL of a uniform guess): ``cfg.d_vocab`` of a
        TransformerLens model, ``config.vocab_size`` of a transformers one, else the tokenizer's length."""
        vocab = getattr(getattr(self.model, "cfg", None), "d_vocab", None)
        vocab = vocab or getattr(getattr(self.model, "config", None), "vocab_size", None)
        return math.log(int(vocab or len(self.tokenizer)))

    def token_ids(self, prompt: str, continuation: str) -> tuple[list[int], list[int]]:
        """The judge's context ids (BOS + prompt) and continuation ids."""
        context = list(self.tokenizer(prompt, add_special_tokens=False)["input_ids"])
        bos = getattr(self.tokenizer, "bos_token_id", None)
        if self.prepend_bos and bos is not None:
            context = [bos, *context]
        if not context:
            raise ValueError(
                "ForeignNLL: an empty prompt and no BOS token (prepend_bos=False or the tokenizer has none): "
                "the continuation's first token has nothing to be predicted from."
            )
        return context, list(self.tokenizer(continuation, add_special_tokens=False)["input_ids"])

    def _logits(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        if hasattr(self.model, "run_with_hooks"):  # TransformerLens: right padding needs no mask (causal)
            return self.model(tokens)
        mask = (torch.arange(tokens.shape[1], device=tokens.device)[None] < lengths.to(tokens.device)[:, None]).long()
        return self.model(input_ids=tokens, attention_mask=mask).logits

    @torch.inference_mode()
    def nll(self, prompts: Sequence[str], continuations: Sequence[str]) -> list[float]:
        """Mean NLL per continuation token of each (prompt, continuation) pair under the judge."""
        key = (tuple(prompts), tuple(continuations))
        if self._cache is not None and self._cache[0] == key:  # FlooredNLL asks again for the same generations
            return list(self._cache[1])
        pairs = [self.token_ids(p, c) for p, c in zip(prompts, continuations)]
        device = model_device(self.model)
        out: list[float] = []
        starts = range(0, len(pairs), self.batch_size)
        for start in tqdm(starts, desc=f"{self.name} judge", disable=not self.progress, leave=False):
            batch = pairs[start : start + self.batch_size]
            tokens, lengths = pad_right([torch.tensor(ctx + cont, dtype=torch.long) for ctx, cont in batch])
            logprobs = torch.log_softmax(self._logits(tokens.to(device), lengths).float(), dim=-1)
            for i, (ctx, cont) in enumerate(batch):
                if not cont:
                    out.append(float("nan"))
                    continue
                rows = logprobs[i, len(ctx) - 1 : len(ctx) - 1 + len(cont)]  # row j predicts cont[j]
                picked = rows.gather(-1, torch.tensor(cont, device=rows.device)[:, None])[:, 0]
                out.append(float(-picked.mean()))
        self._cache = (key, out)
        return list(out)

    def __call__(self, model: Any, gens: Generations) -> list[float]:
        return self.nll(gens.prompts, gens.continuations)
