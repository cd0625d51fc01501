import pytest
import torch

from latentkit.config import TextConfig
from latentkit.errors import InvalidArgument
from latentkit.models.text import load_text_encoder


@pytest.fixture(scope="module")
def encoder():
    return load_text_encoder(TextConfig(max_tokens=16))


def test_shapes_mask_and_pooled(encoder) -> None:
    e = encoder.encode(["a cat", "a much longer prompt about a dog"])
    assert e.tokens.shape == (2, 16, 384) and e.mask.shape == (2, 16) and e.pooled.shape == (2, 384)
    assert e.mask[0].sum() == 4  # [CLS] a cat [SEP]
    assert e.mask[1].sum() > e.mask[0].sum()
    torch.testing.assert_close(e.pooled.norm(dim=-1), torch.ones(2))


def test_embedding_does_not_depend_on_batch_company(encoder) -> None:
    alone = encoder.encode(["a red apple (alone test)"])
    encoder._cache.clear()
    together = encoder.encode(["x", "a red apple (alone test)", "something much longer than that"])
    torch.testing.assert_close(together.tokens[1], alone.tokens[0], atol=1e-5, rtol=0)


def test_cached_per_prompt(encoder) -> None:
    first = encoder.encode(["cache me"])
    calls = []
    original = encoder.model.forward
    encoder.model.forward = lambda *a, **k: calls.append(1) or original(*a, **k)
    try:
        again = encoder.encode(["cache me", "cache me"])
    finally:
        del encoder.model.forward
    assert calls == []
    assert torch.equal(again.tokens[0], first.tokens[0]) and torch.equal(
        again.tokens[1], first.tokens[0]
    )


def test_similar_prompts_are_closer_than_unrelated(encoder) -> None:
    e = encoder.encode(["a slice of pizza", "pizza", "a sad face"])
    assert e.pooled[0] @ e.pooled[1] > e.pooled[0] @ e.pooled[2]


def test_bad_prompts(encoder) -> None:
    with pytest.raises(InvalidArgument, match="NUL"):
        encoder.encode(["a\x00b"])
    with pytest.raises(InvalidArgument, match="prompt must be text"):
        encoder.encode([3])


def test_unknown_encoder_name() -> None:
    with pytest.raises(InvalidArgument, match="unknown text encoder 'clip'"):
        load_text_encoder(TextConfig(name="clip"))


def test_a_full_cache_never_drops_a_prompt_the_same_call_needs(encoder) -> None:
    """A batch mixing cached and new prompts past the cache size: each row is its own prompt."""
    import copy
    from collections import OrderedDict

    small = copy.copy(encoder)
    small._cache, small._cache_size = OrderedDict(), 2
    small.encode(["a red apple", "a blue car"])
    batch = ["a red apple", "a green tree", "a dog", "a blue car"]
    out = small.encode(batch)
    assert len(small._cache) == 2
    for i, prompt in enumerate(batch):
        alone = encoder.encode([prompt])
        assert torch.allclose(out.pooled[i], alone.pooled[0], atol=1e-5)
    small.reserve(10)
    small.encode([f"prompt {i}" for i in range(8)])
    assert len(small._cache) == 10
