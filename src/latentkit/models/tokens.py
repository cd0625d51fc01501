"""Textual inversion files: learned embeddings for new words such as `<my-cat>`.

Only the new rows of the text encoder's input embedding table are learned; the file holds those
rows (a few KB) plus the encoder's name and a fingerprint of its embedding table, so a file made
for another text encoder is refused instead of silently meaning something else.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from latentkit.errors import InvalidArgument, ModelFileError
from latentkit.files import atomic_save_tensors
from latentkit.models.text import refuse_known_tokens

KIND = "latentkit-tokens"
TOKEN_PATTERN = re.compile(r"^\S+$")


@dataclass(frozen=True)
class LearnedTokens:
    tokens: tuple[str, ...]
    vectors: Tensor  # [len(tokens), dim]
    info: dict[str, Any] = field(default_factory=dict)


def encoder_fingerprint(encoder: Any) -> str:
    """sha256 of the frozen input embedding table: equal iff the vocabulary's meaning is equal."""
    table = encoder.model.get_input_embeddings().weight.detach().float().cpu().contiguous()
    return hashlib.sha256(table.numpy().tobytes()).hexdigest()[:16]


def check_new_tokens(encoder: Any, tokens: list[str]) -> None:
    """A token must be one whitespace-free string, new to the vocabulary and not repeated."""
    if not tokens:
        raise InvalidArgument("give at least one --token such as '<my-cat>'")
    for token in tokens:
        if not isinstance(token, str) or not TOKEN_PATTERN.match(token):
            raise InvalidArgument(f"token must be one word without spaces, got {token!r}")
    if len(set(tokens)) != len(tokens):
        raise InvalidArgument(f"tokens must differ from each other, got {tokens}")
    refuse_known_tokens(encoder.tokenizer, tokens)


def init_rows(encoder: Any, init_words: list[str]) -> Tensor:
    """Start each new token at the mean embedding of its init word's word pieces."""
    table = encoder.model.get_input_embeddings().weight.detach().float()
    rows = []
    for word in init_words:
        ids = encoder.tokenizer(word, add_special_tokens=False)["input_ids"]
        if not ids:
            raise InvalidArgument(f"--init-word {word!r} has no tokens; give a plain word")
        rows.append(table[ids].mean(0))
    return torch.stack(rows)


class TokenRows(nn.Module):
    """The only trainable thing in textual inversion: one embedding row per new token."""

    def __init__(self, rows: Tensor) -> None:
        super().__init__()
        self.rows = nn.Parameter(rows.clone().float())


def save_tokens(
    path: str | Path, tokens: list[str], rows: Tensor, encoder: Any, extra: dict | None = None
) -> Path:
    path = Path(path)
    info = {
        "kind": KIND,
        "tokens": list(tokens),
        "text_encoder": encoder.config.name,
        "dim": int(rows.shape[1]),
        "encoder_fingerprint": encoder_fingerprint(encoder),
        **(extra or {}),
    }
    tensors = {"embeddings": rows.detach().float().cpu().contiguous()}
    atomic_save_tensors(tensors, path, metadata={"latentkit": json.dumps(info)})
    return path


def read_tokens(path: str | Path) -> LearnedTokens:
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"token file {path} does not exist")
    try:
        with safe_open(path, "pt") as f:
            info = json.loads((f.metadata() or {}).get("latentkit", "{}"))
            vectors = f.get_tensor("embeddings").float() if "embeddings" in f.keys() else None  # noqa: SIM118
    except (SafetensorError, OSError, json.JSONDecodeError) as e:
        raise ModelFileError(f"token file {path} cannot be read: {e}") from None
    if info.get("kind") != KIND or vectors is None:
        raise ModelFileError(f"{path} is not a latentkit token file (train one with `train token`)")
    tokens = tuple(info["tokens"])
    if vectors.ndim != 2 or vectors.shape[0] != len(tokens):
        raise ModelFileError(f"token file {path} is damaged: {len(tokens)} tokens, "
                             f"embeddings {list(vectors.shape)}")  # fmt: skip
    return LearnedTokens(tokens, vectors, info)


def add_learned_tokens(encoder: Any, learned: LearnedTokens, where: str = "token file") -> Any:
    """The encoder plus the file's tokens; refuses files made for another text encoder."""
    fp = encoder_fingerprint(encoder)
    theirs = learned.info.get("encoder_fingerprint")
    if theirs != fp or learned.vectors.shape[1] != encoder.config.dim:
        raise InvalidArgument(
            f"{where} was made for another text encoder ({learned.info.get('text_encoder')}, "
            f"{learned.vectors.shape[1]}-d, fingerprint {theirs}); "
            f"this model uses {encoder.config.name} ({encoder.config.dim}-d, fingerprint {fp})"
        )
    return encoder.with_tokens(list(learned.tokens), learned.vectors)


__all__ = [
    "LearnedTokens",
    "TokenRows",
    "add_learned_tokens",
    "check_new_tokens",
    "encoder_fingerprint",
    "init_rows",
    "read_tokens",
    "save_tokens",
]
