"""Write src/latentkit/data/emoji_keywords.json from two npm packages of emoji keywords.

Sources (fetch with `npm pack cldr-annotations-modern@45.0.0 emojilib@4.0.3` and unpack):
- Unicode CLDR English annotations (Unicode License v3): short name and keywords per emoji;
- emojilib (MIT): community keywords per emoji.

Only emoji that OpenMoji draws are kept, keyed by the emoji text without FE0F, so the file stays
small and the package needs neither source at run time.

    python scripts/build_emoji_keywords.py CLDR_DIR EMOJILIB_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from latentkit.data.openmoji import list_named_emoji

VS16 = "\ufe0f"
NOISE = {"twitter", "blue-square", "apple logo"}  # emojilib's notes on platforms, not meaning
OUT = Path(__file__).resolve().parents[1] / "src/latentkit/data/emoji_keywords.json"


def read_sources(cldr_dir: Path, emojilib_dir: Path) -> tuple[dict, dict]:
    cldr = json.loads((cldr_dir / "annotations/en/annotations.json").read_text())
    lib = json.loads((emojilib_dir / "dist/emoji-en-US.json").read_text())
    notes = cldr["annotations"]["annotations"]
    cldr = {k.replace(VS16, ""): v.get("default", []) for k, v in notes.items()}
    lib = {k.replace(VS16, ""): v for k, v in lib.items()}
    return cldr, lib


def keywords_for(text: str, cldr: dict, lib: dict) -> list[str]:
    words: list[str] = []
    for word in cldr.get(text, []) + lib.get(text, []):
        word = word.replace("_", " ").strip().lower()
        if word and word not in words and word not in NOISE:
            words.append(word)
    return words


def main(cldr_dir: str, emojilib_dir: str) -> None:
    cldr, lib = read_sources(Path(cldr_dir), Path(emojilib_dir))
    table = {}
    for name, _caption in list_named_emoji():
        text = "".join(chr(int(p, 16)) for p in name.split("-")).replace(VS16, "")
        words = keywords_for(text, cldr, lib)
        if words:
            table[text] = words
    lines = [json.dumps(k, ensure_ascii=False) + ": " + json.dumps(v, ensure_ascii=False)
             for k, v in sorted(table.items())]  # fmt: skip
    OUT.write_text("{\n" + ",\n".join(lines) + "\n}\n")
    print(f"wrote {OUT}: {len(table)} emoji with keywords")


if __name__ == "__main__":
    main(*sys.argv[1:3])
