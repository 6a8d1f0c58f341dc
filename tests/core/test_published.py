"""Parity of the published-checkpoint import with an independent oracle written from glp-method.md section 3."""

import math

import pytest
import torch
import torch.nn.functional as F
import yaml
from conftest import write_published

from tl_glp import GenerativePrior


def _linear(w, name, x):
    return x @ w[f"{name}.weight"].T + w[f"{name}.bias"]


def _sinusoid(values, dim):
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
    args = values[:, None].float() * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], -1)
    return F.pad(emb, (0, dim % 2))


def oracle_velocity(w, z_t, t, n_blocks, layer=None, n_llm_layers=None):
    """The published forward pass, from the description only: published key names, no tl_glp code."""
    d_model = w["model.in_proj.weight"].shape[0]
    emb = _linear(w, "model.time_embed.2", F.silu(_linear(w, "model.time_embed.0", _sinusoid(1000 * t, d_model))))
    if layer is not None:
        depth = torch.full_like(t, layer / (n_llm_layers - 1))
        emb = emb + _linear(
            w, "model.layer_embed.2", F.silu(_linear(w, "model.layer_embed.0", _sinusoid(depth, d_model)))
        )
    h = _linear(w, "model.in_proj", z_t)
    for i in range(n_blocks):
        p = f"model.layers.{i}"
        a = F.layer_norm(h, (d_model,), w[f"{p}.ln.weight"], w[f"{p}.ln.bias"])
        n = F.silu(_linear(w, f"{p}.gate_proj", a) * _linear(w, f"{p}.time_proj", emb)) * _linear(w, f"{p}.up_proj", a)
        h = h + _linear(w, f"{p}.down_proj", n)
    return _linear(w, "model.out_proj", F.layer_norm(h, (d_model,), w["model.ln.weight"], w["model.ln.bias"]))


def test_single_site_import_matches_oracle(tmp_path):
    w, stats = write_published(tmp_path / "glp")
    prior = GenerativePrior.from_pretrained(tmp_path / "glp")
    assert prior.cfg.hook_names == ["blocks.3.hook_resid_post"]
    assert prior.cfg.model_name == "meta-llama/Llama-3.2-1B"
    assert prior.cfg.model_processing == "unprocessed"
    g = torch.Generator().manual_seed(1)
    z, t = torch.randn(32, 6, generator=g), torch.rand(32, generator=g)
    assert torch.allclose(prior(z, t), oracle_velocity(w, z, t, 2), atol=1e-5)
    x = torch.randn(5, 6)
    expected_z = (x - stats["mean"][0]) / stats["var"][0].sqrt()
    assert torch.allclose(prior.normalize(x), expected_z, atol=1e-6)


def test_multi_layer_import_matches_oracle(tmp_path):
    w, stats = write_published(tmp_path / "multi", n_llm_layers=4, layers=range(4), seed=3)
    prior = GenerativePrior.from_pretrained(tmp_path / "multi")
    assert prior.cfg.n_llm_layers == 4 and len(prior.cfg.hook_names) == 4
    g = torch.Generator().manual_seed(2)
    z, t = torch.randn(16, 6, generator=g), torch.rand(16, generator=g)
    for layer in range(4):
        assert torch.allclose(prior(z, t, layer=layer), oracle_velocity(w, z, t, 2, layer, 4), atol=1e-5)
    assert torch.allclose(prior.mean, stats["mean"]) and torch.allclose(prior.var, stats["var"])


def test_intermediate_epoch_checkpoint_and_errors(tmp_path):
    w, _ = write_published(tmp_path / "glp", epoch=3)
    prior = GenerativePrior.from_pretrained(tmp_path / "glp", checkpoint=3)
    z, t = torch.randn(4, 6), torch.rand(4)
    assert torch.allclose(prior(z, t), oracle_velocity(w, z, t, 2), atol=1e-5)
    with pytest.raises(FileNotFoundError, match="final.safetensors"):
        GenerativePrior.from_pretrained(tmp_path / "glp")  # only epoch_3 exists
    (tmp_path / "glp" / "rep_statistics.pt").unlink()
    with pytest.raises(FileNotFoundError, match="rep_statistics.pt"):
        GenerativePrior.from_pretrained(tmp_path / "glp", checkpoint="epoch_3")


def test_statistics_file_that_needs_unpickling_code_is_refused(tmp_path):
    write_published(tmp_path / "glp")

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"mean": Evil(), "var": torch.ones(6)}, tmp_path / "glp" / "rep_statistics.pt")
    with pytest.raises(ValueError, match="weights_only=True"):
        GenerativePrior.from_pretrained(tmp_path / "glp")


def _set_rep_statistic(folder, value):
    cfg_path = folder / "config.yaml"
    raw = yaml.safe_load(cfg_path.read_text())
    raw["glp_kwargs"]["normalizer_config"]["rep_statistic"] = value
    cfg_path.write_text(yaml.safe_dump(raw))


def test_rep_statistic_relative_path_inside_the_folder(tmp_path):
    folder = tmp_path / "glp"
    _, stats = write_published(folder)
    (folder / "stats").mkdir()
    (folder / "rep_statistics.pt").rename(folder / "stats" / "layer3_stats.pt")
    _set_rep_statistic(folder, "stats/layer3_stats.pt")
    prior = GenerativePrior.from_pretrained(folder)
    assert torch.allclose(prior.mean, stats["mean"][0]) and torch.allclose(prior.var, stats["var"][0])


def test_rep_statistic_foreign_absolute_path_found_by_file_name(tmp_path):
    folder = tmp_path / "glp"
    _, stats = write_published(folder)
    (folder / "rep_statistics.pt").rename(folder / "llama1b_l7_stats.pt")
    _set_rep_statistic(folder, "/home/someone/data/llama1b/llama1b_l7_stats.pt")  # the authors' machine
    prior = GenerativePrior.from_pretrained(folder)
    assert torch.allclose(prior.mean, stats["mean"][0])
    _set_rep_statistic(folder, str(folder.resolve() / "llama1b_l7_stats.pt"))  # absolute, inside the folder
    assert torch.allclose(GenerativePrior.from_pretrained(folder).mean, stats["mean"][0])


def test_rep_statistic_that_cannot_be_found_names_the_path(tmp_path):
    folder = tmp_path / "glp"
    write_published(folder)
    outside = tmp_path / "elsewhere.pt"
    (folder / "rep_statistics.pt").rename(outside)
    _set_rep_statistic(folder, "../elsewhere.pt")  # outside the checkpoint folder: never read
    with pytest.raises(FileNotFoundError, match=r"rep_statistic is '\.\./elsewhere\.pt'.*elsewhere\.pt"):
        GenerativePrior.from_pretrained(folder)
    _set_rep_statistic(folder, "/data/run/missing_stats.pt")
    with pytest.raises(FileNotFoundError, match="missing_stats.pt"):
        GenerativePrior.from_pretrained(folder)
