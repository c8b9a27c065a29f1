"""One fault counter for every runtime piece (listener, pool, Moshi adapters, pipecat processor).

A fault is anything that made a frame SILENT or left it unhandled; the host loop goes on. Each kind is
counted in ``faults`` (a ``Counter``) and logged once: one WARNING line, its traceback at DEBUG.
"""
from __future__ import annotations

import logging
from collections import Counter


class Faults:
    """``record(kind, frame, err=None, detail="", n=1)`` counts faults and logs the first of each kind as
    ``"<owner>: frame <n>: <kind> (<what>); <consequence>"``."""

    def __init__(self, owner: str, logger: logging.Logger | None = None,
                 consequence: str = "the frame is SILENT"):
        self.owner, self.consequence = owner, consequence
        self.log = logger or logging.getLogger(f"backchannel.{owner.replace(' ', '_')}")
        self.counts: Counter = Counter()

    def record(self, kind: str, frame: int | None = None, err: BaseException | None = None, detail: str = "",
               n: int = 1, consequence: str | None = None) -> str:
        """Count ``n`` faults of ``kind`` (logging the first of the kind, with ``consequence`` if given, else
        the owner's); returns ``kind``."""
        first = self.counts[kind] == 0
        self.counts[kind] += n
        if first:
            what = f"{type(err).__name__}: {err}" if err is not None else detail
            where = f"frame {frame}: " if frame is not None else ""
            self.log.warning("%s: %s%s (%s); %s. Further %r faults are counted in .faults, not logged.",
                             self.owner, where, kind, what, consequence or self.consequence, kind)
            if err is not None:
                self.log.debug("%s: traceback of the first %r fault", self.owner, kind, exc_info=err)
        return kind
