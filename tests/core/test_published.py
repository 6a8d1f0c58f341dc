"""Parity of the published-checkpoint import with an independent oracle written from glp-method.md section 3."""

import math
import re

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
    expected_z = (x - stats["mean"]) / stats["var"].sqrt()
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
    w, _ = write_published(tmp_path / "glp", epoch=3)  # checkpoints/epoch_3 (weights w) and a later final
    prior = GenerativePrior.from_pretrained(tmp_path / "glp", checkpoint=3)
    z, t = torch.randn(4, 6), torch.rand(4)
    assert torch.allclose(prior(z, t), oracle_velocity(w, z, t, 2), atol=1e-5)
    assert not torch.allclose(GenerativePrior.from_pretrained(tmp_path / "glp")(z, t), prior(z, t), atol=1e-3)
    (tmp_path / "glp" / "final.safetensors").unlink()  # a partial download
    with pytest.raises(FileNotFoundError, match="final.safetensors"):
        GenerativePrior.from_pretrained(tmp_path / "glp")
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
    assert torch.allclose(prior.mean, stats["mean"]) and torch.allclose(prior.var, stats["var"])


def test_rep_statistic_foreign_absolute_path_found_by_file_name(tmp_path):
    folder = tmp_path / "glp"
    _, stats = write_published(folder)
    (folder / "rep_statistics.pt").rename(folder / "llama1b_l7_stats.pt")
    _set_rep_statistic(folder, "/home/someone/data/llama1b/llama1b_l7_stats.pt")  # the authors' machine
    prior = GenerativePrior.from_pretrained(folder)
    assert torch.allclose(prior.mean, stats["mean"])
    _set_rep_statistic(folder, str(folder.resolve() / "llama1b_l7_stats.pt"))  # absolute, inside the folder
    assert torch.allclose(GenerativePrior.from_pretrained(folder).mean, stats["mean"])


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


# --------------------------------------------------------------------------- the authors' own saved configs
class _Tripwire:
    """A pickle that, if ever unpickled, creates ``sentinel`` (the optimizer/scheduler states are such pickles)."""

    def __init__(self, sentinel):
        self.sentinel = str(sentinel)

    def __reduce__(self):
        import os

        return (os.mkdir, (self.sentinel,))


def test_authors_unresolved_config_loads_the_folders_statistics(tmp_path, monkeypatch):
    """glp_train.py (OmegaConf.save without resolve=True) leaves `rep_statistic: ${rep_statistic}`; their
    load_glp points the top-level rep_statistic at <folder>/rep_statistics.pt before resolving."""
    folder = tmp_path / "runs" / "glp-llama1b-d2_static-1M"
    w, stats = write_published(folder, layers=(7,))
    text = (folder / "config.yaml").read_text()
    assert (
        "    rep_statistic: ${rep_statistic}\n" in text and "rep_statistic: ${train_dataset}/rep_statistics.pt" in text
    )
    # decoys where the unresolved paths would point on the authors' machine (save_root: . is the working dir)
    monkeypatch.chdir(tmp_path)
    decoy = {"mean": torch.full((6,), 100.0), "var": torch.full((6,), 100.0)}
    (tmp_path / "data" / "llama1b-layer07-fineweb-1M").mkdir(parents=True)
    torch.save(decoy, tmp_path / "data" / "llama1b-layer07-fineweb-1M" / "rep_statistics.pt")
    torch.save(decoy, tmp_path / "rep_statistics.pt")
    sentinel = tmp_path / "unpickled"
    for name in ("optimizer_state.pt", "scheduler_state.pt"):
        torch.save({"state": _Tripwire(sentinel)}, folder / name)

    prior = GenerativePrior.from_pretrained(folder)
    assert prior.cfg.hook_names == ["blocks.7.hook_resid_post"] and prior.cfg.n_blocks == 2
    assert prior.cfg.model_name == "meta-llama/Llama-3.2-1B" and prior.cfg.model_processing == "unprocessed"
    assert torch.equal(prior.mean, stats["mean"]) and torch.equal(prior.var, stats["var"])
    z, t = torch.randn(8, 6), torch.rand(8)
    assert torch.allclose(prior(z, t), oracle_velocity(w, z, t, 2), atol=1e-5)
    assert not sentinel.exists()  # the optimizer and scheduler pickles were never opened


def test_authors_resolved_config_with_a_path_tag_loads(tmp_path):
    """A newer glp_train.py saves with resolve=True: OmegaConf then writes output_path with a Python tag
    (yaml.safe_load refuses it) and rep_statistic as ./data/.../rep_statistics.pt of their machine."""
    folder = tmp_path / "glp"
    w, stats = write_published(folder, resolved=True)
    text = (folder / "config.yaml").read_text()
    assert "!!python/object/apply:pathlib.PosixPath" in text and "${" not in text
    prior = GenerativePrior.from_pretrained(folder)
    assert torch.equal(prior.mean, stats["mean"]) and prior.cfg.hook_names == ["blocks.3.hook_resid_post"]
    z, t = torch.randn(8, 6), torch.rand(8)
    assert torch.allclose(prior(z, t), oracle_velocity(w, z, t, 2), atol=1e-5)


def _edit_config(folder, *replacements):
    cfg_path = folder / "config.yaml"
    text = cfg_path.read_text()
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new)
    cfg_path.write_text(text)


def test_interpolated_fields_are_resolved_within_the_file(tmp_path):
    """Not in the authors' shipped configs, but OmegaConf allows it: the fields read are interpolations."""
    folder = tmp_path / "glp"
    w, stats = write_published(folder, layers=(5,))
    _edit_config(
        folder,
        ("model_name: meta-llama/Llama-3.2-1B\n", "model_name: ${base.org}/${base.name}\n"),
        ("    d_input: 6\n", "    d_input: ${width}\n"),
        ("    d_model: 12\n", "    d_model: ${.d_mlp_half}\n    d_mlp_half: 12\n"),
        ("    layers:\n    - 5\n", "    layers: ${traced}\n"),
        ("    retain: output\n", "    retain: ${..normalizer_config.kind}\n"),
        ("    rep_statistic: ${rep_statistic}\n", "    rep_statistic: ${rep_statistic}\n    kind: output\n"),
        (
            "wandb_entity: null\n",
            "wandb_entity: ${oc.env:USER}\nwidth: 6\ntraced: [5]\nbase: {org: meta-llama, name: Llama-3.2-1B}\n",
        ),
    )
    prior = GenerativePrior.from_pretrained(folder)  # the unresolvable wandb_entity is never read
    assert prior.cfg.d_input == 6 and prior.cfg.d_hidden == 12 and prior.cfg.hook_names == ["blocks.5.hook_resid_post"]
    assert prior.cfg.model_name == "meta-llama/Llama-3.2-1B"
    z, t = torch.randn(8, 6), torch.rand(8)
    assert torch.allclose(prior(z, t), oracle_velocity(w, z, t, 2), atol=1e-5)


@pytest.mark.parametrize(
    ("value", "why"),
    [("${oc.env:GLP_WIDTH}", "resolver 'oc.env'"), ("${nowhere.width}", "does not hold"), ("${width}", "itself")],
)
def test_unresolvable_field_names_the_key(tmp_path, value, why):
    folder = tmp_path / "glp"
    write_published(folder)
    _edit_config(
        folder,
        ("    d_input: 6\n", f"    d_input: {value}\n"),
        ("save_root: .\n", "save_root: .\nwidth: ${glp_kwargs.denoiser_config.d_input}\n"),
    )
    with pytest.raises(ValueError, match=rf"glp_kwargs\.denoiser_config\.d_input .*{re.escape(why)}"):
        GenerativePrior.from_pretrained(folder)


def test_rep_statistic_interpolations_never_leave_the_folder(tmp_path):
    folder = tmp_path / "glp"
    _, stats = write_published(folder)
    outside = {"mean": torch.full((6,), 100.0), "var": torch.full((6,), 100.0)}
    torch.save(outside, tmp_path / "stats_outside.pt")
    # resolves to ../stats_outside.pt: outside the folder, so the folder's own rep_statistics.pt is used
    _edit_config(
        folder,
        ("    rep_statistic: ${rep_statistic}\n", "    rep_statistic: ${train_dataset}/../stats_outside.pt\n"),
        ("train_dataset: ${save_root}/data/llama1b-layer07-fineweb-1M\n", "train_dataset: ..\n"),
    )
    assert torch.equal(GenerativePrior.from_pretrained(folder).mean, stats["mean"])
    (folder / "rep_statistics.pt").unlink()
    with pytest.raises(FileNotFoundError, match=r"resolved: '\.\./\.\./stats_outside\.pt'"):
        GenerativePrior.from_pretrained(folder)
    # a setting only the authors' machine could resolve is ignored: <folder>/rep_statistics.pt
    torch.save(stats, folder / "rep_statistics.pt")
    _edit_config(folder, ("${train_dataset}/../stats_outside.pt", "${oc.env:DATA}/stats.pt"))
    assert torch.equal(GenerativePrior.from_pretrained(folder).mean, stats["mean"])
