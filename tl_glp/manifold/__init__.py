"""On-manifold scores in one place: log-density, denoising score, detection and adaptive projection.

Functions that take a :class:`~tl_glp.GenerativePrior`:

- :func:`log_prob`, :func:`denoising_score` (:mod:`~tl_glp.manifold.likelihood`);
- :func:`detect_off_manifold`, :class:`GaussianBaseline` (:mod:`~tl_glp.manifold.detection`);
- :class:`OffManifold`, :class:`AdaptiveProjector`, :func:`score_recorder`, :func:`manifold_score`
  (:mod:`~tl_glp.manifold.adaptive`).
"""

from tl_glp.manifold.adaptive import AdaptiveProjector, OffManifold, manifold_score, score_recorder
from tl_glp.manifold.detection import GaussianBaseline, detect_off_manifold
from tl_glp.manifold.likelihood import LogProb, denoising_score, log_prob

__all__ = [
    "AdaptiveProjector",
    "GaussianBaseline",
    "LogProb",
    "OffManifold",
    "denoising_score",
    "detect_off_manifold",
    "log_prob",
    "manifold_score",
    "score_recorder",
]
