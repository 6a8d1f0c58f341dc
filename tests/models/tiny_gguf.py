"""A tiny Llama written as a GGUF with the ``gguf`` package, tokenizer included: what the models tests convert.

The file follows llama.cpp's conventions as transformers' GGUF reader expects them: tensors named by
``gguf.get_tensor_name_map`` (``token_embd``, ``blk.N.attn_q`` ...), the query and key weights in
llama.cpp's rotary row order (the inverse of the permutation transformers undoes), no ``output.weight``
(tied embeddings, as in SmolLM2), and a byte-level BPE tokenizer (``tokenizer.ggml.model = "gpt2"``):
an end-of-text control token, the 256 byte symbols and a few merges.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

N_LAYERS, D_MODEL, N_HEADS, N_KV_HEADS, D_MLP, CONTEXT = 2, 64, 4, 2, 128, 64
MERGES = ["Ġ t", "h e", "Ġt he", "Ġ a", "o g", "Ġ d", "Ġd og", "a t", "Ġ c", "Ġc at"]
TEXTS = ["the dog", "the cat sat on the dog", "a hat"]


def byte_symbols() -> list[str]:
    """GPT-2's byte-to-unicode alphabet, in byte order (written out here, not imported from transformers)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return [chars[b] for b in range(256)]


def vocabulary() -> list[str]:
    merged = ["".join(m.split(" ")) for m in MERGES]
    return ["<|endoftext|>", *byte_symbols(), *merged]


def random_llama(seed: int = 0):
    """The model the GGUF holds: a random float32 ``LlamaForCausalLM`` with tied embeddings."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(vocabulary()),
        hidden_size=D_MODEL,
        intermediate_size=D_MLP,
        num_hidden_layers=N_LAYERS,
        num_attention_heads=N_HEADS,
        num_key_value_heads=N_KV_HEADS,
        max_position_embeddings=CONTEXT,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        bos_token_id=0,
        eos_token_id=0,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # norms away from 1, so a dropped norm weight would show
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1 + 0.2 * torch.randn_like(p))
    return model


def _rope_rows(w: np.ndarray, n_heads: int) -> np.ndarray:
    """llama.cpp's row order for a rotary weight: per head, the two halves interleaved."""
    return w.reshape(n_heads, 2, w.shape[0] // n_heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_tiny_gguf(path: str | Path, seed: int = 0):
    """Write the model of ``random_llama(seed)`` and the tokenizer as a GGUF at ``path``; returns the model."""
    import gguf

    model = random_llama(seed)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, N_LAYERS)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny-llama")
    writer.add_context_length(CONTEXT)
    writer.add_embedding_length(D_MODEL)
    writer.add_block_count(N_LAYERS)
    writer.add_feed_forward_length(D_MLP)
    writer.add_rope_dimension_count(D_MODEL // N_HEADS)
    writer.add_head_count(N_HEADS)
    writer.add_head_count_kv(N_KV_HEADS)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_freq_base(10000.0)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    tokens = vocabulary()
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([gguf.TokenType.CONTROL] + [gguf.TokenType.NORMAL] * (len(tokens) - 1))
    writer.add_token_merges(MERGES)
    writer.add_bos_token_id(0)
    writer.add_eos_token_id(0)
    writer.add_add_bos_token(False)
    for hf_name, tensor in model.state_dict().items():
        if hf_name == "lm_head.weight":
            continue  # tied: the GGUF has no output.weight
        base, suffix = hf_name.rsplit(".", 1)
        w = tensor.detach().numpy().astype(np.float32)
        if hf_name.endswith("q_proj.weight"):
            w = _rope_rows(w, N_HEADS)
        elif hf_name.endswith("k_proj.weight"):
            w = _rope_rows(w, N_KV_HEADS)
        writer.add_tensor(f"{names.get_name(base)}.{suffix}", w)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return model
