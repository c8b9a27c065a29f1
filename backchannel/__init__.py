"""Backchannel: when a full-duplex voice system should say "mhm", take the turn, or stay quiet.

One clock (``backchannel.frames``: 80 ms frames, 12.5 Hz), corpus recipes (``backchannel.corpora``),
models (``backchannel.backbones``, ``backchannel.head``), training (``backchannel.train``) and the
streaming plugin (``backchannel.plugin``).
"""
__version__ = "0.1.0"
