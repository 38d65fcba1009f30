"""The Makefile records the interpreter .venv was built from and refuses a PYTHON= that names another.

Make runs on a temporary copy of the Makefile with fake interpreters: shell scripts that answer
``-m venv DIR`` (make a venv whose python is a copy of the fake), ``-m pip ...`` (do nothing) and ``-c CODE``
(print the "<version> <path>" the Makefile asks for). Nothing is installed, nothing is downloaded.
"""

import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")

FAKE_PYTHON = """#!/bin/sh
case "$1" in
  -m) case "$2" in
        venv) mkdir -p "$3/bin" && cp "$0" "$3/bin/python" ;;
        pip) ;;
        *) exit 3 ;;
      esac ;;
  -c) echo "{identity}" ;;
  *) exit 3 ;;
esac
"""


def fake_python(folder: Path, name: str, identity: str) -> Path:
    path = folder / name
    path.write_text(FAKE_PYTHON.format(identity=identity))
    path.chmod(0o755)
    return path


@pytest.fixture
def course(repo_root, tmp_path):
    shutil.copy(repo_root / "Makefile", tmp_path / "Makefile")
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'fake'\n")
    return tmp_path


def make(folder: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "--no-print-directory", "-C", str(folder), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_setup_records_the_interpreter_and_refuses_another(course):
    python311 = fake_python(course, "python3.11", "3.11.9 /opt/python3.11/bin/python3.11")
    python312 = fake_python(course, "python3.12", "3.12.4 /opt/python3.12/bin/python3.12")

    built = make(course, "setup", f"PYTHON={python311}")
    assert built.returncode == 0, built.stderr
    assert (course / ".venv" / ".python").read_text() == "3.11.9 /opt/python3.11/bin/python3.11\n"
    assert (course / ".venv" / ".installed").exists()

    for args in ([], [f"PYTHON={python311}"]):
        again = make(course, "setup", *args)
        assert again.returncode == 0, again.stderr

    refused = make(course, "setup", f"PYTHON={python312}")
    assert refused.returncode != 0
    assert "built with Python 3.11.9 /opt/python3.11/bin/python3.11" in refused.stderr
    assert f"PYTHON={python312} is Python 3.12.4" in refused.stderr
    assert f"make clean && make setup PYTHON={python312}" in refused.stderr
    assert (course / ".venv" / ".python").read_text().startswith("3.11.9 ")


def test_a_python_from_the_environment_counts_and_any_venv_target_refuses_it(course):
    python311 = fake_python(course, "python3.11", "3.11.9 /opt/python3.11/bin/python3.11")
    python312 = fake_python(course, "python3.12", "3.12.4 /opt/python3.12/bin/python3.12")
    assert make(course, "setup", f"PYTHON={python311}").returncode == 0
    refused = subprocess.run(
        ["make", "--no-print-directory", "-C", str(course), "release"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "PYTHON": str(python312)},
    )
    assert refused.returncode != 0 and "rm -rf .venv" in refused.stderr
    assert "course_utils.release" not in refused.stdout


def test_a_venv_made_before_the_record_is_compared_through_its_own_python(course):
    python311 = fake_python(course, "python3.11", "3.11.9 /opt/python3.11/bin/python3.11")
    python312 = fake_python(course, "python3.12", "3.12.4 /opt/python3.12/bin/python3.12")
    assert make(course, "setup", f"PYTHON={python311}").returncode == 0
    (course / ".venv" / ".python").unlink()
    refused = make(course, "setup", f"PYTHON={python312}")
    assert refused.returncode != 0 and "built with Python 3.11.9" in refused.stderr


def test_a_python_that_does_not_run_is_named(course):
    python311 = fake_python(course, "python3.11", "3.11.9 /opt/python3.11/bin/python3.11")
    assert make(course, "setup", f"PYTHON={python311}").returncode == 0
    refused = make(course, "setup", f"PYTHON={course / 'no-such-python'}")
    assert refused.returncode != 0 and "does not run" in refused.stderr


def test_setup_installs_the_lab_and_dev_extras(repo_root):
    text = (repo_root / "Makefile").read_text()
    assert '-e ".[lab,dev]"' in text


def test_lab_opens_the_learner_copy_after_filling_it(repo_root):
    dry_run = make(repo_root, "-n", "lab")
    assert dry_run.returncode == 0, dry_run.stderr
    lines = dry_run.stdout.splitlines()
    copy = next(i for i, line in enumerate(lines) if "course_utils.progress --copy-only" in line)
    lab = next(i for i, line in enumerate(lines) if "jupyter lab" in line)
    assert copy < lab and lines[lab].rstrip().endswith("my-notebooks/")


def test_nbgrader_source_links_each_solution_as_an_assignment(course):
    (course / "solutions").mkdir()
    (course / "solutions" / "01_toy.ipynb").write_text("{}")
    linked = make(course, "nbgrader-source")
    assert linked.returncode == 0, linked.stderr
    link = course / "nbgrader" / "source" / "01_toy" / "01_toy.ipynb"
    assert link.is_symlink() and link.resolve() == (course / "solutions" / "01_toy.ipynb")
    assert make(course, "nbgrader-source").returncode == 0  # idempotent


def test_an_empty_spec_skips_an_optional_install_and_says_so(course):
    python311 = fake_python(course, "python3.11", "3.11.9 /opt/python3.11/bin/python3.11")
    assert make(course, "setup", f"PYTHON={python311}").returncode == 0
    skipped = make(course, "nbgrader-install", "NBGRADER_SPEC=")
    assert skipped.returncode == 0, skipped.stderr
    assert "NBGRADER_SPEC is empty: not installing nbgrader" in skipped.stdout
    assert (course / ".venv" / ".nbgrader").exists()
