"""The held-out split of the studies, against its rule written out independently (version 1)."""

import pytest
import torch

from tl_glp.studies.splits import HELD_OUT_VERSION, held_out_rule, held_out_split


@pytest.mark.parametrize(("n_rows", "n_held", "seed"), [(100, 10, 0), (100, 40, 3), (37, 30, 1), (1000, 8, 7)])
def test_held_out_split_follows_version_1_of_its_rule(n_rows, n_held, seed):
    """If this fails, held_out_split now chooses other rows: bump HELD_OUT_VERSION (study folders record
    it and refuse to resume under another) and write the new rule here."""
    assert HELD_OUT_VERSION == 1
    rows = torch.arange(float(n_rows))[:, None] * 10
    split = held_out_split(rows, n_held, seed)
    pool_size = max(n_held, n_rows // 4)  # the last quarter of the rows, at least n_held
    pool = list(range(n_rows - pool_size, n_rows))
    drawn = [
        pool[i] for i in torch.randperm(pool_size, generator=torch.Generator().manual_seed(seed)).tolist()[:n_held]
    ]
    assert split.train[:, 0].tolist() == [10.0 * i for i in range(n_rows - pool_size)]
    assert split.held_a[:, 0].tolist() == [10.0 * i for i in drawn[: n_held // 2]]
    assert split.held_b[:, 0].tolist() == [10.0 * i for i in drawn[n_held // 2 :]]


def test_held_out_rule_names_the_function_version_and_parameters():
    assert held_out_rule(64, 5) == {
        "split": "tl_glp.studies.splits.held_out_split",
        "version": HELD_OUT_VERSION,
        "held_out_rows": 64,
        "seed": 5,
    }

    def mine(rows, n_held, seed):
        return held_out_split(rows, n_held, seed)

    mine.version = 3
    assert held_out_rule(64, 5, mine)["split"].endswith("mine") and held_out_rule(64, 5, mine)["version"] == 3
