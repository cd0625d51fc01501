"""The text side of other families' models, encoding exactly as their diffusers pipelines do, so
the same prompt gives the same conditioning:

- SD 1.x/2.x: the last hidden state (after the final layer norm) of the folder's CLIP encoder,
  77 tokens padded with the tokenizer's pad token, every position attended. SD 2.x folders
  already stop OpenCLIP-H at its penultimate block, so "last" is what SD 2 was trained on.
- SDXL: the penultimate hidden states of CLIP-L and CLIP-G concatenated (768 + 1280 = 2048 per
  token), the pooled vector from CLIP-G's projection, and an empty negative prompt as zeros when
  the folder says `force_zeros_for_empty_prompt`.
- SD3: CLIP-L and CLIP-G penultimate states concatenated and zero-padded to T5's width, then
  T5's tokens after them (zeros when the folder has no T5); pooled = both CLIP projections.
- FLUX.1: T5's tokens; pooled = CLIP-L's pooled output.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from typing import Any

import torch
from torch import Tensor

from latentkit.models.components import PromptEmbeds
from latentkit.models.text import check_prompt


class CachedPromptEncoder:
    """A `TextEncoder` over library text models: per-prompt cache, device moves, the protocol.
    Subclasses say how one prompt becomes ([1, L, D] tokens, [1, P] pooled), or a third item,
    the [1, L] attention mask, where the family masks padding (else every position counts)."""

    name = "text encoder"

    def __init__(self, encoders: list[torch.nn.Module], token_dim: int, max_tokens: int,
                 cache_size: int = 1024) -> None:  # fmt: skip
        self.encoders = encoders
        self.token_dim, self.max_tokens = token_dim, max_tokens
        self._cache: OrderedDict[tuple[str, bool], tuple[Tensor, ...]] = OrderedDict()
        self._cache_size = cache_size
        for encoder in encoders:
            encoder.requires_grad_(False).eval()

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> Any:
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
                with torch.no_grad():
                    self._cache[key] = self._encode_one(prompt, negative)
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
            self._cache.move_to_end(key)
            rows.append(self._cache[key])
        tokens = torch.cat([r[0] for r in rows])
        masks = [r[2] if len(r) > 2 else torch.ones(r[0].shape[:2], dtype=torch.long) for r in rows]
        mask = torch.cat([m.to(tokens.device, torch.long) for m in masks])
        return PromptEmbeds(tokens, mask, torch.cat([r[1] for r in rows]))

    def _encode_one(self, prompt: str, negative: bool) -> tuple[Tensor, ...]:
        raise NotImplementedError


def token_ids(tokenizer: Any, prompt: str, window: int) -> Tensor:
    """[1, window] ids padded to the window, as the pipelines tokenize; says when it truncates."""
    full = tokenizer(prompt, truncation=False)["input_ids"]
    if len(full) > window:
        warnings.warn(
            f"prompt is {len(full)} tokens, longer than the text encoder's window of {window}; "
            f"truncated: {prompt[:60]!r}...",
            stacklevel=6,
        )
    return tokenizer(
        prompt, padding="max_length", max_length=window, truncation=True, return_tensors="pt"
    ).input_ids


def clip_states(
    tokenizer: Any, encoder: Any, prompt: str, penultimate: bool
) -> tuple[Tensor, Tensor]:
    """([1, 77, D] states, [1, P] pooled) of one CLIP encoder: the projection for a
    CLIPTextModelWithProjection, the pooler output otherwise."""
    ids = token_ids(tokenizer, prompt, tokenizer.model_max_length).to(encoder.device)
    out = encoder(ids, output_hidden_states=penultimate)
    states = out.hidden_states[-2] if penultimate else out[0]
    pooled = out.text_embeds if hasattr(out, "text_embeds") else out.pooler_output
    return states, pooled


class CLIPPromptEncoder(CachedPromptEncoder):
    """SD 1.x/2.x (one CLIP, last layer) and SDXL (two, penultimate, concatenated)."""

    def __init__(
        self,
        tokenizers: list[Any],
        encoders: list[torch.nn.Module],
        *,
        penultimate: bool,
        zero_empty_negative: bool = False,
        name: str = "CLIP",
    ) -> None:
        width = sum(e.config.hidden_size for e in encoders)
        super().__init__(encoders, width, tokenizers[0].model_max_length)
        self.tokenizers = tokenizers
        self.penultimate = penultimate
        self.zero_empty_negative = zero_empty_negative
        self.name = name

    def _encode_one(self, prompt: str, negative: bool) -> tuple[Tensor, Tensor]:
        if negative and prompt == "" and self.zero_empty_negative:
            tokens, pooled = self._encode_one("", False)
            return torch.zeros_like(tokens), torch.zeros_like(pooled)
        parts = [clip_states(t, e, prompt, self.penultimate)
                 for t, e in zip(self.tokenizers, self.encoders, strict=True)]  # fmt: skip
        # SDXL takes the pooled vector of its last encoder (CLIP-G's projection)
        return torch.cat([p[0] for p in parts], dim=-1), parts[-1][1]


class SD3PromptEncoder(CachedPromptEncoder):
    """SD3/3.5: CLIP-L + CLIP-G (penultimate, padded to T5's width), then T5 (or zeros)."""

    name = "CLIP-L + CLIP-G + T5"

    def __init__(self, tokenizers: list[Any], clips: list[Any], t5: tuple[Any, Any] | None,
                 joint_width: int, t5_tokens: int = 256) -> None:  # fmt: skip
        encoders = [*clips, t5[1]] if t5 is not None else list(clips)
        super().__init__(encoders, joint_width, 77 + t5_tokens)
        self.tokenizers, self.clips, self.t5 = tokenizers, clips, t5
        self.t5_tokens = t5_tokens
        if t5 is None:
            self.name = "CLIP-L + CLIP-G (no T5: zeros in its place)"

    def _encode_one(self, prompt: str, negative: bool) -> tuple[Tensor, Tensor]:
        parts = [clip_states(t, e, prompt, True)
                 for t, e in zip(self.tokenizers, self.clips, strict=True)]  # fmt: skip
        clip = torch.cat([p[0] for p in parts], dim=-1)  # [1, 77, 768 + 1280]
        if self.t5 is None:
            t5 = clip.new_zeros(1, self.t5_tokens, self.token_dim)
        else:
            tokenizer, encoder = self.t5
            t5 = encoder(token_ids(tokenizer, prompt, self.t5_tokens).to(encoder.device))[0]
        clip = torch.nn.functional.pad(clip, (0, t5.shape[-1] - clip.shape[-1]))
        return torch.cat([clip, t5.to(clip.dtype)], dim=-2), torch.cat([p[1] for p in parts], -1)


class FluxPromptEncoder(CachedPromptEncoder):
    """FLUX.1: T5's tokens condition the transformer; CLIP-L's pooled output its modulation."""

    name = "T5 + CLIP-L pooled"

    def __init__(self, clip: tuple[Any, Any], t5: tuple[Any, Any], t5_tokens: int) -> None:
        super().__init__([clip[1], t5[1]], t5[1].config.d_model, t5_tokens)
        self.clip, self.t5 = clip, t5

    def _encode_one(self, prompt: str, negative: bool) -> tuple[Tensor, Tensor]:
        tokenizer, encoder = self.clip
        ids = token_ids(tokenizer, prompt, tokenizer.model_max_length).to(encoder.device)
        pooled = encoder(ids, output_hidden_states=False).pooler_output
        tokenizer, encoder = self.t5
        tokens = encoder(token_ids(tokenizer, prompt, self.max_tokens).to(encoder.device))[0]
        return tokens, pooled


class PipelinePromptEncoder(CachedPromptEncoder):
    """PixArt, Sana, LTX-Video: prompts encoded by the family's own diffusers pipeline
    (`encode_prompt`, built around the loaded tokenizer and encoder), so caption cleaning, Sana's
    instruction prefix and the T5/Gemma masks are exactly the family's. No pooled vector."""

    def __init__(self, pipe: Any, encoder: Any, name: str, window: int, options: dict[str, Any],
                 positive: dict[str, Any] | None = None) -> None:  # fmt: skip
        super().__init__([encoder], encoder.config.hidden_size, window)
        self.pipe, self.name = pipe, name
        self.options, self.positive = options, positive or {}

    def _encode_one(self, prompt: str, negative: bool) -> tuple[Tensor, ...]:
        extra = {} if negative else self.positive
        out = self.pipe.encode_prompt(
            prompt,
            do_classifier_free_guidance=False,
            device=self.encoders[0].device,
            **self.options,
            **extra,
        )
        tokens, mask = out[0], out[1]  # fmt: skip
        return tokens, tokens.new_zeros(1, 1), mask
