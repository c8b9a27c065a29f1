"""The README as a newcomer runs it: every ``backchannel`` command in its shell blocks parses (subcommand
and every flag, LightningCLI's for ``train``); the quickstart block and the examples run as written in a
fresh clone on the demo corpus and leave ``git status`` clean (every output under git-ignored ``data/``
and ``runs/``)."""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
QUICKSTART = "# quickstart"


def shell_blocks(text: str) -> list[str]:
    """The bodies of the ```bash fenced blocks."""
    return re.findall(r"^```(?:bash|sh|shell)\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE)


def shell_lines(block: str) -> list[str]:
    """The block's command lines: backslash continuations joined, comment-only and empty lines dropped."""
    joined = re.sub(r"\\\n\s*", " ", block)
    return [line for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def commands(line: str) -> list[list[str]]:
    """The simple commands of a shell line (split at ``&&``, ``||``, ``;``, ``|``; comments dropped)."""
    lex = shlex.shlex(line, posix=True, punctuation_chars=True)
    lex.whitespace_split = True
    out, cur = [], []
    for tok in lex:
        if tok in ("&&", "||", ";", "|", "&"):
            out.append(cur)
            cur = []
        else:
            cur.append(tok)
    return [c for c in out + [cur] if c]


def readme_commands(program: str) -> list[list[str]]:
    return [cmd for block in shell_blocks(README.read_text()) for line in shell_lines(block)
            for cmd in commands(line) if cmd[0] == program]


def test_command_extraction():
    block = ('pip install -e . && backchannel corpus prepare   # a comment\n'
             '# only a comment\n'
             'backchannel train head --config x --data.corpora "[a, b]" \\\n    --model.lr=0.01\n')
    got = [c for line in shell_lines(block) for c in commands(line)]
    assert got == [["pip", "install", "-e", "."], ["backchannel", "corpus", "prepare"],
                   ["backchannel", "train", "head", "--config", "x", "--data.corpora", "[a, b]", "--model.lr=0.01"]]


def check_backchannel_command(argv: list[str], capsys) -> None:
    """Parse ``backchannel ARGV`` with the real parsers; fails naming the command on an unknown
    subcommand or flag. ``train``: its LightningCLI overrides too (``--print_config`` parses every one of
    them against the model, data and trainer signatures, then exits before anything is built)."""
    from backchannel.train.cli import TrainConfigError, resolve_config, run

    from backchannel.cli import build_parser

    shown = "backchannel " + shlex.join(argv)
    try:
        args = build_parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"README command does not parse: {shown}\n{capsys.readouterr().err}")
    if argv[0] != "train":
        return
    assert args.config, f"{shown}: no --config"
    try:
        run(args.train_command, ["--config", resolve_config(args.config), *args.overrides, "--print_config"])
    except SystemExit as done:
        assert done.code in (0, None), f"{shown}: exit {done.code}"
    except TrainConfigError as err:
        pytest.fail(f"README command does not parse: {shown}\n{err}")
    else:
        pytest.fail(f"{shown}: --print_config did not exit")
    capsys.readouterr()


def test_every_readme_backchannel_command_parses(capsys):
    cmds = readme_commands("backchannel")
    subcommands = {c[1] for c in cmds}
    assert {"corpus", "train", "evaluate", "simulate", "rating"} <= subcommands, subcommands
    assert sum(c[1] == "train" for c in cmds) >= 6
    for argv in cmds:
        check_backchannel_command(argv[1:], capsys)


def test_an_unknown_flag_fails_the_check(capsys):
    """The check above can fail: a misspelt argparse flag and a misspelt LightningCLI override."""
    with pytest.raises(pytest.fail.Exception, match="--plott"):
        check_backchannel_command(["corpus", "inspect", "data/demo", "--plott", "x.png"], capsys)
    with pytest.raises(pytest.fail.Exception, match="--model.hiden"):
        check_backchannel_command(["train", "head", "--config", "tiny_head", "--model.hiden", "3"], capsys)


def quickstart_lines() -> list[str]:
    blocks = [b for b in shell_blocks(README.read_text()) if b.lstrip().startswith(QUICKSTART)]
    assert len(blocks) == 1, f"README needs exactly one ```bash block starting with {QUICKSTART!r}"
    return shell_lines(blocks[0])


def example_lines() -> list[str]:
    return [line for block in shell_blocks(README.read_text()) for line in shell_lines(block)
            if line.startswith("python examples/")]


def fresh_clone(dest: Path) -> Path:
    """The repository's tracked files (as in the working tree) committed into a new git repository."""
    files = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True, check=True).stdout
    for rel in filter(None, files.decode().split("\0")):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    git = ["git", "-C", str(dest), "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run(["git", "init", "-q", str(dest)], check=True)
    subprocess.run(git + ["add", "-A"], check=True)
    subprocess.run(git + ["commit", "-qm", "clone"], check=True)
    return dest


def has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


@pytest.mark.slow
def test_quickstart_and_examples_in_a_fresh_clone_leave_git_status_clean(tmp_path):
    if not (ROOT / ".git").exists() or shutil.which("git") is None:
        if os.environ.get("CI"):
            pytest.fail("the clean-tree test needs git and a git checkout")
        pytest.skip("not a git checkout")
    clone = fresh_clone(tmp_path / "clone")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", "NO_TORCH_COMPILE": "1",
           "BACKCHANNEL_HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    optional = {"moshi_loop": "moshi", "moshi_transformers": "transformers", "pipecat_agent": "pipecat"}
    lines = quickstart_lines() + ["backchannel corpus stats demo"]
    for line in example_lines():
        needs = next((m for name, m in optional.items() if name in line), None)
        if needs is None or has(needs) or os.environ.get("CI"):
            lines.append(line)
    logs = []
    for line in lines:
        cmd = line.replace("python ", f"{shlex.quote(sys.executable)} ", 1) if line.startswith("python ") else line
        done = subprocess.run(cmd, shell=True, cwd=clone, env=env, capture_output=True, text=True, timeout=900,
                              check=False)
        logs.append(done.stdout)
        assert done.returncode == 0, f"README line failed: {line}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    train_head = next(log for line, log in zip(lines, logs) if "train head" in line)
    assert "best.ckpt: runs/tiny_head/checkpoints/best.ckpt (dev/bc_event_f1 " in train_head
    assert "last.ckpt: runs/tiny_head/checkpoints/last.ckpt" in train_head
    for made in ("data/demo/manifest.json", "runs/tiny_backbone/checkpoints/best.ckpt",
                 "runs/tiny_head/checkpoints/best.ckpt", "runs/eval/report.md", "runs/simulations/demo_q7ec1_f.wav",
                 "runs/stats/demo/stats.json"):
        assert (clone / made).is_file(), made
    if any("moshi_loop" in line for line in lines):
        assert (clone / "runs/examples/moshi_backchannel.wav").is_file()
    status = subprocess.run(["git", "-C", str(clone), "status", "--porcelain", "--untracked-files=all"],
                            capture_output=True, text=True, check=True).stdout
    assert status == "", f"outputs outside git-ignored folders:\n{status}"
