"""What this CPU offers: bfloat16 support (AMX tiles, AVX512-BF16 instructions on x86, the BF16 extension on
Arm) and the physical cores a process may use (the runtimes' thread counts, `physical_cores`).

oneDNN, under TensorFlow and torch, picks its bfloat16 kernels at run time from these instruction sets.
Without any of them, `mixed_bfloat16` is emulated and usually slower than float32, so `kerazoo train
--mixed-precision mixed_bfloat16` and `kerazoo benchmark` say what they found:

    >>> from kerazoo.utils.cpu import bfloat16_support
    >>> print(bfloat16_support().describe())
"""

import dataclasses
import os
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
_AMX_FLAGS = ("amx_bf16", "amx_tile")
_AVX512_BF16_FLAG = "avx512_bf16"
_ARM_BF16_FEATURE = "bf16"  # aarch64's "Features" line


@dataclasses.dataclass(frozen=True)
class Bfloat16Support:
    """The bfloat16 hardware found.

    Attributes:
        amx: AMX tiles with bfloat16 (Intel Sapphire Rapids and later): the fast case.
        avx512_bf16: AVX512-BF16 dot products (Intel Cooper Lake and later, AMD Zen 4 and later).
        arm_bf16: the Arm BF16 extension.
        known: False when the CPU flags could not be read (not Linux): nothing is claimed either way.
    """

    amx: bool = False
    avx512_bf16: bool = False
    arm_bf16: bool = False
    known: bool = True

    @property
    def native(self):
        """True when the CPU computes bfloat16 products in hardware."""
        return self.amx or self.avx512_bf16 or self.arm_bf16

    def describe(self):
        """One sentence for a user who asked for mixed_bfloat16."""
        if not self.known:
            return "bfloat16: the CPU's flags could not be read (no /proc/cpuinfo); its bfloat16 speed is unknown"
        found = [name for name, present in (("AMX", self.amx), ("AVX512_BF16", self.avx512_bf16),
                                            ("Arm BF16", self.arm_bf16)) if present]
        if not found:
            return ("bfloat16: this CPU has neither AMX nor AVX512_BF16: bfloat16 is emulated and is likely "
                    "slower than float32 here")
        speed = "the fast case (AMX tiles)" if self.amx else "faster than float32 for convolutions, less than AMX"
        return f"bfloat16: this CPU has {' and '.join(found)}: native bfloat16 in oneDNN, {speed}"


def cpu_flags(cpuinfo_text):
    """The set of lower-case flags of the first processor in `/proc/cpuinfo` text (x86 "flags" or Arm
    "Features" line); empty when there is none."""
    for line in cpuinfo_text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            return frozenset(value.lower().split())
    return frozenset()


def bfloat16_support(cpuinfo_text=None):
    """Detects the CPU's bfloat16 hardware.

    Args:
        cpuinfo_text: text in the form of `/proc/cpuinfo`; None reads this machine's.

    Returns:
        A `Bfloat16Support`; `known` is False when the text could not be read.
    """
    if cpuinfo_text is None:
        try:
            cpuinfo_text = CPUINFO.read_text()
        except OSError:
            return Bfloat16Support(known=False)
    flags = cpu_flags(cpuinfo_text)
    if not flags:
        return Bfloat16Support(known=False)
    return Bfloat16Support(amx=all(flag in flags for flag in _AMX_FLAGS),
                           avx512_bf16=_AVX512_BF16_FLAG in flags,
                           arm_bf16=_ARM_BF16_FEATURE in flags)


def cpu_model_name(cpuinfo_text):
    """The "model name" line of `/proc/cpuinfo` text (what `lscpu` calls Model name), or "unknown"."""
    for line in cpuinfo_text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() == "model name":
            return value.strip()
    return "unknown"


def cpu_kind(cpuinfo_text=None):
    """What kind of CPU this is, for benchmark records: figures from different kinds are never compared.

    Returns:
        {"model_name": ..., "kind": "AMX" | "AVX-512 + AVX512_BF16" | "AVX-512" | "AVX2" | "Arm BF16" | "other",
         "flags": the vector flags found (avx2, avx512f, avx512_bf16, amx_tile, ...)}.
    """
    if cpuinfo_text is None:
        try:
            cpuinfo_text = CPUINFO.read_text()
        except OSError:
            return {"model_name": "unknown", "kind": "unknown", "flags": []}
    flags = cpu_flags(cpuinfo_text)
    vector = sorted(flag for flag in flags if flag.startswith(("avx", "amx", "fma")) or flag in ("bf16", "sve", "i8mm"))
    if all(flag in flags for flag in _AMX_FLAGS):
        kind = "AMX"
    elif "avx512f" in flags:
        kind = "AVX-512 + AVX512_BF16" if _AVX512_BF16_FLAG in flags else "AVX-512"
    elif "avx2" in flags:
        kind = "AVX2"
    elif _ARM_BF16_FEATURE in flags:
        kind = "Arm BF16"
    else:
        kind = "other"
    return {"model_name": cpu_model_name(cpuinfo_text), "kind": kind, "flags": vector}


def physical_cores():
    """Physical cores this process may run on: its CPU affinity with SMT siblings counted once.

    A runtime's own default counts the whole machine's cores (ONNX Runtime) or a single thread (LiteRT);
    in a container or under `taskset` the first oversubscribes, the second leaves cores idle.
    """
    cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)
    cores = set()
    for cpu in cpus:
        topology = f"/sys/devices/system/cpu/cpu{cpu}/topology/"
        try:
            with open(topology + "physical_package_id") as package, open(topology + "core_id") as core:
                cores.add((package.read().strip(), core.read().strip()))
        except OSError:  # no sysfs topology (not Linux): count logical CPUs
            return max(1, len(cpus))
    return max(1, len(cores))


def auto_mixed_precision(gpus=0, support=None):
    """The Keras dtype policy `mixed_precision="auto"` picks on this machine, and why.

    A GPU trains in mixed_float16; a CPU in mixed_bfloat16 only where it computes bfloat16 natively (AMX,
    AVX512_BF16, Arm BF16: measured 0.54x float32's step on an AVX512_BF16 CPU); elsewhere bfloat16 is emulated
    (about ten times slower than float32 on an AVX2-only CPU), so it stays float32.

    Args:
        gpus: the number of GPUs training will use.
        support: a `Bfloat16Support`; None detects this machine's.

    Returns:
        (policy or None for float32, one sentence saying why).
    """
    if gpus:
        return "mixed_float16", f"mixed precision auto: mixed_float16 on {gpus} GPU(s)"
    support = support if support is not None else bfloat16_support()
    if support.native:
        return "mixed_bfloat16", f"mixed precision auto: mixed_bfloat16, since {support.describe()}"
    return None, f"mixed precision auto: float32, since {support.describe()}"
