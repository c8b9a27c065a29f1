"""Backchannel lexicon and semantic types."""
import pytest

from backchannel.lexicon import BC_TYPES, backchannel_type, is_lexical_backchannel, normalize_form, normalize_word


@pytest.mark.parametrize("raw,norm", [("Mm-hmm", "mhm"), ("mmhmm", "mhm"), ("uh-huh", "uhhuh"), ("O_K", "okay"),
                                      ("okay.", "okay"), ("{uhhuh}", "uhhuh"), ("Yeah,", "yeah")])
def test_normalize_word(raw, norm):
    assert normalize_word(raw) == norm


@pytest.mark.parametrize("words,kind", [(["mmhmm"], "continuer"), (["uh-huh"], "continuer"), (["yeah"], "agreement"),
                                        (["right"], "agreement"), (["wow"], "assessment"), (["oh"], "surprise"),
                                        (["oh", "really"], "surprise"), (["okay"], "acknowledgement"),
                                        (["I", "see"], "acknowledgement"), (["oh", "okay"], "acknowledgement"),
                                        (["yeah", "yeah"], "agreement"), (["that's", "great"], "assessment")])
def test_types(words, kind):
    assert kind in BC_TYPES
    assert backchannel_type(words) == kind


def test_lexical_rule_size_and_content():
    assert is_lexical_backchannel(["mm-hmm"])
    assert is_lexical_backchannel(["oh", "I", "see"])
    assert not is_lexical_backchannel(["yeah", "yeah", "yeah", "yeah"])  # 4 words
    assert not is_lexical_backchannel(["go", "left"])
    assert not is_lexical_backchannel(["I"])  # filler only
    assert not is_lexical_backchannel([])
    assert normalize_form(["Oh", "O_K"]) == "oh okay"


def test_tagged_repeat_without_lexicon_word_is_an_acknowledgement():
    assert backchannel_type(["south"]) == "acknowledgement"
    assert normalize_word("okey-dokey") == "okay"
