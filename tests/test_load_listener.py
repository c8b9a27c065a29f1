"""``load_listener``: a streaming listener from a head checkpoint (``backchannel train head``) decides
exactly what the offline evaluation path (``Predictor``) gives on the same row, and bad checkpoints
get clear errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from backchannel.corpora.dataset import build_dataset, load_prepared
from backchannel.corpora.demo import make_demo_corpus
from backchannel.corpora.maptask import load_maptask
from backchannel.plugin.features import StreamingFeatures
from backchannel.plugin.listener import StreamingListener, load_listener, run_offline
from backchannel.train.cli import run
from backchannel.train.modules import CheckpointError, load_checkpoint
from backchannel.train.predict import load_predictor
from test_listener import NO_DEADLINE, safe_threshold
from test_train import config, head_args

from backchannel.cli import main as cli_main
from backchannel.frames import FRAME_S
from backchannel.policy import Policy
from backchannel.text import TextTokenizer

N_FRAMES = 400  # frames replayed (32 s): 25 times the tiny backbone's 16-frame attention window


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A 3-dialogue demo dataset, a tiny pretrained backbone and a tiny head trained on it (as
    ``tests/test_train.py`` does), reading the frame inputs and the floor context too (``context``: its
    state rides in the head state, so the streaming replays below cover it)."""
    root = tmp_path_factory.mktemp("load_listener")
    dialogues = list(load_maptask(make_demo_corpus(root / "src", n_dialogues=3)))
    for d in dialogues:
        d.corpus = "demo"
    build_dataset(dialogues, root / "demo", corpus="demo", progress=False)
    run("backbone", ["--config", config("tiny_backbone"), "--data.corpora", f"[{root / 'demo'}]",
                     "--trainer.default_root_dir", str(root / "bb")])
    w = {"root": root, "data": root / "demo", "backbone": root / "bb" / "checkpoints" / "last.ckpt"}
    run("head", head_args(w, "head", "--model.direct", "true", "--model.context", "true"))
    return w | {"head": root / "head" / "checkpoints" / "last.ckpt"}


def crop(row: dict, n: int) -> dict:
    """The first ``n`` frames of a dataset row (per-frame columns cut, ``n_frames`` set)."""
    total = row["n_frames"]
    out = {k: (v[:n] if isinstance(v, list) and len(v) == total else v) for k, v in row.items()}
    return out | {"n_frames": n}


def test_loaded_listener_equals_offline_predictions(work):
    pred = load_predictor(work["head"])
    rows = load_prepared(work["data"])[0]["test"]
    row = crop(dict(max(rows, key=lambda r: len(r["bc_onsets"]))), N_FRAMES)  # the follower listens
    assert sum(bool(t) for t in row["text_speaker"]) > 20  # the text stream is exercised
    probs = pred.predict_row(row)["action_probs"].astype(np.float64)  # offline: whole row, batched
    smoothing, refractory = 3, 0.8
    s = Policy(smoothing=smoothing).smooth(probs)
    on = safe_threshold(s[:, 1], 0.8)
    policy = Policy(on=on, smoothing=smoothing, refractory=refractory, take_turn=None)
    onsets = policy.run(probs).backchannel_onsets  # what evaluation decides on the offline probabilities
    assert len(onsets) >= 3

    listener = load_listener(work["head"], policy, deadline_s=NO_DEADLINE)
    assert isinstance(listener, StreamingListener)
    assert listener.checkpoint["checkpoint_sha256"] == pred.sha256 and listener.checkpoint["backbone"] == "timing"
    assert listener.features.tokenizer.k == pred.meta["backbone_config"]["text_k"]
    assert not listener.head.training and not listener.backbone.training
    assert listener.head.context and listener.head_state.shape[-1] == listener.head.hidden + 6
    decisions = run_offline(listener, row)

    assert [d.frame for d in decisions] == list(range(N_FRAMES)) and not any(d.fault for d in decisions)
    np.testing.assert_allclose([d.probability for d in decisions], s[:, 1], atol=1e-5, rtol=0)
    got = np.array([d.time for d in decisions if d.action == "BACKCHANNEL"])
    np.testing.assert_array_equal(got, onsets)
    bc = set(np.round(onsets / FRAME_S).astype(int) - 1)
    assert [d.action for d in decisions] == ["BACKCHANNEL" if t in bc else "SILENT" for t in range(N_FRAMES)]
    # the same decisions as a listener built by hand from the predictor's own backbone and head
    by_hand = StreamingListener(pred.backbone, pred.head, policy, deadline_s=NO_DEADLINE,
                                features=StreamingFeatures(tokenizer=pred.tokenizer))
    assert run_offline(by_hand, row) == decisions


def test_default_policy_and_features_checks(work):
    listener = load_listener(work["head"])
    assert listener.policy == Policy() and listener.deadline_s == 0.02
    d = listener.step({"va_listener": 0.0, "va_speaker": 1.0, "text_speaker": "go left"})
    # a first frame on a busy machine may miss the 20 ms deadline: its probabilities still come back
    assert d.frame == 0 and d.fault in (None, "deadline") and 0.0 < d.probability < 1.0
    k = listener.features.tokenizer.k
    with pytest.raises(ValueError, match=rf"head.*last\.ckpt: the backbone reads text .*\(\d+, {k}\).*"
                                         rf"\(\d+, {k + 1}\)"):
        load_listener(work["head"], features=StreamingFeatures(tokenizer=TextTokenizer(k=k + 1)))


def test_bad_checkpoints_get_clear_errors(work, tmp_path):
    with pytest.raises(CheckpointError, match=r"missing\.ckpt: no such checkpoint file"):
        load_listener(tmp_path / "missing.ckpt")
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(work["head"].read_bytes()[:2000])
    with pytest.raises(CheckpointError, match=r"truncated\.ckpt: not a readable PyTorch checkpoint"):
        load_listener(truncated)
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(CheckpointError, match=r"foreign\.ckpt: not a backchannel checkpoint"):
        load_listener(foreign)
    with pytest.raises(CheckpointError, match=r"last\.ckpt: is a backbone checkpoint, expected a head checkpoint"):
        load_listener(work["backbone"])


class _Payload:
    """A pickled object whose unpickling creates ``marker`` (what a hostile checkpoint would do)."""

    def __init__(self, marker, how: str):
        self.marker, self.how = str(marker), how

    def __reduce__(self):
        if self.how == "system":
            import os

            return os.system, (f"touch {self.marker}",)
        return open, (self.marker, "w")


@pytest.mark.parametrize("how", ["system", "open"])
@pytest.mark.parametrize("where", ["meta", "state_dict", "whole"])
def test_a_checkpoint_cannot_run_code(work, tmp_path, capsys, how, where):
    marker = tmp_path / "pwned"
    ckpt = torch.load(work["head"], map_location="cpu", weights_only=True)
    if where == "meta":
        ckpt["backchannel"]["config"] = _Payload(marker, how)
    elif where == "state_dict":
        ckpt["state_dict"]["head.action.bias"] = _Payload(marker, how)
    else:
        ckpt = _Payload(marker, how)
    hostile = tmp_path / "hostile.ckpt"
    torch.save(ckpt, hostile)
    refused = r"hostile\.ckpt: refused: it holds a pickled Python object \((posix\.system|io\.open)\)"
    for load in (load_listener, load_predictor, load_checkpoint):
        with pytest.raises(CheckpointError, match=refused):
            load(hostile)
        assert not marker.exists()
    # the CLI paths: evaluate, and resuming a training run (one error line, exit 2)
    assert cli_main(["evaluate", str(work["data"]), "--checkpoint", str(hostile), "--out", str(tmp_path / "ev")]) == 2
    assert cli_main(["train", "head", "--config", config("tiny_head"), "--ckpt_path", str(hostile)]) == 2
    err = capsys.readouterr().err
    assert err.count(f"error: {hostile}: refused") == 2 and "Traceback" not in err
    assert not marker.exists()


def test_non_finite_weights_are_refused_at_load(work, tmp_path):
    for kind, src, tensor, value in (("head", work["head"], "head.action.weight", float("nan")),
                                     ("backbone", work["backbone"], "backbone.features.scale", float("inf"))):
        ckpt = torch.load(src, map_location="cpu", weights_only=True)
        assert tensor in ckpt["state_dict"], sorted(ckpt["state_dict"])
        ckpt["state_dict"][tensor].view(-1)[0] = value
        bad = tmp_path / f"{kind}_nan.ckpt"
        torch.save(ckpt, bad)
        with pytest.raises(CheckpointError, match=rf"{kind}_nan\.ckpt: tensor {tensor} holds 1 non-finite value"):
            load_checkpoint(bad, kind=kind)
    with pytest.raises(CheckpointError, match=r"head_nan\.ckpt: tensor head\.action\.weight"):
        load_listener(tmp_path / "head_nan.ckpt")


def test_evaluation_onsets_equal_streaming_replays_on_real_maptask(work, corpora_root, tmp_path):
    """What ``backchannel evaluate`` scores is what ships: the head's test onsets (backchannels and take-turns)
    for the dev-tuned policy, loaded back with ``Policy.from_report``, equal a ``StreamingListener`` replay of
    the same real Map Task rows, frame for frame."""
    from backchannel.corpora.maptask import read_maptask_dialogue
    from backchannel.evaluation.data import load_rows
    from backchannel.evaluation.run import EvalSettings, evaluate_corpus
    from backchannel.evaluation.tuning import PolicyGrid

    dialogues = [read_maptask_dialogue(corpora_root / "maptask", d).with_split(s)
                 for d, s in (("q6ec1", "dev"), ("q7ec1", "test"))]
    build_dataset(dialogues, tmp_path / "mt", corpus="maptask", progress=False)
    dsd, _ = load_prepared(tmp_path / "mt")
    dev, test = (load_rows(dsd[s], progress=False) for s in ("dev", "test"))
    settings = EvalSettings(grid=PolicyGrid(smoothing=(1, 3), lead=(0.0, 0.16, 0.32)), seeds=(0,))
    section, extras = evaluate_corpus("maptask", dev, test, predictor=load_predictor(work["head"]),
                                      systems=["head"], settings=settings, progress=False)
    ext = extras["head"]
    report = {"corpora": {"maptask": section}}
    policy = Policy.from_report(report, "maptask", variant=ext["variant"])
    assert policy.take_turn is not None and policy == ext["policy"]
    listener = load_listener(work["head"], policy, deadline_s=NO_DEADLINE)
    said = taken = 0
    for i, row in enumerate(test):
        decisions = run_offline(listener, row)
        assert not any(d.fault for d in decisions)
        bc = [d.time for d in decisions if d.action == "BACKCHANNEL"]
        actions = np.array([d.action == "TAKE_TURN" for d in decisions])
        tt = [decisions[t].time for t in np.flatnonzero(actions & ~np.r_[False, actions[:-1]])]
        np.testing.assert_array_equal(bc, ext["onsets"][ext["variant"]][i])
        np.testing.assert_array_equal(tt, ext["take_turn_onsets"][i])
        said, taken = said + len(bc), taken + len(tt)
    assert said > 0 and taken > 0  # both kinds of decision were compared


def test_a_calibrated_listener_keeps_its_calibration_across_sessions(work):
    rows = load_prepared(work["data"])[0]["test"]
    row = crop(dict(rows[0]), 120)
    base = Policy(on=0.3, smoothing=2, refractory=0.4, take_turn=None)
    listener = load_listener(work["head"], base, target_rate=6.0, deadline_s=NO_DEADLINE)
    assert listener.policy.target_rate == 6.0 and listener.policy.on == base.on  # no sessions: warm-up at `on`
    run_offline(listener, row)
    cal = listener.policy_state.calibration
    assert cal.seen == 120
    run_offline(listener, row)  # a new session (reset): the same deployment's calibration goes on counting
    assert listener.policy_state.calibration is cal and cal.seen == 240
    listener.policy = Policy(on=0.3, target_rate=6.0, calibration_window=60.0)  # another window: a fresh one
    listener.reset()
    assert listener.policy_state.calibration.seen == 0
    assert load_listener(work["head"], base).policy_state.calibration is None
