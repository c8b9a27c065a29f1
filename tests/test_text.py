"""The text tokenizer: lexicon words keep their own ids, the function-word vocabulary, memoisation, the
vocabulary fingerprint a checkpoint records."""
import pytest

from backchannel.text import FUNCTION_WORDS, LEXICON_WORDS, PAD_ID, TextTokenizer, tokenizer_for


def test_all_words_hash_content_words_and_keep_lexicon_ids():
    tok = TextTokenizer(vocab_size=512, k=2)
    assert tok.word_id("Okay,") == tok.word_id("okay") == 1 + LEXICON_WORDS.index("okay")
    assert tok.word_id("...") == PAD_ID
    lake = tok.word_id("lake")
    assert lake > len(LEXICON_WORDS) and lake == TextTokenizer(vocab_size=512, k=2).word_id("lake")  # deterministic
    assert tok.encode_frame("go left of the lake") == [tok.word_id("the"), lake]  # the last k words
    assert tok.encode_frame(["go left", "lake"]) == [tok.word_id("left"), lake]
    assert tok.encode_frame("") == [PAD_ID, PAD_ID]


def test_function_words_vocabulary_maps_content_words_to_one_id():
    tok = TextTokenizer(vocab_size=512, k=3, words="function")
    content = tok.content_id
    assert content == 1 + len(LEXICON_WORDS) + len(FUNCTION_WORDS)
    assert tok.word_id("lake") == tok.word_id("refrigerator") == content
    assert tok.word_id("the") == 1 + len(LEXICON_WORDS) + FUNCTION_WORDS.index("the")
    assert tok.word_id("mhm") == TextTokenizer(words="function").word_id("mhm") < content  # lexicon first
    assert tok.encode_frame("round the old mill") == [tok.word_id("the"), content, content]
    assert not set(FUNCTION_WORDS) & set(LEXICON_WORDS)
    with pytest.raises(ValueError, match="words must be one of"):
        TextTokenizer(words="nouns")
    with pytest.raises(ValueError, match="must exceed"):
        TextTokenizer(vocab_size=len(LEXICON_WORDS) + 5, words="function")


def test_fingerprint_changes_with_what_decides_the_ids():
    a = TextTokenizer(4096, 2)
    assert a.fingerprint == TextTokenizer(4096, 2).fingerprint
    assert len({a.fingerprint, TextTokenizer(4096, 3).fingerprint, TextTokenizer(2048, 2).fingerprint,
                TextTokenizer(4096, 2, "function").fingerprint}) == 4
    assert tokenizer_for({"use_text": False}) is None
    t = tokenizer_for({"use_text": True, "vocab_size": 600, "text_k": 1, "text_words": "function"})
    assert (t.vocab_size, t.k, t.words) == (600, 1, "function")
