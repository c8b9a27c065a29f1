"""Writes notebooks/03_plugin.ipynb (source of truth for its cells); execute it with nbclient (from
notebooks/, with BACKCHANNEL_CORPORA=../../shared/corpora for the real Map Task) to store outputs."""
import nbformat as nbf

cells = [
    nbf.v4.new_markdown_cell("""# 03 — The listener, live

A dialogue replayed through the streaming listener as a duplex loop would run it: one `step()` per 80 ms
frame, each fed only that frame (voice activity of both parties, prosody where there is audio, the words
that ended in it), each answered with a decision: `SILENT`, `BACKCHANNEL` (with a type and a form to say)
or `TAKE_TURN`.

With `BACKCHANNEL_CORPORA` set (the folder holding `maptask/`) this replays a real HCRC Map Task test
dialogue; otherwise the project's synthetic demo corpus. `BACKCHANNEL_NB_SECONDS` sets the slice
(default 60 s). The model is a trained head checkpoint when one is found (`BACKCHANNEL_NB_CHECKPOINT`, or
the newest `runs/head*/**/*.ckpt`; `none` forces random weights), else **random weights** — the output
says which."""),
    nbf.v4.new_code_cell("""import os, tempfile, warnings
from pathlib import Path
import numpy as np
import torch
from IPython.display import Image, display

import backchannel
from backchannel.corpora.recipes import corpora_root, load_corpus
from backchannel.plugin.simulate import build_listener, dialogue_row, simulate, slice_row, RANDOM_WEIGHTS
from backchannel.policy import Policy
from tqdm import TqdmWarning

warnings.filterwarnings("ignore", category=TqdmWarning)
torch.set_num_threads(1)  # a listener is a per-frame, one-thread workload
SECONDS = float(os.environ.get("BACKCHANNEL_NB_SECONDS", "60"))
root = corpora_root()
corpus = "maptask" if root else "demo"
print(f"corpus: {corpus}" + ("" if root else " (synthetic demo: no BACKCHANNEL_CORPORA set)"))
dialogue = next(iter(load_corpus(corpus, root, splits={"test"})))
rows = {s: dialogue_row(dialogue, s) for s in dialogue.speakers}
listener = max(rows, key=lambda s: len(rows[s]["bc_onsets"]))  # the party who backchannels most
onsets = np.asarray(rows[listener]["bc_onsets"])
start = max((max(0.0, o - 5.0) for o in onsets), default=0.0,
            key=lambda s: ((onsets >= s) & (onsets < s + SECONDS)).sum())  # the busiest window
row = slice_row(rows[listener], start, SECONDS)
print(f"{dialogue.id}: listener {listener} vs speaker {row['floor']}, "
      f"{row['start_s']:.2f} s + {row['n_frames'] * 0.08:.0f} s "
      f"({row['n_frames']} frames), {len(row['bc_onsets'])} real backchannels: "
      + ", ".join(f"{t:.1f} s {f!r}" for t, f in zip(row["bc_onsets"], row["bc_forms"])))"""),
    nbf.v4.new_markdown_cell("""## The model
A frozen backbone (the `timing` transformer over voice activity, prosody and text) and the timing head.
`build_listener` loads a head checkpoint (`backchannel.train.predict.load_predictor`) or builds random
weights, and wraps them in a `StreamingListener`."""),
    nbf.v4.new_code_cell("""def find_checkpoint():
    env = os.environ.get("BACKCHANNEL_NB_CHECKPOINT")
    if env:
        return None if env.lower() == "none" else env
    runs = Path(backchannel.__file__).resolve().parents[1] / "runs"
    found = sorted(runs.glob("head*/**/*.ckpt"), key=lambda p: p.stat().st_mtime)
    return str(found[-1]) if found else None

checkpoint = find_checkpoint()
model, weights = build_listener(checkpoint, random_weights=checkpoint is None)
print("weights:", weights)
if weights == RANDOM_WEIGHTS:
    print("-> untrained: the probabilities carry no information; this shows the plumbing (timing of "
          "decisions, forms, rendering), not a model's skill.")"""),
    nbf.v4.new_markdown_cell("""## Offline first: the whole slice in one batched call
What the evaluation does: `backbone.forward` over all frames at once, then the head. The listener's trigger
threshold comes from here: with a checkpoint, use the threshold tuned on dev (`backchannel evaluate`);
an untrained model's probability barely moves, so for the demo it is set at the 95th percentile of its own
backchannel probability on this slice (said below)."""),
    nbf.v4.new_code_cell("""from backchannel.inputs import FrameInputs

with torch.inference_mode():
    inputs, _ = FrameInputs.collate([FrameInputs.from_row(row, model.features.tokenizer)])
    action_logits = model.head(model.backbone(inputs), inputs).action
p_offline = action_logits[0].softmax(-1)[:, 1].numpy()
if weights == RANDOM_WEIGHTS:
    threshold = float(np.percentile(p_offline, 95))
    print(f"threshold {threshold:.4f} = 95th percentile of the untrained model's p(backchannel) "
          "on this slice")
else:
    threshold = float(os.environ.get("BACKCHANNEL_NB_THRESHOLD", "0.5"))
    print(f"threshold {threshold} (set BACKCHANNEL_NB_THRESHOLD to the dev-tuned one)")
model.policy = Policy(on=threshold, refractory=0.8, cadence=None)"""),
    nbf.v4.new_markdown_cell("""## Live: one step per 80 ms
`simulate` resets the listener and steps it frame by frame, as a host loop would; it writes a stereo WAV
(left: the speaker spoken by espeak-ng from its real word timing, or tones; right: the listener's
backchannels at the decided times), the real listener's backchannels in a second WAV for comparison, the
timeline PNG and every decision as JSON."""),
    nbf.v4.new_code_cell("""out = Path(tempfile.mkdtemp())
sim = simulate(row, out_dir=out, model=model, weights=weights, dialogue=dialogue)
p_live = np.array([d.probability for d in sim.decisions])
print(f"streaming == offline: max |p_live - p_offline| = {np.abs(p_live - p_offline).max():.2e} "
      f"over {len(p_live)} frames")
bcs = [d for d in sim.decisions if d.action == "BACKCHANNEL"]
minutes = len(sim.decisions) * 0.08 / 60
print(f"times are seconds from {row['start_s']:.2f} s into the dialogue")
print(f"{len(bcs)} backchannels decided ({len(bcs) / minutes:.1f}/min) vs {len(sim.true_onsets)} real "
      f"({len(sim.true_onsets) / minutes:.1f}/min); faults: {dict(model.faults) or 'none'}")
for d in bcs[:12]:
    print(f"  {d.time:6.2f} s  frame {d.frame:4d}  p={d.probability:.3f}  {d.bc_type:<16} {d.form!r}")
print(f"speech: {sim.speech}; speaker timing: {sim.speaker_timing}")
for p in (sim.wav, sim.real_wav, sim.json):
    print("wrote", p.name)"""),
    nbf.v4.new_markdown_cell("""## The timeline
Speaker and listener voice activity, the listener's smoothed backchannel probability against the trigger
threshold, the decided backchannels (solid green, with the form said) and the real listener's (dotted)."""),
    nbf.v4.new_code_cell("""display(Image(filename=str(sim.png)))"""),
    nbf.v4.new_markdown_cell("""The same from the command line (the defaults pick the test-split listener
with the most backchannels):

    backchannel corpus prepare maptask
    backchannel simulate maptask --dialogue q7ec1 --listener f --seconds 60 \\
        --checkpoint runs/head_timing/best.ckpt --threshold 0.4

Listen to `<out>/<corpus>_<dialogue>_<listener>.wav` (model) against `.real.wav` (the real listener)."""),
]
nb = nbf.v4.new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                               "language": "python"}})
nbf.write(nb, "notebooks/03_plugin.ipynb")
