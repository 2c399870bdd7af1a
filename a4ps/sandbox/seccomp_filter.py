"""A hand-assembled seccomp-BPF program for the bubblewrap backend (bwrap --seccomp FD).

Deny-list policy in the spirit of Docker's default profile, tightened for a no-network code sandbox:
kernel-administration and namespace/mount calls fail with EPERM, non-AF_UNIX sockets fail with
EPERM, clone() with namespace flags fails with EPERM, clone3 reports ENOSYS (its flags live in
memory a filter cannot read, so libc falls back to clone), and a foreign syscall ABI kills the process.
"""

from __future__ import annotations

import errno
import platform
import struct

# struct sock_filter {u16 code; u8 jt; u8 jf; u32 k;}
_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JGE_K = 0x35
_JSET_K = 0x45
_RET_K = 0x06

_RET_KILL_PROCESS = 0x80000000
_RET_ERRNO = 0x00050000
_RET_ALLOW = 0x7FFF0000

# struct seccomp_data {int nr; u32 arch; u64 instruction_pointer; u64 args[6];} (little-endian)
_OFF_NR = 0
_OFF_ARCH = 4


def _arg_low(index: int) -> int:
    return 16 + 8 * index


_AF_UNIX = 1
_TIOCSTI = 0x5412
_TIOCLINUX = 0x541C
_X32_SYSCALL_BIT = 0x40000000
_CLONE_NAMESPACE_FLAGS = (
    0x00020000  # CLONE_NEWNS
    | 0x02000000  # CLONE_NEWCGROUP
    | 0x04000000  # CLONE_NEWUTS
    | 0x08000000  # CLONE_NEWIPC
    | 0x10000000  # CLONE_NEWUSER
    | 0x20000000  # CLONE_NEWPID
    | 0x40000000  # CLONE_NEWNET
)

# Denied with EPERM. Numbers from asm/unistd_64.h (x86_64) and asm-generic/unistd.h (aarch64).
_DENIED = {
    "x86_64": {
        "ptrace": 101, "syslog": 103, "uselib": 134, "personality": 135, "ustat": 136, "sysfs": 139,
        "vhangup": 153, "modify_ldt": 154, "pivot_root": 155, "_sysctl": 156, "adjtimex": 159,
        "chroot": 161, "acct": 163, "settimeofday": 164, "mount": 165, "umount2": 166, "swapon": 167,
        "swapoff": 168, "reboot": 169, "sethostname": 170, "setdomainname": 171, "iopl": 172,
        "ioperm": 173, "create_module": 174, "init_module": 175, "delete_module": 176,
        "get_kernel_syms": 177, "query_module": 178, "quotactl": 179, "nfsservctl": 180,
        "afs_syscall": 183, "tuxcall": 184, "security": 185, "lookup_dcookie": 212,
        "clock_settime": 227, "vserver": 236, "kexec_load": 246, "add_key": 248, "request_key": 249,
        "keyctl": 250, "unshare": 272, "perf_event_open": 298, "fanotify_init": 300,
        "name_to_handle_at": 303, "open_by_handle_at": 304, "clock_adjtime": 305, "setns": 308,
        "process_vm_readv": 310, "process_vm_writev": 311, "kcmp": 312, "finit_module": 313,
        "kexec_file_load": 320, "bpf": 321, "userfaultfd": 323, "io_uring_setup": 425,
        "io_uring_enter": 426, "io_uring_register": 427, "open_tree": 428, "move_mount": 429,
        "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433, "pidfd_getfd": 438,
        "mount_setattr": 442, "quotactl_fd": 443, "memfd_secret": 447,
    },
    "aarch64": {
        "lookup_dcookie": 18, "umount2": 39, "mount": 40, "pivot_root": 41, "chroot": 51,
        "vhangup": 58, "quotactl": 60, "acct": 89, "personality": 92, "unshare": 97,
        "kexec_load": 104, "init_module": 105, "delete_module": 106, "clock_settime": 112,
        "syslog": 116, "ptrace": 117, "reboot": 142, "sethostname": 161, "setdomainname": 162,
        "settimeofday": 170, "adjtimex": 171, "add_key": 217, "request_key": 218, "keyctl": 219,
        "swapon": 224, "swapoff": 225, "perf_event_open": 241, "fanotify_init": 262,
        "name_to_handle_at": 264, "open_by_handle_at": 265, "clock_adjtime": 266, "setns": 268,
        "process_vm_readv": 270, "process_vm_writev": 271, "kcmp": 272, "finit_module": 273,
        "bpf": 280, "userfaultfd": 282, "kexec_file_load": 294, "io_uring_setup": 425,
        "io_uring_enter": 426, "io_uring_register": 427, "open_tree": 428, "move_mount": 429,
        "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433, "pidfd_getfd": 438,
        "mount_setattr": 442, "quotactl_fd": 443, "memfd_secret": 447,
    },
}

# (audit arch, clone, clone3, socket, ioctl)
_ABI = {
    "x86_64": (0xC000003E, 56, 435, 41, 16),
    "aarch64": (0xC00000B7, 220, 435, 198, 29),
}


class UnsupportedArchitecture(RuntimeError):
    """No syscall table for this machine, so no filter can be built."""


def _machine(machine: str | None) -> str:
    machine = machine or platform.machine()
    if machine == "arm64":
        machine = "aarch64"
    if machine not in _ABI:
        raise UnsupportedArchitecture(f"no seccomp syscall table for {machine}")
    return machine


def oci_seccomp_profile(machine: str | None = None) -> dict:
    """The same policy as an OCI `linux.seccomp` section, for runsc --oci-seccomp (enforced by gVisor).

    gVisor answers every SCMP_ACT_ERRNO with EPERM whatever errnoRet says, which would stop libc
    falling back from clone3 to clone (posix_spawn, os.system); clone3 is therefore left out here,
    as gVisor itself answers clone3 with ENOSYS.
    """
    machine = _machine(machine)
    arch = {"x86_64": "SCMP_ARCH_X86_64", "aarch64": "SCMP_ARCH_AARCH64"}[machine]
    flags = [1 << bit for bit in range(32) if _CLONE_NAMESPACE_FLAGS & (1 << bit)]
    return {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": [arch],
        "syscalls": [
            {"names": sorted(_DENIED[machine]), "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EPERM},
            {
                "names": ["socket"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": errno.EPERM,
                "args": [{"index": 0, "value": _AF_UNIX, "op": "SCMP_CMP_NE"}],
            },
            *(
                {
                    "names": ["ioctl"],
                    "action": "SCMP_ACT_ERRNO",
                    "errnoRet": errno.EPERM,
                    "args": [{"index": 1, "value": request, "op": "SCMP_CMP_EQ"}],
                }
                for request in (_TIOCSTI, _TIOCLINUX)
            ),
            *(
                {
                    "names": ["clone"],
                    "action": "SCMP_ACT_ERRNO",
                    "errnoRet": errno.EPERM,
                    "args": [{"index": 0, "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ"}],
                }
                for flag in flags
            ),
        ],
    }


def _ins(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("<HBBI", code, jt, jf, k)


def build_seccomp_program(machine: str | None = None) -> bytes:
    """The filter as raw `struct sock_filter` records, ready to be read by bwrap from an fd."""
    machine = _machine(machine)
    arch, nr_clone, nr_clone3, nr_socket, nr_ioctl = _ABI[machine]
    eperm = _RET_ERRNO | errno.EPERM
    enosys = _RET_ERRNO | errno.ENOSYS

    prog = [
        _ins(_LD_W_ABS, _OFF_ARCH),
        _ins(_JEQ_K, arch, jt=1, jf=0),
        _ins(_RET_K, _RET_KILL_PROCESS),
        _ins(_LD_W_ABS, _OFF_NR),
    ]
    if machine == "x86_64":
        prog += [_ins(_JGE_K, _X32_SYSCALL_BIT, jt=0, jf=1), _ins(_RET_K, enosys)]
    for number in sorted(_DENIED[machine].values()):
        prog += [_ins(_JEQ_K, number, jt=0, jf=1), _ins(_RET_K, eperm)]
    prog += [_ins(_JEQ_K, nr_clone3, jt=0, jf=1), _ins(_RET_K, enosys)]
    prog += [  # socket(domain, ...): only AF_UNIX
        _ins(_JEQ_K, nr_socket, jt=0, jf=4),
        _ins(_LD_W_ABS, _arg_low(0)),
        _ins(_JEQ_K, _AF_UNIX, jt=1, jf=0),
        _ins(_RET_K, eperm),
        _ins(_RET_K, _RET_ALLOW),
    ]
    prog += [  # ioctl(fd, cmd, ...): no typing into the controlling terminal
        _ins(_JEQ_K, nr_ioctl, jt=0, jf=5),
        _ins(_LD_W_ABS, _arg_low(1)),
        _ins(_JEQ_K, _TIOCSTI, jt=1, jf=0),
        _ins(_JEQ_K, _TIOCLINUX, jt=0, jf=1),
        _ins(_RET_K, eperm),
        _ins(_RET_K, _RET_ALLOW),
    ]
    prog += [  # clone(flags, ...): no new namespaces
        _ins(_JEQ_K, nr_clone, jt=0, jf=3),
        _ins(_LD_W_ABS, _arg_low(0)),
        _ins(_JSET_K, _CLONE_NAMESPACE_FLAGS, jt=0, jf=1),
        _ins(_RET_K, eperm),
        _ins(_RET_K, _RET_ALLOW),
    ]
    return b"".join(prog)
