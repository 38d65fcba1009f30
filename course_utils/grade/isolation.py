"""A fresh filesystem for each child a zygote forks (runs INSIDE the bubblewrap sandbox).

A zygote (see ``child.py``) forks one child per submitted notebook. Without more, every child
would share the zygote's writable places, so a file one submission leaves in ``/tmp`` or
``/dev/shm`` would be there for the next. ``private_filesystem`` gives the calling process (the
freshly forked child, before any submitted code) a mount namespace of its own, with a NEW empty
tmpfs at ``/tmp`` and at ``/dev/shm``; everything else is read-only anyway. When the child exits
its namespace and both tmpfs go with it, whatever it wrote.

Steps (Linux system calls through ctypes; the zygote has no capabilities, so it cannot mount):

1. ``unshare(CLONE_NEWUSER | CLONE_NEWNS)``: a user namespace nested in bubblewrap's, mapping only
   this uid and gid to themselves, which lets this process mount inside its new mount namespace;
2. mark every mount private (nothing propagates back to the zygote);
3. if some read-only mount lives under /tmp (a virtual environment in /tmp), hold /tmp at
   ``HOLD_DIR``, mount the new tmpfs, bind those folders back, and detach the hold;
4. mount the new /tmp and /dev/shm (size-limited);
5. drop every capability (``capset`` to empty sets). The seccomp filter installed later forbids
   ``mount``, ``umount2``, ``unshare`` and ``setns`` anyway.
"""

from __future__ import annotations

import ctypes
import os

_CLONE_NEWNS = 0x00020000
_CLONE_NEWUSER = 0x10000000
_MS_BIND = 0x1000
_MS_REC = 0x4000
_MS_PRIVATE = 0x40000
_MS_NOSUID = 0x2
_MS_NODEV = 0x4
_MNT_DETACH = 2
_CAPABILITY_VERSION_3 = 0x20080522


class IsolationError(OSError):
    """The kernel refused a step (e.g. nested user namespaces are disabled)."""


class _CapabilityHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapabilitySets(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def _libc():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_ulong,
        ctypes.c_char_p,
    ]
    libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
    libc.unshare.argtypes = [ctypes.c_int]
    return libc


def _check(result: int, step: str) -> None:
    if result != 0:
        number = ctypes.get_errno()
        raise IsolationError(number, f"{step}: {os.strerror(number)}")


def _write(path: str, text: str) -> None:
    with open(path, "w", encoding="ascii") as handle:
        handle.write(text)


def _mount_tmpfs(libc, target: str, size_bytes: int) -> None:
    options = f"size={size_bytes},mode=1777".encode()
    flags = _MS_NOSUID | _MS_NODEV
    _check(libc.mount(b"tmpfs", target.encode(), b"tmpfs", flags, options), f"mount {target}")


def private_filesystem(size_bytes: int, keep_under_tmp: list[str], hold_dir: str) -> None:
    """Give this process a new, empty /tmp and /dev/shm (see the module docstring)."""
    libc = _libc()
    uid, gid = os.getuid(), os.getgid()
    _check(libc.unshare(_CLONE_NEWUSER | _CLONE_NEWNS), "unshare a user and mount namespace")
    _write("/proc/self/setgroups", "deny")
    _write("/proc/self/uid_map", f"{uid} {uid} 1\n")
    _write("/proc/self/gid_map", f"{gid} {gid} 1\n")
    _check(libc.mount(None, b"/", None, _MS_REC | _MS_PRIVATE, None), "make mounts private")
    if keep_under_tmp:
        _check(libc.mount(b"/tmp", hold_dir.encode(), None, _MS_BIND | _MS_REC, None), "hold /tmp")
    _mount_tmpfs(libc, "/tmp", size_bytes)
    for path in keep_under_tmp:
        relative = os.path.relpath(path, "/tmp")
        os.makedirs(path, exist_ok=True)
        source = os.path.join(hold_dir, relative).encode()
        _check(libc.mount(source, path.encode(), None, _MS_BIND | _MS_REC, None), f"bind {path}")
    if keep_under_tmp:
        _check(libc.umount2(hold_dir.encode(), _MNT_DETACH), "release the hold on /tmp")
    _mount_tmpfs(libc, "/dev/shm", size_bytes)
    drop_capabilities(libc)


def drop_capabilities(libc=None) -> None:
    """Empty this thread's effective, permitted and inheritable capability sets."""
    libc = libc or _libc()
    header = _CapabilityHeader(_CAPABILITY_VERSION_3, 0)
    sets = (_CapabilitySets * 2)()
    _check(libc.capset(ctypes.byref(header), sets), "drop capabilities")
