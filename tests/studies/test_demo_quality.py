"""The demo's heavy-tail sample-quality numbers and figure (tl_glp.studies.demo.quality)."""

import pytest
import torch

from tl_glp import GenerativePrior
from tl_glp.studies.demo.quality import ROBUST_CLIP, heavy_tail_quality
from tl_glp.training.metrics import RowNormalizer, normalized_frechet_distance


def test_heavy_tail_quality_numbers_and_figure(tmp_path):
    g = torch.Generator().manual_seed(0)
    scale = torch.linspace(1, 20, 12)
    train = torch.randn(3000, 12, generator=g) * scale
    train[:20] *= 100  # a few huge rows, as a real LLM's residual stream has
    held = torch.randn(600, 12, generator=g) * scale
    other = torch.randn(600, 12, generator=g) * scale
    prior = GenerativePrior.from_activations(train, n_blocks=1)
    samples = 1.5 * torch.randn(600, 12, generator=g) * scale  # too wide, with a 5% tail of huge rows: a poor prior
    samples[:30] *= 10
    refs = [("prior", samples), ("lower_bound", other), ("gaussian", torch.randn(500, 12, generator=g) * scale)]
    numbers = heavy_tail_quality(prior, train, held, refs, tmp_path)
    robust = RowNormalizer.fit(train, robust=True, clip=ROBUST_CLIP)
    assert numbers["fd_robust_prior"] == pytest.approx(normalized_frechet_distance(samples, held, robust), rel=1e-9)
    assert numbers["fd_norm_lower_bound"] == pytest.approx(
        normalized_frechet_distance(other, held, RowNormalizer.of_prior(prior)), rel=1e-5
    )
    assert numbers["fd_robust_gaussian"] == pytest.approx(normalized_frechet_distance(refs[2][1], held[:500], robust))
    # real rows of other documents sit near the floor; the too-wide prior well above it
    assert numbers["fd_robust_prior"] > 5 * numbers["fd_robust_lower_bound"]
    assert numbers["capped_share_prior"] > numbers["capped_share_real"] == robust.share_capped(held)
    assert (tmp_path / "norms.png").read_bytes()[:4] == b"\x89PNG"
