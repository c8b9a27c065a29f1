"""Human rating of backchannel cadence (DESIGN.md, Evaluation item 6; Ruede et al. 2017).

- ``stimuli``: cut 20-40 s clips where the speaker holds the floor and put backchannel sounds at
  each condition's listener onsets (real listener, model, random with the true count, pause gate).
- ``tts``: offline speech rendering (espeak-ng) of words at their real times, or a tone fallback.
- ``store`` / ``app``: the rater web app (SQLite in WAL mode; Starlette, optional extra ``[rating]``).
- ``analysis``: MOS with 95% CI, Welch t-tests, Krippendorff's alpha, bad-moment rates, a plot.
- ``commands``: ``backchannel rating build|serve|raters|analyze``.
"""
CONDITIONS = ("real", "model", "random", "pause_gate")
SCALES = ("timing", "naturalness")
