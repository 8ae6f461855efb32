"""Docs cannot drift: the committed man pages and shell completions are what
`mtools.docs` generates from the CLI now, every command has help with
examples, and the generated files pass their shells' and roff's own checks."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mtools import docs

ROOT = Path(__file__).resolve().parents[1]
ROOT_CMD, SUBCOMMANDS = docs.load_tree()
REGENERATE = "run `make docs` (python -m mtools.docs) and commit the result"


@pytest.fixture(scope="module")
def files() -> dict[str, str]:
    return docs.generate()


@pytest.fixture(scope="module")
def fresh(files, tmp_path_factory) -> Path:
    """A folder holding freshly generated files, and a song.mid to complete."""
    root = tmp_path_factory.mktemp("docs")
    docs.write(files, root)
    (root / "song.mid").write_bytes(b"MThd")
    return root


def run(command: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=30,
                          env={**os.environ, **env})


# ---------------------------------------------------------------- drift


def test_committed_docs_are_what_the_cli_generates(files):
    found = docs.problems(files, ROOT)
    assert not found, f"man pages or completions are out of date ({'; '.join(found)}): {REGENERATE}"


def test_generation_is_reproducible_and_check_passes_on_it(tmp_path):
    # Two processes with different hash seeds: set order must not leak into the files.
    python = [sys.executable, "-m", "mtools.docs", "--root", str(tmp_path)]
    assert run(python, tmp_path, PYTHONHASHSEED="1").returncode == 0
    checked = run([*python, "--check"], tmp_path, PYTHONHASHSEED="2")
    assert checked.returncode == 0, checked.stderr
    assert (tmp_path / "man/mtools.1").is_file() and (tmp_path / "completions/_mtools").is_file()


def test_check_lists_stale_missing_and_extra_files_and_write_repairs_them(files, tmp_path,
                                                                           capsys):
    docs.write(files, tmp_path)
    (tmp_path / "man/mtools.1").write_text("stale\n")
    (tmp_path / "completions/_mtools").unlink()
    (tmp_path / "man/mtools-gone.1").write_text("")
    assert docs.problems(files, tmp_path) == [
        "missing: completions/_mtools", "stale: man/mtools.1", "extra: man/mtools-gone.1"]
    assert docs.main(["--check", "--root", str(tmp_path)]) == 1
    assert "make docs" in capsys.readouterr().err
    docs.write(files, tmp_path)
    assert docs.problems(files, tmp_path) == []


def test_one_man_page_per_subcommand(files):
    pages = {path for path in files if path.startswith("man/")}
    assert pages == {"man/mtools.1", *(f"man/mtools-{s.name}.1" for s in SUBCOMMANDS)}


# ---------------------------------------------------------------- help texts


@pytest.mark.parametrize("command", SUBCOMMANDS, ids=lambda c: c.name)
def test_every_subcommand_has_help_with_an_example_of_itself(command):
    assert command.summary, f"mtools {command.name} has no help text"
    assert any(line.startswith(f"mtools {command.name}") for line in command.examples), (
        f"the help of mtools {command.name} needs an 'Examples:' block with a line "
        f"starting 'mtools {command.name}'")


@pytest.mark.parametrize("command", [ROOT_CMD, *SUBCOMMANDS], ids=lambda c: c.name)
def test_every_option_and_argument_has_help(command):
    bare = [p.label for p in command.options + command.arguments if not p.help]
    assert not bare, f"{command.path}: no help for {', '.join(bare)}"


def test_every_environment_variable_the_code_reads_is_documented():
    documented = {name for name, _ in docs.ENVIRONMENT}
    used = {name for path in (ROOT / "src/mtools").rglob("*.py") if path.name != "docs.py"
            for name in re.findall(r"\bMTOOLS_[A-Z_]+\b", path.read_text())}
    assert used <= documented, f"add {sorted(used - documented)} to mtools.docs.ENVIRONMENT"


def test_the_exit_codes_of_the_design_are_documented(files):
    codes = dict(docs.exit_codes())
    assert {0, 1, 2, 65, 66, 69} <= set(codes) and all(codes.values())
    assert all(f"\\fB{code}\\fR" in files["man/mtools.1"] for code in codes)


# ---------------------------------------------------------------- completions


def completion_cases() -> list[tuple[str, set[str]]]:
    """(command line being completed, words that must be offered), from the tree."""
    cases = [(f"mtools {s.name[:2]}", {s.name}) for s in SUBCOMMANDS]
    for sub in SUBCOMMANDS:
        cases.append((f"mtools {sub.name} -", {n for p in sub.options for n in p.names}))
        cases += [(f"mtools {sub.name} {p.names[-1]} ", set(p.choices))
                  for p in sub.options if p.value == "choice"]
        cases += [(f"mtools {sub.name} {p.names[0]} so", {"song.mid"})
                  for p in sub.options if p.value == "file"][:1]
        cases += [(f"mtools {sub.name} so", {"song.mid"})] if sub.arguments else []
    return cases


def bash_offers(fresh: Path, lines: list[str]) -> list[str]:
    """What the bash completion offers for each command line, one string each."""
    probes = [f"source {shlex.quote(str(fresh / 'completions/mtools.bash'))}"]
    for line in lines:
        words = line.split(" ")  # a trailing space gives the empty word being completed
        probes += [f"COMP_WORDS=({' '.join(map(shlex.quote, words))}); "
                   f"COMP_CWORD={len(words) - 1}; _mtools; echo \"${{COMPREPLY[*]}}\""]
    result = run(["bash", "-c", "\n".join(probes)], fresh)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_bash_completion_parses_and_completes_commands_options_choices_files(fresh):
    assert run(["bash", "-n", str(fresh / "completions/mtools.bash")], fresh).returncode == 0
    offered = bash_offers(fresh, [line for line, _ in completion_cases()])
    for (line, expected), got in zip(completion_cases(), offered, strict=True):
        assert expected <= set(got.split()), f"bash: {line!r} offered {got!r}"


def test_a_name_option_completes_no_files_and_a_path_option_does(fresh):
    lines = ["mtools eval --soundfont so", "mtools continue --primer so",
             "mtools convert --soundfont so", "mtools convert -o so"]
    assert bash_offers(fresh, lines) == ["", "", "song.mid", "song.mid"]


@pytest.mark.skipif(not shutil.which("zsh"), reason="zsh is not installed")
def test_zsh_completion_parses(fresh):
    result = run(["zsh", "-n", str(fresh / "completions/_mtools")], fresh)
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(not shutil.which("fish"), reason="fish is not installed")
def test_fish_completion_parses_and_completes(fresh):
    script = fresh / "completions/mtools.fish"
    assert run(["fish", "-n", str(script)], fresh).returncode == 0
    probes = [f"source {shlex.quote(str(script))}"] + [
        f"echo (complete -C {shlex.quote(line)} | string replace -r '\\t.*' '')"
        for line, _ in completion_cases()]
    result = run(["fish", "--no-config", "-c", "\n".join(probes)], fresh)
    assert result.returncode == 0, result.stderr
    for (line, expected), got in zip(completion_cases(), result.stdout.splitlines(), strict=True):
        assert expected <= set(got.split()), f"fish: {line!r} offered {got!r}"


# ---------------------------------------------------------------- man pages

# Reproducible pages carry no date, which mandoc notes; that one note is expected.
NO_DATE = "missing date"


def roff_lint(pages: list[str], cwd: Path) -> list[str]:
    """Warnings from mandoc (or else groff) about `pages`, without NO_DATE."""
    if shutil.which("mandoc"):
        result = run(["mandoc", "-T", "lint", "-W", "warning", *pages], cwd)
    elif shutil.which("groff"):
        result = run(["groff", "-man", "-ww", "-z", *pages], cwd)
    else:
        pytest.skip("neither mandoc nor groff is installed")
    return [line for line in (result.stdout + result.stderr).splitlines()
            if line.strip() and NO_DATE not in line]


def test_man_pages_pass_a_roff_lint(fresh, files):
    pages = sorted(path for path in files if path.startswith("man/"))
    assert roff_lint(pages, fresh) == []


def test_the_roff_lint_catches_broken_roff(tmp_path):
    (tmp_path / "bad.1").write_text('.TH BAD 1 "" "x" "y"\n.SH NAME\nbad \\- x\n.XX nope\n\\qq\n')
    assert roff_lint(["bad.1"], tmp_path)


def test_roff_escaping():
    assert docs.roff_escape(".start") == "\\&.start"
    assert docs.roff_escape("'quote") == "\\&'quote"
    assert docs.roff_escape("a\\b --to") == "a\\eb \\-\\-to"
    assert docs.roff_escape("⇄") == "\\[u21C4]"


def test_command_modules_keep_their_annotations_evaluated():
    # Postponed (string) annotations make typer eval() every option's type on
    # every signature read: `mtools --help` got ~20% slower (commands/__init__.py).
    from pathlib import Path

    import mtools.commands

    folder = Path(mtools.commands.__file__).parent
    postponed = [p.name for p in folder.glob("*.py")
                 if "from __future__ import annotations" in p.read_text().splitlines()]
    assert postponed == []
