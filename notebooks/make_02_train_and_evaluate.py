"""Writes notebooks/02_train_and_evaluate.ipynb (source of truth for its cells) and executes it with
nbclient, storing the outputs: on a slice of the real Map Task when ``data/maptask`` is prepared, else on
the demo corpus.

    .venv/bin/python notebooks/make_02_train_and_evaluate.py            # write + execute (about 30 s)
    .venv/bin/python notebooks/make_02_train_and_evaluate.py --no-run   # write only

The notebook reads ``BACKCHANNEL_NB_*`` environment variables (see its introduction); the test
(tests/test_notebook_02.py) runs it on one demo dialogue per split.
"""
import argparse
import os
import tempfile
import time
from pathlib import Path

import nbformat as nbf

NOTEBOOK = Path(__file__).resolve().parent / "02_train_and_evaluate.ipynb"

cells = [
    nbf.v4.new_markdown_cell("""# 02 — Train the timing model and evaluate it against the baselines

The whole learning pipeline of DESIGN.md on a slice small enough to run in a minute on a laptop CPU:

1. **a prepared dataset**: one row per (dialogue, listener), every stream on the 80 ms frame clock;
2. **pretrain the `timing` backbone** self-supervised with Voice Activity Projection (VAP);
3. **train the timing head** on the *frozen* backbone's features (computed once, cached);
4. **evaluate** the head and every baseline on the test split, thresholds tuned on dev only, with the
   report table, the onset-timing histogram (model vs human), the precision-recall curve and a timeline;
5. where the **full-size results** live and the commands that reproduce them.

Data: `BACKCHANNEL_NB_DATA` names a prepared dataset folder (`backchannel corpus prepare` writes them),
or `demo` for the project's synthetic corpus. Default: the real HCRC Map Task at `data/maptask` when it
has been prepared, else the demo corpus. `BACKCHANNEL_NB_DIALOGUES` dialogues per split are used (default
4), `BACKCHANNEL_NB_STEPS` backbone steps (default 1000), `BACKCHANNEL_NB_EPOCHS` head epochs (default 5),
and the run is written to `BACKCHANNEL_NB_OUT` (default: a fresh temporary folder).

**Models this small, trained for a minute on a few dialogues, learn little**: this notebook shows how
the pieces fit and what each produces, not how well the method works. The real figures are in
`docs/eval/report.md` (section 5)."""),
    nbf.v4.new_code_cell("""import time
import warnings

from tqdm import TqdmWarning

t_start = time.perf_counter()
warnings.filterwarnings("ignore", category=TqdmWarning)  # no ipywidgets here: plain progress bars
warnings.filterwarnings("ignore", module=r"lightning\\..*")  # Lightning's advice on workers, loggers"""),
    nbf.v4.new_code_cell("""import hashlib
import json
import logging
import math
import os
import tempfile
from pathlib import Path

import lightning  # noqa: F401  (sets up its loggers on import; quietened below)
import numpy as np
from backchannel.corpora.dataset import MANIFEST, build_dataset, is_prepared, load_prepared
from datasets import DatasetDict
from datasets.utils.logging import disable_progress_bar
from IPython.display import Image, Markdown, display

import backchannel
from backchannel.frames import FRAME_S, time_to_frame

for name in ("lightning.pytorch", "lightning.fabric"):  # "GPU available: False", "Seed set to 0", ...
    logging.getLogger(name).setLevel(logging.WARNING)
disable_progress_bar()  # datasets' "Saving the dataset" bars

REPO = Path(backchannel.__file__).resolve().parents[1]
DATA = os.environ.get("BACKCHANNEL_NB_DATA") or (
    str(REPO / "data" / "maptask") if is_prepared(REPO / "data" / "maptask") else "demo")
DIALOGUES = int(os.environ.get("BACKCHANNEL_NB_DIALOGUES", "4"))  # per split
STEPS = int(os.environ.get("BACKCHANNEL_NB_STEPS", "1000"))      # backbone optimizer steps
EPOCHS = int(os.environ.get("BACKCHANNEL_NB_EPOCHS", "5"))       # head epochs
work = Path(os.environ.get("BACKCHANNEL_NB_OUT") or tempfile.mkdtemp(prefix="nb02-"))
work.mkdir(parents=True, exist_ok=True)
print(f"{DIALOGUES} dialogue(s) per split, backbone {STEPS} steps, head {EPOCHS} epochs")"""),
    nbf.v4.new_markdown_cell("""## 1. A prepared dataset
`backchannel corpus prepare maptask` reads the corpus, mines backchannels and turns, and writes a Hugging
Face `DatasetDict` (train/dev/test, the official splits) plus `manifest.json` (counts, label settings, a
content fingerprint). Without real data, the same recipe runs on the synthetic demo corpus (what
`backchannel corpus prepare demo` does)."""),
    nbf.v4.new_code_cell("""if DATA == "demo":
    from backchannel.corpora.recipes import load_corpus

    source = work / "demo"
    build_dataset(load_corpus("demo"), source, corpus="demo", progress=False, overwrite=True)
else:
    source = Path(DATA)
full, manifest = load_prepared(source)
corpus = manifest["corpus"]
if corpus == "demo":
    print("corpus: demo (synthetic demo: its figures mean nothing about real conversation)")
else:
    print(f"corpus: {corpus} ({source.name}, prepared from {manifest['source_root']})")
for split, s in manifest["splits"].items():
    print(f"  {split:<5} {s['dialogues']:>3} dialogues {s['rows']:>4} listener rows "
          f"{s['listener_minutes']:8.1f} listener-min "
          f"{manifest['backchannels'][split]['events']:>5} backchannels")"""),
    nbf.v4.new_markdown_cell("""### A slice
The `DIALOGUES` shortest dialogues of each split, written as a prepared dataset of its own: the same
layout, and a manifest with its own fingerprint (a checkpoint records the fingerprints of the data it was
trained on, and the feature cache is keyed by them, so a slice is never mistaken for the full corpus)."""),
    nbf.v4.new_code_cell("""def take_dialogues(src, out, n):
    \"\"\"Write the ``n`` shortest dialogues (fewest frames) of each split of prepared dataset
    ``src`` to ``out``, as a prepared dataset; return it loaded.\"\"\"
    dsd, manifest = load_prepared(src)
    parts, fps = {}, {}
    for split, ds in dsd.items():
        frames = {}
        for d, k in zip(ds["dialogue"], ds["n_frames"]):
            frames[d] = frames.get(d, 0) + k
        keep = sorted(sorted(frames, key=lambda d: (frames[d], d))[:n])
        parts[split] = ds.select([i for i, d in enumerate(ds["dialogue"]) if d in keep])
        spec = json.dumps([manifest["split_fingerprints"][split], keep])  # source split + dialogues kept
        fps[split] = hashlib.sha256(spec.encode()).hexdigest()[:32]
    DatasetDict(parts).save_to_disk(str(out))
    for key in ("splits", "backchannels"):  # the full corpus' counts
        manifest.pop(key, None)
    manifest.update(rows=sum(map(len, parts.values())), split_fingerprints=fps, sliced_from=str(src),
                    fingerprint=hashlib.sha256(json.dumps(fps, sort_keys=True).encode()).hexdigest())
    (Path(out) / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\\n")
    return load_prepared(out)

data = work / f"{corpus}-slice"
dsd, slice_manifest = take_dialogues(source, data, DIALOGUES)
for split, ds in dsd.items():
    print(f"slice {split:<5} {', '.join(sorted(set(ds['dialogue'])))}: {len(ds)} rows, "
          f"{sum(ds['n_frames'])} frames ({sum(ds['n_frames']) * FRAME_S / 60:.1f} listener-min), "
          f"{sum(map(len, ds['bc_onsets']))} backchannels")"""),
    nbf.v4.new_markdown_cell("""### What a row holds
Per frame: both parties' voice activity (`va_listener`, `va_speaker`, fraction voiced), prosody where
there is audio (none here: the streams are masked, not zeroed, and stored as 0 frames), the words that
*ended* in the frame
(`text_*`), and the label: `action` is 1 (BACKCHANNEL) or 2 (TAKE_TURN) when the listener's onset of
that action lies in the next 500 ms, else 0 (SILENT). Per row: the mined events in seconds."""),
    nbf.v4.new_code_cell("""row = max(dsd["train"], key=lambda r: len(r["bc_onsets"]))
action = np.asarray(row["action"])
print(f"{row['dialogue']} listener {row['listener']} (floor: {row['floor']}): {row['n_frames']} frames, "
      f"voice activity from {row['va_source']}, prosody frames stored: {len(row['prosody'])}")
print("frames per action (SILENT, BACKCHANNEL, TAKE_TURN):", np.bincount(action[action >= 0], minlength=3).tolist(),
      f"+ {int((action < 0).sum())} masked (-1: non-isolated candidates that start no turn)")
for t, form, kind in list(zip(row["bc_onsets"], row["bc_forms"], row["bc_types"]))[:5]:
    f = time_to_frame(t)  # the frame holding the onset
    a = max(0, f - 7)
    said = " ".join(w for w in row["text_speaker"][max(0, f - 25):f + 1] if w)  # ended in the last 2 s
    print(f"  {t:6.2f} s {form!r:<11} ({kind}); action in frames {a}..{f}: {action[a:f + 1].tolist()}; "
          f"speaker before: {said[-40:]!r}")"""),
    nbf.v4.new_markdown_cell("""## 2. Pretrain the timing backbone (VAP)
A small causal transformer over both parties' voice activity, prosody and words learns, at every frame, to
predict the *next 2 s* of both parties' voice activity in 4 bins each (0.2/0.4/0.6/0.8 s): 2^8 = 256
classes (Ekstedt & Skantze 2022). No labels are needed, so it can use every hour of conversation. A
uniform guess scores ln 256 = 5.55 nats.

`backchannel train backbone` is a LightningCLI: a YAML config plus overrides. Here the packaged test
config `tiny_backbone` (16-dim, one layer) on the slice, one epoch of `STEPS` batches; the same from a
shell:

    backchannel train backbone --config tiny_backbone --data.corpora "[SLICE]" \\
        --trainer.default_root_dir runs/nb02-backbone \\
        --trainer.max_steps 1000 --data.batches_per_epoch 1000 --threads 1"""),
    nbf.v4.new_code_cell("""from backchannel.train.cli import resolve_config, run
from backchannel.train.modules import load_checkpoint

t0 = time.perf_counter()
cli = run("backbone", ["--config", resolve_config("tiny_backbone"), "--data.corpora", f"[{data}]",
                       "--trainer.default_root_dir", str(work / "backbone"),
                       "--trainer.max_steps", str(STEPS), "--data.batches_per_epoch", str(STEPS),
                       "--threads", "1"])  # one CPU thread: a model this small gains nothing from more
backbone_ckpt = work / "backbone" / "checkpoints" / "last.ckpt"
meta = load_checkpoint(backbone_ckpt, kind="backbone")["backchannel"]
print(f"backbone: {cli.trainer.global_step} steps in {time.perf_counter() - t0:.1f} s, "
      f"{sum(p.numel() for p in cli.model.backbone.parameters())} parameters")
print(f"dev VAP loss {meta['metrics']['val/loss']:.3f} nats (uniform guess {math.log(256):.3f}); "
      f"zero-shot shift/hold ROC AUC {meta['metrics'][f'val/{corpus}/shift_hold_auc']:.3f}")
print("checkpoint records the data it saw:", {k: v["fingerprint"][:12] for k, v in meta["manifests"].items()},
      "== slice fingerprint", slice_manifest["fingerprint"][:12])"""),
    nbf.v4.new_markdown_cell("""## 3. Train the head on frozen backbone features
The backbone is frozen, so its hidden states are computed **once** per (checkpoint, dataset, split) and
cached on disk as a `datasets` Dataset; the head (one GRU layer, two outputs per frame: action
probabilities and backchannel type) trains on the cache. After each epoch it is scored on dev (backchannel
event F1 with the trigger threshold tuned on dev) and the best epoch is kept as `best.ckpt`. The packaged
`tiny_head` config, with a few of its values overridden (20 batches of four 30 s crops an epoch, 32 GRU
units), as from a shell:

    backchannel train head --config tiny_head --model.backbone_ckpt BACKBONE.ckpt --data.corpora "[SLICE]" \\
        --data.cache_dir runs/cache --trainer.default_root_dir runs/nb02-head --trainer.max_epochs 5 \\
        --data.batches_per_epoch 20 --data.batch_size 4 --data.crop_seconds "[30, 30]" --model.hidden 32 \\
        --threads 1"""),
    nbf.v4.new_code_cell("""t0 = time.perf_counter()
cli = run("head", ["--config", resolve_config("tiny_head"), "--model.backbone_ckpt", str(backbone_ckpt),
                   "--data.corpora", f"[{data}]", "--data.cache_dir", str(work / "cache"),
                   "--trainer.default_root_dir", str(work / "head"), "--trainer.max_epochs", str(EPOCHS),
                   "--data.batches_per_epoch", "20", "--data.batch_size", "4",
                   "--data.crop_seconds", "[30, 30]", "--model.hidden", "32", "--threads", "1"])
head_ckpt = work / "head" / "checkpoints" / "best.ckpt"
print(f"head: {cli.trainer.current_epoch} epochs ({cli.trainer.global_step} steps) in "
      f"{time.perf_counter() - t0:.1f} s, {sum(p.numel() for p in cli.model.head.parameters())} parameters")
print("feature caches:", sorted(p.name for p in (work / "cache").iterdir()))
print("train frames per action:", cli.datamodule.label_counts().tolist(),
      "-> class weights", [round(w, 2) for w in cli.model.class_weight.tolist()])

from backchannel.train.predict import load_predictor

predictor = load_predictor(head_ckpt)
info = predictor.describe()
print(f"best.ckpt (step {info['global_step']}): dev backchannel event F1 "
      f"{info['metrics']['dev/bc_event_f1']:.3f}; head {info['head_config']}")
probs = predictor.predict_rows([dsd["test"][0]])[0]
print("per-frame outputs of a test row:", {k: v.shape for k, v in probs.items() if v is not None})"""),
    nbf.v4.new_markdown_cell("""## 4. Evaluate against the baselines
`evaluate` (the API behind `backchannel evaluate`) scores every system on the **test** split in one run:
`random` (the true number of backchannels at random times), `pause_gate` (the voice-agent plugin rule),
`ward_tsukahara` (the low-pitch rule; needs audio), `logistic` (handcrafted features, fitted on train)
and our `head`. Every system's onsets come from the one decision core, `Policy.run` (what the plugin
runs); its settings (threshold, smoothing, lead, take-turn level) are tuned on **dev** only, for best event
F1 (`f1`) and at the human rate (`rate_matched`), and saved in the report for `Policy.from_report`. A
predicted backchannel is a hit when it lies within a margin of an unmatched true onset (Ruede et al. 2017)."""),
    nbf.v4.new_code_cell("""from backchannel.evaluation.report import cadence_table, event_table, frame_table, policy_table, summary_lines
from backchannel.evaluation.run import evaluate
from backchannel.metrics import margin_label

t0 = time.perf_counter()
report = evaluate([data], head_ckpt, work / "eval", progress=False)
sec = report["corpora"][corpus]
definition = sec["definitions"][0]
print(f"evaluated in {time.perf_counter() - t0:.1f} s: {sec['test']['rows']} test rows, "
      f"{sec['test']['backchannels'][definition]['count']} true backchannels ({definition} definition)")
for line in summary_lines(report):
    print(line)
margins = [margin_label(tuple(m)) for m in report["settings"]["margins"]]
display(Markdown("\\n".join(["**Backchannel events** (test)", ""] + event_table(sec, margins, definition)
                            + ["**Tuned policies**", ""] + policy_table(sec, definition)
                            + ["**Frame level**", ""] + frame_table(sec)
                            + ["**Cadence**", ""] + cadence_table(sec, definition))))"""),
    nbf.v4.new_markdown_cell("""### Plots written by `evaluate`
**Onset timing**: when backchannels start relative to the end of the speaker's last speech, model
vs the real listeners (humans backchannel mostly in the first few hundred ms of a pause, some in overlap).
**Precision-recall** of the BACKCHANNEL frame class (the rules are single points).
**Timeline**: one test listener, the speaker's and listener's voice activity, each system's backchannel
probability and the onsets it fired, against the true backchannels."""),
    nbf.v4.new_code_cell("""for suffix in ("onset-offsets.png", "pr-backchannel.png", "timeline.png"):
    png = work / "eval" / f"{corpus}-{suffix}"
    print(png.name)
    display(Image(filename=str(png)))
print("also written:", ", ".join(f for f in report["files"] if not f.endswith(".png")))"""),
    nbf.v4.new_markdown_cell("""## 5. The full-size results
The same `evaluate` on the whole Map Task and MRDA test splits, with the full backbone (96-dim, 3 layers,
pretrained on both corpora's train splits) and heads trained on the full train splits, is in
**`docs/eval/report.md`** (with `report.json`, the plots and the onsets files next to it). To reproduce it:

    backchannel corpus prepare maptask mrda --root /path/to/corpora  # -> data/maptask, data/mrda
    backchannel train backbone --config backbone_timing              # -> runs/backbone_timing/last.ckpt
    backchannel train head --config head_timing                      # -> runs/head_timing/best.ckpt
    backchannel evaluate maptask mrda --checkpoint runs/head_timing/best.ckpt --out docs/eval

`head_timing_maptask` and `head_timing_mrda` train one head per corpus; `backbone_timing_notext`
with `head_notext`, and `head_raw` (no backbone), are the ablations. Configs live in `train/configs/`;
any value can be overridden on the command line (`--trainer.max_epochs 5`, `--model.hidden 96`)."""),
    nbf.v4.new_code_cell("""full_report = REPO / "docs" / "eval" / "report.md"
if full_report.is_file():
    text = full_report.read_text()
    start = text.find("### Backchannel events")
    print(f"{full_report.relative_to(REPO)}:\\n")
    print(text[start:text.find("###", start + 4)] if start >= 0 else text[:3000])
else:
    print(f"{full_report.relative_to(REPO)} is not in this checkout yet: run the commands above.")
print(f"notebook ran in {time.perf_counter() - t_start:.0f} s")"""),
]


def write() -> None:
    kernel = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb = nbf.v4.new_notebook(cells=cells, metadata={"kernelspec": kernel})
    nbf.write(nb, NOTEBOOK)


def execute() -> None:
    """Run the notebook in a temporary folder with its defaults (data/maptask if prepared) and store the
    outputs in it."""
    from nbclient import NotebookClient

    nb = nbf.read(NOTEBOOK, as_version=4)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["BACKCHANNEL_NB_OUT"] = str(Path(tmp) / "run")
        os.environ.setdefault("BACKCHANNEL_HOME", str(Path(tmp) / "home"))  # the demo corpus, if used
        t0 = time.perf_counter()
        client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": tmp}})
        client.execute()
        print(f"executed {NOTEBOOK.name} in {time.perf_counter() - t0:.0f} s")
    nbf.write(nb, NOTEBOOK)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-run", action="store_true", help="write the notebook without executing it")
    args = parser.parse_args()
    write()
    if not args.no_run:
        execute()
