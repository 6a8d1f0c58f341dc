"""The OmegaConf-free reader of the authors' config.yaml: safe loading and ``${...}`` interpolations.

The expected values are OmegaConf 2.4's for the same texts (``OmegaConf.create(yaml)`` then
``OmegaConf.to_container(resolve=True)``), written out by hand; OmegaConf is not a dependency.
"""

import pytest
import yaml

from tl_glp.core._yaml_config import InterpolationError, load_config, resolve

TEXT = r"""
save_root: .
n: 3
lr: 5.0e-05
flag: true
run_name: glp-d${n}_lr${lr}_${flag}
output_path: ${save_root}/runs/${run_name}
same_n: ${n}
items: [a, b, c]
second: ${items.1}
third: ${items[2]}
pick: k2
table: {k1: one, k2: two}
chosen: ${table.${pick}}
literal: \${not_a_key}
glp_kwargs:
  denoiser_config:
    width: 8
    d_input: ${.width}
    up: ${..top}
  top: ${n}
  whole: ${items}
"""


def test_interpolations_resolve_like_omegaconf():
    cfg = load_config(TEXT)
    assert resolve(cfg, "run_name") == "glp-d3_lr5e-05_True"
    assert resolve(cfg, "output_path") == "./runs/glp-d3_lr5e-05_True"
    assert resolve(cfg, "same_n") == 3 and isinstance(resolve(cfg, "same_n"), int)  # whole value: the target's type
    assert resolve(cfg, "second") == "b" and resolve(cfg, "third") == "c"
    assert resolve(cfg, "chosen") == "two"  # nested interpolation
    assert resolve(cfg, "literal") == "${not_a_key}"  # escaped
    assert resolve(cfg, "glp_kwargs.denoiser_config.d_input") == 8  # relative: a sibling
    assert resolve(cfg, "glp_kwargs.denoiser_config.up") == 3  # relative: one level up, itself interpolated
    assert resolve(cfg, "glp_kwargs.whole") == ["a", "b", "c"]
    assert resolve(cfg, "glp_kwargs") == {
        "denoiser_config": {"width": 8, "d_input": 8, "up": 3},
        "top": 3,
        "whole": ["a", "b", "c"],
    }
    assert resolve(cfg, "items.0") == "a"
    assert resolve(cfg, "absent", default="d") == "d"
    with pytest.raises(KeyError):
        resolve(cfg, "absent")


@pytest.mark.parametrize(
    ("text", "key", "message"),
    [
        ("a: ${oc.env:HOME}", "a", r"^a is '\$\{oc.env:HOME\}': .*resolver 'oc.env'"),
        ("a: ${b}\nb: ${oc.env:X}/y", "a", r"^a \(through b\) is .*resolver 'oc.env'"),
        ("a: x${nowhere}", "a", r"^a is 'x\$\{nowhere\}': .*does not hold"),
        ("a: ${b}\nb: ${c}\nc: ${a}", "a", r"^a refers to itself: a -> b -> c -> a"),
        ("a: ${b", "a", r"no closing"),
        ("a:\n  b: ${...c}", "a.b", r"does not hold"),  # more dots than levels
    ],
)
def test_unresolvable_interpolations_name_the_key(text, key, message):
    with pytest.raises(InterpolationError, match=message):
        resolve(load_config(text), key)


def test_python_tags_are_read_as_data_never_built():
    text = (
        "output_path: !!python/object/apply:pathlib.PosixPath\n- runs/glp-llama1b-d3\n"
        "win: !!python/object/apply:pathlib.WindowsPath [C:/runs, x]\n"
        "boom: !!python/object/apply:os.system [echo pwned]\n"
        "custom: !thing {a: 1}\n"
    )
    with pytest.raises(yaml.YAMLError):
        yaml.safe_load(text)  # what the old reader used
    cfg = load_config(text)
    assert cfg["output_path"] == "runs/glp-llama1b-d3" and cfg["win"] == "C:/runs/x"
    assert cfg["boom"] == ["echo pwned"] and cfg["custom"] == {"a": 1}  # plain data: nothing was called
