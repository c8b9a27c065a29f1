"""The README's "Use the shipped listener" lines, exactly as written, in a fresh process with the network
disabled (``HF_HUB_OFFLINE=1`` and a ``sitecustomize`` that makes every socket connection fail): on the
package's default model, and on a tiny exported model put in its place.

``.ci/run`` also runs this file against the wheel installed non-editable in a second venv
(``BACKCHANNEL_TEST_INSTALLED=1``: the package must then come from outside the repository, and a model in the
repository's ``backchannel/default_listener`` must be in the installed package too)."""
from __future__ import annotations

import ast
import contextlib
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from backchannel.train import pretrained

ROOT = Path(__file__).resolve().parents[1]
HEADING = "## Use the shipped listener"
INSTALLED = os.environ.get("BACKCHANNEL_TEST_INSTALLED") == "1"
NO_NETWORK = '''
import socket


def _refuse(*args, **kwargs):
    raise OSError("network disabled by the test's sitecustomize")


socket.socket.connect = socket.socket.connect_ex = _refuse
socket.create_connection = socket.getaddrinfo = _refuse
'''


def readme_code() -> str:
    """The first ```python block after the README's "Use the shipped listener" heading."""
    text = (ROOT / "README.md").read_text()
    assert HEADING in text, f"README.md has no {HEADING!r} section"
    found = re.search(r"^```python\n(.*?)^```", text.split(HEADING, 1)[1], flags=re.DOTALL | re.MULTILINE)
    assert found, f"README.md: no ```python block under {HEADING!r}"
    return found.group(1)


def test_the_readme_shows_three_lines_on_a_wav_file():
    code = readme_code()
    lines = [line for line in code.splitlines() if line.strip()]
    assert len(lines) == 3 and "load_listener()" in code and len(re.findall(r'"[^"]+\.wav"', code)) == 1


def write_call(folder: Path) -> Path:
    """The README's WAV file: 6 s at 16 kHz, mono, talk-like bursts of a 180 Hz tone with pauses."""
    import soundfile as sf

    name = re.search(r'"([^"]+\.wav)"', readme_code()).group(1)
    rate = 16000
    t = np.arange(6 * rate) / rate
    talk = 0.3 * np.sin(2 * np.pi * 180 * t) * (np.sin(2 * np.pi * 0.4 * t) > -0.3)
    sf.write(folder / name, talk.astype(np.float32), rate)
    return folder / name


def run_offline_process(code: str, cwd: Path) -> subprocess.CompletedProcess:
    """``python -c code`` in ``cwd``, one torch thread, with no network."""
    site = cwd / "no_network"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(NO_NETWORK)
    env = {**os.environ, "PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300, check=False)


def check_readme_lines(code: str, cwd: Path) -> list:
    """Run ``code`` in a fresh offline process and in this one; both print the same decisions. Returns them."""
    probe = run_offline_process("import socket; socket.create_connection(('127.0.0.1', 9))", cwd)
    assert probe.returncode != 0 and "network disabled by the test's sitecustomize" in probe.stderr
    where = run_offline_process("import backchannel; print(backchannel.__file__)", cwd)
    assert where.returncode == 0, where.stderr
    if INSTALLED:  # the wheel installed non-editable, not this checkout
        assert not Path(where.stdout.strip()).resolve().is_relative_to(ROOT), where.stdout
    done = run_offline_process(code, cwd)
    assert done.returncode == 0, f"README lines failed:\n{code}\n{done.stderr[-3000:]}"
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    here = io.StringIO()
    cur = os.getcwd()
    try:
        os.chdir(cwd)
        with contextlib.redirect_stdout(here):
            exec(compile(code, "README.md", "exec"), {"__name__": "__main__"})
    finally:
        os.chdir(cur)
        torch.set_num_threads(threads)
    assert done.stdout == here.getvalue()
    decided = ast.literal_eval(done.stdout.strip())
    assert isinstance(decided, list)
    for time_s, action, form in decided:
        assert action in ("BACKCHANNEL", "TAKE_TURN") and 0 < time_s <= 6.0
        assert (form is not None) == (action == "BACKCHANNEL")
    return decided


def test_readme_lines_on_an_exported_model_offline(tmp_path):
    """The lines with ``load_listener()`` pointed at a tiny model exported with a policy.json whose threshold
    the model's probabilities on the WAV cross: same decisions in a fresh offline process as here."""
    from backchannel.plugin.listener import decide_wav, load_listener
    from backchannel.train.predict import load_predictor
    from test_pretrained import tiny_checkpoint

    from backchannel.policy import Policy

    wav = write_call(tmp_path)
    ckpt = tiny_checkpoint(tmp_path / "tiny.ckpt")
    p_bc = [d.probability for d in decide_wav(load_listener(ckpt, Policy(take_turn=None)), wav)]
    policy = Policy(on=round(float(np.quantile(p_bc, 0.8)), 4), refractory=0.4, take_turn=None)
    load_predictor(ckpt).save_pretrained(tmp_path / "model", policy=policy)
    code = readme_code()
    decided = check_readme_lines(code.replace("load_listener()", f"load_listener({str(tmp_path / 'model')!r})"),
                                 tmp_path)
    assert len(decided) >= 2 and {a for _, a, _ in decided} == {"BACKCHANNEL"}


def test_readme_lines_on_the_default_model_offline(tmp_path):
    model = pretrained.default_model_dir()
    names = ("config.json", "model.safetensors")
    in_repo = all((ROOT / "backchannel" / "default_listener" / n).is_file() for n in names)
    if not all((model / n).is_file() for n in names):
        if INSTALLED and in_repo:
            pytest.fail(f"the repository has a default model but the installed package's {model} lacks it: "
                        "the wheel does not carry it (pyproject package-data)")
        pytest.skip(f"no default model in {model} yet (backchannel export CKPT --out {model} writes it)")
    assert (model / "policy.json").is_file() and (model / "MODEL_CARD.md").is_file()
    assert sum(f.stat().st_size for f in model.iterdir()) <= 10e6
    write_call(tmp_path)
    check_readme_lines(readme_code(), tmp_path)
