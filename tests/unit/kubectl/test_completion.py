"""`reconciler completion bash|zsh|fish`: each script parses in its shell and completes verbs,
flags and KIND words; bash's is driven through its completion function as Tab would."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from reconciler.kubectl.cli import main


def script(capsys: pytest.CaptureFixture[str], shell: str) -> str:
    capsys.readouterr()
    code = main(["completion", shell])
    out, err = capsys.readouterr()
    assert (code, err) == (0, "")
    return out


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_each_script_names_the_verbs_flags_and_kinds(capsys: pytest.CaptureFixture[str], shell: str) -> None:
    text = script(capsys, shell)
    for word in ("rollout", "logs", "completion", "--no-headers", "--since", "--previous", "--server",
                 "--insecure-skip-tls-verify", "deployments", "svc", "jsonpath="):
        if shell == "fish" and word.startswith("--"):
            word = f"-l {word[2:]}"  # fish's spelling of a long option
        assert word in text, (shell, word)


@pytest.mark.parametrize(("shell", "check"), [
    ("bash", ["bash", "-n"]),
    ("zsh", ["zsh", "-n"]),
    ("fish", ["fish", "--no-execute"]),
])
def test_each_script_parses_in_its_shell(capsys: pytest.CaptureFixture[str], tmp_path: Path, shell: str,
                                         check: list[str]) -> None:
    if shutil.which(check[0]) is None:
        pytest.skip(f"{check[0]} is not installed (scripts/setup-host.sh installs it)")
    path = tmp_path / f"reconciler.{shell}"
    path.write_text(script(capsys, shell))
    result = subprocess.run([*check, str(path)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


def complete_bash(path: Path, line: str) -> list[str]:
    words = line.split(" ")
    program = (f"source {path}\n"
               f"COMP_WORDS=({' '.join(repr(w) for w in words)}); COMP_CWORD={len(words) - 1}\n"
               f"COMP_LINE={line!r}; COMP_POINT=${{#COMP_LINE}}\n"
               f"_shtab_reconciler reconciler {words[-1]!r} {words[-2]!r}\n"
               'printf "%s\\n" "${COMPREPLY[@]}"\n')
    result = subprocess.run(["bash", "-c", program], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return sorted(w for w in result.stdout.split("\n") if w)


def test_bash_completes_verbs_kinds_and_flags(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "reconciler.bash"
    path.write_text(script(capsys, "bash"))
    assert complete_bash(path, "reconciler ro") == ["rollout"]
    assert complete_bash(path, "reconciler get dep") == ["deploy", "deployment", "deployments"]
    assert "--no-headers" in complete_bash(path, "reconciler get pods --no")
    assert complete_bash(path, "reconciler completion f") == ["fish"]


def test_fish_completes_kinds(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    if shutil.which("fish") is None:
        pytest.skip("fish is not installed (scripts/setup-host.sh installs it)")
    path = tmp_path / "reconciler.fish"
    path.write_text(script(capsys, "fish"))
    result = subprocess.run(["fish", "-c", f"source {path}; complete -C 'reconciler get svc'"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert [line.split("\t")[0] for line in result.stdout.splitlines()] == ["svc"]


def test_an_unknown_shell_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["completion", "tcsh"]) == 2
    assert "invalid choice" in capsys.readouterr().err
