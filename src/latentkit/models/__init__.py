"""Networks: the codec (VAE), the text encoder and the denoiser."""
