"""Several phrasings of each OpenMoji caption, so a model learns what the words mean.

A model trained on one name per emoji ("face with tears of joy") learns that exact string and
little else: asked for "a yellow face laughing so hard it cries" it draws something unrelated.
Training also on keywords (Unicode CLDR's and emojilib's, in `emoji_keywords.json`, built by
`scripts/build_emoji_keywords.py`) and on the emoji package's short aliases ties the same image
to other words for it. The name stays the most frequent phrasing, because it is what the
evaluation and most users type.
"""

from __future__ import annotations

import json
import random
from functools import cache
from importlib import resources

import emoji

from latentkit.data.openmoji import VS16, base_name, caption_for

__all__ = [
    "caption_phrasings",
    "emoji_keywords",
    "emoji_text",
    "prompt_phrasings",
    "sentence_phrasings",
]

# How many keyword-only phrasings each emoji gets, and how many keywords each one holds.
KEYWORD_PHRASINGS = 2
KEYWORDS_PER_PHRASING = 3


@cache
def emoji_keywords() -> dict[str, list[str]]:
    """Keywords by emoji text (without FE0F), for the emoji OpenMoji draws."""
    text = resources.files("latentkit.data").joinpath("emoji_keywords.json").read_text("utf-8")
    return json.loads(text)


def emoji_text(name: str) -> str:
    """'1F355' -> '🍕', without variation selectors (the keyword file's key)."""
    return "".join(chr(int(part, 16)) for part in name.split("-")).replace(chr(VS16), "")


def caption_phrasings(name: str, caption: str) -> list[str]:
    """The caption first, then the other phrasings of this emoji (deterministic per name).

    For a modifier variant ("man cook medium-dark skin tone") the keywords come from the base
    emoji and every phrasing keeps the words that tell the variant apart ("man medium-dark skin
    tone"), so two variants never share a phrasing.
    """
    base = base_name(name)
    base_caption, modifier = _base_caption_and_modifier(base, caption)
    keywords = _keywords(name, base)
    rng = random.Random(name)
    phrasings = [caption]
    others = [k for k in keywords if k not in caption and k not in base_caption]
    if others:
        phrasings.append(_join(caption, ", ".join(others[:KEYWORDS_PER_PHRASING])))
        for _ in range(KEYWORD_PHRASINGS):
            picked = rng.sample(others, min(KEYWORDS_PER_PHRASING, len(others)))
            phrasings.append(_join(", ".join(picked), modifier))
    alias = _alias(name, base)
    if alias and alias not in (caption, base_caption):
        phrasings.append(_join(alias, modifier))
    return list(dict.fromkeys(phrasings))


# How people type prompts: the emoji's words inside a sentence, not alone or as a keyword list.
# No bare "a {c}": the paraphrase set holds such prompts, and none of its prompts is trained on.
SENTENCES = (
    "a picture of {a} {c}",
    "an icon of {a} {c}",
    "an emoji of {a} {c}",
    "{a} {c} with {k}",
    "{a} {c}, {k} and {k2}",
    "a drawing of {a} {c}",
)
SENTENCE_PHRASINGS = 3


def sentence_phrasings(name: str, caption: str) -> list[str]:
    """The caption inside sentences ("a picture of a pizza", "a cat face with kitty"),
    deterministic per name: a model (or a distilled student) that has seen only names and
    keyword lists meets a sentence as text it never saw, and user prompts are sentences."""
    filled = _fill_templates(SENTENCES, SENTENCE_PHRASINGS, f"sentences:{name}", name, caption)
    return list(dict.fromkeys(text for _, text in filled))


# Short prompts in other shapes than the sentences: keywords before the name, the name with a
# style word, keywords alone. None is an article and the name, the shape of many of the
# paraphrase set's prompts, so no paraphrase prompt is one of these even without its article.
PROMPTS = (
    "{k} {c}",
    "{c} sticker",
    "{c} emoji",
    "{c}, {k}",
    "{k} and {k2}",
    "{k2} {k}",
    "simple {c} drawing",
    "this is {a} {c}",
    "{k} {c}, flat icon",
)
PROMPT_PHRASINGS = 4


def prompt_phrasings(name: str, caption: str) -> list[str]:
    """More shapes of prompt per emoji, deterministic per name, for distillation above all:
    a student learns the guided teacher only on the prompts it is shown, and with guidance
    baked in it follows text it never saw more weakly than the teacher does. Prompts made of
    keywords alone keep a variant's distinguishing words, as `caption_phrasings` does."""
    _, modifier = _base_caption_and_modifier(base_name(name), caption)
    filled = _fill_templates(PROMPTS, PROMPT_PHRASINGS, f"prompts:{name}", name, caption)
    return list(dict.fromkeys(
        text if "{c}" in template else _join(text, modifier) for template, text in filled
    ))  # fmt: skip


def _fill_templates(
    templates: tuple[str, ...], count: int, seed: str, name: str, caption: str
) -> list[tuple[str, str]]:
    """`count` of the templates, each with (template, text): the caption, its article and
    keywords the caption does not already hold, drawn by a generator seeded with `seed`."""
    rng = random.Random(seed)
    keywords = [k for k in _keywords(name, base_name(name)) if k not in caption] or [caption]
    filled = []
    for template in rng.sample(templates, count):
        k, k2 = rng.sample(keywords, 2) if len(keywords) > 1 else keywords * 2
        filled.append((template, template.format(a=_article(caption), c=caption, k=k, k2=k2)))
    return filled


def _base_caption_and_modifier(base: str | None, caption: str) -> tuple[str, str]:
    """A variant's base caption ("man cook") and the words that tell it apart ("medium-dark
    skin tone"); the caption itself and "" for an emoji that is no variant."""
    base_caption = (caption_for(base) if base else None) or caption
    base_words = set(base_caption.split())
    return base_caption, " ".join(w for w in caption.split() if w not in base_words)


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def _keywords(name: str, base: str | None) -> list[str]:
    table = emoji_keywords()
    for key in (name, base):
        if key and emoji_text(key) in table:
            return table[emoji_text(key)]
    return []


def _alias(name: str, base: str | None) -> str | None:
    for key in (name, base):
        if not key:
            continue
        text = emoji_text(key)
        for candidate in (text, text + chr(VS16)):
            aliases = emoji.EMOJI_DATA.get(candidate, {}).get("alias", [])
            if aliases:
                return aliases[0].strip(":").replace("_", " ")
    return None


def _join(first: str, second: str) -> str:
    return f"{first}, {second}" if second else first
