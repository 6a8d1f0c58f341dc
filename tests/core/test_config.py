import pytest

from tl_glp import PriorConfig


def test_defaults_follow_published_widths():
    cfg = PriorConfig(d_input=64, n_blocks=3)
    assert (cfg.d_hidden, cfg.d_mlp) == (128, 256)
    assert not cfg.is_multi_layer


def test_round_trip_ignores_unknown_keys():
    cfg = PriorConfig(
        d_input=8,
        n_blocks=2,
        n_llm_layers=4,
        hook_names=["blocks.1.hook_resid_post"],
        model_name="m",
        model_processing="processed",
    )
    data = cfg.to_dict() | {"from_the_future": 1}
    assert PriorConfig.from_dict(data) == cfg


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"d_input": 0}, "d_input"),
        ({"d_input": 8, "n_blocks": 0}, "n_blocks"),
        ({"d_input": 8, "n_llm_layers": 1}, "n_llm_layers"),
        ({"d_input": 8, "model_processing": "folded"}, "model_processing"),
    ],
)
def test_invalid_configs_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PriorConfig(**kwargs)
