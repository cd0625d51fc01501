"""Starting up imports only the diffusers models we use, and every other one still imports."""

import subprocess
import sys

import pytest

CHECK = """
import sys
import latentkit.models.codec, latentkit.models.denoiser
loaded = [m for m in sys.modules if m.startswith("diffusers.models.autoencoders.")]
assert "diffusers.models.autoencoders.autoencoder_kl_ltx" not in loaded, loaded
assert "diffusers.models.unets.unet_3d_condition" not in sys.modules
from diffusers import UNet2DConditionModel
from diffusers.models.unets import UNet3DConditionModel
from diffusers import AutoencoderKLLTXVideo, PixArtTransformer2DModel
from diffusers.models.autoencoders import AutoencoderKL
assert AutoencoderKL is latentkit.models.codec.AutoencoderKL
assert PixArtTransformer2DModel is latentkit.models.denoiser.PixArtTransformer2DModel
print(AutoencoderKLLTXVideo.__name__)
"""


PEFT_CHECK = """
import sys
import torch
import latentkit.models.codec, latentkit.models.denoiser
assert "peft" not in sys.modules, "peft imported at start-up"
from diffusers.utils import is_peft_available
from diffusers.loaders import lora_base
from diffusers.hooks import layerwise_casting
assert is_peft_available()
assert not isinstance(torch.nn.Linear(2, 2), lora_base.BaseTunerLayer)
assert "peft" not in sys.modules, "an isinstance check imported peft"
from peft import LoraConfig, inject_adapter_in_model
plain = torch.nn.Sequential(torch.nn.Linear(2, 2))
layer = inject_adapter_in_model(LoraConfig(r=2, target_modules=["0"]), plain)[0]
assert isinstance(layer, lora_base.BaseTunerLayer)
assert isinstance(layer, layerwise_casting.BaseTunerLayer)
assert issubclass(type(layer), lora_base.BaseTunerLayer)
assert layerwise_casting._SHOULD_DISABLE_PEFT_INPUT_AUTOCAST
with layerwise_casting.disable_input_dtype_casting(layer):
    pass
print("ok")
"""


SCIPY_CHECK = """
import sys
import latentkit.models.codec, latentkit.models.denoiser
assert "scipy.stats" not in sys.modules, "scipy.stats imported at start-up"
from diffusers import EulerDiscreteScheduler
from diffusers.utils import is_scipy_available
assert is_scipy_available()
scheduler = EulerDiscreteScheduler(use_beta_sigmas=True)
scheduler.set_timesteps(10)
print(len(scheduler.sigmas))
"""


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        pytest.param(CHECK, "AutoencoderKLLTXVideo", id="unused-models-load-when-asked"),
        pytest.param(PEFT_CHECK, "ok", id="peft-out-of-start-up-yet-seen-by-diffusers"),
        pytest.param(SCIPY_CHECK, "11", id="scipy-out-of-start-up-beta-sigmas-work"),
    ],
)
def test_start_up_skips_imports_and_everything_still_works(script: str, expected: str) -> None:
    """Each script runs in a fresh interpreter, as start-up does."""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected
