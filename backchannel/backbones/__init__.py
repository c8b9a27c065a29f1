"""Frozen streaming backbones (DESIGN.md "Backbone and head").

Every backbone has ``hidden_size`` and the same streaming contract:

- ``forward(...) -> hidden [B, T, hidden_size]``: one vector per 80 ms frame, batched over whole sequences;
- ``init_state(batch_size) -> state``: a plain object;
- ``reset(state, mask)``: restart the streams where ``mask`` is true (``timing``: any subset, the others
  untouched; Moshi and Mimi share one cache per batch: all streams at once);
- ``step(state, ...) -> (hidden [B, hidden_size], state)``: one frame, causal, equal to ``forward``.

``timing`` (:class:`TimingBackbone`, our VAP-pretrained transformer over voice activity, prosody and
text) is imported eagerly; ``MoshiBackbone`` and ``MimiBackbone`` (transformers) load on first use.
"""
from backchannel.backbones.timing import (
    FrameFeatures,
    TimingBackbone,
    TimingConfig,
    TimingState,
    VAPHead,
    vap_loss,
    vap_next_speaker,
    vap_states,
    vap_targets,
    vap_zero_shot,
)

__all__ = [
    "FrameFeatures", "TimingBackbone", "TimingConfig", "TimingState", "VAPHead", "vap_loss",
    "vap_next_speaker", "vap_states", "vap_targets", "vap_zero_shot", "MoshiBackbone", "MimiBackbone",
]


def __getattr__(name):
    if name == "MoshiBackbone":
        from backchannel.backbones.moshi import MoshiBackbone

        return MoshiBackbone
    if name == "MimiBackbone":
        from backchannel.backbones.mimi import MimiBackbone

        return MimiBackbone
    raise AttributeError(f"module 'backchannel.backbones' has no attribute {name!r}")
