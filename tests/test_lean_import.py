"""Starting up imports only the diffusers models we use, and every other one still imports."""

import subprocess
import sys

CHECK = """
import sys
import latentkit.models.codec, latentkit.models.denoiser
loaded = [m for m in sys.modules if m.startswith("diffusers.models.autoencoders.")]
assert "diffusers.models.autoencoders.autoencoder_kl_ltx" not in loaded, loaded
from diffusers import AutoencoderKLLTXVideo, PixArtTransformer2DModel
from diffusers.models.autoencoders import AutoencoderKL
assert AutoencoderKL is latentkit.models.codec.AutoencoderKL
assert PixArtTransformer2DModel is latentkit.models.denoiser.PixArtTransformer2DModel
print(AutoencoderKLLTXVideo.__name__)
"""


def test_unused_diffusers_models_load_only_when_asked_for() -> None:
    result = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "AutoencoderKLLTXVideo"
