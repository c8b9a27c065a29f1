"""``backchannel simulate``: replaying a dialogue through the streaming listener writes a stereo WAV with
the backchannels at the decided times, a timeline PNG and the decisions JSON (equal to ``run_offline``)."""
from __future__ import annotations

import json
import re
from dataclasses import asdict

import numpy as np
import pytest
import soundfile as sf
import torch
from backchannel.corpora.dataset import build_dataset, load_prepared
from backchannel.corpora.demo import make_demo_corpus
from backchannel.corpora.maptask import load_maptask, read_maptask_dialogue
from backchannel.plugin.listener import StreamingListener, run_offline
from backchannel.plugin.simulate import (
    BC_TONE_S,
    RANDOM_WEIGHTS,
    REPLAY_DEADLINE_S,
    dialogue_row,
    row_words,
    simulate,
    slice_row,
)

from backchannel.backbones.timing import FrameFeatures
from backchannel.cli import main as cli_main
from backchannel.head import HeadOutputs
from backchannel.lexicon import BC_TYPES
from backchannel.policy import DEFAULT_FORMS, Policy

SR = 16000
FIRE = [25, 60, 100, 150, 151, 152, 155, 165]  # frames where the stub head says BACKCHANNEL
# trigger at 25, 60, 100, 150; 151-152 continue the same crossing (disarmed); 155 is 0.4 s after 150
# (refractory 0.8 s: dropped); 165 is 1.2 s after 150
DECIDED = [25, 60, 100, 150, 165]


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest.py


class FiringHead:
    """A head forced to fire: BACKCHANNEL logits (0, 5, 0) -> p = 0.987 at ``frames``, (5, 0, 0) ->
    p = 0.0067 elsewhere; type logits favour ``bc_type``. Its state counts frames."""

    def __init__(self, frames, bc_type: str = "surprise"):
        self.frames, self.bc_type = set(frames), bc_type

    def init_state(self, batch_size: int = 1) -> int:
        return 0

    def step(self, state: int, hidden: torch.Tensor, inputs=None):
        fire = state in self.frames
        action = torch.tensor([[0.0, 5.0, 0.0]] if fire else [[5.0, 0.0, 0.0]])
        types = torch.zeros(1, len(BC_TYPES))
        types[0, BC_TYPES.index(self.bc_type)] = 3.0
        return HeadOutputs(action, types), state + 1


def stub_listener(frames=FIRE) -> StreamingListener:
    return StreamingListener(FrameFeatures(), FiringHead(frames), Policy(on=0.5, refractory=0.8),
                             deadline_s=60.0)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A one-dialogue demo corpus (q1ec1, ~128 s) and its prepared dataset under ``<tmp>/data/demo``."""
    base = tmp_path_factory.mktemp("demo")
    root = make_demo_corpus(base, n_dialogues=1)
    dialogues = list(load_maptask(root))
    for d in dialogues:
        d.corpus = "demo"
    build_dataset(dialogues, base / "data" / "demo", corpus="demo", progress=False, source=str(root))
    dsd, _ = load_prepared(base / "data" / "demo")
    row = max(dsd["train"], key=lambda r: len(r["bc_onsets"]))  # the follower, who backchannels
    return {"base": base, "root": root, "dialogue": dialogues[0], "row": row}


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x)))) if len(x) else 0.0


# ---------------------------------------------------------------- inputs

def test_row_words_reconstructs_spans_from_text_and_voice_activity():
    row = {"text_speaker": ["", "a", "", "", "b c", ""], "va_speaker": [1, 1, 0, 1, 1, 0]}
    words = row_words(row)
    assert [w.text for w in words] == ["a", "b", "c"]
    # "a" ends at the end of frame 1, its stretch starts at frame 0; "b c" share frames 3-4
    assert [(round(w.start, 6), round(w.end, 6)) for w in words] == [(0.0, 0.16), (0.24, 0.32), (0.32, 0.4)]


def test_row_words_word_ending_in_a_silent_frame_belongs_to_the_stretch_before():
    row = {"text_speaker": ["", "", "word"], "va_speaker": [1, 1, 0]}
    (w,) = row_words(row)
    assert (w.start, round(w.end, 6)) == (0.0, 0.24)


def test_slice_row_cuts_frames_and_shifts_events():
    n = 10
    row = {"dialogue": "d", "listener": "f", "n_frames": n, "va_listener": list(range(n)),
           "va_speaker": [0.0] * n, "text_listener": [""] * n, "text_speaker": [str(i) for i in range(n)],
           "prosody": [], "prosody_mask": [], "bc_onsets": [0.3, 0.5], "bc_offsets": [0.4, 0.6],
           "bc_forms": ["mhm", "yeah"], "bc_types": ["continuer", "agreement"], "shift_onsets": [0.45, 0.9]}
    s = slice_row(row, start=0.4, seconds=0.24)  # frames 5, 6, 7
    assert s["n_frames"] == 3 and s["va_listener"] == [5, 6, 7] and s["text_speaker"] == ["5", "6", "7"]
    assert s["prosody"].shape == (3, 8) and not s["prosody_mask"].any()  # audio-less row expanded, masked
    assert s["bc_forms"] == ["yeah"]
    assert np.allclose(s["bc_onsets"], [0.1]) and np.allclose(s["bc_offsets"], [0.2])
    assert np.allclose(s["shift_onsets"], [0.05]) and s["start_s"] == pytest.approx(0.4)
    with pytest.raises(ValueError, match="outside"):
        slice_row(row, start=0.8 + 0.08 * 2)


# ---------------------------------------------------------------- replay

def test_stub_head_backchannels_land_in_the_right_channel_at_the_decided_times(demo, tmp_path):
    listener = stub_listener()
    sim = simulate(demo["row"], out_dir=tmp_path, model=listener, render="tone", dialogue=demo["dialogue"],
                   seconds=16.0, sample_rate=SR, weights="stub head")
    bcs = [d for d in sim.decisions if d.action == "BACKCHANNEL"]
    assert [d.frame for d in bcs] == DECIDED
    assert [round(d.time, 6) for d in bcs] == [2.08, 4.88, 8.08, 12.08, 13.28]  # 0.08 (t + 1)
    assert all(d.bc_type == "surprise" and d.form in DEFAULT_FORMS["surprise"] for d in bcs)

    x, sr = sf.read(sim.wav)
    assert sr == SR and x.shape == (200 * 1280, 2)  # 200 frames of 80 ms, stereo
    right = x[:, 1]
    quiet = np.ones(len(right), bool)
    for d in bcs:
        i = round(d.time * SR)
        assert rms(right[i:i + int(0.25 * SR)]) > 0.05, d
        assert rms(right[i - int(0.1 * SR):i]) == 0.0, d  # nothing before the decision
        quiet[i - 80:i + int((BC_TONE_S + 0.01) * SR)] = False
    assert np.abs(right[quiet]).max() == 0.0  # only the backchannels in the right channel

    # the left channel is the speaker, tones following its real word spans
    left = x[:, 0]
    words = [w for w in demo["dialogue"].floor(demo["row"]["listener"]).words if w.end < 16.0]
    assert sim.speaker_timing.startswith("corpus words")
    for w in words:
        if w.end - w.start > 0.1 and w.text.isalpha():
            a, b = round(w.start * SR), round(w.end * SR)
            assert rms(left[a + (b - a) // 4:b - (b - a) // 4]) > 0.05, w
    spoken = np.zeros(len(left), bool)
    for w in words:
        spoken[max(0, round(w.start * SR) - 80):round(w.end * SR) + 80] = True
    assert np.abs(left[~spoken]).max() == 0.0


def test_decisions_json_equals_run_offline_on_the_same_row(demo, tmp_path):
    listener = stub_listener()
    sim = simulate(demo["row"], out_dir=tmp_path, model=listener, render="tone", seconds=24.0, sample_rate=SR)
    report = json.loads(sim.json.read_text())
    offline = run_offline(stub_listener(), slice_row(demo["row"], 0.0, 24.0))
    assert report["decisions"] == [asdict(d) for d in offline]
    bc_times = [d.time for d in offline if d.action == "BACKCHANNEL"]
    assert [b["time"] for b in report["backchannels"]] == bc_times
    assert report["n_frames"] == 300 and report["weights"] == "given listener"
    true = [o for o in demo["row"]["bc_onsets"] if o < 24.0]
    assert [b["onset"] for b in report["true_backchannels"]] == true and true
    assert sim.speaker_timing.startswith("reconstructed")  # no Dialogue given


def test_slice_from_a_later_start_replays_on_its_own_clock(demo, tmp_path):
    sim = simulate(demo["row"], out_dir=tmp_path, model=stub_listener([5]), render="tone", start=40.0,
                   seconds=4.0, dialogue=demo["dialogue"], sample_rate=SR)
    report = json.loads(sim.json.read_text())
    assert report["start_s"] == pytest.approx(40.0) and report["n_frames"] == 50
    assert [b["time"] for b in report["backchannels"]] == [pytest.approx(0.48)]
    assert all(0 <= b["onset"] < 4.0 for b in report["true_backchannels"])
    assert sf.info(sim.wav).frames == 50 * 1280
    # a slice of a slice: same dialogue time, same decisions and the same speaker audio
    again = simulate(slice_row(demo["row"], 38.0, 10.0), out_dir=tmp_path / "again", model=stub_listener([5]),
                     render="tone", start=2.0, seconds=4.0, dialogue=demo["dialogue"], sample_rate=SR)
    assert json.loads(again.json.read_text())["start_s"] == pytest.approx(40.0)
    assert again.decisions == sim.decisions
    assert np.array_equal(sf.read(again.wav)[0], sf.read(sim.wav)[0])


def test_a_dialogue_replays_like_its_dataset_row(demo, tmp_path):
    row = dialogue_row(demo["dialogue"], demo["row"]["listener"])
    assert row["va_speaker"].tolist() == pytest.approx(demo["row"]["va_speaker"])
    a = simulate(demo["dialogue"], demo["row"]["listener"], out_dir=tmp_path / "a", model=stub_listener(),
                 render="tone", seconds=8.0)
    b = simulate(demo["row"], out_dir=tmp_path / "b", model=stub_listener(), render="tone", seconds=8.0)
    assert a.decisions == b.decisions and a.speaker_timing.startswith("corpus words")


def test_random_weights_are_said_plainly(demo, tmp_path):
    sim = simulate(demo["row"], out_dir=tmp_path, render="tone", seconds=4.0, random_weights=True)
    report = json.loads(sim.json.read_text())
    assert sim.weights == RANDOM_WEIGHTS == report["weights"] == "random weights"
    assert len(report["decisions"]) == 50 and not report["faults"]
    assert sim.png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_tts_speaks_the_forms_when_espeak_is_available(demo, tmp_path):
    from backchannel.rating.tts import load_tts

    if load_tts() is None:
        pytest.skip("no espeak-ng here")
    sim = simulate(demo["row"], out_dir=tmp_path, model=stub_listener([10]), render="tts", seconds=3.0,
                   dialogue=demo["dialogue"], sample_rate=SR)
    assert sim.speech.startswith("tts: espeak-ng")
    x, _ = sf.read(sim.wav)
    i = round(0.88 * SR)
    assert rms(x[i:i + int(0.2 * SR), 1]) > 0.01 and np.abs(x[:i, 1]).max() == 0.0


def test_bad_arguments_are_refused(demo, tmp_path):
    with pytest.raises(ValueError, match="render"):
        simulate(demo["row"], out_dir=tmp_path, render="midi")
    with pytest.raises(ValueError, match="not 'g'"):
        simulate(demo["row"], "g", out_dir=tmp_path, model=stub_listener())
    with pytest.raises(ValueError, match="say which speaker"):
        simulate(demo["dialogue"], out_dir=tmp_path, model=stub_listener())
    with pytest.raises(ValueError, match="not both"):
        simulate(demo["row"], out_dir=tmp_path, model=stub_listener(), policy=Policy())


# ---------------------------------------------------------------- command line

def run_cli(argv) -> int:
    return cli_main(argv)


def test_cli_writes_all_three_files(demo, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(demo["base"])  # the corpus name resolves to data/demo
    out = tmp_path / "sim"
    assert run_cli(["simulate", "demo", "--start", "36", "--seconds", "8", "--render", "tone",
                    "--out", str(out), "--random-weights"]) == 0
    stdout = capsys.readouterr().out
    stem = f"demo_{demo['row']['dialogue']}_{demo['row']['listener']}"  # the listener with most backchannels
    files = {p.name for p in out.iterdir()}
    assert files == {f"{stem}.wav", f"{stem}.real.wav", f"{stem}.png", f"{stem}.json"}
    assert "weights: random weights" in stdout and "corpus words" in stdout
    report = json.loads((out / f"{stem}.json").read_text())
    assert report["n_frames"] == 100 and report["weights"] == "random weights"
    assert len(report["true_backchannels"]) == 3  # 37.07, 39.71, 41.93 s in the demo dialogue
    real, sr = sf.read(out / f"{stem}.real.wav")
    assert real.shape == (100 * 1280, 2)
    for b in report["true_backchannels"]:  # the real listener's backchannels, right channel
        assert rms(real[round(b["onset"] * sr):round(b["offset"] * sr), 1]) > 0.05


def test_without_a_checkpoint_the_default_model_replays(demo, tmp_path, monkeypatch, capsys):
    """``backchannel simulate`` without ``--checkpoint``: ``load_listener()`` (the packaged default model; a
    stand-in here) with the CLI's policy and the replay deadline, named in the outputs."""
    import backchannel.plugin.listener as listener_module

    calls = []

    def load_listener(*args, **kwargs):
        calls.append((args, kwargs))
        model = stub_listener([5])
        model.policy = kwargs["policy"]
        model.reset()
        model.checkpoint = {"checkpoint": "/pkg/default", "checkpoint_sha256": "ab" * 32, "backbone": "timing"}
        return model

    monkeypatch.setattr(listener_module, "load_listener", load_listener)
    monkeypatch.chdir(demo["base"])
    out = tmp_path / "sim"
    assert run_cli(["simulate", "demo", "--start", "36", "--seconds", "4", "--render", "tone", "--threshold",
                    "0.5", "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    (args, kwargs), = calls
    assert args == () and kwargs["deadline_s"] == REPLAY_DEADLINE_S and kwargs["policy"].on == 0.5
    assert "weights: default model /pkg/default (sha256 abababababab, backbone timing)" in stdout
    assert "1 backchannels decided" in stdout  # the stand-in fires at frame 5
    report = json.loads(next(out.glob("*.json")).read_text())
    assert report["weights"].startswith("default model /pkg/default")
    assert run_cli(["simulate", "demo", "--checkpoint", "x.ckpt", "--random-weights"]) == 2
    assert "either --checkpoint or --random-weights" in capsys.readouterr().err


def test_cli_explains_bad_input(demo, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert run_cli(["simulate", "maptask"]) == 2
    assert capsys.readouterr().err == ("error: data/maptask: not a prepared dataset; run `backchannel corpus "
                                       "prepare maptask` first\n")
    assert run_cli(["simulate", str(demo["base"] / "data" / "demo"), "--dialogue", "q9xx"]) == 2
    assert re.match(r"error: .*no row for dialogue 'q9xx'; rows: q1ec1/", capsys.readouterr().err)
    with pytest.raises(SystemExit):
        run_cli(["simulate", "maptask", "--render", "wav"])
    assert "argument --render: unknown wav; choose from tts, tone" in capsys.readouterr().err


def test_real_maptask_dialogue(corpora_root, tmp_path):
    d = read_maptask_dialogue(corpora_root / "maptask", "q7ec1")
    sim = simulate(d, "f", out_dir=tmp_path, model=stub_listener([20]), render="tone", seconds=10.0,
                   sample_rate=SR)
    report = json.loads(sim.json.read_text())
    assert report["corpus"] == "maptask" and report["n_frames"] == 125
    assert [b["frame"] for b in report["backchannels"]] == [20]
    x, _ = sf.read(sim.wav)
    assert rms(x[:, 0]) > 0.01  # the giver speaks in the first 10 s


def test_checkpoint_weights_are_loaded_and_named(demo, tmp_path):
    modules = pytest.importorskip("backchannel.train.modules")
    from backchannel.plugin.features import StreamingFeatures

    from backchannel.backbones.timing import TimingBackbone, TimingConfig, VAPHead
    from backchannel.head import TimingHead
    from backchannel.text import TextTokenizer

    torch.manual_seed(1)
    cfg = TimingConfig(d_model=16, n_layers=1, n_heads=2, window=16, vocab_size=512, text_k=2)
    backbone, head = TimingBackbone(cfg).eval(), TimingHead(16, hidden=8).eval()
    state = {**{f"backbone.{k}": v for k, v in backbone.state_dict().items()},
             **{f"vap.{k}": v for k, v in VAPHead(16).state_dict().items()},
             **{f"head.{k}": v for k, v in head.state_dict().items()}}
    meta = {"format": modules.CHECKPOINT_FORMAT, "kind": "head", "backbone": "timing",
            "backbone_config": asdict(cfg), "head_config": {"input_dim": 16, "hidden": 8, "kind": "gru"}}
    ckpt = tmp_path / "head.ckpt"
    torch.save({"backchannel": meta, "state_dict": state}, ckpt)

    policy = Policy(on=0.3)
    sim = simulate(demo["row"], out_dir=tmp_path / "sim", checkpoint=ckpt, policy=policy, render="tone",
                   seconds=8.0)
    assert sim.weights.startswith(f"checkpoint {ckpt} (sha256 ") and "backbone timing" in sim.weights
    same = StreamingListener(backbone, head, Policy(on=0.3), deadline_s=60.0,
                             features=StreamingFeatures(tokenizer=TextTokenizer(512, 2)))
    assert sim.decisions == run_offline(same, slice_row(demo["row"], 0.0, 8.0))
    assert json.loads(sim.json.read_text())["weights"] == sim.weights
