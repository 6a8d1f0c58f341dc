"""What ``collect_activations`` drops: every special token of the tokenizer, ``<unk>`` included (as its docstring says)."""

from conftest import make_tiny_model

from tl_glp.activations.collect import collect_activations


def test_unknown_words_become_unk_and_are_dropped_unless_asked_to_keep_them(tiny_tokenizer):
    model = make_tiny_model(tiny_tokenizer)
    hook = "blocks.0.hook_resid_post"
    known, with_unknown = "the dog ran", "the zebra ran"  # "zebra" is not in the tiny vocabulary: <unk>
    assert tiny_tokenizer.unk_token_id in tiny_tokenizer(with_unknown)["input_ids"]
    rows = lambda text, skip: len(collect_activations(model, [text], hook, skip_special_tokens=skip, progress=False))  # noqa: E731
    assert rows(known, True) == 3  # BOS dropped
    assert rows(with_unknown, True) == 2  # BOS and <unk> dropped
    assert rows(with_unknown, False) == 3  # packed: <unk> kept; the BOS that opens the window is no document's
    padded = len(
        collect_activations(model, [with_unknown], hook, skip_special_tokens=False, packing=False, progress=False)
    )
    assert padded == 4  # one padded document: every real position kept, its BOS too
