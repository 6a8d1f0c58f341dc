"""A word-level tokenizer built with Hugging Face ``tokenizers``, wrapped as a ``PreTrainedTokenizerFast``.

It splits on whitespace (punctuation is written as separate words, ``"the dog ran ."``), prepends
``<bos>`` itself and declares ``add_bos_token=True``, so TransformerLens uses it as is, offline:
``model.to_tokens``, ``model.to_string`` and ``model.generate`` work as with gpt2.

Example:
    >>> tok = build_tokenizer(["the", "dog", "ran", "."])
    >>> tok("the dog ran .")["input_ids"]
    [1, 4, 5, 6, 7]
    >>> tok.decode([4, 5, 6, 7])
    'the dog ran .'
"""

from __future__ import annotations

from collections.abc import Sequence

SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>", "<unk>")


def build_tokenizer(words: Sequence[str]):
    """A ``PreTrainedTokenizerFast`` whose ids are the special tokens, then ``words`` in order."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for word in words:
        vocab.setdefault(word, len(vocab))
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    core.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A <bos> $B", special_tokens=[("<bos>", vocab["<bos>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        add_bos_token=True,
        padding_side="right",
        clean_up_tokenization_spaces=False,
        name_or_path="tl-glp-testbed",  # TransformerLens reads it; never fetched since add_bos_token=True
    )
