"""Layer 1, the core: what a prior *is*.

The configuration (:mod:`~tl_glp.core.config`), the flow-matching math (:mod:`~tl_glp.core.flow`),
the denoiser (:mod:`~tl_glp.core.network`), the normaliser, :class:`~tl_glp.core.prior.GenerativePrior`
with its persistence and the import of published checkpoints, projection settings, hook positions,
and small utilities. Nothing here imports from the layers above (checked by import-linter).
"""
