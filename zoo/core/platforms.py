"""The platforms an artifact can be proven on besides this machine, and their CPU models.

`zoo compat --platform linux/arm64 --cpu armv8.0,armv8.2` runs each artifact in the aarch64 build of
its runtime under user-mode emulation (qemu), once per CPU model. A CPU model is named by what an app
developer targets (an ISA level), and mapped to the qemu CPU that has exactly that level's features:
the runtimes pick their kernels by the CPU's features (fp16 arithmetic, dot product), so the model
decides which kernels run. Nothing here starts anything: zoo.pipeline.compat_platform does.

``cpu_features()`` reads the running CPU's features the way the runtimes do (the kernel's hwcaps), so a
runner can say which arithmetic its runtime chose (e.g. MNN's ``precision: low`` is fp16 arithmetic on
a CPU with ``asimdhp`` and fp32 elsewhere).
"""
from __future__ import annotations

import platform as _platform
import sys
from dataclasses import dataclass

from zoo.core.errors import ZooError, nearest


@dataclass(frozen=True)
class CpuModel:
    name: str  # what `--cpu` takes
    qemu: str  # qemu's `-cpu` model
    what: str  # one line for humans


@dataclass(frozen=True)
class Platform:
    name: str  # what `--platform` takes (the OCI/Docker spelling)
    machine: str  # platform.machine() there
    qemu: tuple[str, ...]  # the user-mode emulator's names on PATH, preferred first
    wheel_platforms: tuple[str, ...]  # pip --platform tags of its wheels (newest glibc first)
    cpus: tuple[CpuModel, ...]

    def cpu(self, name: str) -> CpuModel:
        for c in self.cpus:
            if c.name == name:
                return c
        names = [c.name for c in self.cpus]
        raise ZooError(f"unknown --cpu {name!r} for {self.name}{nearest(name, names)}; known: {', '.join(names)}")

    @property
    def tag(self) -> str:
        """For folder names: linux_aarch64."""
        return f"{self.name.split('/')[0]}_{self.machine}"


#: glibc of the userland (Debian 12: 2.36) down to manylinux2014 (2.17); pip matches tags exactly
_AARCH64_TAGS = tuple(f"manylinux_2_{v}_aarch64" for v in range(36, 16, -1)) + ("manylinux2014_aarch64",)

PLATFORMS: dict[str, Platform] = {
    "linux/arm64": Platform(
        name="linux/arm64", machine="aarch64", qemu=("qemu-aarch64-static", "qemu-aarch64"),
        wheel_platforms=_AARCH64_TAGS,
        cpus=(CpuModel("armv8.0", "cortex-a72", "ARMv8.0-A: no fp16 arithmetic, no dot product (a Cortex-A72 class core)"),
              CpuModel("armv8.2", "cortex-a76", "ARMv8.2-A: fp16 arithmetic and dot product (a Cortex-A76 class core)")),
    ),
}


def get_platform(name: str) -> Platform:
    if name not in PLATFORMS:
        raise ZooError(f"unknown --platform {name!r}{nearest(name, PLATFORMS)}; known platforms: {', '.join(PLATFORMS)}"
                       f" (this machine, {native_name()}, is the default without --platform)")
    return PLATFORMS[name]


def native_name() -> str:
    """This machine's platform, as a cell without ``platform`` ran on: linux/amd64 here."""
    m = _platform.machine().lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(m, m)
    return f"{sys.platform}/{arch}"


def native_label() -> str:
    """How reports name this machine's platform: x86-64, aarch64, ..."""
    m = _platform.machine().lower()
    return {"x86_64": "x86-64", "amd64": "x86-64"}.get(m, m)


# ---------------------------------------------------------------------------------------------- CPU features
#: the kernel's aarch64 hwcap bits (arch/arm64/include/uapi/asm/hwcap.h), as /proc/cpuinfo names them
HWCAP_AARCH64 = ("fp", "asimd", "evtstrm", "aes", "pmull", "sha1", "sha2", "crc32", "atomics", "fphp", "asimdhp",
                 "cpuid", "asimdrdm", "jscvt", "fcma", "lrcpc", "dcpop", "sha3", "sm3", "sm4", "asimddp", "sha512",
                 "sve", "asimdfhm", "dit", "uscat", "ilrcpc", "flagm", "ssbs", "sb", "paca", "pacg")
HWCAP2_AARCH64 = ("dcpodp", "sve2", "sveaes", "svepmull", "svebitperm", "svesha3", "svesm4", "flagm2", "frint",
                  "svei8mm", "svef32mm", "svef64mm", "svebf16", "i8mm", "bf16", "dgh", "rng", "bti", "mte", "ecv",
                  "afp", "rpres", "mte3", "sme", "sme_i16i64", "sme_f64f64", "sme_i8i32", "sme_f16f32", "sme_b16f32",
                  "sme_f32f32", "sme_fa64", "wfxt")
_AT_HWCAP, _AT_HWCAP2 = 16, 26


def hwcap_names(hwcap: int, hwcap2: int) -> list[str]:
    """The /proc/cpuinfo ``Features`` names of aarch64 hwcap words, in the kernel's order."""
    return ([n for i, n in enumerate(HWCAP_AARCH64) if hwcap >> i & 1]
            + [n for i, n in enumerate(HWCAP2_AARCH64) if hwcap2 >> i & 1])


def cpu_features() -> frozenset[str]:
    """The running CPU's features as the kernel (or the emulator) reports them to programs: on aarch64
    Linux the hwcap names (``asimdhp``: fp16 arithmetic, ``asimddp``: dot product); elsewhere empty."""
    if not sys.platform.startswith("linux") or _platform.machine().lower() not in ("aarch64", "arm64"):
        return frozenset()
    import ctypes  # only here: a runner imports this module in every environment

    try:
        libc = ctypes.CDLL(None)
        libc.getauxval.restype = ctypes.c_ulong
        libc.getauxval.argtypes = [ctypes.c_ulong]
        return frozenset(hwcap_names(libc.getauxval(_AT_HWCAP), libc.getauxval(_AT_HWCAP2)))
    except (OSError, AttributeError):
        return frozenset()


def fp16_arithmetic() -> bool:
    """Whether the running CPU has fp16 vector arithmetic (ARMv8.2-A FEAT_FP16: hwcap asimdhp)."""
    return "asimdhp" in cpu_features()
