"""course_utils as a wheel, away from the repository: the Colab install cell and the tools' default folders.

A wheel is built from a copy of the package (``pip wheel --no-deps --no-build-isolation``, offline) and a
fresh venv is made from the interpreter behind ``.venv``. The venv lacks course_utils; a ``.pth`` line lets it
see ``.venv``'s packages (torch, numpy, pip…) the way a hosted kernel already has them. ``.venv``'s own
course_utils is an editable install whose import hook that line does not run, so the only course_utils the
venv can import is one installed into it.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from course_utils.tooling.install_cell import INSTALL_CELL

REPO = Path(__file__).resolve().parent.parent


def run(command: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    environment = {key: value for key, value in os.environ.items() if key != "COURSE_PIP_SPEC"}
    return subprocess.run(
        command,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
        env={**environment, "PIP_NO_INPUT": "1", **env},
    )


def build_wheel(folder: Path) -> Path:
    """course_utils-*.whl built offline from a copy of the package (the checkout stays untouched)."""
    source = folder / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(
        REPO / "course_utils", source / "course_utils", ignore=shutil.ignore_patterns("__pycache__")
    )
    built = run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index"]
        + ["-q", "-w", str(folder / "dist"), str(source)],
        cwd=folder,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = (folder / "dist").glob("course_utils-*.whl")
    return wheel


def venv_without_course_utils(folder: Path) -> Path:
    """A venv of .venv's interpreter that sees .venv's packages but not its (editable) course_utils."""
    base_python = os.path.realpath(sys._base_executable)
    made = run([base_python, "-m", "venv", "--without-pip", str(folder / "venv")], cwd=folder)
    assert made.returncode == 0, made.stderr
    python = folder / "venv" / "bin" / "python"
    site = run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], folder
    )
    host_packages = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (Path(site.stdout.strip()) / "host_packages.pth").write_text("\n".join(sorted(host_packages)))
    return python


def test_the_wheel_away_from_the_repository(tmp_path):
    """The install cell installs the wheel into a kernel lacking course_utils, then does nothing; the
    installed course-release and course-grade look in the current directory and name a missing folder."""
    wheel, python = build_wheel(tmp_path), venv_without_course_utils(tmp_path)
    # The learner's wheel holds no hidden test: the grader draws hidden inputs with a seed chosen at
    # grading time from the same public case families, and computes expected values then.
    packaged = zipfile.ZipFile(wheel).namelist()
    assert "course_utils/feedback/spec.py" in packaged
    assert "course_utils/exercises/soft_weights.py" in packaged
    assert not [name for name in packaged if "hidden" in name], packaged
    kernel_dir = tmp_path / "kernel"
    kernel_dir.mkdir()
    absent = run([str(python), "-c", "import course_utils"], kernel_dir)
    assert "No module named 'course_utils'" in absent.stderr

    unset = run([str(python), "-c", INSTALL_CELL], kernel_dir)
    assert unset.returncode != 0
    assert "ModuleNotFoundError: course_utils is not installed in this kernel" in unset.stderr
    assert "Set COURSE_PIP_SPEC" in unset.stderr

    cell_then_import = (
        INSTALL_CELL + "\nimport course_utils.release\nprint(course_utils.__file__)\n"
    )
    spec = f"{wheel} --no-index --no-deps"
    installed = run([str(python), "-c", cell_then_import], kernel_dir, COURSE_PIP_SPEC=spec)
    assert installed.returncode == 0, installed.stderr
    imported_from = Path(installed.stdout.strip().splitlines()[-1])
    assert (
        imported_from.is_relative_to(tmp_path / "venv") and "site-packages" in imported_from.parts
    )

    again = run([str(python), "-c", INSTALL_CELL], kernel_dir, COURSE_PIP_SPEC="/no/such.whl")
    assert again.returncode == 0 and again.stdout == "", again.stderr

    course = tmp_path / "course"
    for folder in ("solutions", "notebooks"):
        (course / folder).mkdir(parents=True)
        shutil.copy(REPO / folder / "01_soft_weights.ipynb", course / folder)
    release = python.parent / "course-release"
    in_sync = run([str(release), "--check"], course)
    assert in_sync.returncode == 0, in_sync.stderr
    missing = run([str(release), "--check"], kernel_dir)
    assert missing.returncode == 2
    assert (
        "--solutions: expected a folder of solution notebooks (NN_name.ipynb), "
        f"got {kernel_dir / 'solutions'}, which does not exist"
    ) in missing.stderr
    defaults = (
        "from course_utils.grade.cli import build_parser\n"
        "args = build_parser().parse_args(['submissions'])\n"
        "print(args.released); print(args.solutions)"
    )
    grade = run([str(python), "-c", defaults], course)
    assert grade.returncode == 0, grade.stderr
    assert grade.stdout.split() == [str(course / "notebooks"), str(course / "solutions")]


# What the package may import at module level without declaring it: optional extras, and what the
# kernel that runs the notebooks always has.
OPTIONAL_IMPORTS = {
    "ipywidgets": "widgets",  # course_utils.display.widgets: the [widgets] / [lab] extra
    "IPython": "kernel",  # every Jupyter kernel has it
    "nbclient": "lab",  # record.py and course-progress
    "ipykernel": "lab",  # course-progress starts kernels of this Python
    "jupyter_client": "lab",  # (nbclient's own dependency)
    "triton": "GPU only",  # imported inside try/except, by flash_triton.py
}
HOSTED_KERNEL_PACKAGES = {"jupyterlab", "notebook", "ipykernel", "ipywidgets", "jupyter_server"}


def third_party_imports(package: Path) -> set[str]:
    names = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"course_utils", "__future__"}


def test_hard_dependencies_are_what_the_package_imports_and_never_the_hosts_jupyter(repo_root):
    tomllib = pytest.importorskip("tomllib", reason="tomllib is Python 3.11+")
    project = tomllib.loads((repo_root / "pyproject.toml").read_text())["project"]
    required = {
        requirement.split(">")[0].split("=")[0].split("<")[0].strip()
        for requirement in project["dependencies"]
    }
    assert required == {"torch", "numpy", "matplotlib", "nbformat", "tqdm"}
    assert not required & HOSTED_KERNEL_PACKAGES
    imported = third_party_imports(repo_root / "course_utils")
    assert imported - required <= set(OPTIONAL_IMPORTS), imported - required
    lab = " ".join(project["optional-dependencies"]["lab"])
    assert all(name in lab for name in ("jupyterlab", "ipykernel", "ipywidgets", "nbclient"))
