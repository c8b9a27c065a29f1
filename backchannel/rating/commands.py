"""``backchannel rating build|serve|raters|analyze``: argparse wiring (the lead's cli calls ``register``).

Each handler takes the parsed arguments and returns an exit code; heavy imports happen inside them,
so the core CLI imports none of the ``[rating]`` extra.
"""
from __future__ import annotations

import argparse
import functools
import importlib
import os
import secrets
import sys
from pathlib import Path

from . import CONDITIONS

ADMIN_ENV = "BACKCHANNEL_RATING_ADMIN_TOKEN"


def register(subparsers) -> argparse.ArgumentParser:
    """Add ``rating`` with its sub-commands to a top-level argparse ``subparsers`` object."""
    p = subparsers.add_parser("rating", help="human rating of backchannel timing: clips, rater app, statistics")
    sub = p.add_subparsers(dest="rating_command", required=True)

    b = sub.add_parser("build", help="cut rating clips per condition and write study.json")
    b.add_argument("--model-onsets", required=True, type=Path,
                   help="JSON lines {corpus, dialogue, listener, onsets[, forms|types]}; one per listener to rate")
    b.add_argument("--real-onsets", type=Path,
                   help="same format for the real listener (default: the corpus's backchannels)")
    b.add_argument("--corpus-root", type=Path,
                   help="folder holding maptask/, mrda/... or the corpus itself (default: $BACKCHANNEL_CORPORA)")
    b.add_argument("--reader", help="MODULE:FUNCTION(root, dialogue_id) -> Dialogue, for corpora the project "
                                    "does not read (default: the project's reader for the corpus)")
    b.add_argument("--dialogues", help="comma-separated dialogue ids to use (default: all in --model-onsets)")
    b.add_argument("--out", required=True, type=Path, help="study folder: study.json and clips/")
    b.add_argument("--conditions", default=",".join(CONDITIONS), help="comma-separated subset of " + ",".join(CONDITIONS))
    b.add_argument("--per-dialogue", type=int, default=2, help="windows per (dialogue, listener)")
    b.add_argument("--windows", type=int, default=None, help="at most this many windows in all")
    b.add_argument("--min-s", type=float, default=20.0, help="shortest clip, seconds")
    b.add_argument("--max-s", type=float, default=40.0, help="longest clip, seconds")
    b.add_argument("--min-backchannels", type=int, default=2, help="real backchannels a window needs")
    b.add_argument("--bc-sounds", type=Path, help="folder of <form>.wav backchannel recordings (mhm.wav, yeah.wav...)")
    b.add_argument("--tts", choices=("auto", "espeak", "tone"), default="auto")
    b.add_argument("--sample-rate", type=int, default=22050, help="Hz")
    b.add_argument("--lufs", type=float, default=-23.0, help="loudness of every clip, LUFS")
    b.add_argument("--seed", type=int, default=0)
    b.set_defaults(func=cmd_build)

    s = sub.add_parser("serve", help="run the rater web app")
    s.add_argument("--study", required=True, type=Path, help="study.json from `rating build`")
    s.add_argument("--db", required=True, type=Path, help="SQLite ratings database (created if absent)")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8750)
    s.add_argument("--base-url", help="public address for printed links (default http://HOST:PORT)")
    s.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                   help="also answer requests whose Host header is NAME (repeatable; '*' for any). The app "
                        "answers 127.0.0.1, localhost, [::1], --host and the --base-url host; others get 400 "
                        "(DNS rebinding protection)")
    s.add_argument("--add-raters", type=int, default=0, help="create this many raters and print their links")
    s.set_defaults(func=cmd_serve)

    r = sub.add_parser("raters", help="add, revoke or list raters")
    r.add_argument("--db", required=True, type=Path)
    r.add_argument("--add", type=int, default=0, help="create this many raters and print their links")
    r.add_argument("--name", default="", help="a label for the raters added")
    r.add_argument("--revoke", action="append", default=[], help="rater id whose token stops working")
    r.add_argument("--base-url", default="http://127.0.0.1:8750")
    r.set_defaults(func=cmd_raters)

    a = sub.add_parser("analyze", help="MOS, Welch t-tests, Krippendorff's alpha, bad-moment rates, plot")
    src = a.add_mutually_exclusive_group(required=True)
    src.add_argument("--csv", type=Path, help="ratings CSV exported from the admin page")
    src.add_argument("--db", type=Path, help="ratings database (needs --study)")
    a.add_argument("--study", type=Path, help="study.json (with --db)")
    a.add_argument("--out", required=True, type=Path, help="folder for rating_report.{json,md,png}")
    a.set_defaults(func=cmd_analyze)
    return p


def _reader(spec: str):
    module, _, func = spec.partition(":")
    try:
        return getattr(importlib.import_module(module), func)
    except (ImportError, AttributeError) as err:
        raise SystemExit(f"rating build: no dialogue reader {spec!r} ({err})") from None


def load_dialogue(corpus: str, root, dialogue_id: str):
    """One dialogue of a corpus the project reads (``backchannel.corpora.recipes``); ``root`` as there."""
    from backchannel.corpora.errors import CorpusError
    from backchannel.corpora.recipes import corpus_dir, load_corpus

    if corpus in ("maptask", "demo"):
        from backchannel.corpora.maptask import read_maptask_dialogue

        d = read_maptask_dialogue(corpus_dir(corpus, root), dialogue_id)
        d.corpus = corpus
        return d
    if corpus == "mrda":
        from backchannel.corpora.mrda import mrda_root, read_mrda_meeting

        return read_mrda_meeting(mrda_root(corpus_dir(corpus, root)) / "database" / f"{dialogue_id}.dadb")
    for d in load_corpus(corpus, root):
        if d.id == dialogue_id:
            return d
    raise CorpusError(corpus_dir(corpus, root), f"no dialogue {dialogue_id!r} in corpus {corpus}")


def cmd_build(args) -> int:
    from .stimuli import StudyInput, build_study, study_onsets

    model = study_onsets(args.model_onsets)
    real = study_onsets(args.real_onsets) if args.real_onsets else {}
    wanted = set(args.dialogues.split(",")) if args.dialogues else None
    inputs, dialogues = [], {}
    for (corpus, dia, listener), onsets in sorted(model.items()):
        if wanted is not None and dia not in wanted:
            continue
        if (corpus, dia) not in dialogues:
            read = _reader(args.reader) if args.reader else functools.partial(load_dialogue, corpus)
            dialogues[corpus, dia] = read(args.corpus_root, dia)
        real_onsets = real.get((corpus, dia, listener)) if args.real_onsets else None
        if args.real_onsets and real_onsets is None:
            print(f"rating build: {args.real_onsets} has no real onsets for {corpus}/{dia}/{listener}; skipped",
                  file=sys.stderr)
            continue
        inputs.append(StudyInput(dialogues[corpus, dia], listener, onsets, real_onsets))
    if not inputs:
        print("rating build: no (dialogue, listener) to use", file=sys.stderr)
        return 2
    study = build_study(inputs, args.out, conditions=tuple(args.conditions.split(",")),
                        per_dialogue=args.per_dialogue, n_windows=args.windows, min_s=args.min_s,
                        max_s=args.max_s, min_backchannels=args.min_backchannels, seed=args.seed,
                        sample_rate=args.sample_rate, lufs=args.lufs, tts=args.tts, bc_sounds=args.bc_sounds)
    print(f"wrote {len(study['clips'])} clips ({len(study['clips']) // len(study['conditions'])} windows x "
          f"{len(study['conditions'])} conditions) to {args.out / 'study.json'}")
    print(f"speech rendering: {study['speech_rendering']}")
    if study["speech_rendering"].startswith("tone"):
        print("WARNING: no text-to-speech available: the speaker is rendered as tones following the word timing",
              file=sys.stderr)
    return 0


def _print_links(store, n: int, base_url: str, name: str = "") -> None:
    for _ in range(n):
        rater, token = store.add_rater(name)
        print(f"rater {rater}: {base_url.rstrip('/')}/rate#{token}")


def cmd_serve(args) -> int:
    from urllib.parse import urlsplit

    import uvicorn

    from .app import WILDCARD_HOSTS, create_app

    admin = os.environ.get(ADMIN_ENV) or secrets.token_urlsafe(24)
    base = args.base_url or f"http://{args.host}:{args.port}"
    app = create_app(args.study, args.db, admin,
                     allowed_hosts=[args.host, urlsplit(base).hostname, *args.allowed_host])
    if args.host in WILDCARD_HOSTS and not args.allowed_host and not args.base_url:
        print(f"note: bound to {args.host!r}: remote raters' browsers are refused unless their Host is named "
              "with --allowed-host or --base-url", file=sys.stderr)
    _print_links(app.rating.store, args.add_raters, base)
    print(f"admin page: {base}/admin#{admin}" if ADMIN_ENV not in os.environ
          else f"admin page: {base}/admin#<${ADMIN_ENV}>")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def cmd_raters(args) -> int:
    from .store import Store

    store = Store(args.db)
    _print_links(store, args.add, args.base_url, args.name)
    status = 0
    for rater in args.revoke:
        if store.revoke(rater):
            print(f"revoked {rater}")
        else:
            print(f"rating raters: no rater {rater!r} in {args.db}", file=sys.stderr)
            status = 1
    if not args.add and not args.revoke:
        for r in store.raters():
            print(f"{r['id']}\t{r['name']}\t{r['done']} rated\t{'revoked' if r['revoked'] else 'active'}")
    store.close()
    return status


def cmd_analyze(args) -> int:
    from .analysis import analyze, export_rows, markdown, read_ratings_csv, write_report

    if args.csv:
        rows = read_ratings_csv(args.csv)
    else:
        if not args.study:
            print("rating analyze: --db needs --study", file=sys.stderr)
            return 2
        from .stimuli import load_study
        from .store import Store

        if not args.db.is_file():
            print(f"rating analyze: {args.db}: no such database", file=sys.stderr)
            return 2
        store = Store(args.db)
        rows = export_rows(store.all_ratings(), load_study(args.study))
        store.close()
    if not rows:
        print("rating analyze: no ratings", file=sys.stderr)
        return 2
    report = analyze(rows)
    paths = write_report(report, args.out)
    print(markdown(report))
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0
