"""Backchannel lexicon and semantic types."""
import pytest

from backchannel.lexicon import (
    BC_TYPES,
    ECHO,
    backchannel_type,
    is_filler_only,
    is_lexical_backchannel,
    normalize_form,
    normalize_word,
)


@pytest.mark.parametrize("raw,norm", [("Mm-hmm", "mhm"), ("mmhmm", "mhm"), ("uh-huh", "uhhuh"), ("O_K", "okay"),
                                      ("okay.", "okay"), ("{uhhuh}", "uhhuh"), ("Yeah,", "yeah")])
def test_normalize_word(raw, norm):
    assert normalize_word(raw) == norm


@pytest.mark.parametrize("raw,norm", [
    # American transcription conventions (Switchboard, Fisher, CallHome, ICSI, Santa Barbara)
    ("unhunh", "uhhuh"), ("uh-hunh", "uhhuh"), ("Unh-hunh", "uhhuh"), ("hunh", "huh"), ("mm-hm", "mhm"),
    ("mhmm", "mhm"), ("m-hm", "mhm"), ("um-hum", "mhm"), ("uh-hum", "mhm"), ("hm-hmm", "mhm"), ("hm", "hmm"),
    ("hmmm", "hmm"), ("mkay", "okay"), ("'kay", "okay"), ("alrighty", "alright"),
    # negative tokens: one form, distinct from the positive uh-huh
    ("uh-uh", "uh-uh"), ("huh-uh", "uh-uh"), ("mm-mm", "uh-uh"), ("unh-unh", "uh-uh"), ("hum-um", "uh-uh"),
])
def test_american_spellings(raw, norm):
    assert normalize_word(raw) == norm


def test_spelling_variants_are_lexical_with_the_type_of_their_form():
    for words, kind in [(["unhunh"], "continuer"), (["mm-hm"], "continuer"), (["um-hum"], "continuer"),
                        (["hunh"], "continuer"), (["hm"], "continuer"), (["yeah-yeah"], "agreement"),
                        (["yeah", "yeah"], "agreement"), (["mkay"], "acknowledgement"),
                        (["got", "it"], "acknowledgement")]:
        assert is_lexical_backchannel(words, 3), words
        assert backchannel_type(words) == kind, words
    assert normalize_form(["Yeah-yeah"]) == "yeah yeah"  # one token, two words
    assert not is_lexical_backchannel(["yeah-yeah", "yeah-yeah"], 3)  # 4 words


@pytest.mark.parametrize("words,kind", [(["mmhmm"], "continuer"), (["uh-huh"], "continuer"), (["yeah"], "agreement"),
                                        (["right"], "agreement"), (["wow"], "assessment"), (["oh"], "surprise"),
                                        (["oh", "really"], "surprise"), (["okay"], "acknowledgement"),
                                        (["I", "see"], "acknowledgement"), (["oh", "okay"], "acknowledgement"),
                                        (["yeah", "yeah"], "agreement"), (["that's", "great"], "assessment")])
def test_types(words, kind):
    assert kind in BC_TYPES
    assert backchannel_type(words) == kind


def test_lexical_rule_size_and_content():
    assert is_lexical_backchannel(["mm-hmm"], 3)
    assert is_lexical_backchannel(["oh", "I", "see"], 3)
    assert not is_lexical_backchannel(["oh", "I", "see"], 2)
    assert not is_lexical_backchannel(["yeah", "yeah", "yeah", "yeah"], 3)  # 4 words
    assert not is_lexical_backchannel(["go", "left"], 3)
    assert not is_lexical_backchannel(["I"], 3)  # no typed word
    assert not is_lexical_backchannel([], 3)
    assert normalize_form(["Oh", "O_K"]) == "oh okay"


def test_a_lone_filler_is_not_a_backchannel():
    for filler in (["uh"], ["um"], ["er"], ["erm"], ["Uh,"], ["uh", "um"], ["ehm"]):
        assert is_filler_only(filler), filler
        assert not is_lexical_backchannel(filler, 3), filler
        assert backchannel_type(filler) == ECHO  # no typed word: "uh" carries no type
    # inside a backchannel a filler is allowed, and the typed word decides
    assert is_lexical_backchannel(["uh", "yeah"], 3) and backchannel_type(["uh", "yeah"]) == "agreement"
    assert is_lexical_backchannel(["er", "okay"], 3) and backchannel_type(["er", "okay"]) == "acknowledgement"
    assert not is_filler_only(["uh", "yeah"]) and not is_filler_only([])


def test_negative_tokens_are_agreement_but_never_lexical_alone():
    for words in (["uh-uh"], ["huh-uh"], ["mm-mm"], ["no"], ["nope"], ["uh-uh", "no"]):
        assert backchannel_type(words) == "agreement", words
        assert not is_lexical_backchannel(words, 3), words  # an answer as often as a backchannel
    assert is_lexical_backchannel(["no", "right"], 3)  # another typed word carries it
    assert backchannel_type(["oh", "no"]) == "surprise"  # the phrase wins


def test_tagged_repeat_without_lexicon_word_is_an_echo():
    assert ECHO not in BC_TYPES
    for words in (["south"], ["east"], ["along"], ["up", "to", "this"]):
        assert backchannel_type(words) == ECHO, words
        assert not is_lexical_backchannel(words, 3)
    assert backchannel_type(["okay", "south"]) == "acknowledgement"  # a lexicon word types it
    assert normalize_word("okey-dokey") == "okay"


def test_policy_forms_are_typed_and_never_echoes():
    from backchannel.policy import DEFAULT_FORMS

    assert set(DEFAULT_FORMS) == set(BC_TYPES)
    for kind, forms in DEFAULT_FORMS.items():
        for form in forms:
            assert backchannel_type(form.split()) == kind and is_lexical_backchannel(form.split(), 3), form
