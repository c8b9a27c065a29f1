"""``backchannel --help`` and every sub-command's ``--help``: built without importing the heavy stack
(torch, Lightning, datasets, ...), in plain text, and every command's handler resolves."""
from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from backchannel.cli import _resolve, build_parser, main, plain

HEAVY = ("torch", "lightning", "pytorch_lightning", "datasets", "transformers", "pipecat", "matplotlib", "sklearn",
         "scipy", "pandas", "pyarrow", "starlette", "uvicorn", "numpy")  # numpy alone is ~0.1 s of start-up


def commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """``(command path, parser)`` of ``parser`` and every sub-command below it."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from commands(sub, (*path, name))


# `train backbone|head --help` show LightningCLI's own options, so they may import Lightning
HELPS = [list(path) for path, _ in commands(build_parser()) if path[:1] != ("train",) or len(path) == 1]


def test_help_imports_no_heavy_module(tmp_path):
    assert ["corpus", "prepare"] in HELPS and ["evaluate"] in HELPS and ["train"] in HELPS and [] in HELPS
    result = tmp_path / "modules.json"
    code = f"""
import json, sys
from backchannel.cli import main
for argv in {HELPS!r}:
    try:
        main([*argv, "--help"])
    except SystemExit as err:
        assert err.code == 0, argv
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r})
open({str(result)!r}, "w").write(json.dumps(heavy))
"""
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=120)
    assert json.loads(result.read_text()) == []


def test_every_command_has_a_handler_that_resolves():
    leaves = {path: p for path, p in commands(build_parser())
              if not any(isinstance(a, argparse._SubParsersAction) for a in p._actions)}
    assert ("evaluate",) in leaves and ("simulate",) in leaves and ("corpus", "inspect") in leaves
    for path, p in leaves.items():
        func = p.get_default("func")
        assert func is not None, path
        handler = _resolve(func) if isinstance(func, str) else func
        assert callable(handler), path
    # the heavy module's handler is named, not imported, when the parser is built
    assert leaves["simulate",].get_default("func") == "backchannel.plugin.simulate:cmd_simulate"


def test_help_is_plain_text():
    for path, p in commands(build_parser()):
        text = p.format_help()
        assert "``" not in text and ":func:" not in text and ":class:" not in text, path
    top = build_parser().format_help()
    assert "The backchannel command line." in top and "backchannel evaluate [DATASET ...]" in top


def test_plain_strips_rest_markup():
    assert plain("``backchannel`` runs :func:`a.b.load` and :class:`~a.b.Policy`; :py:meth:`x.y`") == \
        "backchannel runs a.b.load and Policy; x.y"
    assert plain("no `markup` here") == "no `markup` here"
    assert plain(None) is None and plain("") == ""


def test_option_values_checked_against_the_modules_list(capsys):
    with pytest.raises(SystemExit):
        main(["simulate", "demo", "--render", "wav"])
    assert "argument --render: unknown wav; choose from tts, tone" in capsys.readouterr().err
    assert build_parser().parse_args(["simulate", "demo"]).render == "tts"
    assert build_parser().parse_args(["simulate", "demo", "--render", "tone"]).render == "tone"
