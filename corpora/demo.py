"""A small synthetic corpus in the Map Task NXT format, so the pipeline runs where no corpus exists.

``make_demo_corpus("demo")`` writes ``demo/maptask/timed-units/*.xml`` and ``demo/maptask/moves/*.xml``
exactly as the HCRC Map Task NXT release lays them out (``nite`` namespace, ``<tu>``/``<sil>``/``<noi>``
elements with times in seconds, moves pointing at ranges ``#id(a)..id(b)``), so the Map Task reader
reads it unchanged. Dialogue ids follow the release (``q<quad><e|n>c<n>``) and cover the official
split rule: train ``q1``-``q5``, dev ``q6``, test ``q7``-``q8`` (8 dialogues: 5 / 1 / 2).

The conversations are scripted, not recorded, but shaped like Map Task: the giver (``g``) gives
instructions in inter-pausal units (IPUs) separated by pauses; the follower (``f``) backchannels
(mmhmm, right, okay, uh-huh, yeah: ``acknowledge`` moves) mostly in the giver's pauses of 200 ms or
more and sometimes in overlap, asks ``check``/``query_yn``/``query_w`` questions, and turns change
with gaps around 200 ms (some in overlap). Each dialogue lasts about 2-3 minutes. The output is a pure
function of ``(n_dialogues, seed)``: the same arguments give byte-identical files.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

NITE_NS = "http://nite.sourceforge.net/"
QUAD_ORDER = (1, 6, 7, 2, 3, 8, 4, 5)  # first 8 dialogues: train q1-q5, dev q6, test q7-q8
MAX_DIALOGUES = 128

BACKCHANNELS = (("mmhmm", 0.30), ("right", 0.22), ("okay", 0.20), ("uh-huh", 0.16), ("yeah", 0.12))
LANDMARKS = ("caravan park", "old mill", "white mountain", "stone creek", "farmed land", "rope bridge",
             "pine forest", "fast flowing river", "lost steps", "west lake", "trig point", "saloon bar")
INSTRUCTIONS = (
    "okay go straight down", "now you go south", "keep going {card}", "until you're just above the {lm}",
    "and then curve round to the {side}", "past the {lm}", "about two inches", "then stop",
    "underneath the {lm}", "go round the {side} of the {lm}", "and head {card}", "right along the edge",
    "until you come to the {lm}", "then straight across", "keeping the {lm} on your {side}",
)
CHECKS = ("so i go below the {lm}", "to the {side} of it", "past the {lm}", "so that's {card} then")
QUERIES_YN = ("do you have a {lm}", "have i to go round the {lm}", "is that above the {lm}",
              "do i go {card}")
QUERIES_W = ("where's the {lm}", "how far down", "which side of the {lm}")
REPLIES_Y = ("yes", "yeah", "that's right", "yeah that's it")
REPLIES_N = ("no", "no you don't", "no not quite")
REPLIES_W = ("just to the {side} of it", "about an inch", "below the {lm}")
ALIGNS = ("okay", "have you got that", "you with me")


@dataclass
class _Move:
    """One move: ``label`` and its IPUs, each a list of ``(word, start, end)`` (seconds)."""

    speaker: str
    label: str
    ipus: list[list[tuple[str, float, float]]] = field(default_factory=list)

    @property
    def start(self) -> float:
        return self.ipus[0][0][1]

    @property
    def end(self) -> float:
        return self.ipus[-1][-1][2]


class _Script:
    """Builds one dialogue's moves and noises on a shared clock, checking nobody overlaps themself."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.moves: list[_Move] = []
        self.noises: list[tuple[str, float, float, str]] = []
        self.free = {"g": 0.0, "f": 0.0}  # when each speaker's last sound ended (s)

    def fill(self, template: str) -> str:
        r = self.rng
        return template.format(lm=r.choice(LANDMARKS), side=r.choice(("left", "right")),
                               card=r.choice(("north", "south", "east", "west")))

    def ipu(self, speaker: str, text: str, start: float) -> list[tuple[str, float, float]]:
        """Words of ``text`` from ``start`` on, contiguous except for rare sub-200 ms hesitations."""
        r, t, out = self.rng, _r(start), []
        if t < self.free[speaker]:
            raise AssertionError(f"{speaker} overlaps itself at {t}")
        for i, word in enumerate(text.split()):
            if i and r.random() < 0.12:
                t = _r(t + r.uniform(0.05, 0.15))
            dur = min(0.7, max(0.1, (0.1 + 0.055 * len(word)) * r.uniform(0.8, 1.3)))
            out.append((word, t, _r(t + dur)))
            t = out[-1][2]
        self.free[speaker] = t
        return out

    def move(self, speaker: str, label: str, text: str, start: float) -> _Move:
        """A one-IPU move starting at ``start`` (s)."""
        m = _Move(speaker, label, [self.ipu(speaker, text, start)])
        self.moves.append(m)
        return m

    def noise(self, speaker: str, start: float, end: float, kind: str) -> None:
        start, end = _r(start), _r(end)
        if end > start >= self.free[speaker]:
            self.noises.append((speaker, start, end, kind))
            self.free[speaker] = end

    def backchannel(self, onset: float) -> _Move:
        r = self.rng
        form = r.choices([f for f, _ in BACKCHANNELS], [w for _, w in BACKCHANNELS])[0]
        if r.random() < 0.04:
            form = "right okay"
        return self.move("f", "acknowledge", form, max(onset, self.free["f"] + 0.05))

    def gap(self, mean: float = 0.2, sd: float = 0.22, lo: float = -0.4, hi: float = 1.0) -> float:
        """A turn-transition gap (s): mode near 200 ms, some overlap (negative)."""
        return min(hi, max(lo, self.rng.gauss(mean, sd)))


def _r(t: float) -> float:
    return round(t, 4)


def _instruction_turn(s: _Script, t: float) -> float:
    """The giver instructs in 1-3 moves of 1-3 IPUs; the follower backchannels in the pauses between
    IPUs (or overlapping their ends). Returns the end of the giver's last IPU (s)."""
    r = s.rng
    if r.random() < 0.3:
        t = s.move("g", "ready", r.choice(("okay", "right", "now")), t).end + r.uniform(0.1, 0.35)
    moves = [_Move("g", "instruct") for _ in range(r.randint(1, 3))]
    plan = [(m, " ".join(s.fill(r.choice(INSTRUCTIONS)) for _ in range(1 + (r.random() < 0.4))))
            for m in moves for _ in range(r.randint(1, 3))]
    s.moves.extend(moves)
    for k, (move, text) in enumerate(plan):
        move.ipus.append(s.ipu("g", text, t))
        ipu_end = move.ipus[-1][-1][2]
        if k == len(plan) - 1:
            return ipu_end
        pause = r.uniform(0.1, 0.19) if r.random() < 0.15 else r.uniform(0.25, 1.3)
        resume = ipu_end + pause
        roll = r.random()
        if roll < 0.06:  # backchannel overlapping the end of the IPU
            bc = s.backchannel(ipu_end - r.uniform(0.05, 0.3))
            resume = max(resume, bc.end + r.uniform(0.05, 0.3))
        elif roll < 0.3 and pause >= 0.2:  # backchannel in the pause
            bc = s.backchannel(ipu_end + r.uniform(0.1, min(0.5, pause)))
            resume = max(resume, bc.end + r.uniform(0.05, 0.35))
        if resume - ipu_end > 0.8 and r.random() < 0.3:
            s.noise("g", resume - r.uniform(0.3, 0.5), resume - 0.02, r.choice(("breath", "inbreath")))
        t = resume
    raise AssertionError("unreachable")


def _exchange(s: _Script, t_end: float) -> float:
    """What follows an instruction: an acknowledgement, a question and reply, or an alignment check."""
    r = s.rng
    roll = r.random()
    if roll < 0.4:  # the follower acknowledges, the giver goes on
        form = r.choice(("okay", "right", "okay", "mmhmm", "right okay", "okay yeah"))
        ack = s.move("f", "acknowledge", form, max(t_end + s.gap(), s.free["f"] + 0.05))
        return max(ack.end, s.free["g"]) + s.gap(0.25, 0.2, 0.0)
    if roll < 0.75:  # follower question, giver reply, maybe an acknowledgement
        label = r.choices(("check", "query_yn", "query_w"), (0.45, 0.4, 0.15))[0]
        text = s.fill(r.choice({"check": CHECKS, "query_yn": QUERIES_YN, "query_w": QUERIES_W}[label]))
        q = s.move("f", label, text, max(t_end + s.gap(), s.free["f"] + 0.05))
        if label == "query_w":
            reply, rtext = "reply_w", s.fill(r.choice(REPLIES_W))
        elif r.random() < 0.75:
            reply, rtext = "reply_y", r.choice(REPLIES_Y)
        else:
            reply, rtext = "reply_n", r.choice(REPLIES_N)
        a = s.move("g", reply, rtext, max(q.end + s.gap(0.2, 0.18, -0.2), s.free["g"] + 0.05))
        end = a.end
        if r.random() < 0.4:
            end = s.move("g", r.choice(("explain", "clarify")), s.fill(r.choice(INSTRUCTIONS)),
                         end + r.uniform(0.15, 0.5)).end
        if r.random() < 0.6:
            end = s.move("f", "acknowledge", r.choice(("okay", "right", "mmhmm")),
                         max(end + s.gap(), s.free["f"] + 0.05)).end
        return max(end, s.free["g"]) + s.gap(0.25, 0.2, 0.0)
    align = s.move("g", "align", r.choice(ALIGNS), t_end + r.uniform(0.3, 0.8))
    end = s.move("f", "reply_y", r.choice(("yeah", "yes", "uh-huh", "yep")),
                 max(align.end + s.gap(), s.free["f"] + 0.05)).end
    if r.random() < 0.8:  # the giver acknowledges the reply
        end = s.move("g", "acknowledge", r.choice(("right", "okay", "right okay")),
                     max(end + s.gap(), s.free["g"] + 0.05)).end
    return max(end, s.free["g"]) + s.gap(0.25, 0.2, 0.0)


def _script(rng: random.Random) -> tuple[_Script, float]:
    s = _Script(rng)
    target = rng.uniform(120.0, 180.0)
    t = rng.uniform(0.3, 1.0)
    while t < target:
        t_end = _instruction_turn(s, t)
        t = _exchange(s, t_end)
    duration = _r(max(m.end for m in s.moves) + rng.uniform(0.5, 1.5))
    return s, duration


def _channel_xml(dlg: str, spk: str, s: _Script, duration: float, move_numbers: dict[int, int]):
    """The timed-units and moves XML of one speaker (strings)."""
    prefix = f"{dlg}{spk}"
    # (start, end, kind, payload) for every sound; silences fill the rest of the timeline.
    sounds = [(w0, w1, "tu", (w, i)) for i, m in enumerate(s.moves) if m.speaker == spk
              for ipu in m.ipus for (w, w0, w1) in ipu]
    sounds += [(n0, n1, "noi", kind) for sp, n0, n1, kind in s.noises if sp == spk]
    sounds.sort(key=lambda x: (x[0], x[1]))
    elements, t = [], 0.0  # (id, start, end, kind, payload)
    for start, end, kind, payload in sounds + [(duration, duration, "end", None)]:
        if start < t:
            raise AssertionError(f"{prefix}: overlapping sounds at {start}")
        if start > t:
            elements.append((f"{prefix}.{len(elements) + 1}", t, start, "sil", None))
        if kind != "end":
            elements.append((f"{prefix}.{len(elements) + 1}", start, end, kind, payload))
        t = end

    utt = _utterance_numbers(s)
    tu_lines = []
    for eid, start, end, kind, payload in elements:
        times = f'id="{eid}" start="{start:.4f}" end="{end:.4f}"'
        if kind == "tu":
            tu_lines.append(f'<tu {times} utt="{utt[payload[1]]}">{escape(payload[0])}</tu>')
        elif kind == "noi":
            tu_lines.append(f'<noi {times} type="{payload}"/>')
        else:
            tu_lines.append(f"<sil {times}/>")

    # Each move spans its first to last word (pauses and noises inside included); ims cover the rest.
    spans: dict[int, list[int]] = {}
    for k, (_, _, _, kind, payload) in enumerate(elements):
        if kind == "tu":
            spans.setdefault(payload[1], [k, k])[1] = k
    tu_file = f"{dlg}.{spk}.timed-units.xml"

    def href(a: int, b: int) -> str:
        ids = f"id({elements[a][0]})" + (f"..id({elements[b][0]})" if b > a else "")
        return f'<nite:child href="{tu_file}#{ids}"/>'

    move_lines, k, last_no = [], 0, 0
    for i, (a, b) in sorted(spans.items(), key=lambda kv: kv[1][0]):
        if a > k:
            no = _last_before(s, move_numbers, elements[k][1])
            move_lines.append(f'<ims id="{dlg}.{spk}.move.{no}.5" >{href(k, a - 1)}</ims>')
        last_no = move_numbers[i]
        move_lines.append(f'<move cont="false_cont" interj="false_interj" rep="none" aban="false_aban" '
                          f'meta="false_meta" id="{dlg}.{spk}.move.{last_no}"  label="{s.moves[i].label}">'
                          f"{href(a, b)}</move>")
        k = b + 1
    if k < len(elements):
        move_lines.append(f'<ims id="{dlg}.{spk}.move.{last_no}.5" >{href(k, len(elements) - 1)}</ims>')
    return _root(f"tu.{dlg}.{spk}", tu_lines), _root(f"move.{dlg}.{spk}", move_lines)


def _utterance_numbers(s: _Script) -> dict[int, int]:
    """Map Task's ``utt`` attribute: a counter that advances whenever the speaker changes (time order)."""
    out, n, prev = {}, 0, None
    for i in sorted(range(len(s.moves)), key=lambda i: s.moves[i].start):
        if s.moves[i].speaker != prev:
            n, prev = n + 1, s.moves[i].speaker
        out[i] = n
    return out


def _last_before(s: _Script, move_numbers: dict[int, int], t: float) -> int:
    """Number of the last move (either speaker) starting before ``t``; 0 if none."""
    return max((move_numbers[i] for i, m in enumerate(s.moves) if m.start < t), default=0)


def _root(root_id: str, lines: list[str]) -> str:
    head = f'<?xml version="1.0" encoding="UTF-8"?>\n<nite:root xmlns:nite="{NITE_NS}" id="{root_id}">\n'
    return head + "".join(line + "\n" for line in lines) + "</nite:root>\n\n"


def demo_dialogue_ids(n_dialogues: int) -> list[str]:
    """Ids of the first ``n_dialogues`` demo dialogues: quads in ``QUAD_ORDER``, ``ec`` then ``nc``, c1..c8."""
    if not 1 <= n_dialogues <= MAX_DIALOGUES:
        raise ValueError(f"n_dialogues must be 1..{MAX_DIALOGUES}, got {n_dialogues}")
    ids = []
    for i in range(n_dialogues):
        rnd = i // len(QUAD_ORDER)
        ids.append(f"q{QUAD_ORDER[i % len(QUAD_ORDER)]}{'en'[rnd % 2]}c{rnd // 2 + 1}")
    return ids


def make_demo_corpus(dest: str | Path, n_dialogues: int = 8, seed: int = 0) -> Path:
    """Write ``n_dialogues`` synthetic Map Task dialogues under ``dest/maptask``; return that folder.

    Deterministic: the same ``(n_dialogues, seed)`` gives byte-identical files. A previous demo corpus
    there (marked by ``DEMO.md``) is replaced; any other existing ``maptask`` folder (a real corpus) is
    left alone and ``FileExistsError`` raised.
    """
    root = Path(dest) / "maptask"
    if root.exists() and any(root.iterdir()):
        if not (root / "DEMO.md").is_file():
            raise FileExistsError(f"{root} exists and is not a demo corpus; not overwriting it")
        for old in [*root.glob("timed-units/*.xml"), *root.glob("moves/*.xml")]:
            old.unlink()
    (root / "timed-units").mkdir(parents=True, exist_ok=True)
    (root / "moves").mkdir(parents=True, exist_ok=True)
    for k, dlg in enumerate(demo_dialogue_ids(n_dialogues)):
        script, duration = _script(random.Random(f"backchannel-demo-{seed}-{k}"))
        moves = script.moves
        order = sorted(range(len(moves)), key=lambda i: (moves[i].start, moves[i].speaker))
        numbers = {i: n + 1 for n, i in enumerate(order)}
        for spk in ("g", "f"):
            tu_xml, moves_xml = _channel_xml(dlg, spk, script, duration, numbers)
            (root / "timed-units" / f"{dlg}.{spk}.timed-units.xml").write_text(tu_xml, encoding="utf-8")
            (root / "moves" / f"{dlg}.{spk}.moves.xml").write_text(moves_xml, encoding="utf-8")
    (root / "DEMO.md").write_text(
        f"Synthetic demo corpus in the HCRC Map Task NXT format, generated by backchannel.corpora.demo\n"
        f"(n_dialogues={n_dialogues}, seed={seed}). Scripted timings and words, not recorded speech;\n"
        f"use it to exercise the pipeline, never to report results.\n", encoding="utf-8")
    return root
