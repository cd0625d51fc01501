"""Other phrasings of the OpenMoji captions, and how training draws them."""

from collections import Counter

import pytest
import torch

from latentkit.data.buckets import MemoryLatents
from latentkit.data.captions import (
    caption_phrasings,
    emoji_keywords,
    prompt_phrasings,
    sentence_phrasings,
)
from latentkit.data.openmoji import list_named_emoji, test_split_mask
from latentkit.errors import InvalidArgument
from latentkit.eval.paraphrases import PARAPHRASES


@pytest.fixture(scope="module")
def phrasings() -> dict[str, list[str]]:
    """Every phrasing `--captions prompts` may train on (rich's, the sentences, the prompts)."""
    return {
        name: caption_phrasings(name, caption)
        + sentence_phrasings(name, caption)
        + prompt_phrasings(name, caption)
        for name, caption in list_named_emoji()
    }


def test_sentences_hold_the_caption_with_the_right_article() -> None:
    pizza = sentence_phrasings("1F355", "pizza")
    assert len(pizza) == len(set(pizza)) == 3 and all("pizza" in s and s != "pizza" for s in pizza)
    assert pizza == sentence_phrasings("1F355", "pizza")  # the same every run
    apple = " ".join(
        sentence_phrasings("1F34E", "red apple") + sentence_phrasings("1F34F", "apple")
    )
    assert "a red apple" in apple and "an apple" in apple and "a apple" not in apple


def test_caption_comes_first_and_keywords_follow(phrasings) -> None:
    pizza = caption_phrasings("1F355", "pizza")
    assert pizza[0] == "pizza"
    assert any("cheese" in p for p in pizza[1:])
    assert len(pizza) == len(set(pizza)) >= 3


def test_variants_keep_the_words_that_tell_them_apart(phrasings) -> None:
    """Every phrasing of a skin-tone variant still names its skin tone."""
    names = dict(list_named_emoji())
    variant = "1F468-1F3FE-200D-1F373"
    assert names[variant] == "man cook medium-dark skin tone"
    assert all("medium-dark skin tone" in p for p in phrasings[variant])


def test_no_paraphrase_prompt_is_a_training_phrasing(phrasings) -> None:
    """The paraphrase set measures generalisation, so none of its prompts may be trained on,
    and no other phrasing than the name itself may be one up to its article ("the ghost" for
    "a ghost"; the name "ghost" is trained on, as it must be)."""
    trained = {p for ps in phrasings.values() for p in ps}
    assert not [prompt for prompt, _ in PARAPHRASES if prompt in trained]
    others = {_without_article(p) for ps in phrasings.values() for p in ps[1:]}
    assert not [prompt for prompt, _ in PARAPHRASES if _without_article(prompt) in others]


def _without_article(text: str) -> str:
    first, _, rest = text.partition(" ")
    return rest if first in ("a", "an", "the") else text


def test_prompts_are_other_shapes_than_the_sentences() -> None:
    cat = prompt_phrasings("1F431", "cat face")
    assert cat == prompt_phrasings("1F431", "cat face")  # the same every run
    assert len(cat) == len(set(cat)) >= 3
    assert not set(cat) & set(sentence_phrasings("1F431", "cat face") + caption_phrasings(
        "1F431", "cat face"))  # fmt: skip
    # Some hold the name, some only its keywords ("kitty kitten").
    assert any("cat face" in p for p in cat) and any("cat" not in p for p in cat)


def test_most_emoji_get_other_phrasings(phrasings) -> None:
    assert len(emoji_keywords()) > 1500
    with_more = sum(len(p) > 1 for p in phrasings.values())
    assert with_more > 0.9 * len(phrasings)


def test_held_out_variants_are_not_rephrased_into_training(phrasings) -> None:
    """Phrasings belong to their own emoji: the test split's names never appear in them."""
    named = list_named_emoji()
    test = test_split_mask([n for n, _ in named])
    held_out = {c for (_, c), t in zip(named, test, strict=True) if t}
    training = [p for (n, _), t in zip(named, test, strict=True) if not t for p in phrasings[n]]
    assert not held_out & set(training)


def test_memory_latents_rephrase_at_the_given_rate() -> None:
    latents = torch.zeros(4, 4, 2, 2)
    source = MemoryLatents(latents, ["a", "b", "c", "d"], [["a1", "a2"], [], ["c1"], ["d1"]])
    g = torch.Generator().manual_seed(0)
    drawn = Counter(c for _ in range(200) for c in source.draw(16, g)[1])
    assert drawn["b"] > 0 and not any(c.startswith("b") and c != "b" for c in drawn)
    for item in "acd":
        own = drawn[item]
        other = sum(v for k, v in drawn.items() if k.startswith(item) and k != item)
        assert 0.4 < other / (own + other) < 0.6, (item, own, other)
    assert drawn["a1"] > 0 and drawn["a2"] > 0
    # Same generator seed, same draw.
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert source.draw(8, g1)[1] == source.draw(8, g2)[1]


def test_memory_latents_need_one_phrasing_list_per_caption() -> None:
    with pytest.raises(InvalidArgument, match="2 phrasing lists for 3 captions"):
        MemoryLatents(torch.zeros(3, 4, 2, 2), ["a", "b", "c"], [[], []])


def test_sentences_style_adds_sentences_to_the_rich_phrasings() -> None:
    from types import SimpleNamespace

    from latentkit.train.commands import training_phrasings

    images = SimpleNamespace(names=["1F355"], captions=["pizza"])
    rich = training_phrasings("openmoji", images, "rich")[0]
    sentences = training_phrasings("openmoji", images, "sentences")[0]
    assert sentences == rich + sentence_phrasings("1F355", "pizza")
    prompts = training_phrasings("openmoji", images, "prompts")[0]
    assert prompts == sentences + prompt_phrasings("1F355", "pizza")
    with pytest.raises(InvalidArgument, match="sentences"):
        training_phrasings("openmoji", images, "prose")
