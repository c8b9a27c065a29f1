"""Writes notebooks/01_corpus.ipynb (source of truth for its cells); execute it with nbclient to store outputs."""
import nbformat as nbf

cells = [
    nbf.v4.new_markdown_cell("""# 01 — Explore a prepared corpus

From real transcripts to per-80 ms listener frames: read a corpus, mine backchannels and turn events,
write the Hugging Face dataset, and look at it. With `BACKCHANNEL_CORPORA` set (the folder holding
`maptask/` and `mrda/`) this uses the real HCRC Map Task; otherwise the project's synthetic demo corpus.
`BACKCHANNEL_NB_DIALOGUES` sets how many test-split dialogues to use (small by default, so it runs in the
test suite)."""),
    nbf.v4.new_code_cell("""import os, tempfile
from pathlib import Path
from IPython.display import Image, display

from backchannel.corpora.recipes import corpora_root, load_corpus
from backchannel.corpora.dataset import build_dataset, load_prepared
from backchannel.corpora.mining import mine_dialogue

N = int(os.environ.get("BACKCHANNEL_NB_DIALOGUES", "6"))
root = corpora_root()
corpus = "maptask" if root else "demo"
print(f"corpus: {corpus}" + ("" if root else " (synthetic demo: no BACKCHANNEL_CORPORA set)"))
dialogues = [d for d in load_corpus(corpus, root, splits={"test"})][:N]
print(f"{len(dialogues)} test dialogues, {sum(d.duration for d in dialogues) / 60:.1f} min:",
      ", ".join(d.id for d in dialogues))"""),
    nbf.v4.new_markdown_cell("""## A dialogue is plain data
Each `Dialogue` has one `Channel` per speaker, holding `Utterance`s (a Map Task move here) with timed
`Word`s. Readers know nothing about training (the lhotse way)."""),
    nbf.v4.new_code_cell("""d = dialogues[0]
for speaker, ch in d.channels.items():
    print(speaker, len(ch.utterances), "utterances, e.g.:")
    for u in ch.utterances[:4]:
        print(f"   {u.start:7.2f}-{u.end:7.2f} s  {u.act or '-':<12} gold_bc={u.gold_backchannel!s:<5} {u.text!r}")"""),
    nbf.v4.new_markdown_cell("""## Mined events
Backchannels (form, semantic type, source of the label, overlap, time since the floor party's speech
ended), turn shifts and interruptions, and pauses inside the floor party's turn."""),
    nbf.v4.new_code_cell("""events = mine_dialogue(d)
for listener, ev in events.listeners.items():
    kinds = [t.kind for t in ev.turns]
    print(f"listener {listener}: {len(ev.backchannels)} backchannels, {kinds.count('shift')} shifts, "
          f"{kinds.count('interruption')} interruptions, {sum(p.kind == 'hold' for p in ev.pauses)} hold pauses")
    for b in ev.backchannels[:5]:
        print(f"   {b.onset:7.2f} s  {b.form:<12} {b.bc_type:<16} {b.source:<7} overlap={b.in_overlap!s:<5} "
              f"since speaker end {b.since_speaker_end:.2f} s")"""),
    nbf.v4.new_markdown_cell("""## The per-80 ms dataset
One row per (dialogue, listener). `action` marks frames whose next 500 ms contain the listener's onset of
a backchannel (1) or a turn (2)."""),
    nbf.v4.new_code_cell("""out = Path(tempfile.mkdtemp()) / corpus
build_dataset(dialogues, out, corpus=corpus, progress=False)
dsd, manifest = load_prepared(out)
print(dsd)
print("fingerprint", manifest["fingerprint"][:16], "| label settings", manifest["label_settings"])
row = dsd["test"][0]
print(row["dialogue"], row["listener"], row["n_frames"], "frames;",
      "frames labelled BACKCHANNEL:", sum(a == 1 for a in row["action"]))"""),
    nbf.v4.new_code_cell("""from backchannel.corpora.inspect import describe, plot_timeline

listener = max(dsd["test"], key=lambda r: len(r["bc_onsets"]))  # the most active listener
print(describe(dsd, manifest, dialogue=listener["dialogue"], listener=listener["listener"])[:1500])
start = max(0.0, listener["bc_onsets"][0] - 5) if listener["bc_onsets"] else 0.0
png = plot_timeline(dsd, listener["dialogue"], listener["listener"], out / "timeline.png", start=start, seconds=45)
display(Image(filename=str(png)))"""),
    nbf.v4.new_markdown_cell("""## Statistics
The same report `backchannel corpus stats` writes (here on the slice): rate per listener-minute, forms and
types, onset relative to the floor party's speech end, turn-transition gaps, inter-backchannel intervals."""),
    nbf.v4.new_code_cell("""from backchannel.corpora.stats import compare_to_human_reference, corpus_stats, write_stats_report

stats = corpus_stats(dialogues)
write_stats_report(stats, out / "stats")
for line in compare_to_human_reference(stats):
    print(line)
display(Image(filename=str(out / "stats" / "stats.png")))"""),
]
nb = nbf.v4.new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                               "language": "python"}})
nbf.write(nb, "notebooks/01_corpus.ipynb")
