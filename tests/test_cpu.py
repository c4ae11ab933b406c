"""kerazoo.utils.cpu: bfloat16 hardware read from /proc/cpuinfo text."""

from kerazoo.utils.cpu import bfloat16_support, cpu_flags

# Abridged /proc/cpuinfo of the three kinds of machine seen here, and of an Arm server.
EPYC_ZEN4 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC
flags\t\t: fpu sse2 avx2 avx512f avx512bw avx512_vnni avx512_bf16 avx512_vp2intersect
bugs\t\t: sysret_ss_attrs
"""
XEON_SAPPHIRE_RAPIDS = """processor\t: 0
flags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16 avx512_fp16 amx_tile amx_int8
"""
OLDER_XEON = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512bw avx512_vnni\n"
GRAVITON3 = "processor\t: 0\nBogoMIPS\t: 2100.00\nFeatures\t: fp asimd sve bf16 i8mm\n"


def test_flags_are_read_from_the_flags_line_only():
    assert cpu_flags(EPYC_ZEN4) == {"fpu", "sse2", "avx2", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16",
                                    "avx512_vp2intersect"}
    assert cpu_flags("processor\t: 0\n") == frozenset()


def test_avx512_bf16_without_amx():
    found = bfloat16_support(EPYC_ZEN4)
    assert (found.amx, found.avx512_bf16, found.arm_bf16, found.native) == (False, True, False, True)
    assert "this CPU has AVX512_BF16:" in found.describe()


def test_amx_needs_its_tile_and_bf16_flags():
    found = bfloat16_support(XEON_SAPPHIRE_RAPIDS)
    assert found.amx and found.avx512_bf16 and "AMX and AVX512_BF16" in found.describe()
    assert not bfloat16_support("flags\t: amx_tile avx2\n").amx  # tiles without bfloat16 are not enough


def test_no_bf16_hardware_is_said_to_be_emulated():
    found = bfloat16_support(OLDER_XEON)
    assert not found.native and "emulated" in found.describe()


def test_arm_bf16_feature():
    found = bfloat16_support(GRAVITON3)
    assert found.arm_bf16 and found.native and not found.avx512_bf16


def test_unreadable_flags_claim_nothing():
    found = bfloat16_support("")
    assert not found.known and not found.native and "unknown" in found.describe()


def test_auto_mixed_precision_picks_bfloat16_only_where_native():
    from kerazoo.utils.cpu import Bfloat16Support, auto_mixed_precision

    policy, why = auto_mixed_precision(0, Bfloat16Support(avx512_bf16=True))
    assert policy == "mixed_bfloat16" and "AVX512_BF16" in why
    policy, why = auto_mixed_precision(0, Bfloat16Support(amx=True))
    assert policy == "mixed_bfloat16" and "AMX" in why
    policy, why = auto_mixed_precision(0, Bfloat16Support())  # AVX2 only: emulated bfloat16
    assert policy is None and "float32" in why and "emulated" in why
    policy, why = auto_mixed_precision(0, Bfloat16Support(known=False))
    assert policy is None
    assert auto_mixed_precision(1, Bfloat16Support())[0] == "mixed_float16"


def test_train_config_and_cli_take_auto(monkeypatch):
    from kerazoo.cli import build_parser
    from kerazoo.training import train as train_module
    from kerazoo.training.config import TrainConfig
    from kerazoo.utils import cpu

    assert TrainConfig(model="segnet_basic", dataset="shapes", mixed_precision="auto").mixed_precision == "auto"
    args = build_parser().parse_args(["train", "--model", "segnet_basic", "--mixed-precision", "auto"])
    assert args.mixed_precision == "auto"
    monkeypatch.setattr(cpu, "bfloat16_support", lambda: cpu.Bfloat16Support())
    assert train_module.resolve_mixed_precision("auto")[0] is None
    monkeypatch.setattr(cpu, "bfloat16_support", lambda: cpu.Bfloat16Support(amx=True))
    assert train_module.resolve_mixed_precision("auto")[0] == "mixed_bfloat16"


def test_cpu_kind_names_the_vector_units():
    from kerazoo.utils.cpu import cpu_kind

    assert cpu_kind(EPYC_ZEN4)["kind"] == "AVX-512 + AVX512_BF16"
    assert cpu_kind(EPYC_ZEN4)["model_name"] == "AMD EPYC"
    assert cpu_kind(XEON_SAPPHIRE_RAPIDS)["kind"] == "AMX"
    assert cpu_kind(OLDER_XEON)["kind"] == "AVX-512"
    assert cpu_kind("processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu avx avx2 fma\n") == {
        "model_name": "AMD EPYC 7B13", "kind": "AVX2", "flags": ["avx", "avx2", "fma"]}
    assert cpu_kind(GRAVITON3)["kind"] == "Arm BF16"
