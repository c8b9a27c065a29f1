"""``backchannel simulate``: replay a corpus dialogue through the streaming listener as if live.

One ``StreamingListener.step()`` per 80 ms frame, fed the frame's features from a prepared dataset
row (voice activity, prosody, the words that ended in that frame: causal, exactly what
``run_offline`` feeds), and three files per replay:

- ``<name>.wav``: stereo at ``sample_rate`` Hz, one sample per ``n_frames * 0.08`` s. Left: the floor
  party (the speaker) spoken from its word timing by espeak-ng (``rating.tts``; tones following the
  word timing when no TTS is available, or with ``render="tone"``). Right: the listener's backchannels,
  each form spoken (another espeak-ng voice; a 220 Hz tone of 0.3 s with tones) from its decision time,
  the end of the frame decided on, ``0.08 (t + 1)`` s;
- ``<name>.real.wav``: the same speaker on the left, the real listener's backchannels (the mined
  events of the row: forms at their real onsets and durations) on the right, for comparison;
- ``<name>.png``: timeline of speaker and listener voice activity, the listener's smoothed
  backchannel probability with the policy's thresholds, the decisions (forms), the true onsets;
- ``<name>.json``: every frame's ``Decision``, the backchannels said, the true ones, what weights
  made them (the package's default model unless a checkpoint, or ``random_weights``, is given) and how the
  audio was rendered.

Word timing of the speaker: the corpus's own words when the ``Dialogue`` is given (the CLI re-reads it
from the dataset manifest's ``source_root``); otherwise reconstructed from the row (:func:`row_words`:
each word of the text stream ends at the end of its frame, and starts where the previous word ended or
where its voiced stretch began; 80 ms resolution). The JSON says which.

Replays use a 60 s model deadline, so the decisions never depend on the machine's load (a listener
passed in keeps its own). Times in the outputs are seconds from the start of the replayed slice.
"""
from __future__ import annotations

import json
import math
import textwrap
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from backchannel.corpora.dialogue import Dialogue, Word

from backchannel.frames import FRAME_S, frame_end, frame_start, num_frames

if TYPE_CHECKING:
    from backchannel.plugin.listener import StreamingListener

    from backchannel.policy import Decision, Policy

RANDOM_WEIGHTS = "random weights"
REPLAY_DEADLINE_S = 60.0  # s: a replay is never silenced by a slow frame
BC_TONE_S, BC_TONE_HZ = 0.3, 220.0  # tone fallback of a backchannel: seconds, Hz
MAX_WORD_S = 1.5  # s: longest word span row_words reconstructs
RENDERS = ("tts", "tone")

PER_FRAME = ("va_listener", "va_speaker", "prosody", "prosody_mask", "text_listener", "text_speaker",
             "action", "bc_type")
BC_EVENTS = ("bc_onsets", "bc_offsets", "bc_forms", "bc_types", "bc_sources", "bc_in_overlap")


@dataclass
class Simulation:
    """What :func:`simulate` wrote and decided: the four output files, every frame's decision, the
    weights' and the rendering's descriptions, and the real backchannel onsets (s) of the slice."""

    wav: Path
    real_wav: Path
    png: Path
    json: Path
    decisions: list
    weights: str
    speech: str
    speaker_timing: str
    true_onsets: list


# ---------------------------------------------------------------- inputs

def slice_row(row: Mapping, start: float = 0.0, seconds: float | None = None) -> dict:
    """A dataset row cut to ``[start, start + seconds)`` s (whole frames), on a clock starting at 0.

    Per-frame columns are cut (prosody expanded to ``[n, 8]`` with ``row_prosody``, so audio-less
    rows replay too); events inside the window are kept and shifted by ``-start``. ``start_s`` holds
    where the slice starts in the dialogue (slices of slices add up)."""
    from backchannel.corpora.dataset import row_prosody

    n = int(row["n_frames"])
    f0 = round(start / FRAME_S)
    if not start >= 0 or f0 >= n:
        raise ValueError(f"row {row.get('dialogue')}/{row.get('listener')}: start {start} s is outside "
                         f"its {n * FRAME_S:.2f} s")
    f1 = n if seconds is None else min(n, f0 + max(1, num_frames(seconds)))
    t0, t1 = f0 * FRAME_S, f1 * FRAME_S
    out = dict(row)
    prosody, mask = row_prosody(row)
    full = {**{k: row[k] for k in PER_FRAME if k in row}, "prosody": prosody, "prosody_mask": mask}
    for k, v in full.items():
        out[k] = v[f0:f1]
    out["n_frames"] = f1 - f0
    keep = [i for i, t in enumerate(row.get("bc_onsets", [])) if t0 <= t < t1]
    for k in BC_EVENTS:
        if k in row:
            out[k] = [row[k][i] for i in keep]
    for k in ("bc_onsets", "bc_offsets"):
        if k in out:
            out[k] = [t - t0 for t in out[k]]
    for k in ("shift_onsets", "interruption_onsets"):
        if k in row:
            out[k] = [t - t0 for t in row[k] if t0 <= t < t1]
    for k in ("hold_pauses", "shift_pauses"):
        if k in row:
            out[k] = [[a - t0, b - t0] for a, b in row[k] if t0 <= a < t1]
    out["start_s"] = row.get("start_s", 0.0) + t0
    return out


def row_words(row: Mapping, party: str = "speaker") -> list[Word]:
    """Approximate word spans (seconds) of ``party`` (``"speaker"``/``"listener"``) from a row's text
    stream and voice activity, for rows whose corpus cannot be re-read.

    The words of frame ``t`` end at ``0.08 (t + 1)`` s; together they start where the previous word
    ended or where their voiced stretch (frames with ``va > 0`` up to ``t``, or up to ``t - 1`` when
    frame ``t`` is silent) began, whichever is later, at most ``MAX_WORD_S`` per word, and share the
    span equally."""
    text, va = row[f"text_{party}"], np.asarray(row[f"va_{party}"]) > 0
    run = np.zeros(len(va), dtype=np.int64)  # first frame of the voiced stretch ending at t
    for t in range(len(va)):
        run[t] = run[t - 1] if t and va[t] and va[t - 1] else t
    words, prev_end = [], 0.0
    for t, s in enumerate(text):
        ws = s.split() if isinstance(s, str) else list(s)
        if not ws:
            continue
        u = t - 1 if t and not va[t] and va[t - 1] else t
        end = float(frame_end(t))
        begin = max(prev_end, float(frame_start(run[u])), end - MAX_WORD_S * len(ws))
        step = (end - begin) / len(ws)
        words += [Word(begin + i * step, begin + (i + 1) * step, w) for i, w in enumerate(ws)]
        prev_end = end
    return words


def dialogue_row(dialogue: Dialogue, listener: str) -> dict:
    """The dataset row of ``listener`` in ``dialogue`` (mined and framed with the default label settings)."""
    from backchannel.corpora.framing import frame_listener
    from backchannel.corpora.mining import mine_dialogue

    if listener not in dialogue.channels:
        raise ValueError(f"{dialogue.id}: no speaker {listener!r} (have {dialogue.speakers})")
    row = frame_listener(dialogue, listener, mine_dialogue(dialogue))
    return {"corpus": dialogue.corpus, "split": dialogue.split, **row}


def _shift_words(words: Sequence[Word], t0: float, t1: float) -> list[Word]:
    return [Word(w.start - t0, w.end - t0, w.text) for w in words if w.end > t0 and w.start < t1]


# ---------------------------------------------------------------- the listener

def build_listener(checkpoint: str | Path | None = None, policy: Policy | None = None,
                   seed: int = 0, *, random_weights: bool = False) -> tuple[StreamingListener, str]:
    """``(listener, weights)``: the timing backbone + head of a head checkpoint
    (``plugin.listener.load_listener``); without one the package's default model (``load_listener()``);
    with ``random_weights`` a random-weight ``TimingBackbone`` + GRU ``TimingHead`` (seeded;
    ``weights == "random weights"``). Deadline ``REPLAY_DEADLINE_S``."""
    import torch
    from backchannel.plugin import listener as listener_module

    from backchannel.backbones import TimingBackbone
    from backchannel.head import TimingHead

    if random_weights:
        if checkpoint is not None:
            raise ValueError("give either a checkpoint or random_weights, not both")
        torch.manual_seed(seed)
        backbone = TimingBackbone().eval()
        head = TimingHead(backbone.hidden_size).eval()
        return listener_module.StreamingListener(backbone, head, policy, deadline_s=REPLAY_DEADLINE_S), RANDOM_WEIGHTS
    if checkpoint is None:
        model = listener_module.load_listener(policy=policy, deadline_s=REPLAY_DEADLINE_S)
        return model, describe_weights(model, "default model")
    model = listener_module.load_listener(checkpoint, policy, deadline_s=REPLAY_DEADLINE_S)
    return model, describe_weights(model, "checkpoint")


def describe_weights(model: StreamingListener, what: str) -> str:
    """``"<what> <file> (sha256 <12 hex>, backbone <name>)"`` from ``model.checkpoint`` (what is known of it)."""
    d = model.checkpoint or {}
    parts = [f"sha256 {d['checkpoint_sha256'][:12]}"] if d.get("checkpoint_sha256") else []
    parts += [f"backbone {d['backbone']}"] if d.get("backbone") else []
    where = f" {d['checkpoint']}" if d.get("checkpoint") else ""
    return f"{what}{where}" + (f" ({', '.join(parts)})" if parts else "")


# ---------------------------------------------------------------- replay

def simulate(source: Mapping | Dialogue, listener: str | None = None, *, out_dir: str | Path,
             model: StreamingListener | None = None, checkpoint: str | Path | None = None,
             policy: Policy | None = None, render: str = "tts", dialogue: Dialogue | None = None,
             start: float = 0.0, seconds: float | None = None, sample_rate: int = 16000, seed: int = 0,
             name: str | None = None, weights: str | None = None, threads: int | None = 1,
             random_weights: bool = False) -> Simulation:
    """Replay one listener of a dialogue frame by frame and write ``<name>.{wav,real.wav,png,json}``
    into ``out_dir`` (module docstring).

    ``source``: a prepared dataset row, or a ``Dialogue`` (then ``listener``, the listening party's
    speaker id, picks the row; for a row it must match the row's listener or be None).
    ``model``: a ready ``StreamingListener``; else one is built with :func:`build_listener` from
    ``checkpoint`` (default: the package's default model; ``random_weights``: random weights) and ``policy``. ``weights`` describes ``model``'s weights in the
    outputs. ``dialogue``: the row's ``Dialogue``, for the speaker's real word timing.
    ``render``: ``"tts"`` (espeak-ng if available, else tones) or ``"tone"``. ``start``/``seconds``:
    the slice to replay (s). ``sample_rate`` of the WAVs in Hz. ``name``: file stem
    (default ``<corpus>_<dialogue>_<listener>``). ``threads``: torch threads while replaying (one, as a
    per-frame listener runs; None leaves torch's setting).
    """
    if render not in RENDERS:
        raise ValueError(f"render must be one of {RENDERS}, got {render!r}")
    if isinstance(source, Dialogue):
        if listener is None:
            raise ValueError(f"{source.id}: say which speaker listens (listener=one of {source.speakers})")
        dialogue, row = source, dialogue_row(source, listener)
    else:
        row = source
        if listener is not None and listener != row["listener"]:
            raise ValueError(f"row {row.get('dialogue')} is listener {row['listener']!r}, not {listener!r}")
    if model is not None and (checkpoint is not None or policy is not None or random_weights):
        raise ValueError("give either a ready listener (model=) or checkpoint/policy/random_weights to build one, "
                         "not both")
    if model is None:
        model, weights = build_listener(checkpoint, policy, seed, random_weights=random_weights)
    weights = weights or "given listener"
    row = slice_row(row, start, seconds)
    n, t0 = int(row["n_frames"]), row["start_s"]
    if dialogue is not None:
        if dialogue.id != row["dialogue"] or dialogue.n_frames < t0 / FRAME_S + n:
            raise ValueError(f"dialogue {dialogue.id} ({dialogue.n_frames} frames) does not hold row "
                             f"{row['dialogue']} (frames {round(t0 / FRAME_S)}..{round(t0 / FRAME_S) + n})")
        floor = dialogue.floor(row["listener"])
        speaker_words = _shift_words(floor.words, t0, t0 + n * FRAME_S)
        timing = f"corpus words ({dialogue.source or dialogue.id})"
    else:
        speaker_words = row_words(row, "speaker")
        timing = "reconstructed from the row's text stream and voice activity (80 ms resolution)"

    faults_before = Counter(model.faults)
    decisions, latencies = replay(model, row, threads)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    name = name or f"{row.get('corpus', 'dialogue')}_{row['dialogue']}_{row['listener']}"
    paths = {k: out / f"{name}{ext}" for k, ext in
             (("wav", ".wav"), ("real_wav", ".real.wav"), ("png", ".png"), ("json", ".json"))}
    speech = render_wavs(row, speaker_words, decisions, paths["wav"], paths["real_wav"], sample_rate, render)
    plot_simulation(row, decisions, model.policy, paths["png"], weights)
    bcs = [{"time": d.time, "frame": d.frame, "form": d.form, "bc_type": d.bc_type,
            "probability": d.probability} for d in decisions if d.action == "BACKCHANNEL"]
    lat = np.asarray([x for x in latencies if math.isfinite(x)]) * 1e3
    report = {
        "corpus": row.get("corpus"), "dialogue": row["dialogue"], "listener": row["listener"],
        "floor": row.get("floor"), "start_s": t0, "seconds": n * FRAME_S, "n_frames": n,
        "weights": weights, "policy": model.policy.to_dict(),
        "speech_rendering": speech, "speaker_timing": timing, "sample_rate": sample_rate,
        "files": {k: p.name for k, p in paths.items()},
        "faults": dict(model.faults - faults_before),
        "model_latency_ms": {"p50": float(np.percentile(lat, 50)), "p99": float(np.percentile(lat, 99))}
        if len(lat) else None,
        "backchannels": bcs,
        "true_backchannels": [{"onset": a, "offset": b, "form": f, "bc_type": k} for a, b, f, k in
                              zip(row.get("bc_onsets", []), row.get("bc_offsets", []),
                                  row.get("bc_forms", []), row.get("bc_types", []))],
        "decisions": [asdict(d) for d in decisions],
    }
    paths["json"].write_text(_dumps(report))
    return Simulation(**paths, decisions=decisions, weights=weights, speech=speech, speaker_timing=timing,
                      true_onsets=list(row.get("bc_onsets", [])))


def _dumps(report: dict) -> str:
    """JSON with one line per decision (a long dialogue has thousands)."""
    head = json.dumps({k: v for k, v in report.items() if k != "decisions"}, indent=1)
    rows = ",\n  ".join(json.dumps(d) for d in report["decisions"])
    return f'{head[:-2]},\n "decisions": [\n  {rows}\n ]\n}}\n'


def replay(model: StreamingListener, row: Mapping,
           threads: int | None = 1) -> tuple[list[Decision], list[float]]:
    """Reset ``model`` and step it once per frame of ``row`` (a sliced row: prosody ``[n, 8]``) in
    order, as a live host would, on ``threads`` torch threads (None: leave torch's setting); returns
    the decisions and each frame's model wall time (s)."""
    import torch
    from backchannel.plugin.features import split_frames

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        model.reset()
        decisions, latencies = [], []
        for frame in split_frames(row):
            model.last_latency_s = math.nan
            decisions.append(model.step(frame))
            latencies.append(model.last_latency_s)
    finally:
        torch.set_num_threads(before)
    return decisions, latencies


# ---------------------------------------------------------------- audio

def _voices(render: str, sample_rate: int):
    """``(WordRenderer or None, description)``: espeak-ng via ``rating.tts`` unless tones are asked
    for or no TTS is available."""
    from backchannel.rating.tts import WordRenderer, load_tts

    tts = load_tts("tone" if render == "tone" else "auto")
    if tts is None:
        return None, "tone" if render == "tone" else "tone (no TTS available)"
    return WordRenderer(tts, sample_rate), f"tts: {tts.name}"


def _backchannel_track(words, onsets, forms, durations, n_samples: int, sr: int) -> np.ndarray:
    """Mono track with ``forms`` said from ``onsets`` (s), each cut at the next onset; ``durations``
    (s, or None for the natural length) fit the real ones."""
    from backchannel.rating.stimuli import LISTENER_VOICE
    from backchannel.rating.tts import place, tone

    track = np.zeros(n_samples, np.float32)
    order = np.argsort(onsets, kind="stable")
    times = [onsets[i] for i in order] + [n_samples / sr]
    for k, i in enumerate(order):
        dur = durations[i] if durations is not None else None
        if words is not None:
            x = words.word(forms[i] or "mhm", duration=dur, voice=LISTENER_VOICE)
        else:
            x = tone(dur or BC_TONE_S, sr, f0=BC_TONE_HZ)
        x = x[: max(0, int((times[k + 1] - times[k]) * sr))]
        place(track, x, times[k], sr)
    return track


def render_wavs(row: Mapping, speaker_words: Sequence[Word], decisions: Sequence[Decision], wav: Path,
                real_wav: Path, sample_rate: int, render: str = "tts") -> str:
    """Write the replay's stereo WAV and the real listener's comparison WAV (module docstring);
    returns how speech was rendered (``"tts: ..."``, ``"tone"`` or ``"tone (no TTS available)"``)."""
    import soundfile as sf

    from backchannel.rating.tts import render_tone

    n_samples = round(int(row["n_frames"]) * FRAME_S * sample_rate)
    dur = n_samples / sample_rate
    words, speech = _voices(render, sample_rate)
    if words is not None:
        left = words.words(speaker_words, 0.0, dur)[:n_samples]
    else:
        left = render_tone(speaker_words, 0.0, dur, sample_rate)[:n_samples]
    bcs = [d for d in decisions if d.action == "BACKCHANNEL"]
    model = _backchannel_track(words, [d.time for d in bcs], [d.form for d in bcs], None, n_samples,
                               sample_rate)
    onsets, offsets = list(row.get("bc_onsets", [])), list(row.get("bc_offsets", []))
    real = _backchannel_track(words, onsets, list(row.get("bc_forms", [])),
                              [max(b - a, 0.1) for a, b in zip(onsets, offsets)], n_samples, sample_rate)
    for path, right in ((wav, model), (real_wav, real)):
        sf.write(path, np.clip(np.stack([left, right], axis=1), -1.0, 1.0), sample_rate, subtype="PCM_16")
    return speech


# ---------------------------------------------------------------- plot

def plot_simulation(row: Mapping, decisions: Sequence[Decision], policy: Policy, out: str | Path,
                    weights: str = "") -> Path:
    """Timeline PNG (style of ``corpora.inspect.plot_timeline``): speaker and listener voice activity
    with the true backchannel onsets, then the smoothed backchannel and take-turn probabilities, the
    policy's thresholds and the decisions (forms)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = int(row["n_frames"])
    t = np.arange(n) * FRAME_S
    end = n * FRAME_S
    fig, axes = plt.subplots(3, 1, figsize=(float(np.clip(end / 5, 12, 48)), 7), sharex=True,
                             gridspec_kw={"height_ratios": [1.5, 1.5, 3]}, layout="constrained")
    axes[0].fill_between(t, 0, np.asarray(row["va_speaker"]), step="post", color="tab:blue", alpha=0.7)
    axes[0].set_ylabel(f"speaker\n{row.get('floor', '')}")
    axes[1].fill_between(t, 0, np.asarray(row["va_listener"]), step="post", color="tab:orange", alpha=0.7)
    axes[1].set_ylabel(f"listener {row['listener']}\n(backchannels\nleft out)")
    for onset, form in zip(row.get("bc_onsets", []), row.get("bc_forms", [])):
        for ax in axes[1:]:
            ax.axvline(onset, color="0.35", lw=1, ls=":")
        axes[1].text(onset, 1.02, form, fontsize=7, rotation=45, color="0.25")
    for ax in axes[:2]:
        ax.set_ylim(0, 1.3)
    dt = np.array([d.time for d in decisions])
    p_bc = np.array([d.probability for d in decisions])
    ax = axes[2]
    ax.plot(dt, p_bc, color="tab:green", lw=1, label="p(backchannel), smoothed")
    ax.plot(dt, [d.p_take_turn for d in decisions], color="tab:red", lw=0.8, alpha=0.5,
            label="p(take turn), smoothed")
    ax.axhline(policy.on, color="tab:green", ls="--", lw=0.8, label=f"on {policy.on:.3g}")
    if policy.off != policy.on:
        ax.axhline(policy.off, color="tab:green", ls=":", lw=0.8, label=f"off {policy.off:.3g}")
    take = np.array([d.action == "TAKE_TURN" for d in decisions], dtype=float)
    if take.any():
        ax.fill_between(dt - FRAME_S, 0, take, step="post", color="tab:red", alpha=0.15, label="TAKE_TURN")
    bcs = [d for d in decisions if d.action == "BACKCHANNEL"]
    if bcs:
        ax.plot([d.time for d in bcs], [d.probability for d in bcs], "v", color="darkgreen", ms=7,
                label="BACKCHANNEL decided")
        for d in bcs:
            ax.text(d.time, min(d.probability + 0.05, 1.02), d.form, fontsize=7, rotation=45,
                    color="darkgreen")
            axes[1].axvline(d.time, color="darkgreen", lw=1.2)
    faults = [d.time for d in decisions if d.fault]
    if faults:
        ax.plot(faults, [0.0] * len(faults), "x", color="black", ms=4, label="fault (silenced)")
    ax.plot([], [], color="0.35", ls=":", label="true backchannel onset")
    ax.set_ylim(0, 1.15)
    ax.set_ylabel("listener model")
    start = float(row.get("start_s", 0.0))
    ax.set_xlabel(f"time (s) from {start:.2f} s into the dialogue")
    ax.set_xlim(0, end)
    width = fig.get_figwidth()
    title = (f"{row.get('corpus', '')} {row['dialogue']}: listener {row['listener']} replayed live, "
             f"{start:.1f}–{start + end:.1f} s of the dialogue; solid green: decided backchannels, dotted grey: "
             f"the real ones. Weights: {weights or 'not named'}")
    fig.suptitle(textwrap.fill(title, width=int(width * 11)), fontsize=10)  # ~11 characters an inch at 10 pt
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 8), fontsize=7, frameon=False)
    out = Path(out)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


# ---------------------------------------------------------------- command line

def source_dialogue(manifest: Mapping, dialogue_id: str,
                    root: str | None = None) -> tuple[Dialogue | None, str]:
    """Re-read ``dialogue_id`` from its corpus (``root`` or the manifest's ``source_root``) for the
    real word timing; ``(None, why)`` when it cannot be read."""
    from backchannel.corpora.errors import CorpusError

    corpus, src = manifest.get("corpus"), root or manifest.get("source_root")
    if not src:
        return None, "the dataset manifest records no source_root"
    try:
        if corpus in ("maptask", "demo"):
            from backchannel.corpora.maptask import read_maptask_dialogue

            d = read_maptask_dialogue(src, dialogue_id)
            d.corpus = corpus
            return d, ""
        from backchannel.rating.commands import load_dialogue

        return load_dialogue(corpus, src, dialogue_id), ""
    except (CorpusError, OSError, ValueError) as err:
        return None, str(err)


def cmd_simulate(args) -> int:
    from backchannel.corpora.dataset import find_row, load_prepared, resolve_prepared

    from backchannel.policy import Policy

    dataset = resolve_prepared(args.dataset)
    dsd, manifest = load_prepared(dataset)
    row = find_row(dsd, dataset, args.dialogue, args.listener)
    dialogue, why = source_dialogue(manifest, row["dialogue"], args.root)
    if dialogue is not None and dialogue.n_frames < int(row["n_frames"]):
        dialogue, why = None, f"{dialogue.source}: shorter than the dataset row"
    if dialogue is None:
        print(f"note: speaker word timing reconstructed from the dataset row ({why})")
    if args.report:
        policy = Policy.from_report(args.report, row["corpus"], cadence=args.cadence, seed=args.seed)
        print(f"policy from {args.report} ({row['corpus']}): on={policy.on:.3f}, smoothing={policy.smoothing}, "
              f"lead={policy.lead:.2f} s")
    else:
        policy = Policy(on=args.threshold, smoothing=args.smoothing, cadence=args.cadence, seed=args.seed)
    if args.random_weights and args.checkpoint:
        from backchannel.cli import UsageError

        raise UsageError("give either --checkpoint or --random-weights, not both")
    sim = simulate(row, out_dir=args.out, checkpoint=args.checkpoint, policy=policy, render=args.render,
                   dialogue=dialogue, start=args.start, seconds=args.seconds, sample_rate=args.sample_rate,
                   seed=args.seed, random_weights=args.random_weights)
    n_bc = sum(d.action == "BACKCHANNEL" for d in sim.decisions)
    print(f"{row['dialogue']} listener {row['listener']}: {len(sim.decisions)} frames replayed, "
          f"{n_bc} backchannels decided ({len(sim.true_onsets)} real)")
    print(f"weights: {sim.weights}" + (" -- untrained: the decisions show the plumbing, not a model"
                                       if sim.weights == RANDOM_WEIGHTS else ""))
    print(f"speech: {sim.speech}; speaker timing: {sim.speaker_timing}")
    for p in (sim.wav, sim.real_wav, sim.png, sim.json):
        print(f"wrote {p}")
    return 0
