"""CLIP's tokenizer files, rebuilt offline from the BPE vocabulary latentkit ships.

Single-file checkpoints carry no tokenizer, and other tools fetch one from a hub at start-up
(the commonest way they break offline). The vocabulary that every CLIP of Stable Diffusion 1.x,
2.x, XL, 3 and FLUX.1 uses ships inside this package (taken from the open-clip-torch wheel, see
clip_bpe_LICENSE.txt); vocab.json and merges.txt are rebuilt from it exactly as open_clip's and
OpenAI's SimpleTokenizer build their tables: 49,408 tokens, `<|startoftext|>` = 49406 and
`<|endoftext|>` = 49407.
"""

from __future__ import annotations

import gzip
import json
from functools import lru_cache
from pathlib import Path

BPE = Path(__file__).with_name("clip_bpe_simple_vocab_16e6.txt.gz")
MERGES = 49152 - 256 - 2  # the merges CLIP uses, after the 256 byte symbols and 2 specials


@lru_cache(maxsize=1)
def byte_symbols() -> list[str]:
    """GPT-2/CLIP's reversible map of the 256 bytes to printable characters (bytes_to_unicode),
    in CLIP's order: the printable bytes as themselves, then the rest mapped past 255."""
    order = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    order += list(range(ord("®"), ord("ÿ") + 1))
    chars = list(order)
    for b in range(256):
        if b not in order:
            order.append(b)
            chars.append(256 + len(chars) - 188)
    return [chr(c) for c in chars]


def merges() -> list[tuple[str, str]]:
    with gzip.open(BPE, "rt", encoding="utf-8") as f:
        lines = f.read().split("\n")
    return [tuple(line.split()) for line in lines[1 : MERGES + 1]]  # type: ignore[misc]


def vocabulary() -> dict[str, int]:
    symbols = byte_symbols()
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges()]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {token: i for i, token in enumerate(tokens)}


def write_clip_tokenizer_files(folder: Path) -> Path:
    """vocab.json and merges.txt (with its `#version` line) in `folder`, as Hugging Face's
    CLIPTokenizer reads them."""
    folder.mkdir(parents=True, exist_ok=True)
    from latentkit.files import atomic_write_bytes

    atomic_write_bytes(folder / "vocab.json", json.dumps(vocabulary()).encode())
    text = "#version: 0.2\n" + "\n".join(" ".join(m) for m in merges()) + "\n"
    atomic_write_bytes(folder / "merges.txt", text.encode())
    return folder
