"""A seccomp filter that stops graded code from starting processes or touching other processes.

The grading child installs it on itself (``install()``) after the trusted setup cell has run and
before the first submitted cell. From then on, in that process and its threads:

* creating a process fails with EPERM: ``fork``, ``vfork``, ``clone`` without ``CLONE_THREAD``
  (threads are still allowed), ``execve``; ``clone3`` fails with ENOSYS so that glibc falls back
  to ``clone``, whose flags the filter can inspect (``clone3`` passes them in memory);
* signalling or inspecting other processes fails with EPERM: ``kill``, ``tkill``, ``tgkill``,
  ``rt_(tg)sigqueueinfo``, ``pidfd_*``, ``ptrace``, ``process_vm_readv/writev``. A signal to the
  process itself is allowed (``kill``/``tgkill``/``rt_sigqueueinfo`` whose pid argument is its own
  pid, given to ``install``), so that ``os.abort()`` dies of SIGABRT as it should; blocked, glibc's
  ``abort`` would fall back to an illegal instruction and look like a segfault;
* raising resource limits or leaving the sandbox's namespaces fails with EPERM: ``setrlimit``,
  ``prlimit64`` with a new limit (reading a limit is allowed), ``unshare``, ``setns``, ``mount``,
  ``umount2``, ``chroot``, ``pivot_root``;
* System V IPC objects, POSIX message queues and kernel keys, which would outlive the process,
  cannot be created (``shmget``, ``semget``, ``msgget``, ``mq_open``, ``add_key``,
  ``request_key``, ``keyctl``): nothing is left for the next child;
* system calls of a foreign ABI (i386 ``int 0x80`` or x32 on x86-64) fail with EPERM, so they
  cannot be used to get around the numbers above.

This matters most when the grader runs as root: the kernel does not enforce RLIMIT_NPROC for
root, so without the filter a fork bomb could only be stopped by the wall-clock kill.
Supported on x86-64 and aarch64 Linux; elsewhere ``install()`` raises ``SeccompUnavailable``.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct
import sys

# Classic BPF opcodes (linux/filter.h) and seccomp return values (linux/seccomp.h).
_LOAD_WORD = 0x20  # BPF_LD | BPF_W | BPF_ABS
_JUMP_EQUAL = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
_JUMP_GREATER_EQUAL = 0x35  # BPF_JMP | BPF_JGE | BPF_K
_JUMP_BITS_SET = 0x45  # BPF_JMP | BPF_JSET | BPF_K
_RETURN = 0x06  # BPF_RET | BPF_K
_ALLOW = 0x7FFF0000  # SECCOMP_RET_ALLOW
_FAIL_WITH = 0x00050000  # SECCOMP_RET_ERRNO | errno
_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2
_CLONE_THREAD = 0x00010000
_X32_SYSCALL_BIT = 0x40000000

# struct seccomp_data: int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6];
_OFFSET_NR = 0
_OFFSET_ARCH = 4
_OFFSET_ARG0_LOW = 16  # little-endian: the low 32 bits of args[0] come first
_OFFSET_ARG0_HIGH = 20
_OFFSET_ARG2_LOW = 32
_OFFSET_ARG2_HIGH = 36

_DENIED_NAMES = (
    "fork",
    "vfork",
    "execve",
    "execveat",
    "pidfd_open",
    "pidfd_send_signal",
    "pidfd_getfd",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "setrlimit",
    "unshare",
    "setns",
    "mount",
    "umount2",
    "chroot",
    "pivot_root",
    "shmget",
    "semget",
    "msgget",
    "mq_open",
    "add_key",
    "request_key",
    "keyctl",
)
# Signals: allowed only when the first argument (a pid or thread group id) is the process itself.
_SELF_SIGNAL_NAMES = ("kill", "tkill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo")

# Per architecture: the AUDIT_ARCH value and the syscall numbers (asm/unistd_64.h; asm-generic
# for aarch64, which has no fork/vfork/setrlimit-only entry points other than those listed).
_ARCHITECTURES = {
    "x86_64": {
        "audit_arch": 0xC000003E,
        "has_x32": True,
        "numbers": {
            "clone": 56,
            "clone3": 435,
            "prlimit64": 302,
            "fork": 57,
            "vfork": 58,
            "execve": 59,
            "execveat": 322,
            "kill": 62,
            "tkill": 200,
            "tgkill": 234,
            "rt_sigqueueinfo": 129,
            "rt_tgsigqueueinfo": 297,
            "pidfd_open": 434,
            "pidfd_send_signal": 424,
            "pidfd_getfd": 438,
            "ptrace": 101,
            "process_vm_readv": 310,
            "process_vm_writev": 311,
            "setrlimit": 160,
            "unshare": 272,
            "setns": 308,
            "mount": 165,
            "umount2": 166,
            "chroot": 161,
            "pivot_root": 155,
            "shmget": 29,
            "semget": 64,
            "msgget": 68,
            "mq_open": 240,
            "add_key": 248,
            "request_key": 249,
            "keyctl": 250,
        },
    },
    "aarch64": {
        "audit_arch": 0xC00000B7,
        "has_x32": False,
        "numbers": {
            "clone": 220,
            "clone3": 435,
            "prlimit64": 261,
            "execve": 221,
            "execveat": 281,
            "kill": 129,
            "tkill": 130,
            "tgkill": 131,
            "rt_sigqueueinfo": 138,
            "rt_tgsigqueueinfo": 240,
            "pidfd_open": 434,
            "pidfd_send_signal": 424,
            "pidfd_getfd": 438,
            "ptrace": 117,
            "process_vm_readv": 270,
            "process_vm_writev": 271,
            "setrlimit": 164,
            "unshare": 97,
            "setns": 268,
            "mount": 40,
            "umount2": 39,
            "chroot": 51,
            "pivot_root": 41,
            "shmget": 194,
            "semget": 190,
            "msgget": 186,
            "mq_open": 180,
            "add_key": 217,
            "request_key": 218,
            "keyctl": 219,
        },
    },
}


class SeccompUnavailable(RuntimeError):
    """The filter cannot be installed here (not Linux, unknown CPU, or the kernel refused)."""


class _Program:
    """Classic BPF instructions with symbolic jump targets, resolved by ``assemble``."""

    def __init__(self) -> None:
        self.instructions: list[tuple[int, object, object, int]] = []
        self.labels: dict[str, int] = {}

    def label(self, name: str) -> None:
        self.labels[name] = len(self.instructions)

    def load(self, offset: int) -> None:
        self.instructions.append((_LOAD_WORD, 0, 0, offset))

    def jump(self, opcode: int, value: int, if_true: str | int, if_false: str | int) -> None:
        """Jump to label ``if_true`` when the test holds, else to ``if_false`` (0 = next)."""
        self.instructions.append((opcode, if_true, if_false, value))

    def ret(self, value: int) -> None:
        self.instructions.append((_RETURN, 0, 0, value))

    def assemble(self) -> bytes:
        code = b""
        for index, (opcode, if_true, if_false, value) in enumerate(self.instructions):
            offsets = []
            for target in (if_true, if_false):
                if isinstance(target, str):
                    offset = self.labels[target] - index - 1  # jumps are relative to the next
                    if not 0 <= offset <= 255:
                        raise AssertionError(f"BPF jump to {target} out of range ({offset})")
                    offsets.append(offset)
                else:
                    offsets.append(target)
            code += struct.pack("=HBBI", opcode, offsets[0], offsets[1], value)
        return code


def build_filter(machine: str | None = None, own_pid: int | None = None) -> bytes:
    """The assembled BPF program for ``machine`` (default: this machine's ``platform.machine()``).

    ``own_pid``: the process that installs it, which may signal itself; None: no signal at all.
    """
    machine = (machine or platform.machine()).lower()
    machine = {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)
    if machine not in _ARCHITECTURES:
        raise SeccompUnavailable(f"no seccomp filter for CPU architecture {machine!r}")
    arch = _ARCHITECTURES[machine]
    numbers = arch["numbers"]
    program = _Program()
    program.load(_OFFSET_ARCH)
    program.jump(_JUMP_EQUAL, arch["audit_arch"], 0, "deny")  # foreign ABI -> deny
    program.load(_OFFSET_NR)
    if arch["has_x32"]:
        program.jump(_JUMP_GREATER_EQUAL, _X32_SYSCALL_BIT, "deny", 0)
    for name in _DENIED_NAMES:
        if name in numbers:
            program.jump(_JUMP_EQUAL, numbers[name], "deny", 0)
    for name in _SELF_SIGNAL_NAMES:
        target = "deny" if own_pid is None else "check_self"
        program.jump(_JUMP_EQUAL, numbers[name], target, 0)
    program.jump(_JUMP_EQUAL, numbers["clone3"], "no_such_call", 0)
    program.jump(_JUMP_EQUAL, numbers["clone"], "check_clone", 0)
    program.jump(_JUMP_EQUAL, numbers["prlimit64"], "check_prlimit", 0)
    program.ret(_ALLOW)
    program.label("check_clone")  # a thread (CLONE_THREAD set) is allowed, a process is not
    program.load(_OFFSET_ARG0_LOW)
    program.jump(_JUMP_BITS_SET, _CLONE_THREAD, "allow", "deny")
    program.label("check_prlimit")  # prlimit64(pid, resource, new_limit=NULL, old) only reads
    program.load(_OFFSET_ARG2_LOW)
    program.jump(_JUMP_EQUAL, 0, 0, "deny")
    program.load(_OFFSET_ARG2_HIGH)
    program.jump(_JUMP_EQUAL, 0, "allow", "deny")
    if own_pid is not None:
        program.label("check_self")  # kill(pid, ...), tgkill(tgid, ...): pid == own_pid
        program.load(_OFFSET_ARG0_LOW)
        program.jump(_JUMP_EQUAL, own_pid, 0, "deny")
        program.load(_OFFSET_ARG0_HIGH)
        program.jump(_JUMP_EQUAL, 0, "allow", "deny")
    program.label("allow")
    program.ret(_ALLOW)
    program.label("deny")
    program.ret(_FAIL_WITH | errno.EPERM)
    program.label("no_such_call")
    program.ret(_FAIL_WITH | errno.ENOSYS)
    return program.assemble()


def supported() -> bool:
    """Whether ``install()`` can work here: Linux with seccomp filters, and a known CPU."""
    try:
        build_filter()
        with open("/proc/self/status", encoding="utf-8") as status:
            return any(line.startswith("Seccomp:") for line in status)
    except (SeccompUnavailable, OSError):
        return False


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install() -> None:
    """Install the filter on the calling process (irreversible; inherited by its threads)."""
    if not sys.platform.startswith("linux"):
        raise SeccompUnavailable(f"seccomp needs Linux, this is {sys.platform}")
    code = build_filter(own_pid=os.getpid())
    libc = ctypes.CDLL(None, use_errno=True)  # the C library this interpreter runs on
    libc.prctl.argtypes = [
        ctypes.c_int,
        ctypes.c_ulong,
        ctypes.c_ulong,
        ctypes.c_ulong,
        ctypes.c_ulong,
    ]
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise SeccompUnavailable(
            f"prctl(NO_NEW_PRIVS) failed: {errno.errorcode.get(ctypes.get_errno())}"
        )
    buffer = ctypes.create_string_buffer(code, len(code))
    program = _SockFprog(len(code) // 8, ctypes.cast(buffer, ctypes.c_void_p))
    result = libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.addressof(program), 0, 0)
    if result != 0:
        raise SeccompUnavailable(
            f"prctl(PR_SET_SECCOMP) failed: {errno.errorcode.get(ctypes.get_errno(), '?')}"
        )
