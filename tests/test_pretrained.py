"""Model folders (``train.pretrained``, ``backchannel export``): a head saved as config.json + model.safetensors
(+ policy.json, MODEL_CARD.md) loads back with the same probabilities and decisions, through the one loading
path evaluation and ``load_listener`` use; bad folders get clear errors naming the file; nothing is unpickled;
the package data glob carries the model files into a wheel."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from backchannel.corpora.dataset import build_dataset, load_prepared
from backchannel.corpora.demo import make_demo_corpus
from backchannel.corpora.maptask import load_maptask
from backchannel.plugin.listener import decide_wav, load_listener, run_offline
from backchannel.train import pretrained
from backchannel.train.modules import CHECKPOINT_FORMAT, CheckpointError
from backchannel.train.predict import Predictor, load_predictor
from safetensors.torch import load_file, save_file

from backchannel.backbones.timing import TimingBackbone, TimingConfig, VAPHead
from backchannel.cli import main as cli_main
from backchannel.frames import FRAME_S
from backchannel.head import TimingHead
from backchannel.policy import Policy
from backchannel.text import tokenizer_for

ROOT = Path(__file__).resolve().parents[1]
NO_DEADLINE = 60.0  # s: a busy shared CPU must not turn a frame into a deadline fault
POLICY = Policy(on=0.34, smoothing=2, refractory=0.4, take_turn=0.4, lead=0.08)  # where decisions do not matter


def tiny_checkpoint(path: Path, seed: int = 0, words: str = "function") -> Path:
    """A head checkpoint as ``backchannel train head`` writes one (meta entry + state dict), with a tiny
    random-initialised text backbone, its VAP projection and a direct GRU head with the onset output."""
    torch.manual_seed(seed)
    cfg = TimingConfig(d_model=16, n_layers=1, n_heads=2, window=16, mlp_ratio=2, text_words=words)
    head = TimingHead(16, hidden=8, direct=True, text_vocab=cfg.vocab_size, text_dim=4, onset=True)
    with torch.no_grad():
        head.action.bias.copy_(torch.tensor([0.0, -0.3, -0.6]))  # some frames cross the policy's thresholds
    state = {}
    for prefix, module in (("backbone", TimingBackbone(cfg)), ("vap", VAPHead(16)), ("head", head)):
        state |= {f"{prefix}.{k}": v for k, v in module.state_dict().items()}
    meta = {"format": CHECKPOINT_FORMAT, "kind": "head", "backbone": "timing", "backbone_config": asdict(cfg),
            "text_fingerprint": tokenizer_for(asdict(cfg)).fingerprint, "head_config": head.config(),
            "config": {"model": {"hidden": 8}}, "manifests": {"maptask": {"fingerprint": "ab" * 32}},
            "backbone_manifests": {"maptask": {"fingerprint": "ab" * 32}, "mrda": {"fingerprint": "cd" * 32}},
            "metrics": {"dev/bc_event_f1": 0.25, "never": float("nan")}, "global_step": 7, "backbone_hash": "0" * 64}
    torch.save({"backchannel": meta, "state_dict": state, "epoch": 1}, path)
    return path


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    root = tmp_path_factory.mktemp("pretrained")
    dialogues = list(load_maptask(make_demo_corpus(root / "src", n_dialogues=3)))
    for d in dialogues:
        d.corpus = "demo"
    build_dataset(dialogues, root / "demo", corpus="demo", progress=False)
    rows = load_prepared(root / "demo")[0]
    row = dict(max((r for split in rows.values() for r in split), key=lambda r: len(r["bc_onsets"])))
    ckpt, row = tiny_checkpoint(root / "tiny.ckpt"), crop(row, 300)
    # a policy whose thresholds the random head's probabilities cross on this row (its top 10 % frames)
    probs = load_predictor(ckpt).predict_row(row)["action_probs"].astype(np.float64)
    smooth = Policy(smoothing=2).smooth(probs)
    policy = Policy(on=round(float(np.quantile(smooth[:, 1], 0.9)), 4), smoothing=2, refractory=0.4, lead=0.08,
                    take_turn=round(float(np.quantile(smooth[:, 2], 0.9)), 4))
    return {"root": root, "data": root / "demo", "row": row, "ckpt": ckpt, "policy": policy}


def crop(row: dict, n: int) -> dict:
    total = row["n_frames"]
    return {k: (v[:n] if isinstance(v, list) and len(v) == total else v) for k, v in row.items()} | {"n_frames": n}


def test_save_and_load_round_trip_exactly(work, tmp_path, one_torch_thread):
    pred = load_predictor(work["ckpt"])
    files = pred.save_pretrained(tmp_path / "model", policy=work["policy"], card="# card\n")
    assert sorted(f.name for f in files) == ["MODEL_CARD.md", "config.json", "model.safetensors", "policy.json"]
    back = Predictor.from_pretrained(tmp_path / "model")
    # the weights, tensor by tensor (the VAP projection included, so vap_p_shift keeps working)
    saved = load_file(tmp_path / "model" / "model.safetensors")
    ckpt = torch.load(work["ckpt"], weights_only=True)["state_dict"]
    assert sorted(saved) == sorted(ckpt) and any(k.startswith("vap.") for k in saved)
    for k, v in ckpt.items():
        assert torch.equal(saved[k], v), k
    a, b = pred.predict_row(work["row"]), back.predict_row(work["row"])
    for key in ("action_probs", "type_probs", "vap_p_shift", "onset_probs"):
        assert a[key] is not None and a[key].shape[0] == 300, key
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    # the streaming listener: the folder's policy.json is its default policy; same decisions frame for frame
    from_ckpt = load_listener(work["ckpt"], work["policy"], deadline_s=NO_DEADLINE)
    from_dir = load_listener(tmp_path / "model", deadline_s=NO_DEADLINE)
    assert from_dir.policy == work["policy"] and from_ckpt.checkpoint["checkpoint_sha256"] == pred.sha256
    d1, d2 = run_offline(from_ckpt, work["row"]), run_offline(from_dir, work["row"])
    assert d1 == d2 and not any(d.fault for d in d1)
    assert sum(d.action == "BACKCHANNEL" for d in d1) >= 2 and sum(d.action == "TAKE_TURN" for d in d1) >= 2
    # what was loaded: the folder's weights hash, and the checkpoint they came from
    info = from_dir.checkpoint
    assert info["checkpoint_sha256"] == pretrained.file_sha256(tmp_path / "model" / "model.safetensors")
    assert info["source"] == {"checkpoint": "tiny.ckpt", "sha256": pred.sha256}
    # saving the loaded folder again writes the same weights and keeps the original source
    back.save_pretrained(tmp_path / "again")
    again = load_file(tmp_path / "again" / "model.safetensors")
    assert sorted(again) == sorted(saved) and all(torch.equal(again[k], v) for k, v in saved.items())
    assert json.loads((tmp_path / "again" / "config.json").read_text())["source"]["sha256"] == pred.sha256
    assert not (tmp_path / "again" / "policy.json").exists()


def test_config_records_what_rebuilds_the_model(work, tmp_path):
    load_predictor(work["ckpt"]).save_pretrained(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text(), parse_constant=pytest.fail)  # strict JSON
    meta = torch.load(work["ckpt"], weights_only=True)["backchannel"]
    assert config["format"] == "backchannel.listener/1" and config["backchannel"]["head_config"] == meta["head_config"]
    assert config["backchannel"]["backbone_config"] == meta["backbone_config"]
    tok = tokenizer_for(meta["backbone_config"])
    assert config["tokenizer"] == {"vocab_size": 4096, "k": 2, "words": "function", "fingerprint": tok.fingerprint}
    assert config["backchannel"]["metrics"] == {"dev/bc_event_f1": 0.25, "never": None}
    assert config["training_data"]["backbone"]["mrda"]["fingerprint"] == "cd" * 32
    assert set(config["code"]) == {"version", "git_commit", "source_sha256"} and len(config["code"]["source_sha256"]) == 64
    assert load_listener(work["ckpt"]).policy == Policy()  # a .ckpt holds no policy


def _folder(work, tmp_path) -> Path:
    out = tmp_path / "m"
    load_predictor(work["ckpt"]).save_pretrained(out, policy=POLICY)
    return out


def test_bad_folders_get_clear_errors(work, tmp_path):
    out = _folder(work, tmp_path)
    weights = out / "model.safetensors"
    state = load_file(weights)
    state["head.action.weight"].view(-1)[3] = float("nan")
    save_file(state, weights)
    with pytest.raises(CheckpointError, match=r"m/model\.safetensors: tensor head\.action\.weight holds 1 non-finite"):
        load_listener(out)
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=r"m/model\.safetensors: not a readable safetensors file"):
        load_predictor(out)
    weights.unlink()
    with pytest.raises(CheckpointError, match=r"m/model\.safetensors: no such file: .*m is not a listener model folder"):
        load_listener(out)
    out = _folder(work, tmp_path / "b")
    cfg = json.loads((out / "config.json").read_text())
    cfg["backchannel"]["text_fingerprint"] = "0123456789abcdef"
    (out / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"model\.safetensors: its backbone read text with vocabulary "
                                              r"0123456789abcdef; .*retrain the backbone"):
        load_listener(out)
    out = _folder(work, tmp_path / "c")
    cfg = json.loads((out / "config.json").read_text())
    cfg["tokenizer"]["k"] = 3
    (out / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"c/m/config\.json: its tokenizer .*'k': 3"):
        load_predictor(out)
    (out / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"c/m/config\.json: not readable JSON"):
        load_predictor(out)
    out = _folder(work, tmp_path / "d")
    (out / "policy.json").write_text(json.dumps({"on": 0.5, "of": 0.2}))
    with pytest.raises(CheckpointError, match=r"d/m/policy\.json: not valid policy settings: .*unknown settings \['of'\]"):
        load_listener(out)
    out = _folder(work, tmp_path / "e")
    cfg = json.loads((out / "config.json").read_text())
    cfg["backchannel"]["head_config"]["hidden"] = 9
    (out / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"model\.safetensors: weights do not match the checkpoint's own config"):
        load_listener(out)
    with pytest.raises(CheckpointError, match=r"tiny\.ckpt: not a folder: from_pretrained reads a model folder"):
        Predictor.from_pretrained(work["ckpt"])


class _Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def test_a_pickle_in_place_of_the_weights_is_never_run(work, tmp_path):
    out = _folder(work, tmp_path)
    marker = tmp_path / "pwned"
    torch.save({"w": _Payload(marker)}, out / "model.safetensors")  # a pickle where safetensors belong
    with pytest.raises(CheckpointError, match=r"model\.safetensors: not a readable safetensors file"):
        load_listener(out)
    assert not marker.exists()


def test_without_a_default_model_load_listener_names_the_missing_file(tmp_path, monkeypatch):
    monkeypatch.setattr(pretrained, "default_model_dir", lambda: tmp_path / "default_listener")
    with pytest.raises(CheckpointError, match=r"default_listener/config\.json: no such file: this install of "
                                              r"backchannel ships no default listener model"):
        load_listener()


def test_decide_wav_frames_and_channels(work, tmp_path, one_torch_thread):
    import soundfile as sf

    rate, n = 8000, 640  # 80 ms at 8 kHz
    t = np.arange(int(2.5 * rate)) / rate
    voice = (0.3 * np.sin(2 * np.pi * 180 * t) * (np.sin(2 * np.pi * 1.5 * t) > 0)).astype(np.float32)
    sf.write(tmp_path / "mono.wav", voice, rate)
    sf.write(tmp_path / "stereo.wav", np.stack([voice, 0 * voice], axis=1), rate)
    listener = load_listener(work["ckpt"], POLICY, deadline_s=1e-9)  # a deadline no frame can meet live
    got = decide_wav(listener, tmp_path / "mono.wav")
    assert not any(d.fault for d in got) and listener.deadline_s == 1e-9  # a file replays without it; restored
    listener.deadline_s = NO_DEADLINE
    assert len(got) == len(voice) // n == 31 and listener.features.sample_rate == rate  # the last 20 ms dropped
    assert [d.frame for d in got] == list(range(31)) and got[-1].time == pytest.approx(31 * FRAME_S)
    listener.reset()  # by hand: the user on the speaker side, the bot's channel silent
    voice = sf.read(tmp_path / "mono.wav", dtype="float32")[0]  # as written (16-bit PCM)
    by_hand = [listener.step(listener_pcm=np.zeros(n, np.float32), speaker_pcm=voice[i * n:(i + 1) * n])
               for i in range(31)]
    assert got == by_hand
    assert decide_wav(listener, tmp_path / "stereo.wav") == got  # channel 0 the user, channel 1 the (silent) bot
    swapped = decide_wav(listener, tmp_path / "stereo.wav", speaker_channel=1, listener_channel=0)
    assert [d.probability for d in swapped] != [d.probability for d in got]
    with pytest.raises(ValueError, match=r"stereo\.wav: listener_channel 2 but the file has 2 channels"):
        decide_wav(listener, tmp_path / "stereo.wav", listener_channel=2)
    (tmp_path / "bad.wav").write_bytes(b"RIFF nonsense")
    with pytest.raises(ValueError, match=r"bad\.wav: not a readable audio file"):
        decide_wav(listener, tmp_path / "bad.wav")


def test_package_data_carries_the_model_files_into_a_wheel(tmp_path):
    """Build a wheel of the working tree's files (tracked and not ignored) with model files in ``backchannel/default_listener``:
    all four are in it."""
    files = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           capture_output=True, check=False).stdout
    if not files:
        pytest.skip("not a git checkout")
    src = tmp_path / "src"
    for rel in filter(None, files.decode().split("\0")):
        if (ROOT / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, src / rel)
    model = src / "backchannel" / "default_listener"
    model.mkdir(parents=True, exist_ok=True)
    names = ("config.json", "model.safetensors", "policy.json", "MODEL_CARD.md")
    for name in names:
        (model / name).write_text("x")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                           "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("backchannel-*.whl")
    inside = set(zipfile.ZipFile(wheel).namelist())
    for name in names:
        assert f"backchannel/default_listener/{name}" in inside, sorted(n for n in inside if "default" in n)
    assert "backchannel/train/pretrained.py" in inside and "backchannel/train/export.py" in inside


# ------------------------------------------------------------------------------------------------ export

@pytest.fixture(scope="module")
def evaluated(work):
    """``backchannel evaluate`` of the tiny checkpoint on the demo dataset (head and pause gate)."""
    out = work["root"] / "eval"
    assert cli_main(["evaluate", str(work["data"]), "--checkpoint", str(work["ckpt"]), "--systems", "head,pause_gate",
                     "--out", str(out), "--seeds", "1"]) == 0
    return out / "report.json"


def test_export_writes_the_tuned_policy_and_the_reports_figures(work, evaluated, tmp_path, capsys):
    out = tmp_path / "pkg" / "default_listener"
    out.mkdir(parents=True)
    (out / "README.md").write_text("kept")
    assert cli_main(["export", str(work["ckpt"]), "--out", str(out), "--report", str(evaluated),
                     "--corpus", "demo", "--variant", "f1"]) == 0
    printed = capsys.readouterr().out
    size = sum((out / n).stat().st_size for n in ("config.json", "model.safetensors", "policy.json", "MODEL_CARD.md"))
    assert f"; {size / 1e6:.2f} MB (limit 10 MB)" in printed
    assert sorted(p.name for p in out.iterdir()) == ["MODEL_CARD.md", "README.md", "config.json", "model.safetensors",
                                                     "policy.json"]
    assert not list((tmp_path / "pkg").glob(".default_listener.export-*"))  # the staging folder is gone
    report = json.loads(evaluated.read_text())
    want = Policy.from_report(report, "demo", variant="f1")
    assert Policy.from_dict(json.loads((out / "policy.json").read_text())) == want
    assert load_listener(out).policy == want
    config = json.loads((out / "config.json").read_text())
    assert config["policy_source"]["corpus"] == "demo" and config["policy_source"]["definition"] == "isolated"
    card = (out / "MODEL_CARD.md").read_text()
    v = report["corpora"]["demo"]["systems"]["head"]["definitions"]["isolated"]["variants"]["f1"]
    ev = v["events"]["[-500,+500]"]
    row = next(line for line in card.splitlines() if line.startswith("| demo (isolated, f1) |"))
    assert f"| {ev['f1']:.3f} | {ev['precision']:.3f} | {ev['recall']:.3f} |" in row
    assert f"{v['cadence']['model']['rate_per_minute']:.2f} ({v['cadence']['human']['rate_per_minute']:.2f})" in row
    assert "license: other" in card and "license_name: cc-by-nc-sa-2.5" in card
    assert "CC BY-NC-SA 2.5" in card and "non-commercial research use only" in card and "| mrda |" in card
    assert f"threshold {want.on}, smoothing {want.smoothing} frames" in card
    # the exported folder evaluates as its checkpoint did (one loading path)
    assert cli_main(["evaluate", str(work["data"]), "--checkpoint", str(out), "--systems", "head",
                     "--out", str(tmp_path / "ev"), "--seeds", "1"]) == 0
    again = json.loads((tmp_path / "ev" / "report.json").read_text())["corpora"]["demo"]["systems"]["head"]
    assert again["definitions"] == report["corpora"]["demo"]["systems"]["head"]["definitions"]
    assert again["system"]["source"]["sha256"] == report["corpora"]["demo"]["systems"]["head"]["system"]["checkpoint_sha256"]
    # re-exporting the folder with its report (the report is of the checkpoint it came from) is allowed
    assert cli_main(["export", str(out), "--out", str(tmp_path / "re"), "--report", str(evaluated),
                     "--corpus", "demo"]) == 0


def test_export_refusals(work, evaluated, tmp_path, capsys):
    other = tiny_checkpoint(tmp_path / "other.ckpt", seed=1)
    assert cli_main(["export", str(other), "--out", str(tmp_path / "o"), "--report", str(evaluated),
                     "--corpus", "demo"]) == 2
    err = capsys.readouterr().err
    assert "report.json: its head figures on 'demo' are of a model with sha256" in err and "evaluate this" in err
    assert cli_main(["export", str(work["ckpt"]), "--out", str(tmp_path / "o"), "--report", str(evaluated),
                     "--corpus", "maptask"]) == 2
    assert "report.json: no corpus 'maptask' (has ['demo'])" in capsys.readouterr().err
    assert cli_main(["export", str(work["ckpt"]), "--out", str(tmp_path / "o"), "--max-mb", "0.1"]) == 2
    assert "o: the model folder would be 0." in capsys.readouterr().err
    assert not (tmp_path / "o").exists() and not list(tmp_path.glob(".o.export-*"))
    assert cli_main(["export", str(tmp_path / "missing.ckpt"), "--out", str(tmp_path / "o")]) == 2
    assert "missing.ckpt: no such checkpoint file" in capsys.readouterr().err
    # without a report: weights and config, a card without figures, no policy.json
    assert cli_main(["export", str(work["ckpt"]), "--out", str(tmp_path / "plain")]) == 0
    assert "no --report: no policy.json" in capsys.readouterr().out
    assert not (tmp_path / "plain" / "policy.json").exists()
    assert "None: the export was given no evaluation report." in (tmp_path / "plain" / "MODEL_CARD.md").read_text()


def test_a_model_folder_serves_as_the_frozen_backbone_of_a_new_head(work, tmp_path):
    from backchannel.train.modules import HeadModule

    folder = _folder(work, tmp_path)
    module = HeadModule(backbone="timing", backbone_ckpt=str(folder), hidden=8, direct=True, text_dim=4)
    weights = load_file(folder / "model.safetensors")
    for k, v in module.backbone.state_dict().items():
        assert torch.equal(v, weights[f"backbone.{k}"]), k
    for k, v in module.vap.state_dict().items():
        assert torch.equal(v, weights[f"vap.{k}"]), k
    # the head records the backbone checkpoint the folder's model was trained on, and what that backbone saw
    assert module.backbone_hash == "0" * 64
    assert sorted(module.backbone_manifests) == ["maptask", "mrda"]
    assert not any(p.requires_grad for p in module.backbone.parameters())
    cfg = json.loads((folder / "config.json").read_text())
    cfg["backchannel"]["backbone_hash"] = None
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="no timing backbone"):
        HeadModule(backbone="timing", backbone_ckpt=str(folder))
    with pytest.raises(CheckpointError, match="a listener model folder"):
        HeadModule(backbone="timing", backbone_ckpt=str(tmp_path / "nothing.ckpt"))


def _transfer_report():
    def variant(f1, rate, human=0.5):
        return {"events": {"[-500,+500]": {"f1": f1}},
                "cadence": {"model": {"rate_per_minute": rate}, "human": {"rate_per_minute": human}}}

    systems = {"head": {"status": "ok", "system": {"checkpoint_sha256": "ab" * 32},
                        "definitions": {"isolated": {"variants": {"f1": variant(0.02, 0.13),
                                                                  "calibrated_stated": variant(0.05, 0.55)}}}},
               "logistic": {"status": "n/a: no train rows"},
               "pause_gate": {"status": "ok", "definitions": {"isolated": {"variants": {"rule": variant(0.035, 2.1)}}}}}
    return {"created": "2026-12-03T09:00:00+00:00", "corpora": {
        "maptask": {"systems": systems},  # an in-domain section: not a transfer figure
        "maptask-to-mrda": {"systems": systems, "transfer": {"train_on": "maptask", "test_on": "mrda",
                                                            "head_corpora": ["maptask"]}}}}


def test_the_card_states_cross_corpus_figures_from_a_transfer_report(work, tmp_path):
    from backchannel.train.export import ExportError, export, transfer_figures

    rows = transfer_figures(_transfer_report())
    assert [r["section"] for r in rows] == ["maptask-to-mrda"]
    assert rows[0]["systems"] == {"head/f1": {"f1": 0.02, "rate": 0.13}, "head/calibrated_stated": {"f1": 0.05, "rate": 0.55},
                                  "pause_gate/rule": {"f1": 0.035, "rate": 2.1}}
    assert rows[0]["head_sha256"] == "ab" * 32 and rows[0]["human_rate"] == 0.5
    path = tmp_path / "transfer.json"
    path.write_text(json.dumps(_transfer_report()))
    export(work["ckpt"], tmp_path / "m", transfer=[path], log=lambda *_: None)
    card = (tmp_path / "m" / "MODEL_CARD.md").read_text()
    assert "## Cross-corpus figures (leave-one-corpus-out)" in card
    assert "| maptask → mrda | 0.50 | 0.020 (0.13) | n/a | 0.050 (0.55) | n/a | n/a | n/a | n/a | n/a | n/a | " \
           "0.035 (2.10) |" in card
    with pytest.raises(ExportError, match="no leave-one-corpus-out section"):
        transfer_figures({"corpora": {"maptask": {"systems": {}}}}, where="in.json")
