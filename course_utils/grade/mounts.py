"""What a grading child can see under bubblewrap: an allow-list of read-only mounts.

The child's filesystem is built from nothing (``bwrap_arguments``); only these exist inside:

* the system's programs and shared libraries: ``/usr``, and ``/bin``, ``/lib``, ``/lib64``,
  ``/sbin`` (links into ``/usr`` on a merged-/usr system, recreated as links); from ``/etc``
  only what the dynamic loader reads (``ld.so.cache``, ``ld.so.conf``) and ``localtime``, plus
  a generated ``passwd`` and ``group`` that name the sandbox user and nobody else;
* the Python environment, at its own paths: the interpreter's installation (stdlib,
  lib-dynload) and the virtual environment (site-packages), wherever they live (even in a home
  directory that other users cannot read);
* the course package: a copy of ``course_utils`` made for this grading run (``stage_package``)
  WITHOUT the grader's parent side: of ``course_utils/grade`` only ``CHILD_MODULES`` are copied,
  so the runner, the case drawing and anything that computes expected values cannot be imported
  or read. The copy is mounted at the package's own path (``PACKAGE_DIR``), and its parent folder
  is on the child's ``sys.path``; the checkout around it (``.git``, ``solutions/``,
  ``notebooks/``) is not mounted;
* ``/proc`` of its own pid namespace, a minimal ``/dev`` (null, zero, full, random, urandom, tty),
  and the only writable places: a private, size-limited tmpfs at ``/tmp`` (working dir
  ``/tmp/work``) and at ``/dev/shm``. ``/`` and ``/dev`` are read-only.

Home directories, ``/root``, ``/etc/shadow``, the submissions, the outputs and the grader's scratch
folder do not exist inside. The child runs as uid/gid ``SANDBOX_UID`` in its own user namespace with
no capabilities, without network, and in its own pid, IPC and UTS namespaces.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

PACKAGE_DIR = Path(__file__).absolute().parents[1]  # .../course_utils, as Python imported it
PACKAGE_PARENT = PACKAGE_DIR.parent  # the folder on sys.path that holds course_utils/
# The only modules of course_utils/grade the child needs; the rest of the grader is parent-only.
CHILD_MODULES = ("__init__", "child", "seccomp", "isolation", "zygote")
SANDBOX_UID = 1000  # the learner's uid and gid inside (never 0)
SANDBOX_WORKDIR = "/tmp/work"  # the child's working dir inside bwrap
SANDBOX_TMP_BYTES = 64 * 1024 * 1024  # each of /tmp and /dev/shm
HOLD_DIR = "/run/course-grade-hold"  # an empty mount point for ``isolation.private_filesystem``
SYSTEM_DIRS = ("/usr", "/bin", "/lib", "/lib32", "/lib64", "/libx32", "/sbin")
ETC_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime")


@dataclass(frozen=True)
class Sandbox:
    """How children run: ``mode`` "bwrap" (with the mounts below) or "none"."""

    mode: str
    bwrap: str | None = None
    warning: str | None = None
    staging: Path | None = None  # the staged package and /etc files (bwrap only)
    python_roots: tuple[Path, ...] = ()  # mounted read-only at their own paths
    hidden_paths: tuple[Path, ...] = ()  # hidden again if they lie inside a mounted folder


def _is_within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _both_forms(path: Path) -> list[Path]:
    """``path`` as given (absolute) and with its links resolved, when that differs."""
    forms = [Path(os.path.abspath(path))]
    try:
        resolved = path.resolve()
    except OSError:
        return forms
    return forms + ([resolved] if resolved != forms[0] else [])


def python_roots() -> tuple[Path, ...]:
    """Folders holding the interpreter, its stdlib and site-packages, and the links to it."""
    candidates = [Path(sys.prefix), Path(sys.exec_prefix)]
    candidates += [Path(sys.base_prefix), Path(sys.base_exec_prefix)]
    hop = Path(sys.executable)
    for _ in range(40):  # every link on the way to the real interpreter (venv -> pyenv -> ...)
        candidates.append(hop.parent)
        if not hop.is_symlink():
            break
        hop = hop.parent / os.readlink(hop)
    roots: list[Path] = []
    for candidate in candidates:
        for form in _both_forms(candidate):
            covered = any(_is_within(form, Path(system)) for system in SYSTEM_DIRS)
            if form.is_dir() and not covered and form not in roots:
                roots.append(form)
    # Parents first, and no folder that another root already contains.
    roots.sort(key=lambda root: len(root.parts))
    return tuple(
        root for root in roots if not any(r != root and _is_within(root, r) for r in roots)
    )


def child_sys_path(sandbox: Sandbox) -> list[str]:
    """The child's import path: the course package, then the environment's own entries.

    Under bwrap only entries inside the mounted Python folders are kept (the repository root,
    tests/ or the current dir would not exist inside anyway).
    """
    paths = [str(PACKAGE_PARENT)]
    roots = [form for root in sandbox.python_roots for form in _both_forms(root)]
    for entry in sys.path:
        if not entry or os.path.abspath(entry) == os.getcwd() or entry in paths:
            continue
        if sandbox.mode == "bwrap" and not any(_is_within(Path(entry), root) for root in roots):
            continue
        paths.append(entry)
    return paths


def _copy_filter(folder: str, names: list[str]) -> set[str]:
    """shutil.copytree ``ignore``: in course_utils/grade keep only the child's modules."""
    grade = PACKAGE_DIR / "grade"
    path = Path(folder)
    if path == grade:
        keep = {f"{module}.py" for module in CHILD_MODULES} | {"__pycache__"}
        return {name for name in names if name not in keep}
    if path == grade / "__pycache__":  # compiled files of the kept modules only
        return {name for name in names if name.split(".", 1)[0] not in CHILD_MODULES}
    return set()


def stage_package(staging: Path) -> None:
    """Copy what the child may see into ``staging``: course_utils (child side) and /etc files."""
    shutil.copytree(PACKAGE_DIR, staging / "course_utils", ignore=_copy_filter, symlinks=False)
    etc = staging / "etc"
    etc.mkdir(parents=True)
    uid = SANDBOX_UID
    (etc / "passwd").write_text(f"learner:x:{uid}:{uid}:learner:{SANDBOX_WORKDIR}:/bin/false\n")
    (etc / "group").write_text(f"learner:x:{uid}:\n")


def _system_arguments() -> list[str]:
    arguments: list[str] = []
    for folder in SYSTEM_DIRS:
        if os.path.islink(folder):
            arguments += ["--symlink", os.readlink(folder), folder]
        elif os.path.isdir(folder):
            arguments += ["--ro-bind", folder, folder]
    arguments += ["--dir", "/etc"]
    for path in ETC_FILES:
        if os.path.exists(path):
            arguments += ["--ro-bind", path, path]
    return arguments


def bwrap_arguments(sandbox: Sandbox) -> list[str]:
    """The bubblewrap command line up to (not including) the command to run."""
    assert sandbox.staging is not None, "a bwrap sandbox needs its staged package"
    arguments = [sandbox.bwrap or "bwrap", *_system_arguments()]
    for name in ("passwd", "group"):
        arguments += ["--ro-bind", str(sandbox.staging / "etc" / name), f"/etc/{name}"]
    arguments += [
        "--proc", "/proc",
        "--dev", "/dev",
        "--size", str(SANDBOX_TMP_BYTES), "--tmpfs", "/dev/shm",
        "--size", str(SANDBOX_TMP_BYTES), "--tmpfs", "/tmp",
        "--dir", SANDBOX_WORKDIR,
        "--dir", HOLD_DIR,
    ]  # fmt: skip
    mounted = []
    for root in sandbox.python_roots:
        arguments += ["--ro-bind", str(root), str(root)]
        mounted.append(root)
    arguments += ["--ro-bind", str(sandbox.staging / "course_utils"), str(PACKAGE_DIR)]
    mounted.append(PACKAGE_DIR)
    for path in sandbox.hidden_paths:  # e.g. submissions kept inside the virtual environment
        if not any(_is_within(path, root) for root in mounted) or not path.exists():
            continue
        if path.is_dir():
            arguments += ["--tmpfs", str(path), "--remount-ro", str(path)]
        else:
            arguments += ["--ro-bind", "/dev/null", str(path)]
    arguments += [
        "--remount-ro", "/dev",
        "--remount-ro", "/",
        "--chdir", SANDBOX_WORKDIR,
        "--unshare-all",
        "--unshare-user",
        "--uid", str(SANDBOX_UID),
        "--gid", str(SANDBOX_UID),
        "--cap-drop", "ALL",
        "--die-with-parent",
        "--new-session",
    ]  # fmt: skip
    return arguments


def mounted_under_tmp(sandbox: Sandbox) -> list[str]:
    """Mounted folders inside /tmp: a forked child puts them back over its fresh /tmp."""
    if sandbox.mode != "bwrap":
        return []
    tmp = Path("/tmp")
    mounted = [*sandbox.python_roots, PACKAGE_DIR]
    return [str(path) for path in mounted if path != tmp and _is_within(path, tmp)]


def child_environment(home: str, tmp: str) -> dict[str, str]:
    """The child's whole environment: nothing of the grader's leaks in."""
    return {
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "HOME": home,
        "USER": "learner",
        "LOGNAME": "learner",
        "TMPDIR": tmp,
        "MPLBACKEND": "Agg",
        "COURSE_DEVICE": "cpu",
        "COURSE_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
    }
