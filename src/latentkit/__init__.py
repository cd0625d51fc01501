"""latentkit: generate and edit images through latent space."""

from latentkit.version import __version__

__all__ = ["Pipeline", "__version__"]


def __getattr__(name: str):
    # Lazy, so `import latentkit` (and the CLI's --help) stays fast and torch-free.
    if name == "Pipeline":
        from latentkit.pipeline import Pipeline

        return Pipeline
    raise AttributeError(name)
