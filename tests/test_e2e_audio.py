"""benchmarks/e2e_audio.py (issue 11): rendering and scoring on a tiny slice of one real Map Task test
dialogue (30 s), scoring on hand-made cases, and pipecat-backchannel driven on the audio clock."""
from __future__ import annotations

import importlib.util
import json
import os
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from backchannel.corpora.dataset import build_dataset
from backchannel.corpora.dialogue import Channel, Word

from backchannel.frames import FRAME_S, time_to_frame
from backchannel.head import HeadOutputs

DIALOGUE, SLICE_S = "q8ec6", 30.0  # 30 s with gold backchannels and take-turns for both listeners

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _load():
    spec = importlib.util.spec_from_file_location("e2e_audio", ROOT / "benchmarks" / "e2e_audio.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["e2e_audio"] = module
    spec.loader.exec_module(module)
    return module


e2e = _load()


def need_pipecat_backchannel():
    """Skip without pipecat-backchannel, except under CI, where the [bench] extra installs it."""
    try:
        import pipecat_backchannel  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("pipecat-backchannel is missing under CI: install the [bench] extra")
        pytest.skip("needs the [bench] extra (pipecat-backchannel)")


@pytest.fixture(scope="module")
def tiny_slice(corpora_root, tmp_path_factory):
    """``(dialogue, prepared dir, cache dir, sessions)`` of the first 30 s of one Map Task test dialogue."""
    from backchannel.corpora.maptask import read_maptask_dialogue

    d = read_maptask_dialogue(corpora_root / "maptask", DIALOGUE)
    cut = replace(d, duration=SLICE_S, channels={
        s: Channel(s, [u for u in c.utterances if u.end <= SLICE_S]) for s, c in d.channels.items()})
    tmp = tmp_path_factory.mktemp("e2e")
    build_dataset([cut], tmp / "prepared", corpus="maptask", progress=False)
    sessions = list(e2e.load_sessions(tmp / "prepared", dialogues=[cut], cache_dir=tmp / "cache"))
    return cut, tmp / "prepared", tmp / "cache", sessions


def _words_at(track: np.ndarray, words, pad: float = 0.0) -> np.ndarray:
    """Per word, the peak |sample| of ``track`` inside the word's span."""
    return np.array([np.abs(track[max(0, round((w.start - pad) * e2e.SR)):round((w.end + pad) * e2e.SR)]).max(
        initial=0) for w in words])


# ----------------------------------------------------------------------------- material

def test_rendering_drops_the_listeners_backchannels_and_keeps_its_other_speech(tiny_slice):
    cut, prepared, cache, sessions = tiny_slice
    assert [s.listener for s in sessions] == ["g", "f"]
    by = {s.listener: s for s in sessions}
    for s in sessions:
        n = cut.n_frames * e2e.FRAME_N
        assert len(s.listener_speech) == len(s.listener_backchannels) == len(s.floor_speech) == n
        assert s.listener_speech.dtype == np.int16
        # the mined backchannels are exactly the words taken out of the bot's own channel
        spans = list(zip(s.row["bc_onsets"], s.row["bc_offsets"]))
        assert len(s.backchannel_words) >= len(spans) > 0
        assert all(any(a - 1e-6 <= w.start and w.end <= b + 1e-6 for a, b in spans) for w in s.backchannel_words)
        assert len(s.listener_words) + len(s.backchannel_words) == len(cut.channels[s.listener].words)
        spoken = [w for w in s.backchannel_words if e2e_speakable(w.text)]
        assert (_words_at(s.listener_backchannels, spoken) > 300).all()  # heard in the backchannel track
        assert (_words_at(s.listener_speech, spoken) == 0).all()  # and silent in the bot's channel
        others = [w for w in s.listener_words if e2e_speakable(w.text)]
        assert np.mean(_words_at(s.listener_speech, others) > 300) > 0.9  # its other speech stays
        # what the bot hears is the other party's whole speech
        other = by[s.floor]
        assert np.array_equal(s.floor_speech, e2e.mix(other.listener_speech, other.listener_backchannels))
        iso = np.asarray(s.row["bc_isolated"], bool)
        assert s.gold.tolist() == list(np.asarray(s.row["bc_onsets"])[iso])  # the isolated backchannels
    # a second load reads the cache and hands over identical audio
    renderer = e2e.Renderer(cache)
    again = list(e2e.load_sessions(prepared, dialogues=[cut], renderer=renderer))
    assert renderer.stats["dialogues_cached"] == 1 and renderer.stats["dialogues_rendered"] == 0
    assert all(np.array_equal(a.floor_speech, b.floor_speech) and np.array_equal(a.listener_speech, b.listener_speech)
               for a, b in zip(sessions, again))


def e2e_speakable(text: str) -> bool:
    from backchannel.rating.tts import speakable

    return bool(speakable(text))


def test_gold_is_the_isolated_backchannels():
    row = {"dialogue": "d", "listener": "a", "bc_onsets": [1.0, 2.0, 3.0]}
    with pytest.raises(e2e.BenchError, match="no bc_isolated column"):  # an old dataset: refused, not misread
        e2e.gold_onsets(row)
    assert e2e.gold_onsets(dict(row, bc_isolated=[True, False, True])).tolist() == [1.0, 3.0]
    with pytest.raises(e2e.BenchError, match="bc_isolated has 2 flags for 3"):
        e2e.gold_onsets(dict(row, bc_isolated=[True, False]))


def test_a_backchannel_span_without_words_is_refused():
    words = [Word(0.0, 0.3, "go"), Word(1.0, 1.2, "mhm")]
    other, bcs = e2e.split_backchannel_words(words, [1.0], [1.2])
    assert [w.text for w in other] == ["go"] and [w.text for w in bcs] == ["mhm"]
    with pytest.raises(e2e.BenchError, match="covers no word"):
        e2e.split_backchannel_words(words, [5.0], [5.3])


def test_words_reach_the_listener_after_the_recogniser_latency():
    words = [Word(0.0, 0.30, "go"), Word(0.3, 0.61, "left"), Word(9.0, 9.9, "late")]
    feed = e2e.frame_words(words, 20, 0.3)  # 1.6 s
    got = [(t, text, round(at, 6)) for t, f in enumerate(feed) for text, at in f]
    assert got == [(time_to_frame(0.6), "go", 0.6), (time_to_frame(0.91), "left", 0.91)]  # "late": after the end
    assert all(not f for f in e2e.frame_words(words, 20, None))


# ----------------------------------------------------------------------------- scoring

def test_scoring_on_a_hand_made_case():
    va = np.zeros(750)  # 60 s of the floor party: speech 0.0-0.8 s, 4.0-4.8 s, 8.0-8.8 s
    for a in (0, 50, 100):
        va[a:a + 10] = 1.0
    gold = [np.array([1.0, 5.0, 9.0])]
    pred = [np.array([1.3, 5.7, 9.0, 12.0])]
    r = e2e.score(pred, gold, [va], [60.0])
    # 1.3 hits 1.0 (+0.3 s), 5.7 misses 5.0 (+0.7 s > 0.5), 9.0 hits 9.0, 12.0 matches nothing
    assert (r["tp"], r["fp"], r["fn"]) == (2, 2, 1)
    assert r["precision"] == pytest.approx(0.5) and r["recall"] == pytest.approx(2 / 3)
    assert r["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))  # 0.5714
    assert r["rate_per_minute"] == pytest.approx(4.0) and r["human_rate_per_minute"] == pytest.approx(3.0)
    assert r["rate_ratio"] == pytest.approx(4 / 3)
    # offsets from the speech end: human 0.2, 0.2, 0.2 s; model 0.5, 0.9, 0.2, 3.2 s
    assert r["human_median_offset_s"] == pytest.approx(0.2) and r["median_offset_s"] == pytest.approx(0.7)
    same = e2e.score(gold, gold, [va], [60.0])
    assert same["f1"] == 1.0 and same["offset_js_distance"] == pytest.approx(0.0)
    # model offsets all 1.0 s, human all 0.2 s: disjoint histograms, JS distance 1
    far = e2e.score([gold[0] + 0.8], gold, [va], [60.0])
    assert far["offset_js_distance"] == pytest.approx(1.0) and far["f1"] == 0.0


def test_user_side_scores_by_hand():
    O = e2e.CaseOutcome
    outs = [O("backchannel", keep_s=0.5), O("backchannel", interrupt_s=0.4), O("backchannel", keep_s=0.7),
            O("backchannel"), O("interruption", interrupt_s=0.3), O("shift", interrupt_s=0.9), O("shift")]
    r = e2e.user_side_scores(outs)
    assert (r["backchannels"], r["take_turns"]) == (4, 3)
    assert r["backchannels_not_interrupting"] == pytest.approx(3 / 4)
    assert r["take_turns_interrupting"] == pytest.approx(2 / 3)
    assert r["take_turns_interrupting_within_500ms"] == pytest.approx(1 / 3)
    assert r["median_interrupt_latency_s"] == pytest.approx(0.6)  # of 0.3 and 0.9
    assert r["median_backchannel_keep_latency_s"] == pytest.approx(0.6)  # of 0.5 and 0.7
    assert r["median_decision_latency_s"] == pytest.approx(0.5)  # of 0.5, 0.4, 0.7, 0.3, 0.9


class OracleHead:
    """A stub head: BACKCHANNEL certain at the frames in ``fire`` (counted by its state), SILENT otherwise."""

    def __init__(self, fire):
        self.fire = set(fire)

    def init_state(self, batch_size: int = 1):
        return 0

    def step(self, state, x, inputs=None):
        actions = torch.full((x.shape[0], 3), -30.0)
        actions[:, 1 if state in self.fire else 0] = 30.0
        return HeadOutputs(actions, torch.zeros((x.shape[0], 5))), state + 1


def test_the_benchmark_scores_a_listener_from_pcm_on_the_audio_clock(tiny_slice, tmp_path):
    """A head that fires in the frame holding each gold onset scores F1 = 1 on every path: decisions are
    read at audio time. The pause gate runs on the rendered floor audio, and the result file has the keys."""
    from backchannel.plugin.features import StreamingFeatures
    from backchannel.plugin.listener import StreamingListener

    from backchannel.policy import Policy

    _, _, _, sessions = tiny_slice
    tiny = e2e.tiny_listener()
    results = []
    for s in sessions:
        head = OracleHead(time_to_frame(t) for t in s.gold)
        listener = StreamingListener(tiny.backbone, head, Policy(on=0.5, take_turn=None),
                                     features=StreamingFeatures(e2e.SR, prosody=False))
        lag = e2e.listener_onsets(listener, s, 0.3) - s.gold  # decided at the end of the onset's frame
        assert ((lag > 0) & (lag <= FRAME_S + 1e-9)).all()
        if len(s.gold):  # a listener with no isolated backchannel in the slice has nothing to score
            results.append(e2e.run_benchmark([s], listener=listener, pipecat=False, user_side=False))
    n_gold = sum(len(s.gold) for s in sessions)
    assert results and n_gold > 0
    for r in results:
        for key in ("ours_f1", "ours_no_words_f1", "ours_word_va_f1"):
            assert r[key] == 1.0, key
        assert r["systems"]["ours"]["cpu_s_per_audio_hour"] > 0
        pg = r["systems"]["pause_gate"]
        assert pg["tp"] + pg["fn"] == r["sessions"][0]["gold"]
    both = e2e.run_benchmark(sessions, listener=None, pipecat=False, user_side=False)  # baselines only
    assert both["systems"]["pause_gate"]["human_rate_per_minute"] == pytest.approx(n_gold / (2 * SLICE_S / 60))
    assert both["audio_hours"] == pytest.approx(2 * SLICE_S / 3600)
    assert both["ours_f1"] is None and both["pipecat_backchannel_f1"] is None
    out = tmp_path / "e2e_audio.json"
    e2e.write_json(both, out)
    data = json.loads(out.read_text())
    assert {"ours_f1", "pipecat_backchannel_f1", "ours_word_va_f1", "pause_gate_f1"} <= set(data)
    assert data["acceptance"]["ours_f1_over_pipecat_backchannel_f1"]["pass"] is None  # pipecat did not run
    assert "| pause_gate |" in e2e.markdown(both)


def test_ours_is_the_default_model_unless_a_checkpoint_is_given(monkeypatch):
    """``default_listener()``: ``load_listener()`` (the packaged model) once it takes no argument; a
    ``--checkpoint`` is passed on; the policy goes with either."""
    import backchannel.plugin.listener as listener_module

    calls = []

    def load_listener(checkpoint=None, policy=None, **kw):
        calls.append((checkpoint, policy))
        return "listener"

    monkeypatch.setattr(listener_module, "load_listener", load_listener)
    assert e2e.default_listener() == "listener" and calls == [(None, None)]
    assert e2e.default_listener("x.ckpt", policy="p") == "listener" and calls[-1] == ("x.ckpt", "p")

    def needs_a_path(checkpoint, policy=None, **kw):  # before the default model: baselines only
        raise AssertionError("not called")

    monkeypatch.setattr(listener_module, "load_listener", needs_a_path)
    assert e2e.default_listener() is None


def test_the_cli_reports_a_missing_dataset_in_one_line(tmp_path, capsys):
    assert e2e.main(["--data", str(tmp_path / "nothing"), "--no-pipecat", "--no-user-side"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "nothing" in err[-1] and "Traceback" not in "".join(err)


# ----------------------------------------------------------------------------- pipecat parts

def test_bot_speaking_frames_follow_the_bot_channel():
    pytest.importorskip("pipecat", reason="needs the [pipecat] extra")
    from pipecat.transports.base_output import BOT_VAD_STOP_SECS

    assert BOT_VAD_STOP_SECS == pytest.approx(0.35)
    chunks = [0] * 10 + [1] * 25 + [0] * 10 + [1] * 15 + [0] * 50  # 20 ms chunks: 0 silent, 1 voiced
    bot = np.concatenate([np.full(e2e.CHUNK_N, 3000 * c, np.int16) for c in chunks])
    edges = e2e.bot_speaking_edges(bot)
    starts = [i for i, e in enumerate(edges) if e is True]
    stops = [i for i, e in enumerate(edges) if e is False]
    # started at the first voiced chunk; the 0.2 s gap does not stop it; stopped once silence passed 0.35 s:
    # last voice ends at chunk 59's end (1.2 s), chunk i ends at 0.02 (i + 1) s > 1.55 s first at i = 77
    assert starts == [10] and stops == [77]


def _case(kind, words, onset=1.0, duration=4.0):
    """A user-side case: espeak-ng speaking ``words`` (text, start, end; seconds after the onset)."""
    from backchannel.rating.tts import WordRenderer, load_tts

    renderer = WordRenderer(load_tts("espeak"), e2e.SR)
    ws = [Word(onset + a, onset + b, t) for t, a, b in words]
    user = e2e.to_int16(renderer.words(ws, 0.0, duration))
    return e2e.UserCase(kind, "synthetic", "u", onset, 0.0, user, np.zeros_like(user), ws, [])


def yeah_and_turn():
    bc = _case("backchannel", [("yeah", 0.0, 0.35)])
    turn = _case("interruption", [("go", 0.0, 0.3), ("left", 0.35, 0.65), ("round", 0.7, 1.0), ("the", 1.05, 1.2),
                                  ("mill", 1.25, 1.6)])
    return bc, turn


def test_user_side_systems_on_a_backchannel_and_a_barge_in():
    """Our processor's word-list path keeps talking over "yeah" and lets "go left round the mill" interrupt
    once the first non-backchannel word arrives (its end + 0.3 s); interrupt-on-VAD interrupts the turn; a
    head without an onset output leaves the model path to the words (the same outcomes)."""
    pytest.importorskip("pipecat", reason="needs the [pipecat] extra")
    out = e2e.user_side_outcomes(list(yeah_and_turn()), e2e.tiny_listener(), 0.3)
    wl_bc, wl_turn = out["word_list"]
    assert not wl_bc.interrupted and 0.35 < wl_bc.keep_s < 1.2
    # the interim "go" (0.3 s + 0.3 s latency) is not a backchannel: the turn is released then
    assert wl_turn.interrupted and wl_turn.interrupt_s == pytest.approx(0.6, abs=0.025)
    _, vad_turn = out["interrupt_on_vad"]
    assert vad_turn.interrupted and vad_turn.interrupt_s < 0.5  # (a 0.35 s "yeah" is too short for its VAD)
    assert out["model"] == out["word_list"]


class ConstantOnsetHead(OracleHead):
    """SILENT, with a user-onset output of constant p(backchannel) ``p``."""

    def __init__(self, p: float):
        super().__init__(())
        self.p, self.onset = p, True

    def step(self, state, x, inputs=None):
        out, state = super().step(state, x, inputs)
        return HeadOutputs(out.action, out.bc_type, torch.logit(torch.full((x.shape[0],), self.p))), state


def onset_listener(p: float):
    from backchannel.plugin.features import StreamingFeatures
    from backchannel.plugin.listener import StreamingListener

    from backchannel.policy import Policy

    return StreamingListener(e2e.tiny_listener().backbone, ConstantOnsetHead(p), Policy(),
                             features=StreamingFeatures(e2e.SR, prosody=False))


def test_the_model_path_decides_from_the_onset_output():
    """The model path on the same two cases. The user's speech starts at 1.0 s, inside frame 12 (0.96-1.04 s):
    webrtcvad puts the onset at 0.96 or 1.04 s, so the 240 ms decision comes 0.20 or 0.28 s after the true
    onset. p(backchannel) = 0: the turn interrupts as soon as pipecat's VAD start opens the hold (the
    verdict came first), with interrupt-on-VAD and before any word; the "yeah" (no VAD start: no hold)
    interrupts when its transcription opens the hold (0.35 + 0.3 s). p = 1: the "yeah" is kept from the
    decision on and the turn interrupts when its words arrive, as on the word-list path."""
    pytest.importorskip("pipecat", reason="needs the [pipecat] extra")
    bc, turn = yeah_and_turn()
    out = e2e.user_side_outcomes([bc, turn], onset_listener(0.0), 0.3)
    barge, vad = out["model"], out["interrupt_on_vad"]
    assert barge[1].interrupt_s == pytest.approx(vad[1].interrupt_s) and 0.28 <= barge[1].interrupt_s < 0.5
    assert barge[0].interrupt_s == pytest.approx(0.65, abs=0.021)
    keep = e2e.user_side_outcomes([bc, turn], onset_listener(1.0), 0.3)["model"]
    assert not keep[0].interrupted and keep[0].keep_s in (pytest.approx(0.20, abs=0.021),
                                                          pytest.approx(0.28, abs=0.021))
    assert keep[1].interrupt_s == pytest.approx(0.6, abs=0.025)
    r = e2e.user_side_scores(keep)
    assert r["backchannels_not_interrupting"] == 1.0 and r["take_turns_interrupting_within_500ms"] == 0.0
    r = e2e.user_side_scores(barge)
    assert r["backchannels_not_interrupting"] == 0.0 and r["take_turns_interrupting_within_500ms"] == 1.0


def test_the_user_side_table_on_the_tiny_slice(tiny_slice):
    """The second table on real rendered cases of the slice: every system on every case, the model path with
    an onset output (a constant p = 1: every backchannel kept at its decision)."""
    pytest.importorskip("pipecat", reason="needs the [pipecat] extra")
    from pipecat.transports.base_output import BOT_VAD_STOP_SECS

    _, _, _, sessions = tiny_slice
    s = max(sessions, key=lambda s: len(e2e.user_cases(s, BOT_VAD_STOP_SECS)))
    cases = e2e.user_cases(s, BOT_VAD_STOP_SECS)
    kinds = {c.kind for c in cases}
    assert "backchannel" in kinds and kinds - {"backchannel"}
    for c in cases:  # the user is silent before its onset; the bot's words lie inside the case
        assert not c.user_pcm[:round((c.onset_s - 0.01) * e2e.SR)].any()
        assert all(0 <= w.start and w.end <= len(c.bot_pcm) / e2e.SR + 1e-6 for w in c.bot_words)
    r = e2e.run_benchmark([s], listener=onset_listener(1.0), pipecat=False, word_va=False, user_side=True)
    us = r["user_side"]
    assert set(us) == {"model", "word_list", "interrupt_on_vad"} and us["model"]["model_has_onset_output"]
    n_bc = sum(c.kind == "backchannel" for c in cases)
    assert all(us[k]["backchannels"] == n_bc and us[k]["take_turns"] == len(cases) - n_bc for k in us)
    assert us["model"]["backchannels_not_interrupting"] >= us["word_list"]["backchannels_not_interrupting"]
    assert r["acceptance"]["model_backchannels_not_interrupting"]["value"] == us["model"][
        "backchannels_not_interrupting"]
    assert "| model |" in e2e.markdown(r) and "| word_list |" in e2e.markdown(r)


def test_pipecat_backchannel_follows_the_audio_clock(tiny_slice):
    """Driven twice on the same audio, pipecat-backchannel fires at the same audio times (not wall times):
    on 20 ms chunk ends, at least its 2.5 s cooldown apart, each after a pause in the speaker's words."""
    need_pipecat_backchannel()
    _, _, _, sessions = tiny_slice
    s = max(sessions, key=lambda s: len(s.floor_words))
    first, cpu = e2e.pipecat_backchannel_onsets(s, 0.8, seed=1)
    second, _ = e2e.pipecat_backchannel_onsets(s, 0.8, seed=1)
    assert len(first) >= 1 and cpu > 0
    assert first.tolist() == second.tolist()
    ticks = first / e2e.CHUNK_S
    assert np.allclose(ticks, np.round(ticks))
    assert (np.diff(first) >= 2.5 - 1e-9).all()
    for t in first:  # its VAD reports a pause only after 0.2 s of quiet: no word of the speaker ends later
        assert not any(w.start < t - 0.2 and w.end > t - 0.05 for w in s.floor_words), t
