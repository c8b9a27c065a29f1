"""corpus_stats on hand-built dialogues and events, with hand-computed expectations."""
from __future__ import annotations

import json
import math

import matplotlib.image as mpimg
import pytest

from backchannel.corpora.dialogue import Channel, Dialogue, Utterance, Word
from backchannel.corpora.events import BackchannelEvent, TurnEvent
from backchannel.corpora.mining import DialogueEvents, ListenerEvents
from backchannel.corpora.stats import compare_to_human_reference, corpus_stats, write_stats_report
from backchannel.lexicon import backchannel_type

NAN = math.nan


def bc(listener, onset, form, source, since, overlap=False, kind="isolated"):
    return BackchannelEvent(listener=listener, onset=onset, offset=onset + 0.4, form=form,
                            bc_type=backchannel_type([form]), source=source, lexical=source == "lexicon",
                            in_overlap=overlap, since_speaker_end=since, kind=kind)


def dialogue(did, duration, split):
    chans = {s: Channel(s, [Utterance(1.0, 2.0, (Word(1.0, 2.0, "hello"),))]) for s in ("A", "B")}
    return Dialogue(did, "hand", chans, duration, split=split)


def events(did, per_listener):
    return DialogueEvents(did, {s: ListenerEvents(s, "B" if s == "A" else "A", b, t, [])
                                for s, (b, t) in per_listener.items()})


@pytest.fixture
def corpus():
    """d1: 2 min (train), d2: 1 min (test); 9 backchannels, 8 turns (see the test for the arithmetic)."""
    d1_b = [bc("B", 10.0, "uhhuh", "tag", 0.2), bc("B", 20.0, "yeah", "tag", 0.3, kind="turn_initial"),
            bc("B", 30.0, "uhhuh", "lexicon", 0.25), bc("B", 45.0, "right", "tag", 0.0, overlap=True),
            bc("B", 60.0, "mhm", "lexicon", 0.5), bc("B", 90.0, "mhm", "tag", 0.35, kind="other")]
    d1_a = [bc("A", 1.0, "oh", "lexicon", NAN, kind="other"), bc("A", 100.0, "uhhuh", "tag", 0.6)]
    d1_bt = [TurnEvent("B", 50.0, "shift", 0.205, 55.0), TurnEvent("B", 70.0, "shift", 0.26, 75.0),
             TurnEvent("B", 80.0, "interruption", -0.3, 85.0),    # floor stops first: a transition
             TurnEvent("B", 95.0, "interruption", -1.0, 95.5)]    # floor outlasts it: not a transition
    d1_at = [TurnEvent("A", 56.0, "shift", 0.22, 65.0), TurnEvent("A", 76.0, "shift", 0.6, 79.0)]
    d2_b = [bc("B", 30.0, "yeah", "tag", 0.4)]
    d2_at = [TurnEvent("A", 10.0, "shift", 0.21, 20.0)]
    d2_bt = [TurnEvent("B", 25.0, "shift", 1.5, 28.0)]
    dialogues = [dialogue("d1", 120.0, "train"), dialogue("d2", 60.0, "test")]
    evs = [events("d1", {"A": (d1_a, d1_at), "B": (d1_b, d1_bt)}),
           events("d2", {"A": ([], d2_at), "B": (d2_b, d2_bt)})]
    return dialogues, evs


def test_rates_and_listener_minutes(corpus):
    st = corpus_stats(*corpus)
    assert st["n_dialogues"] == 2 and st["backchannels"] == 9
    assert st["listener_minutes"] == pytest.approx(6.0)  # 2 speakers x (2 + 1) min
    assert st["hours"] == pytest.approx(180 / 3600)
    assert st["rate"]["per_listener_minute"] == pytest.approx(9 / 6)
    # per (dialogue, listener): d1 A 2/2, d1 B 6/2, d2 A 0/1, d2 B 1/1
    assert st["rate"]["per_listener_values"] == pytest.approx([1.0, 3.0, 0.0, 1.0])
    assert st["rate"]["per_listener"]["mean"] == pytest.approx(1.25)
    assert st["rate"]["per_listener"]["median"] == pytest.approx(1.0)
    assert st["rate"]["by_listener_id"]["B"]["per_minute"] == pytest.approx(7 / 3)
    assert "listener" in st["listener_minute_definition"]


def test_sources_forms_types_overlap(corpus):
    st = corpus_stats(*corpus)
    assert st["sources"]["tag"] == {"count": 6, "share": pytest.approx(2 / 3)}
    assert st["sources"]["lexicon"]["count"] == 3
    top = st["forms"]["top"]
    assert top[0] == {"form": "uhhuh", "count": 3, "share": pytest.approx(1 / 3)}
    assert {f["form"]: f["count"] for f in top} == {"uhhuh": 3, "yeah": 2, "mhm": 2, "right": 1, "oh": 1}
    assert st["forms"]["top5_share"] == pytest.approx(1.0)
    assert st["forms"]["reference_forms_share"] == pytest.approx(7 / 9)  # all but the two mhm
    types = {t: v["count"] for t, v in st["types"].items()}
    assert types == {"continuer": 5, "agreement": 3, "assessment": 0, "surprise": 1, "acknowledgement": 0}
    assert st["overlap_share"] == pytest.approx(1 / 9)


def test_isolated_share_forms_and_types(corpus):
    st = corpus_stats(*corpus)
    # kinds: d1 B "yeah" 20.0 turn-initial, d1 B "mhm" 90.0 and d1 A "oh" other; the 6 others isolated
    assert st["kinds"] == {"isolated": {"count": 6, "share": pytest.approx(6 / 9)},
                           "turn_initial": {"count": 1, "share": pytest.approx(1 / 9)},
                           "other": {"count": 2, "share": pytest.approx(2 / 9)}}
    iso = st["isolated"]
    assert iso["backchannels"] == 6 and iso["share_of_candidates"] == pytest.approx(6 / 9)
    assert iso["per_listener_minute"] == pytest.approx(6 / 6.0) and iso["overlap_share"] == pytest.approx(1 / 6)
    # isolated forms: uhhuh x3 (10.0, 30.0, 100.0), right, mhm (60.0), yeah (d2)
    assert {f["form"]: f["count"] for f in iso["forms"]["top"]} == {"uhhuh": 3, "right": 1, "mhm": 1, "yeah": 1}
    assert iso["forms"]["top"][0] == {"form": "uhhuh", "count": 3, "share": pytest.approx(0.5)}
    assert {t: v["count"] for t, v in iso["types"].items()} == \
        {"continuer": 4, "agreement": 2, "assessment": 0, "surprise": 0, "acknowledgement": 0}
    assert iso["types"]["continuer"]["share"] == pytest.approx(4 / 6) and iso["echo"]["count"] == 0
    assert (st["splits"]["train"]["isolated"], st["splits"]["train"]["isolated_share"]) == (5, pytest.approx(5 / 8))
    assert st["splits"]["test"]["isolated_share"] == pytest.approx(1.0)
    assert "isolated backchannels (Ruede et al. 2017): 6 of 9 candidates (67%), 1.00 per listener-minute; " \
           "top forms uhhuh, right, mhm" in compare_to_human_reference(st)


def test_echoes_are_counted_apart_from_the_types():
    d = dialogue("d0", 60.0, "train")
    bcs = [bc("B", 10.0, "south", "tag", 0.1), bc("B", 20.0, "mhm", "tag", 0.2),
           bc("B", 30.0, "east", "tag", 0.1, kind="other")]
    st = corpus_stats([d], [events("d0", {"A": ([], []), "B": (bcs, [])})])
    assert st["echo"] == {"count": 2, "share": pytest.approx(2 / 3)}
    assert sum(v["count"] for v in st["types"].values()) == 1  # only "mhm" has a type
    assert st["isolated"]["echo"] == {"count": 1, "share": pytest.approx(0.5)}
    assert st["isolated"]["types"]["continuer"] == {"count": 1, "share": pytest.approx(0.5)}


def test_onset_relative_to_speaker_end(corpus):
    onset = corpus_stats(*corpus)["onset_since_speaker_end"]
    # non-NaN values 0, .2, .25, .3, .35, .4, .5, .6 -> median (.3 + .35) / 2
    assert onset["median_s"] == pytest.approx(0.325)
    assert onset["median_in_pause_s"] == pytest.approx(0.35)  # the overlapping 0.0 left out
    assert onset["n"] == 8 and onset["n_floor_not_yet_spoken"] == 1
    assert onset["counts"][0] == 1 and onset["counts"][2] == 2 and sum(onset["counts"]) == 8


def test_gap_histogram_mode_and_median(corpus):
    gaps = corpus_stats(*corpus)["turn_transition_gaps"]
    # transitions: .205, .26, -.3, .22, .6, .21, 1.5 (the -1.0 interruption is not one)
    assert gaps["n"] == 7 and sum(gaps["counts"]) == 7
    assert len(gaps["counts"]) == 80 and gaps["bin_edges_s"][0] == -2.0 and gaps["bin_edges_s"][-1] == 2.0
    assert gaps["mode_bin_s"] == pytest.approx([0.2, 0.25])
    assert gaps["mode_s"] == pytest.approx(0.225)
    assert gaps["median_s"] == pytest.approx(0.22)


def test_inter_backchannel_intervals_and_splits(corpus):
    st = corpus_stats(*corpus)
    ibi = st["inter_backchannel_intervals"]
    # d1 B: 10, 10, 15, 15, 30; d1 A: 99; d2 B has one backchannel -> no interval
    assert ibi["n"] == 6 and ibi["above"] == 1
    assert ibi["median_s"] == pytest.approx(15.0)
    assert ibi["q25_s"] == pytest.approx(11.25) and ibi["q75_s"] == pytest.approx(26.25)
    assert ibi["iqr_s"] == pytest.approx(15.0)
    assert st["turns"] == {"shift": 6, "interruption": 2}
    assert st["splits"]["train"] == {"dialogues": 1, "listener_minutes": pytest.approx(4.0),
                                     "backchannels": 8, "per_listener_minute": pytest.approx(2.0),
                                     "isolated": 5, "isolated_share": pytest.approx(5 / 8),
                                     "shifts": 4, "interruptions": 2}
    assert st["splits"]["test"]["per_listener_minute"] == pytest.approx(0.5)


def test_events_must_match_dialogues(corpus):
    dialogues, evs = corpus
    with pytest.raises(ValueError, match="out of order"):
        corpus_stats(dialogues, evs[::-1])
    with pytest.raises(ValueError, match="no events for dialogue d2"):
        corpus_stats(dialogues, evs[:1])
    with pytest.raises(ValueError, match="more events"):
        corpus_stats(dialogues[:1], evs)


def test_compare_to_human_reference(corpus):
    lines = compare_to_human_reference(corpus_stats(*corpus))
    text = "\n".join(lines)
    assert "1.50" in text and "0.8x" in text  # 1.5 / 2 per minute
    assert "78%" in text  # 7/9 of forms are uh-huh/yeah/right/oh/okay
    assert "200..250 ms" in text


def test_report_files(corpus, tmp_path):
    st = corpus_stats(*corpus)
    st["corpus"] = "hand"
    paths = write_stats_report(st, tmp_path / "out")
    assert [p.name for p in paths] == ["stats.json", "stats.png"]
    assert json.loads((tmp_path / "out" / "stats.json").read_text()) == json.loads(json.dumps(st))
    img = mpimg.imread(tmp_path / "out" / "stats.png")
    assert img.shape[:2] == (900, 1600)
    assert img[..., :3].std() > 0.05  # not a blank canvas


def test_empty_corpus_report(tmp_path):
    d = dialogue("d0", 30.0, None)
    st = corpus_stats([d], [events("d0", {"A": ([], []), "B": ([], [])})])
    assert st["backchannels"] == 0 and st["rate"]["per_listener_minute"] == 0.0
    assert st["forms"]["top"] == [] and st["turn_transition_gaps"]["mode_s"] is None
    assert st["splits"]["none"]["dialogues"] == 1
    assert compare_to_human_reference(st)[0].startswith("backchannels per listener-minute: 0.00")
    write_stats_report(st, tmp_path)  # plots with no data must still render
    assert (tmp_path / "stats.png").stat().st_size > 0
