"""Training: backbone inputs of a row, crops, VAP pretraining + head training end to end on a tiny demo
dataset, resuming, checkpoint checks, the feature cache, and the Predictor (shapes, causality)."""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from backchannel.corpora.dataset import build_dataset, load_prepared
from backchannel.corpora.demo import make_demo_corpus
from backchannel.corpora.maptask import load_maptask
from backchannel.train.cli import main as cli_main
from backchannel.train.cli import register, run, summary
from backchannel.train.data import (
    CachedRow,
    CropSampler,
    FeatureCrops,
    HeadDataModule,
    RowStore,
    VAPCrops,
    add_floor_context,
    build_feature_cache,
    collate_features,
    extract_features,
    hangover_of,
    vad_hangover,
)
from backchannel.train.modules import CheckpointError, HeadModule, load_checkpoint
from backchannel.train.predict import load_predictor

from backchannel.backbones.timing import vap_targets
from backchannel.inputs import FrameInputs
from backchannel.text import TextTokenizer


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A 3-dialogue demo dataset (train/dev/test one dialogue each) and a tiny pretrained backbone."""
    root = tmp_path_factory.mktemp("train")
    dialogues = list(load_maptask(make_demo_corpus(root / "src", n_dialogues=3)))
    for d in dialogues:
        d.corpus = "demo"
    build_dataset(dialogues, root / "demo", corpus="demo", progress=False)
    cli = run("backbone", ["--config", config("tiny_backbone"),
                           "--data.corpora", f"[{root / 'demo'}]", "--trainer.default_root_dir", str(root / "bb")])
    return {"root": root, "data": root / "demo", "backbone": root / "bb" / "checkpoints" / "last.ckpt",
            "steps": cli.trainer.global_step}


def config(name: str) -> str:
    return str(Path(__file__).parents[1] / "train" / "configs" / f"{name}.yaml")


def head_args(work, out: str, *extra: str) -> list[str]:
    return ["--config", config("tiny_head"), "--model.backbone_ckpt", str(work["backbone"]),
            "--data.corpora", f"[{work['data']}]", "--data.cache_dir", str(work["root"] / "cache"),
            "--trainer.default_root_dir", str(work["root"] / out), *extra]


@pytest.fixture(scope="module")
def head_ckpt(work):
    run("head", head_args(work, "head"))
    return work["root"] / "head" / "checkpoints" / "last.ckpt"


# --------------------------------------------------------------------------- inputs and crops

def test_frame_inputs_of_a_hand_built_row():
    tok = TextTokenizer()
    row = {"corpus": "x", "dialogue": "d", "listener": "f", "n_frames": 3, "va_listener": [0.0, 0.5, 1.0],
           "va_speaker": [1.0, 0.25, 0.0], "prosody": np.zeros((0, 8)), "prosody_mask": np.zeros((0, 8), bool),
           "text_listener": ["", "", "okay"], "text_speaker": ["go left", "", ""]}
    x = FrameInputs.from_row(row, tok)
    assert x["va_listener"].tolist() == [0.0, 0.5, 1.0] and x["va_speaker"].tolist() == [1.0, 0.25, 0.0]
    assert x["prosody"].shape == (3, 8) and not x["prosody_mask"].any()  # audio-less: all masked
    assert x["text_ids"].shape == (3, 2, 2)
    assert x["text_ids"][0, 1].tolist() == [tok.word_id("go"), tok.word_id("left")]
    assert x["text_ids"][2, 0].tolist() == [tok.word_id("okay"), 0]
    assert x["text_ids"][1].sum() == 0
    assert "text_ids" not in FrameInputs.from_row(row)
    assert tok.encode_pair(row["text_listener"], row["text_speaker"]).tolist() == \
        TextTokenizer().encode_pair(row["text_listener"], row["text_speaker"]).tolist()  # memoised: same ids
    with pytest.raises(ValueError, match="n_frames is 4"):
        FrameInputs.from_row({**row, "n_frames": 4})
    compact = FrameInputs.from_row(row, tok, compact=True)  # the training store: absent prosody kept as None
    assert compact.prosody is None and compact.text_ids.dtype == torch.int16
    assert torch.equal(compact.crop(0, 3)["prosody_mask"], x["prosody_mask"])
    assert torch.equal(compact.crop(1, 3)["text_ids"], x["text_ids"][1:3])
    with pytest.raises(ValueError, match=r"va_speaker must be finite fractions in \[0, 1\], got 1.5 at frame 1"):
        FrameInputs.from_row({**row, "va_speaker": [0.0, 1.5, 0.0]})


def test_crop_sampler_is_deterministic_and_in_bounds():
    lengths, corpora = [300, 120, 800], ["a", "a", "b"]
    s = CropSampler(lengths, corpora, batch_size=4, batches=5, min_frames=50, max_frames=100, extra=25, seed=3)
    first = list(s)
    assert len(first) == len(s) == 20
    assert list(s) == first
    s.set_epoch(1)
    assert list(s) != first
    for b in range(5):
        batch = first[4 * b: 4 * b + 4]
        assert len({length for _, _, length in batch}) == 1  # one crop length per batch
    for row, start, length in first:
        assert 50 <= length <= 100 and start >= 0 and start + length + 25 <= lengths[row]
    only_b = CropSampler(lengths, corpora, 2, 10, 50, 60, corpus_weights={"a": 0.0, "b": 1.0})
    assert {row for row, _, _ in only_b} == {2}


def test_vap_crop_targets_match_the_whole_row(work):
    store = RowStore([work["data"]], "train", TextTokenizer(), progress=False)
    row = store.rows[0]
    full = vap_targets(row.va_listener, row.va_speaker)
    item = VAPCrops(store)[(0, 100, 200)]
    assert item["inputs"]["va_listener"].shape == (200,) and item["inputs"]["text_ids"].shape == (200, 2, 2)
    assert torch.equal(item["vap"], full[100:300])  # the 25 frames after the crop give every target
    assert (full[100:300] >= 0).all()


# --------------------------------------------------------------------------- training, resume, checkpoints

def test_pretrain_checkpoint_carries_config_manifest_metrics(work):
    assert work["steps"] == 2
    ckpt = load_checkpoint(work["backbone"], kind="backbone")
    meta = ckpt["backchannel"]
    _, manifest = load_prepared(work["data"])
    assert meta["manifests"]["demo"]["fingerprint"] == manifest["fingerprint"]
    assert meta["backbone_config"]["d_model"] == 16 and meta["config"]["model"]["d_model"] == 16
    assert meta["config"]["run"]["trainer"]["max_steps"] == 2
    assert "val/loss" in meta["metrics"] and meta["global_step"] == 2


def test_resume_continues_the_step_count(work, tmp_path):
    ckpt = tmp_path / "start.ckpt"
    shutil.copy(work["backbone"], ckpt)
    cli = run("backbone", ["--config", config("tiny_backbone"), "--data.corpora", f"[{work['data']}]",
                           "--trainer.default_root_dir", str(tmp_path / "resumed"), "--trainer.max_steps", "4"],
              ckpt_path=str(ckpt))
    assert cli.trainer.global_step == 4  # 2 restored + 2 new, not 4 new
    saved = torch.load(tmp_path / "resumed" / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["global_step"] == 4 and saved["backchannel"]["global_step"] == 4
    assert len(saved["optimizer_states"][0]["state"]) > 0


def test_bad_checkpoints_get_clear_errors(work, head_ckpt, tmp_path, capsys):
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(work["backbone"].read_bytes()[:2000])
    with pytest.raises(CheckpointError, match=r"truncated\.ckpt: not a readable PyTorch checkpoint"):
        load_checkpoint(truncated)
    text = tmp_path / "notes.ckpt"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match=r"notes\.ckpt: not a readable"):
        load_checkpoint(text)
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(CheckpointError, match=r"foreign\.ckpt: not a backchannel checkpoint"):
        load_checkpoint(foreign)
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        load_checkpoint(tmp_path / "missing.ckpt")
    with pytest.raises(CheckpointError, match="is a backbone checkpoint, expected a head checkpoint"):
        load_predictor(work["backbone"])
    # weights that do not fit the recorded config: the head's input dim edited
    ckpt = torch.load(head_ckpt, weights_only=True)
    ckpt["backchannel"]["head_config"]["input_dim"] = 32
    wrong_dim = tmp_path / "wrong_dim.ckpt"
    torch.save(ckpt, wrong_dim)
    with pytest.raises(CheckpointError, match=r"wrong_dim\.ckpt: weights do not match .*input_dim 32"):
        load_predictor(wrong_dim)
    # a head config pointing at a head checkpoint as its backbone
    with pytest.raises(CheckpointError, match="is a head checkpoint, expected a backbone"):
        run("head", head_args(work, "h2", "--model.backbone_ckpt", str(head_ckpt)))
    # resuming a backbone run whose config has another size
    rc = cli_main(["backbone", "--config", config("tiny_backbone"), "--data.corpora", f"[{work['data']}]",
                   "--model.d_model", "32", "--ckpt_path", str(work["backbone"]),
                   "--trainer.default_root_dir", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert rc == 2 and str(work["backbone"]) in err and "backbone config" in err
    # resuming a head run on another backbone (the raw ablation)
    with pytest.raises(CheckpointError, match="trained with backbone 'timing', the config uses 'raw'"):
        run("head", head_args(work, "h3", "--model.backbone", "raw"), ckpt_path=str(head_ckpt))


def test_feature_cache_reuse_and_invalidation(work, tmp_path):
    backbone = load_predictor_backbone(work["backbone"])
    ds = build_feature_cache(backbone, "timing", "hash-a", work["data"], "dev", tmp_path, progress=False)
    path = Path(ds.cache_files[0]["filename"])
    rows = list(load_prepared(work["data"])[0]["dev"])
    expect = [hidden for hidden, _ in extract_features(backbone, rows, TextTokenizer())]
    got = ds.with_format("numpy")[0]["features"]
    assert ds.features["features"].dtype == "float16" and got.shape == expect[0].shape
    np.testing.assert_allclose(got.astype(np.float32), expect[0], atol=2e-3, rtol=2e-3)
    assert ds[0]["bc_onsets"] == rows[0]["bc_onsets"]
    stamp = path.stat().st_mtime_ns

    class Exploding(torch.nn.Module):  # re-use must not run the backbone at all
        hidden_size = backbone.hidden_size

        def forward(self, inputs):
            raise AssertionError("backbone ran although the cache key matched")

    again = build_feature_cache(Exploding(), "timing", "hash-a", work["data"], "dev", tmp_path, progress=False)
    assert Path(again.cache_files[0]["filename"]) == path and path.stat().st_mtime_ns == stamp
    other = build_feature_cache(backbone, "timing", "hash-b", work["data"], "dev", tmp_path, progress=False)
    assert Path(other.cache_files[0]["filename"]).parent != path.parent  # new checkpoint hash: new cache
    # a re-prepared corpus (new manifest fingerprint) invalidates the cache
    copy = tmp_path / "demo_copy"
    shutil.copytree(work["data"], copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["fingerprint"] = "0" * 64
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(AssertionError, match="backbone ran"):
        build_feature_cache(Exploding(), "timing", "hash-a", copy, "dev", tmp_path, progress=False)
    assert not list(tmp_path.glob(".*.tmp"))  # the failed build left nothing half-written


def load_predictor_backbone(path):
    from backchannel.train.modules import build_from_meta

    ckpt = load_checkpoint(path, kind="backbone")
    return build_from_meta(ckpt["backchannel"], ckpt["state_dict"])["extractor"]


# --------------------------------------------------------------------------- predictor

def test_predictor_shapes_and_describe(work, head_ckpt):
    pred = load_predictor(head_ckpt)
    rows = list(load_prepared(work["data"])[0]["test"])
    out = pred.predict_rows(rows)
    assert len(out) == len(rows)
    for row, o in zip(rows, out):
        n = row["n_frames"]
        assert o["action_probs"].shape == (n, 3) and o["action_probs"].dtype == np.float32
        assert o["type_probs"].shape == (n, 5) and o["type_probs"].dtype == np.float32
        assert o["vap_p_shift"].shape == (n,) and o["vap_p_shift"].dtype == np.float32
        np.testing.assert_allclose(o["action_probs"].sum(1), 1.0, atol=1e-5)
        assert ((o["vap_p_shift"] >= 0) & (o["vap_p_shift"] <= 1)).all()
    d = pred.describe()
    assert d["backbone"] == "timing" and {k: d["head_config"][k] for k in ("input_dim", "hidden", "kind")} == {"input_dim": 16, "hidden": 8, "kind": "gru"}
    assert len(d["checkpoint_sha256"]) == 64 and "demo" in d["corpora"]


def test_predictor_is_causal(work, head_ckpt):
    pred = load_predictor(head_ckpt)
    row = dict(load_prepared(work["data"])[0]["test"][0])
    t0 = 400
    changed = dict(row)
    changed["va_speaker"] = list(row["va_speaker"][:t0]) + [1.0 - v for v in row["va_speaker"][t0:]]
    changed["text_speaker"] = list(row["text_speaker"][:t0]) + ["right okay"] * (row["n_frames"] - t0)
    a, b = pred.predict_rows([row, changed])
    for key in ("action_probs", "type_probs", "vap_p_shift"):
        np.testing.assert_allclose(a[key][:t0], b[key][:t0], atol=1e-6)
        assert not np.allclose(a[key][t0:], b[key][t0:], atol=1e-4)


def test_batched_prediction_equals_one_row_at_a_time(work, head_ckpt):
    """Rows of different lengths padded into one batch give the same outputs as each row alone."""
    pred = load_predictor(head_ckpt)
    rows = [dict(r) for r in load_prepared(work["data"])[0]["test"]]
    short = dict(rows[0])
    for k in ("va_listener", "va_speaker", "text_listener", "text_speaker", "action", "bc_type"):
        short[k] = list(short[k][:300])
    short["n_frames"] = 300
    batch = pred.predict_rows(rows + [short])  # one forward pass, end-padded
    alone = [pred.predict_rows([r], max_batch_frames=1)[0] for r in rows + [short]]
    assert batch[-1]["action_probs"].shape == (300, 3)
    for a, b in zip(batch, alone):
        for key in ("action_probs", "type_probs", "vap_p_shift"):
            np.testing.assert_allclose(a[key], b[key], atol=1e-5)
    np.testing.assert_allclose(batch[-1]["action_probs"], alone[0]["action_probs"][:300], atol=1e-5)  # causal


def test_raw_feature_head_has_no_vap(work):
    run("head", head_args(work, "raw", "--model.backbone", "raw", "--model.backbone_ckpt", "null"))
    pred = load_predictor(work["root"] / "raw" / "checkpoints" / "last.ckpt")
    row = load_prepared(work["data"])[0]["test"][0]
    out = pred.predict_rows([row])[0]
    assert out["vap_p_shift"] is None and out["action_probs"].shape == (row["n_frames"], 3)
    assert pred.describe()["head_config"]["input_dim"] == 18  # FrameFeatures: 2 VA + 8 prosody + 8 mask


def test_register_passes_lightning_overrides_through():
    top = argparse.ArgumentParser()
    register(top.add_subparsers(dest="command"))
    args = top.parse_args(["train", "head", "--config", "head_timing", "--trainer.max_epochs", "3",
                           "--data.corpora", "[a, b]", "--ckpt_path", "last.ckpt", "--model.lr=0.01"])
    assert args.train_command == "head" and args.config == "head_timing" and args.ckpt_path == "last.ckpt"
    assert args.overrides == ["--trainer.max_epochs", "3", "--data.corpora", "[a, b]", "--model.lr=0.01"]


def test_label_counts_leave_out_masked_frames():
    # frames labelled -1 (a non-isolated backchannel's masked frames) have no class: 2 SILENT, 1 BC, 1 TT
    dm = HeadDataModule(["unused"])
    z = np.zeros(0)
    dm.train_rows = [CachedRow("c", "d", "A", np.zeros((6, 2), np.float16), np.array([0, -1, -1, 1, 2, 0]), z, z)]
    assert dm.label_counts().tolist() == [2, 1, 1]


def test_type_weights_come_from_the_backchannel_frames_of_the_train_rows():
    # type labels count on BACKCHANNEL frames only (the type loss's frames): 3 continuer, 1 agreement, none else;
    # the SILENT frame's type 1 and the masked frame's type 3 do not count
    dm = HeadDataModule(["unused"])
    z = np.zeros(0)
    action = np.array([1, 1, 1, 1, 0, -1, 2])
    bc_type = np.array([0, 0, 1, 0, 1, 3, -1])
    dm.train_rows = [CachedRow("c", "d", "A", np.zeros((7, 2), np.float16), action, bc_type, z)]
    assert dm.type_counts().tolist() == [3, 1, 0, 0, 0]
    # (N / (C n_c)) ** 0.5 with N = 4, C = 5: continuer (4/15) ** 0.5, agreement (4/5) ** 0.5, unseen types 0
    expected = [(4 / 15) ** 0.5, (4 / 5) ** 0.5, 0.0, 0.0, 0.0]
    module = HeadModule(backbone="raw", type_weights="inverse")
    module.trainer = SimpleNamespace(datamodule=dm)
    dm.label_counts = lambda: np.array([2, 4, 1])
    module.setup("fit")
    assert module.type_weight.tolist() == pytest.approx(expected)
    # the action classes from their counts [2, 4, 1] the same way: (7 / (3 n_c)) ** 0.5
    assert module.class_weight.tolist() == pytest.approx([(7 / 6) ** 0.5, (7 / 12) ** 0.5, (7 / 3) ** 0.5])
    assert "type_weight" not in module.state_dict()   # checkpoints without it (older heads) still load
    balanced = HeadModule(backbone="raw", type_weights="balanced")   # power 1: 4/15 and 4/5
    balanced.trainer = SimpleNamespace(datamodule=dm)
    balanced.setup("fit")
    assert balanced.type_weight.tolist() == pytest.approx([4 / 15, 4 / 5, 0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="type_weights must be 'inverse', 'balanced' or None"):
        HeadModule(backbone="raw", type_weights="uniform")


# --------------------------------------------------------------------------- time cap, end of run, CLI

class FakeClock:
    """Stands in for the ``time`` module of Lightning's Timer: each reading advances 1 s."""

    def __init__(self):
        self.now = 0.0

    def monotonic(self):
        self.now += 1.0
        return self.now


def test_time_cap_ends_validated_with_a_best_ckpt(work, tmp_path, monkeypatch):
    """A 10 s cap (fake clock) stops the run within its first epochs, where check_val_every_n_epoch 6 would
    validate first at step 12: the run still ends validated at its last step, and best.ckpt holds that."""
    import lightning.pytorch.callbacks.timer as timer_module

    monkeypatch.setattr(timer_module, "time", FakeClock())
    out = tmp_path / "capped"
    cli = run("head", ["--config", config("tiny_head"), "--model.backbone_ckpt", str(work["backbone"]),
                       "--data.corpora", f"[{work['data']}]", "--data.cache_dir", str(work["root"] / "cache"),
                       "--trainer.default_root_dir", str(out), "--trainer.max_epochs", "12",
                       "--trainer.check_val_every_n_epoch", "6", "--trainer.max_time", "{seconds: 10}"])
    step = cli.trainer.global_step
    assert cli.final_validation.capped and 0 < step < 12  # stopped by the cap before any scheduled validation
    assert cli.final_validation.validated_step == step
    meta = load_checkpoint(out / "checkpoints" / "best.ckpt", kind="head")["backchannel"]
    assert meta["global_step"] == step and "dev/bc_event_f1" in meta["metrics"]
    assert cli.trainer.check_val_every_n_epoch == 6  # the config's schedule is restored
    assert "time cap" in summary(cli) and f"last validation at step {step}" in summary(cli)


def test_final_validation_stops_when_the_time_left_is_shorter_than_a_validation(monkeypatch):
    """After a 30 s validation, a run with 20 s left under its cap stops now (the final validation fits);
    with 40 s left it goes on."""
    import lightning.pytorch.callbacks.timer as timer_module
    from backchannel.train.modules import FinalValidation
    from lightning.pytorch.callbacks import Timer

    clock = FakeClock()
    monkeypatch.setattr(timer_module, "time", clock)
    timer = Timer(duration={"seconds": 100})
    timer.on_train_start(None, None)  # starts at clock 1 s
    progress = SimpleNamespace(is_last_batch=False)
    trainer = SimpleNamespace(callbacks=[timer], should_stop=False, max_epochs=12, max_steps=-1, global_step=5,
                              current_epoch=0, enable_validation=True, check_val_every_n_epoch=3,
                              fit_loop=SimpleNamespace(epoch_loop=SimpleNamespace(batch_progress=progress)))
    fv = FinalValidation()
    fv.val_s, fv.validated_step = 30.0, 3
    clock.now = 1.0 + 100 - 40 - 1  # the next reading: 40 s left
    fv.on_train_batch_end(trainer)
    assert not trainer.should_stop and trainer.check_val_every_n_epoch == 3
    clock.now = 1.0 + 100 - 20 - 1  # 20 s left
    fv.on_train_batch_end(trainer)
    assert trainer.should_stop and fv.capped and trainer.check_val_every_n_epoch is None  # validate now
    trainer.sanity_checking = False
    fv.on_validation_start(trainer, None)
    fv.on_validation_end(trainer, None)
    assert fv.validated_step == 5 and trainer.check_val_every_n_epoch == 3


def test_a_run_without_validation_still_writes_best_ckpt(work, tmp_path, capsys):
    """No dev batches (limit_val_batches 0): no monitored metric is ever logged; best.ckpt is the final
    weights, and the end-of-run summary says so."""
    out = tmp_path / "noval"
    rc = cli_main(["head", "--config", config("tiny_head"), "--model.backbone_ckpt", str(work["backbone"]),
                   "--data.corpora", f"[{work['data']}]", "--data.cache_dir", str(work["root"] / "cache"),
                   "--trainer.default_root_dir", str(out), "--trainer.limit_val_batches", "0"])
    printed = capsys.readouterr().out
    best, last = out / "checkpoints" / "best.ckpt", out / "checkpoints" / "last.ckpt"
    assert rc == 0 and best.is_file() and last.is_file()
    assert load_checkpoint(best, kind="head")["backchannel"]["global_step"] == 2
    assert f"best.ckpt: {best} (final weights: no dev/bc_event_f1 was logged)" in printed
    assert f"last.ckpt: {last}" in printed and "no validation ran" in printed


def test_train_prints_metrics_and_checkpoint_paths(work, tmp_path, capsys):
    out = tmp_path / "printed"
    assert cli_main(["head", "--config", config("tiny_head"), "--model.backbone_ckpt", str(work["backbone"]),
                     "--data.corpora", f"[{work['data']}]", "--data.cache_dir", str(work["root"] / "cache"),
                     "--trainer.default_root_dir", str(out)]) == 0
    printed = capsys.readouterr().out
    meta = load_checkpoint(out / "checkpoints" / "best.ckpt", kind="head")["backchannel"]
    f1 = meta["metrics"]["dev/bc_event_f1"]
    assert f"best.ckpt: {out / 'checkpoints' / 'best.ckpt'} (dev/bc_event_f1 {f1:.4f})" in printed
    assert f"last.ckpt: {out / 'checkpoints' / 'last.ckpt'}" in printed
    assert f"dev/bc_event_f1              {f1:.4f}" in printed
    assert "training done: 2 steps, 1 epoch(s); trainer.max_epochs=1 done" in printed


@pytest.mark.parametrize("extra, expect", [
    (["--model.hiden", "3"], "unrecognized arguments: --model.hiden 3"),
    (["--model.hidden", "abc"], 'Parser key "model.hidden"'),
    (["--model.schedule", "fast"], 'Parser key "model.schedule"'),
    (["--model.class_weights", "[1, 2]"], "class_weights must be 'inverse', None or 3 numbers"),
    (["--model.backbone_ckpt", "nowhere/last.ckpt"],
     "nowhere/last.ckpt: no such backbone checkpoint (--model.backbone_ckpt)"),
])
def test_bad_arguments_are_one_line_naming_the_flag(work, tmp_path, capsys, extra, expect):
    rc = cli_main(["head", "--config", config("tiny_head"), "--data.corpora", f"[{work['data']}]",
                   "--data.cache_dir", str(tmp_path / "cache"), "--trainer.default_root_dir", str(tmp_path), *extra])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: ") and expect in lines[0], err
    assert not (tmp_path / "checkpoints").exists()


def test_train_needs_a_config_and_its_help_lists_lightning_options(capsys):
    assert cli_main(["head"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: backchannel train head: the --config argument is required") and "tiny_head" in err
    assert "\n" not in err
    assert cli_main(["head", "--help"]) == 0
    out = capsys.readouterr().out
    for option in ("--model.backbone_ckpt", "--model.hidden", "--data.corpora", "--data.cache_dir",
                   "--trainer.max_time", "--trainer.max_epochs", "--threads", "--ckpt_path"):
        assert option in out, option
    assert "--optimizer" not in out  # the modules configure their own optimizers


def test_heard_cache_carries_only_onset_targets_on_the_heard_rows(work, tmp_path):
    from backchannel.corpora.framing import heard_listener
    from backchannel.evaluation.user_onsets import onset_targets

    backbone = load_predictor_backbone(work["backbone"])
    plain = build_feature_cache(backbone, "timing", "h", work["data"], "dev", tmp_path, progress=False)
    heard = build_feature_cache(backbone, "timing", "h", work["data"], "dev", tmp_path, progress=False, heard=True)
    assert plain.cache_files[0]["filename"] != heard.cache_files[0]["filename"]  # its own key
    rows = list(load_prepared(work["data"])[0]["dev"])
    i = next(k for k, r in enumerate(rows) if len(r["bc_onsets"]))
    h = heard.with_format("numpy")[i]
    assert (h["action"] == -1).all() and (h["bc_type"] == -1).all()  # no action or type target
    assert h["onset"].tolist() == onset_targets(rows[i], "isolated" if "bc_isolated" in rows[i] else "all").tolist()
    want = heard_listener(rows[i])["va_listener"]
    np.testing.assert_allclose(h["va"][:, 0].astype(np.float32), want, atol=1e-3)
    assert (h["va"][:, 0].astype(np.float32) > plain.with_format("numpy")[i]["va"][:, 0] + 0.1).any()  # heard more


def test_vad_hangover_holds_speech_past_its_end_causally():
    va = np.array([0, 1, 1, 0.3, 0, 0, 0, 1, 0, 0], dtype=np.float32)
    assert vad_hangover(va, 0).tolist() == va.tolist()
    # voiced (>= 0.5) frames 1, 2, 7: two frames of hangover after each; frame 3's 0.3 becomes 1
    assert vad_hangover(va, 2).tolist() == [0, 1, 1, 1, 1, 0, 0, 1, 1, 1]
    changed = va.copy()
    changed[6:] = 0.0
    assert vad_hangover(va, 2)[:6].tolist() == vad_hangover(changed, 2)[:6].tolist()  # the future never matters
    draws = {hangover_of(0, ("d", i), (1, 2)) for i in range(40)}
    assert draws == {1, 2} and hangover_of(0, "x", (1, 2)) == hangover_of(0, "x", (1, 2))


def test_training_crops_see_the_floor_context_of_the_whole_session():
    """A context head's crop carries ``floor_context`` computed from the row's start (warm, as a session is at
    that frame), not restarted at the crop; the head reads it instead of recomputing from the crop."""
    from backchannel.head import TimingHead, floor_context

    rng = np.random.default_rng(0)
    n = 300
    va = np.stack([rng.random(n) > 0.7, rng.random(n) > 0.4], 1).astype(np.float16)
    row = CachedRow("demo", "d1", "f", rng.standard_normal((n, 6)).astype(np.float16), np.zeros(n, np.int64),
                    np.full(n, -1), np.zeros(0), va)
    add_floor_context([row])
    whole = floor_context(torch.from_numpy(va[None, :, 0].astype(np.float32)),
                          torch.from_numpy(va[None, :, 1].astype(np.float32)))[0][0]
    batch = collate_features([FeatureCrops([row])[(0, 200, 60)]])
    torch.testing.assert_close(batch["inputs"]["context"][0], whole[200:260])
    cold = floor_context(batch["inputs"]["va_listener"], batch["inputs"]["va_speaker"])[0][0]
    assert not torch.allclose(cold, whole[200:260])
    head = TimingHead(6, hidden=4, direct=True, context=True).eval()
    with torch.no_grad():
        warm_out = head(batch["features"], batch["inputs"]).action
        cold_out = head(batch["features"], {k: v for k, v in batch["inputs"].items() if k != "context"}).action
    assert not torch.allclose(warm_out, cold_out)
