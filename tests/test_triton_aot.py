"""Ahead-of-time compile of the lut4 kernel with its real inline PTX, for sm_80 and sm_90.

Needs no GPU: Triton compiles to PTX and ptxas (shipped with Triton) assembles a cubin, so
an instruction or operand ptxas rejects fails CI.  The interpreter (test_triton_lut4.py)
cannot run inline PTX at all.
"""
from __future__ import annotations

import re

import pytest


@pytest.mark.parametrize("arch", [80, 90])
@pytest.mark.parametrize("scale_w", [False, True])
def test_lut4_kernel_compiles_for_gpu(compiled_triton_kernels, arch, scale_w):
    triton = pytest.importorskip("triton")
    try:
        from triton.backends.compiler import GPUTarget
        from triton.compiler import ASTSource
    except ImportError as e:
        pytest.skip(f"this triton has no AOT compile API: {e}")
    import triton.language as tl

    from tq.triton import aot

    lutmm = compiled_triton_kernels
    names = lutmm.lut4_matmul_kernel.arg_names
    types = aot.kernel_types()
    consts = dict(BN=64, BM=16 if not scale_w else 64, TK=128, GROUP_M=1, RESIDUAL=True, PARTIAL=True,
                  HAS_BIAS=True, SCALE_W=scale_w, OUT=tl.bfloat16, USE_ASM=True, UNROLL=2)
    sig = {n: "constexpr" if n in consts else types.get(n, "i32") for n in names}
    try:
        src = ASTSource(lutmm.lut4_matmul_kernel, sig, consts)
        compiled = triton.compile(src, target=GPUTarget("cuda", arch, 32), options={"num_warps": 4})
    except Exception as e:  # noqa: BLE001 - report what the compiler said
        if "ptxas" in str(e).lower() and "not found" in str(e).lower():
            pytest.skip(f"no ptxas in this triton install: {e}")
        raise
    ptx = compiled.asm["ptx"]
    assert ptx.count("prmt.b32") >= 12 and len(compiled.asm["cubin"]) > 1000


@pytest.mark.parametrize("arch", [80, 90])
def test_lut4_dequant_kernel_compiles_for_gpu(compiled_triton_kernels, arch):
    triton = pytest.importorskip("triton")
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    import triton.language as tl

    from tq.triton import aot

    kernel = compiled_triton_kernels.lut4_dequant_kernel
    types = dict(aot.kernel_types(), out_ptr="*bf16")  # (the same pass arguments as the matmul)
    consts = dict(BR=32, TK=128, RESIDUAL=True, OUT=tl.float16, USE_ASM=True)
    sig = {n: "constexpr" if n in consts else types.get(n, "i32") for n in kernel.arg_names}
    compiled = triton.compile(ASTSource(kernel, sig, consts), target=GPUTarget("cuda", arch, 32),
                              options={"num_warps": 4})
    assert compiled.asm["ptx"].count("prmt.b32") >= 12


@pytest.mark.parametrize("arch", [80, 90])
@pytest.mark.parametrize("bb,warps,bn", [(8, 4, 64), (16, 4, 128), (8, 8, 128)])
def test_mma_kernel_compiles_with_assumed_layout(compiled_triton_kernels, arch, bb, warps, bn):
    """AOT compile (no GPU): the PTX assembles and Triton's layout is the one the fragments assume."""
    triton = pytest.importorskip("triton")
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    import triton.language as tl
    import tq.triton.lutmma as lutmma

    from tq.triton import aot

    kernel = lutmma.lut4_mma_kernel
    consts = dict(BN=bn, BB=bb, WARPS=warps, RESIDUAL=True, PARTIAL=True, HAS_BIAS=True, USE_ASM=True,
                  UNROLL=2, DEPTH=2, ASM_A=lutmma.ptx_for("bf16", bb, True), ASM_R=lutmma.ptx_for("f16", bb, False))
    # pointers 16-byte aligned and the strides multiples of 16, as at a real launch
    sig, attrs = aot.signature(kernel, consts, aot.kernel_types())
    compiled = triton.compile(ASTSource(kernel, sig, consts, attrs), target=GPUTarget("cuda", arch, 32),
                              options={"num_warps": warps, "num_stages": 1})
    mmas = compiled.asm["ptx"].count("mma.sync.aligned.m16n8k16")
    assert mmas and mmas % (8 * bb // 8) == 0  # 8 k steps per batch tile of 8, per asm call
    assert lutmma.layout_ok(compiled.asm["ttgir"], warps)


@pytest.mark.parametrize("arch", [90, 100])
@pytest.mark.parametrize("bb,warps,bn", [(16, 4, 128), (16, 4, 256), (8, 4, 64)])
def test_mma_tma_kernel_compiles_pipelined(compiled_triton_kernels, arch, bb, warps, bn):
    """AOT compile (no GPU) of the TMA form: weight tiles by TMA copies into a multi-buffered
    ring (the compiler's pipeline, not a load-then-wait per tile), x by the asm loads, and the
    layout the fragments assume on every asm operand."""
    triton = pytest.importorskip("triton")
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    import tq.triton.lutmma as lutmma
    from tq.triton import dispatch

    if dispatch.TensorDescriptor is None:
        pytest.skip("this Triton has no host tensor descriptors (triton.tools.tensor_descriptor)")
    from tq.triton import aot

    kernel = lutmma.lut4_mma_tma_kernel
    consts = dict(BN=bn, BB=bb, WARPS=warps, RESIDUAL=True, PARTIAL=True, HAS_BIAS=True, USE_ASM=True, STAGES=3,
                  ASM_A=lutmma.ptx_for("bf16", bb, True), ASM_R=lutmma.ptx_for("f16", bb, False))
    sig, attrs = aot.signature(kernel, consts, aot.kernel_types(tma_rows=bn))
    compiled = triton.compile(ASTSource(kernel, sig, consts, attrs), target=GPUTarget("cuda", arch, 32),
                              options={"num_warps": warps, "num_stages": 1})
    ttgir = compiled.asm["ttgir"]
    assert "async_tma_copy_global_to_local" in ttgir
    # a ring of >= 2 buffers per pass (3 stages: 2 today): the copies are issued ahead of their use
    assert re.search(rf"memdesc<[2-9]x{bn}x16xi32", ttgir), "weight tiles not multi-buffered (no software pipeline)"
    assert "ld.global.nc.v4.b32" in compiled.asm["ptx"]
    assert lutmma.layout_ok(ttgir, warps)


@pytest.mark.parametrize("tm,wgmma", [(64, True), (32, False)])
def test_rotate_blocks_kernel_compiles_to_wgmma(compiled_triton_kernels, tm, wgmma):
    """The block-tile rotation for sm_90: at the default 64-row tiles the product must be a wgmma
    (warp_group_dot in the TTGIR; the 32-row line-flat tiles' mma.sync re-read H from shared
    memory per 16 rows and ran at 2.1x a copy), and the signs a single [R] load per tile."""
    triton = pytest.importorskip("triton")
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    import triton.language as tl
    import tq.triton.rotate as rotate

    assert rotate.BLOCK_TILE_ROWS == 64
    kernel = rotate._rotate_blocks_kernel
    consts = dict(N=128, TM=tm, PREC="tf32", DOT_DTYPE=tl.bfloat16, PADDED=False)
    types = {"in_ptr": "*bf16", "out_ptr": "*bf16", "sign_ptr": "*fp32", "scale": "fp32"}
    sig = {n: "constexpr" if n in consts else types.get(n, "i32") for n in kernel.arg_names}
    compiled = triton.compile(ASTSource(kernel, sig, consts), target=GPUTarget("cuda", 90, 32),
                              options={"num_warps": 4, "num_stages": 3})
    ttgir = compiled.asm["ttgir"]
    assert ("warp_group_dot" in ttgir) == wgmma
    assert "tensor<128x!tt.ptr<f32>" in ttgir and f"tensor<{tm}x128x!tt.ptr<f32>" not in ttgir  # 1-D signs
    assert len(compiled.asm["cubin"]) > 1000
