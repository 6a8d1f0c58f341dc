"""Projectors: the ways back to the manifold a steering hook can take, behind one protocol.

A projector is any object with ``project(edited, *, original=None, layer=None) -> Tensor``:
``edited`` are the steered activations ``[n, d]`` of the positions a hook edits, ``original`` the
same positions before steering (some projectors restore part of them), ``layer`` the LLM layer of
the hook (multi-layer priors only). The steering hooks and :func:`~tl_glp.steering_sweep` take
any projector; ``name`` labels it in tables and plots. The projectors here share their plumbing
(shapes, device and dtype, the unsteered activations, seeded noise, diagnosis columns) through
:class:`BaseProjector` (:mod:`tl_glp.steering.projectors.base`).

The established ones (:mod:`~tl_glp.steering.projectors.classic`):

- :class:`PriorProjector`: the prior's SDEdit projection with one :class:`~tl_glp.ProjectionConfig`.
  Seeded, it draws fresh noise at every call from one generator seeded once (as the reference
  draws fresh noise per call); :meth:`~BaseProjector.reset` (or a new projector with the same
  seed) repeats the sequence.
- :class:`Identity`: plain steering, as a projector.
- :class:`SAEProjector`: an SAE-Lens SAE's round trip ``decode(encode(edited))``; with
  ``keep_error=True`` the unsteered activation's reconstruction error is added back,
  ``decode(encode(edited)) + (original - decode(encode(original)))``.
- :class:`PCAProjector`: keep the top-``k`` principal subspace (fitted on natural activations) of
  the steered activation and restore the rest from the unsteered one.
- :class:`GaussianShrinkage`: cap the Mahalanobis distance under a Gaussian fitted to natural
  activations, stepping back towards the unsteered activation (or the mean) just as far as needed.

The ones that keep the concept (:mod:`~tl_glp.steering.projectors.guided`), each aimed at a cause
the diagnosis (:mod:`tl_glp.steering.diagnose`) measured for the prior's projection:

- :class:`DirectionPreserving`: any projector, then the steered component along the direction put
  back; optionally acting only inside a subspace (:func:`meta_neuron_subspace`).
- :class:`ScorePull`: a few small capped steps along the prior's denoising direction at a small time.
- :class:`LikelihoodGated`: project only off-manifold rows, each by the least time that brings it back.
- :class:`NormClamp`: rescale the norm into the natural range, alone or before another projector.

Example:
    >>> import torch
    >>> from tl_glp import GenerativePrior, ProjectionConfig
    >>> natural = torch.randn(512, 8)
    >>> prior = GenerativePrior.from_activations(natural, n_blocks=1)
    >>> w = torch.eye(8)[0]
    >>> projectors = [Identity(), PriorProjector(prior, ProjectionConfig(seed=0)), PCAProjector.fit(natural, 3),
    ...               DirectionPreserving(PriorProjector(prior), w), ScorePull(prior), NormClamp.fit(natural)]
    >>> x = torch.randn(2, 8)
    >>> [tuple(p.project(x + w, original=x).shape) for p in projectors] == [(2, 8)] * 6
    True
    >>> [p.name for p in projectors[3:]]
    ['prior reference t=0.5 (keep w)', 'score pull t=0.1', 'norm clamp (raw)']
"""

from tl_glp.steering.projectors.base import BaseProjector, Projector, noised_norm_ratio, unit_direction
from tl_glp.steering.projectors.classic import GaussianShrinkage, Identity, PCAProjector, PriorProjector, SAEProjector
from tl_glp.steering.projectors.guided import (
    DirectionPreserving,
    LikelihoodGated,
    NormClamp,
    ScorePull,
    meta_neuron_subspace,
)

__all__ = [
    "BaseProjector",
    "DirectionPreserving",
    "GaussianShrinkage",
    "Identity",
    "LikelihoodGated",
    "NormClamp",
    "PCAProjector",
    "PriorProjector",
    "Projector",
    "SAEProjector",
    "ScorePull",
    "meta_neuron_subspace",
    "noised_norm_ratio",
    "unit_direction",
]
