"""The README's quick start stays true: CI runs its test command verbatim, and the
main job it names exists."""
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent


def quick_start_commands():
    """The shell commands in the README's "Quick start" section, in order."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```(?:bash|sh)\n(.*?)```", section, flags=re.S)
    return [line.strip() for block in blocks for line in block.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def test_quick_start_has_exactly_two_commands():
    assert len(quick_start_commands()) == 2, quick_start_commands()


def test_ci_runs_the_readme_test_command_verbatim():
    test_command = quick_start_commands()[1]
    assert "pytest" in test_command
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert test_command in ci_lines, f".ci/run does not run {test_command!r}"


def test_main_job_script_exists():
    main_job = quick_start_commands()[0]
    scripts = re.findall(r"(tutorials/\S+\.py|benchmarks/\S+\.py)", main_job)
    scripts += [m.replace(".", "/") + ".py" for m in re.findall(r"-m ((?:benchmarks|strategies)\.\w+)", main_job)]
    assert scripts and all((ROOT / s).is_file() for s in scripts), main_job
