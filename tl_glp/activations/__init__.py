"""Getting activations out of a TransformerLens model and onto disk, and reading them back."""

from tl_glp.activations.sources import ActivationSource, Batch, InMemoryActivations, as_source

__all__ = ["ActivationSource", "Batch", "InMemoryActivations", "as_source"]
