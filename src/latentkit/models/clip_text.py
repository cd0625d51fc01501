"""Stable Diffusion's text side: one CLIP encoder (SD 1.x/2.x) or two (SDXL), as a TextEncoder.

It encodes exactly as diffusers' pipelines do, so the same prompt gives the same conditioning:
- SD 1.x/2.x: the last hidden state (after the final layer norm) of the folder's encoder, 77
  tokens padded with the tokenizer's pad token, every position attended. SD 2.x folders already
  stop OpenCLIP-H at its penultimate block, so "last" is what SD 2 was trained on.
- SDXL: the penultimate hidden states of CLIP-L and CLIP-G concatenated (768 + 1280 = 2048 per
  token), the pooled vector from CLIP-G's projection, and an empty negative prompt as zeros when
  the folder says `force_zeros_for_empty_prompt`.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from typing import Any

import torch
from torch import Tensor

from latentkit.models.components import PromptEmbeds
from latentkit.models.text import check_prompt


class CLIPPromptEncoder:
    """The `TextEncoder` of the CLIP-conditioned UNet families."""

    def __init__(
        self,
        tokenizers: list[Any],
        encoders: list[torch.nn.Module],
        *,
        penultimate: bool,
        zero_empty_negative: bool = False,
        name: str = "CLIP",
        cache_size: int = 1024,
    ) -> None:
        self.tokenizers, self.encoders = tokenizers, encoders
        self.penultimate = penultimate
        self.zero_empty_negative = zero_empty_negative
        self.name = name
        self.token_dim = sum(e.config.hidden_size for e in encoders)
        self.max_tokens = tokenizers[0].model_max_length
        self._cache: OrderedDict[tuple[str, bool], tuple[Tensor, Tensor]] = OrderedDict()
        self._cache_size = cache_size
        for encoder in encoders:
            encoder.requires_grad_(False).eval()

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> CLIPPromptEncoder:
        for encoder in self.encoders:
            encoder.to(device, dtype)
        self.clear_cache()
        return self

    def reserve(self, prompts: int) -> None:
        self._cache_size = max(self._cache_size, prompts)

    def clear_cache(self) -> None:
        """Forget cached prompts: needed whenever the encoders' weights change (a LoRA)."""
        self._cache.clear()

    def encode(self, prompts: list[str], negative: bool = False) -> PromptEmbeds:
        if isinstance(prompts, str):
            prompts = [prompts]
        rows = []
        for prompt in prompts:
            key = (check_prompt(prompt), negative)
            if key not in self._cache:
                self._cache[key] = self._encode_one(prompt, negative)
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
            self._cache.move_to_end(key)
            rows.append(self._cache[key])
        tokens = torch.cat([r[0] for r in rows])
        mask = torch.ones(tokens.shape[:2], dtype=torch.long, device=tokens.device)
        return PromptEmbeds(tokens, mask, torch.cat([r[1] for r in rows]))

    @torch.no_grad()
    def _encode_one(self, prompt: str, negative: bool) -> tuple[Tensor, Tensor]:
        """[1, 77, D] token states and [1, P] pooled vector of one prompt."""
        if negative and prompt == "" and self.zero_empty_negative:
            tokens, pooled = self._encode_one("", False)
            return torch.zeros_like(tokens), torch.zeros_like(pooled)
        states, pooled = [], None
        for tokenizer, encoder in zip(self.tokenizers, self.encoders, strict=True):
            ids = self._token_ids(tokenizer, prompt).to(encoder.device)
            out = encoder(ids, output_hidden_states=self.penultimate)
            states.append(out.hidden_states[-2] if self.penultimate else out[0])
            # SDXL takes the pooled vector of its last encoder (CLIP-G's projection)
            pooled = out.text_embeds if hasattr(out, "text_embeds") else out.pooler_output
        return torch.cat(states, dim=-1), pooled

    def _token_ids(self, tokenizer: Any, prompt: str) -> Tensor:
        window = tokenizer.model_max_length
        full = tokenizer(prompt, truncation=False)["input_ids"]
        if len(full) > window:
            warnings.warn(
                f"prompt is {len(full)} tokens, longer than CLIP's window of {window}; "
                f"truncated: {prompt[:60]!r}...",
                stacklevel=5,
            )
        return tokenizer(
            prompt, padding="max_length", max_length=window, truncation=True, return_tensors="pt"
        ).input_ids
