"""cutile word decode (tq/cutile/words.py, wordlevels.py).

CPU / CI: the host model of the kernel's bit operations decodes real packed planes to the
reference's W_rot; the activation order, the field constants, the fp16 fit, the choice of
path and its reasons; AOT compiles of the kernels are in test_cutile_backend's `ci` set.
GPU: ``pytest -m gpu tests/test_cutile_words.py``: parity of the word decode against the
float64 reference on fresh random inputs (2/3/4-bit passes and residuals, groups, odd and
whole-tile shapes, batches 1, 3, 8, 9, 16, bias, extreme activation magnitudes and per-tile
scales, weights of one shape with different group sizes back to back, CUDA-graph capture).
"""
from __future__ import annotations

import math
import secrets

import numpy as np
import pytest
import torch

import tq
from tq.cutile import dispatch as d
from tq.cutile import env, wordlevels as wl
from tq.quantize import dequantize_rotated
from tq.reference import matmul_float64

RUNTIME_OK, RUNTIME_REASON = env.availability()
needs_gpu = pytest.mark.skipif(not RUNTIME_OK, reason=f"cutile backend unavailable: {RUNTIME_REASON}")


def _seed():
    return secrets.randbelow(2**31)


def _rel(y, ref):
    # relative error of a GPU output (torch) against a float64 NumPy reference
    return float(np.linalg.norm(y.double().cpu().numpy() - ref) / np.linalg.norm(ref))


# ---------------------------------------------------------------------------
# Host model (CPU)
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("p", wl.WORD_WIDTHS)
def test_field_constants_are_exact(p):
    for i in range(16 // wl.spacing(p)):
        low, m, magic, mask, centre = wl.field(i, p)
        assert 1 <= m and m + p <= 10                 # inside the fp16 mantissa, above bit 0
        assert magic & mask == 0 and 0 < magic < 2**31 and 0 < mask < 2**31
        for half in (0, 16):                          # both 16-bit halves carry the same field
            assert (mask >> half) & 0xFFFF == ((1 << p) - 1) << m
        lam = 2.0 ** wl.log2_lambda(p)
        f = np.array([(magic & 0xFFFF) | (idx << m) for idx in range(1 << p)], dtype=np.uint16).view(np.float16)
        base = float(np.array([magic & 0xFFFF], dtype=np.uint16).view(np.float16)[0])
        assert np.array_equal(f.astype(np.float64), base + lam * np.arange(1 << p))   # 2^e + lambda * idx
        assert float(np.float16(centre)) == centre                                     # representable
        u = f.astype(np.float64) - centre
        assert np.array_equal(u.astype(np.float16).astype(np.float64), u)            # exact u in [-1, 1)
        assert np.all(np.abs(u) < 1)


@pytest.mark.parametrize("p", wl.WORD_WIDTHS)
def test_one_and_per_field_equals_and_or(p):
    # The kernel ORs every field's exponent into the shifted word once, then takes field i with a
    # single AND (one constant): bit for bit (src & mask) | magic, for any word.
    ex = wl.exponents(p)
    src = np.random.default_rng(_seed()).integers(0, 2**32, 4096, dtype=np.uint64).astype(np.int64)
    for i in range(16 // wl.spacing(p)):
        _, _, magic, mask, _ = wl.field(i, p)
        assert magic & ~ex == 0 and mask & ex == 0    # the exponent bits it keeps are set; its field is untouched
        assert np.array_equal((src | ex) & (mask | magic), (src & mask) | magic)


@pytest.mark.parametrize("p", wl.PLANE_WIDTHS)
@pytest.mark.parametrize("k_pad", [32, 96, 1024])
def test_word_columns_permute_the_packing(p, k_pad):
    cols = wl.word_columns(k_pad, p)
    assert cols.shape == (16 // p, k_pad * p // 16)
    assert np.array_equal(np.sort(cols.ravel()), np.arange(k_pad))
    # element e of slice i is field i of 16-bit half e: check against tq.packing on a ramp
    from tq.packing import pack_plane
    vals = torch.randint(0, 1 << p, (3, k_pad))
    halves = pack_plane(vals, p).numpy().view(np.uint16).astype(np.int64)
    for i in range(16 // p):
        assert np.array_equal((halves >> (i * p)) & ((1 << p) - 1), vals.numpy()[:, cols[i]])


@pytest.mark.parametrize("k_pad", [32, 96, 1024])
def test_combine3_puts_each_index_in_a_nibble(k_pad):
    # 3-bit indices from their 2-bit and 1-bit planes (tq.packing): nibble i of each half of the
    # combined words Z_e / Z_o holds, in bits 0-2, the index of the column that activation slice
    # THREE_BIT_SLICES[i] / [4 + i] of the 2-bit order (word_columns(k, 2)) puts there
    from tq.packing import pack_plane
    seed = _seed()
    vals = torch.from_numpy(np.random.default_rng(seed).integers(0, 8, (5, k_pad)))
    w2 = pack_plane(vals & 3, 2).numpy().view(np.int32)
    w1 = pack_plane(vals >> 2, 1).numpy().view(np.int32)
    assert w2.shape[1] == 2 * w1.shape[1]
    cols = wl.word_columns(k_pad, 2)
    assert sorted(wl.THREE_BIT_SLICES) == list(range(8))
    for z, zw in enumerate(wl.combine3(w2, w1)):
        assert zw.min() >= 0 and zw.max() < 2**32
        halves = np.stack([zw & 0xFFFF, zw >> 16], -1).reshape(zw.shape[0], -1)
        for i in range(4):
            got = (halves >> (4 * i)) & 7
            assert np.array_equal(got, vals.numpy()[:, cols[wl.THREE_BIT_SLICES[4 * z + i]]]), f"seed={seed} z={z} i={i}"


def test_combine3_words_are_the_4bit_layout():
    # docs/triton.md's 2/3-bit lookup design: per 32-column block the merged words Z_e(W0),
    # Z_e(W1), Z_o(W0), Z_o(W1) are the 4-bit plane's words 0-3 of the same indices (bit 3 of
    # every nibble aside), and the 2-bit plane's masked words are too
    from tq.packing import pack_plane
    seed = _seed()
    vals = torch.from_numpy(np.random.default_rng(seed).integers(0, 8, (7, 256)))
    w2 = pack_plane(vals & 3, 2).numpy().view(np.int32)
    w1 = pack_plane(vals >> 2, 1).numpy().view(np.int32)
    w4 = pack_plane(vals, 4).numpy().view(np.int32).astype(np.int64) & 0xFFFFFFFF
    ze, zo = wl.combine3(w2, w1)
    blocks = w4.shape[1] // 4
    merged = np.stack([ze[:, 0::2], ze[:, 1::2], zo[:, 0::2], zo[:, 1::2]], -1).reshape(7, 4 * blocks)
    assert np.array_equal(merged & 0x77777777, w4), f"seed={seed}"
    w2u = w2.astype(np.int64) & 0xFFFFFFFF
    two = np.stack([w2u[:, 0::2] & 0x33333333, w2u[:, 1::2] & 0x33333333, (w2u[:, 0::2] >> 2) & 0x33333333,
                    (w2u[:, 1::2] >> 2) & 0x33333333], -1).reshape(7, 4 * blocks)
    assert np.array_equal(two, pack_plane(vals & 3, 4).numpy().view(np.int32).astype(np.int64) & 0xFFFFFFFF)


@pytest.mark.parametrize("bits, residual, group, codebook", [
    (4, None, 128, "gaussian"), (4, None, 64, "beta"), (2, None, 256, "gaussian"), (4, 4, 128, "gaussian"),
    (4, 2, None, "gaussian"), (2, 2, 128, "gaussian-poly"), (4, None, 128, "gaussian-poly"),
    (3, None, 128, "gaussian"), (3, None, 64, "beta"), (3, 2, 128, "gaussian"), (4, 3, 256, "gaussian"),
    (3, 3, None, "gaussian-poly"), (2, 3, 128, "gaussian"), (3, 4, 256, "beta")])
@pytest.mark.parametrize("bound", wl.BOUNDS)
def test_word_model_decodes_real_planes(bits, residual, group, codebook, bound):
    # The kernel's operations (wordlevels.decode_words) on a real packed weight, put back in
    # column order and scaled by the norms, give the reference's W_rot to the fp16 fit's accuracy:
    # "strict" well inside bf16's rounding, "bf16" about as close as rounding W_rot to bf16 is
    # (0.92-1.03x its Frobenius error over 100 seeds for 4-bit Gaussian g128, 0.72-0.79x Beta g64).
    seed = _seed()
    g = torch.Generator().manual_seed(seed)
    n, k = 37, 300 + seed % 200
    qw = tq.quantize(torch.randn(n, k, generator=g), bits=bits, group_size=group, residual_bits=residual,
                     codebook=codebook, seed=seed % 1000)
    gs = qw.group_size
    w = np.zeros((n, qw.k_padded))
    for ps in qw.passes:
        lv = ps.levels.double().numpy() / math.sqrt(gs)
        fitted = wl.fit(lv, ps.bits, bound)
        assert fitted is not None
        coef, err = fitted
        assert wl.within(wl.level_errors(coef, lv, ps.bits), bound) and err == wl.level_errors(coef, lv, ps.bits)[0]
        ones = ps.planes[1].numpy().view(np.int32) if ps.bits == 3 else None
        lev = wl.decode_words(ps.planes[0].numpy().view(np.int32), ps.bits, coef, ones)
        cols = wl.word_columns(qw.k_padded, wl.x_width(ps.bits))
        wp = np.zeros_like(w)
        for i in range(cols.shape[0]):
            wp[:, cols[i]] = lev[i]
        w += wp * np.repeat(ps.norms.double().numpy(), gs, 1)
    ref = dequantize_rotated(qw, dtype=torch.float64).numpy()
    rel = np.abs(w - ref).max() / np.abs(ref).max()
    assert rel < 4e-3, f"seed={seed}: {rel:.2e}"
    fro = np.linalg.norm(w - ref) / np.linalg.norm(ref)
    bf16_fro = np.linalg.norm(torch.from_numpy(ref).to(torch.bfloat16).double().numpy() - ref) / np.linalg.norm(ref)
    if bound == "strict":
        assert fro < 1.5e-3 and fro < bf16_fro, f"seed={seed}: {fro:.2e} (bf16 rounding {bf16_fro:.2e})"
    else:
        assert fro < 1.1 * bf16_fro, f"seed={seed}: {fro:.2e} (bf16 rounding {bf16_fro:.2e})"


def test_fit():
    from tq.codebook import get_codebook
    for bits, bound, terms in ((4, "bf16", 4), (4, "strict", 5), (2, "bf16", 2), (2, "strict", 2)):
        lv = np.array(get_codebook("gaussian", bits, dimension=128).levels) / math.sqrt(128)
        coef, err = wl.fit(lv, bits, bound)
        assert coef.size == terms
        assert np.array_equal(coef.astype(np.float16).astype(np.float64), coef)   # fp16-exact
        rel = np.abs(wl.levels_fp16(coef, bits) - lv) / np.abs(lv)
        assert rel.max() == err and wl.level_errors(coef, lv, bits) == (err, pytest.approx(np.sqrt(np.mean(rel**2))))
        if bound == "strict":
            assert err <= wl.TOL
        else:
            assert err <= wl.BF16_MAX and np.sqrt(np.mean(rel**2)) <= wl.BF16_RMS
        if terms > 2:
            # the shortest: the relative least-squares fit with one term fewer misses the bound
            n = 1 << bits
            u = 2.0 ** wl.log2_lambda(bits) * (np.arange(n) - (n - 1) / 2)
            a = np.stack([u ** (2 * j + 1) for j in range(terms - 1)], 1) / np.abs(lv)[:, None]
            shorter = wl.fp16_round(np.linalg.lstsq(a, np.sign(lv), rcond=None)[0])
            assert not wl.within(wl.level_errors(shorter, lv, bits), bound)
    assert np.array_equal(wl.fit(lv, 2)[0], wl.fit(lv, 2, "bf16")[0])                  # bf16: the default
    # 4 terms meet bf16's numbers but not 2^-9: "strict" refuses them
    lv4 = np.array(get_codebook("gaussian", 4, dimension=128).levels) / math.sqrt(128)
    e4 = wl.level_errors(wl.fit(lv4, 4, "bf16")[0], lv4, 4)
    assert wl.within(e4, "bf16") and not wl.within(e4, "strict") and e4[0] > wl.TOL
    with pytest.raises(ValueError, match="level bound must be one of"):
        wl.fit(lv4, 4, "fp8")
    with pytest.raises(ValueError, match="level bound must be one of"):
        wl.within((0.0, 0.0), "loose")
    lv = np.array(get_codebook("gaussian", 4, dimension=128).levels)
    assert wl.fit(lv[::-1] * 0 + 1, 4) is None           # not odd-symmetric
    assert wl.fit(np.r_[lv[:8], 0 * lv[8:]], 4) is None  # zero level
    assert wl.fit(lv, 2) is None                          # wrong count
    assert wl.fit(lv * 1e6, 4) is None                    # fp16 overflow: no finite evaluation


def test_bf16_rounding_numbers():
    # BF16_RMS is the rms relative error of rounding to bf16 values spread log-uniformly over
    # binades (Monte Carlo, 2e5 draws, against the closed form) and BF16_MAX its unit roundoff.
    v = torch.from_numpy(2.0 ** np.random.default_rng(_seed()).uniform(-8, 8, 200_000))
    rel = ((v.to(torch.bfloat16).double() - v) / v).numpy()
    assert abs(np.sqrt(np.mean(rel**2)) / wl.BF16_RMS - 1) < 0.02
    assert np.abs(rel).max() <= wl.BF16_MAX


def test_words_reason_and_split(monkeypatch):
    def wd_of(**kw):
        qw = tq.quantize(torch.randn(64, 1024), **kw)
        return qw, d.weight_data(qw)
    qw, wd = wd_of(bits=4, group_size=128)
    assert d.words_reason(qw, wd, 16, torch.bfloat16) is None
    assert d.words_reason(qw, wd, 1, torch.bfloat16) is None
    assert "bf16" in d.words_reason(qw, wd, 4, torch.float16)
    assert "batch 17" in d.words_reason(qw, wd, 17, torch.bfloat16)
    monkeypatch.setenv("TQ_CUTILE_WORDS", "0")
    assert d.words_reason(qw, wd, 4, torch.bfloat16) == "TQ_CUTILE_WORDS=0"
    monkeypatch.setenv("TQ_CUTILE_WORDS", "yes")
    with pytest.raises(ValueError, match="TQ_CUTILE_WORDS"):
        d.words_reason(qw, wd, 4, torch.bfloat16)
    monkeypatch.delenv("TQ_CUTILE_WORDS")
    monkeypatch.setenv("TQ_CUTILE_LEVELS", "fit")
    assert "TQ_CUTILE_LEVELS" in d.words_reason(qw, wd, 4, torch.bfloat16)
    monkeypatch.delenv("TQ_CUTILE_LEVELS")
    assert d.words_reason(*wd_of(bits=3, group_size=128), 4, torch.bfloat16) is None
    assert d.words_reason(*wd_of(bits=3, group_size=128, residual_bits=2), 1, torch.bfloat16) is None
    assert "< 256" in d.words_reason(*wd_of(bits=3, group_size=64), 4, torch.bfloat16)
    assert "8+0-bit" in d.words_reason(*wd_of(bits=8, group_size=128), 4, torch.bfloat16)
    assert "2+1-bit pair" in d.words_reason(*wd_of(bits=4, group_size=128, residual_bits=8), 4, torch.bfloat16)
    assert "< 256" in d.words_reason(*wd_of(bits=4, group_size=32), 4, torch.bfloat16)
    assert "< 256" in d.words_reason(*wd_of(bits=2, group_size=64), 4, torch.bfloat16)
    assert "rotation block 1024" in d.words_reason(*wd_of(bits=4, group_size=None), 4, torch.bfloat16)
    assert d.words_reason(*wd_of(bits=4, group_size=128, residual_bits=2), 4, torch.bfloat16) is None
    # split: 4, fewer where a share would hold < 4 K tiles, more for few row tiles
    assert d.words_split(8192, 64, 132) == 4 and d.words_split(28672, 224, 132) == 4
    assert d.words_split(28672, 8, 132) == 2 and d.words_split(28672, 4, 132) == 1
    assert d.words_split(8192, 4, 132) == 2     # 64 row tiles: split again to cover the SMs
    assert d.words_split(1024, 64, 132) == 8
    monkeypatch.setenv("TQ_CUTILE_DECODE", "128,16,2")
    assert d.words_split(8192, 64, 132) == 2
    monkeypatch.setenv("TQ_CUTILE_DECODE", "128,16,3")
    with pytest.raises(ValueError, match="split must be 1, 2, 4 or 8"):
        d.words_split(8192, 64, 132)


def test_words_scratch_is_per_k_tile():
    # Two weights of one shape with different K tiles (g128: 128, g64: 64) must not share the
    # per-(row, K tile) scale buffer: the g64 one needs twice its rows.
    pytest.importorskip("cuda.tile", reason="cuda-tile is not installed")
    plans = []
    for group in (128, 64):
        qw = tq.quantize(torch.randn(256, 4096), bits=4, group_size=group)
        wd = d.weight_data(qw)
        assert d.words_reason(qw, wd, 4, torch.bfloat16) is None
        # (one SM: no extra split to fill the GPU, so both take split 4 and differ only in the K tile)
        plan = d._words_plan(qw, wd, 4, torch.bfloat16, False, torch.device("cpu"), 0, 256, qw.k_padded,
                             qw.rotation_block, 1, wd.passes[0], None)
        assert plan.tiling.split == 4
        assert plan.scratch["xinv"].shape == (qw.k_padded // d.words_k_tile(qw, wd)[0], 8)
        plans.append(plan)
    assert plans[0].scratch is not plans[1].scratch


@pytest.mark.parametrize("norm_dtype", [torch.float16, torch.float32])
def test_words_keep_transposed_norms(norm_dtype):
    # The word decode reads each pass's norms from a transposed copy [K_pad/G, N] (a K tile's norm
    # tile then has 2*TN-byte rows, which TMA loads); the copy must hold the pass's norms exactly.
    qw = tq.quantize(torch.randn(200, 1024), bits=4, group_size=128, residual_bits=2, norm_dtype=norm_dtype)
    wd = d.weight_data(qw)
    for p, pd in zip(qw.passes, wd.passes):
        nt = pd.words.norms_t
        assert nt.shape == (qw.k_padded // 128, 200) and nt.is_contiguous() and nt.dtype == p.norms.dtype
        assert torch.equal(nt, p.norms.t())
        assert nt.data_ptr() != p.norms.data_ptr()


def test_words_k_tile(monkeypatch):
    # 256-column K tiles where K_pad allows and the tile holds one or two whole groups
    def tile(k, **kw):
        qw = tq.quantize(torch.randn(64, k), **kw)
        return d.words_k_tile(qw, d.weight_data(qw))
    assert tile(4096, bits=4, group_size=128) == (256, 2)
    assert tile(1920, bits=4, group_size=128) == (128, 1)     # K_pad = 15 x 128
    assert tile(1792, bits=4, group_size=256) == (256, 1)
    assert tile(2048, bits=4, group_size=512) == (128, 1)     # rotation block 512: too large a rotation tile
    assert tile(4096, bits=4, group_size=64) == (64, 1)
    assert tile(4096, bits=2, group_size=128) == (256, 2)
    monkeypatch.setenv("TQ_CUTILE_WORDS_TK", "128")
    assert tile(4096, bits=4, group_size=128) == (128, 1) and tile(1792, bits=4, group_size=256) == (128, 1)
    monkeypatch.setenv("TQ_CUTILE_WORDS_TK", "512")
    with pytest.raises(ValueError, match="TQ_CUTILE_WORDS_TK"):
        tile(4096, bits=4, group_size=128)


def test_pdl_switch(monkeypatch):
    # The word decode's matmul is a programmatic dependent launch of its rotation, and its split-K
    # reduction (reduce.py) one of the matmul, unless TQ_CUTILE_PDL=0.  Bad values are refused by name.
    pytest.importorskip("cuda.tile", reason="cuda-tile is not installed")
    qw = tq.quantize(torch.randn(256, 4096), bits=4, group_size=128)
    wd = d.weight_data(qw)

    def plan():
        return d._words_plan(qw, wd, 4, torch.bfloat16, False, torch.device("cpu"), 0, 256, qw.k_padded,
                             qw.rotation_block, 1, wd.passes[0], None)
    p = plan()
    assert p.tiling.split == 4 and p.reduce_grid == (1, 2, 1) and p.pdl
    assert p.words_tiles == (16, 1) and p.fused_consts[5:8] == (256, 8, 2)    # TK, TB, NG
    # the matmul and the split-K reduction are each a programmatic dependent of the launch before,
    # on a plan's first call (through _launch, which times the compile) and on later ones
    import cuda.tile as ct
    flags = []
    monkeypatch.setattr(ct, "launch", lambda stream, grid, kern, args, programmatic_dependent_launch=False:
                        flags.append(programmatic_dependent_launch))
    monkeypatch.setattr(d, "_launch", lambda kern, grid, args, key, pdl=False: flags.append(pdl))
    launches = [(None, (1, 1, 1), (torch.empty(0),))] * 3

    def issued(pl):
        flags.clear()
        d._issue(pl, launches, ("a", "b", "c"), None, (), ())     # first call: _launch
        d._issue(pl, launches, ("a", "b", "c"), None, (), ())     # then ct.launch
        return list(flags)
    assert issued(p) == [False, True, True] * 2
    monkeypatch.setenv("TQ_CUTILE_PDL", "0")
    q = plan()
    assert not q.pdl and issued(q) == [False] * 6
    monkeypatch.setenv("TQ_CUTILE_PDL", "yes")
    with pytest.raises(ValueError, match="TQ_CUTILE_PDL"):
        d.pdl_enabled()


@pytest.mark.parametrize("bits, residual", [(4, 4), (3, 2)])
def test_words_launch_passes_transposed_norms(monkeypatch, bits, residual):
    # The matmul's norm arguments are the transposed copies, for the main and the residual pass;
    # a 3-bit pass also hands over its 1-bit plane's words (the others: their plane again, unread).
    pytest.importorskip("cuda.tile", reason="cuda-tile is not installed")
    import cuda.tile as ct
    qw = tq.quantize(torch.randn(256, 4096), bits=bits, group_size=128, residual_bits=residual)
    wd = d.weight_data(qw)
    plan = d._words_plan(qw, wd, 4, torch.bfloat16, False, torch.device("cpu"), 0, 256, qw.k_padded,
                         qw.rotation_block, 1, wd.passes[0], wd.passes[1])
    plan.seen = True
    seen = []
    monkeypatch.setattr(ct, "launch", lambda stream, grid, kern, args, programmatic_dependent_launch=False:
                        seen.append((kern, args)))
    x = torch.randn(4, 4096).to(torch.bfloat16)
    d._run_words(x, wd, plan, torch.empty(4, 256, dtype=torch.bfloat16), wd.signs.view(1, -1), None)
    kern, args = seen[1]
    assert kern is plan.fused_kernel
    pa, pb = wd.passes[0].words, wd.passes[1].words
    assert args[6] is pa.norms_t and args[11] is pb.norms_t
    assert args[4] is pa.plane and args[9] is pb.plane
    assert args[5] is pa.ones and args[10] is pb.ones
    assert plan.fused_consts[0] == bits and plan.fused_consts[2] == residual
    # the activation copies: the 2-bit order for a 3-bit pass (its slices are the 2-bit plane's)
    assert args[3].shape[0] == 16 // wl.x_width(bits) and args[8].shape[0] == 16 // wl.x_width(residual)
    if bits == 3:
        assert torch.equal(pa.ones, qw.passes[0].planes[1].view(torch.int32))
        assert args[3] is args[8]                      # one copy serves both passes
    else:
        assert pa.ones is pa.plane
    # the level coefficients: each pass's fit for the active bound (TQ_CUTILE_WORDS_BOUND, bf16)
    assert args[7] is pa.fits["bf16"][1] and args[12] is pb.fits["bf16"][1]


def test_words_bound_switch(monkeypatch):
    # TQ_CUTILE_WORDS_BOUND picks the fit: bf16 (default) 4 terms, strict 5 for a 4-bit Gaussian
    # pass; the plan's constants and coefficient arguments follow; a bad value is refused by name.
    # (The Gaussian 2-bit residual takes 2 terms; the default matched one is uniform, 1 term.)
    pytest.importorskip("cuda.tile", reason="cuda-tile is not installed")
    qw = tq.quantize(torch.randn(256, 4096), bits=4, group_size=128, residual_bits=2, residual_codebook="gaussian")
    wd = d.weight_data(qw)
    assert {b: f[0] for b, f in wd.passes[0].words.fits.items()} == {"bf16": 4, "strict": 5}
    assert {b: f[0] for b, f in wd.passes[1].words.fits.items()} == {"bf16": 2, "strict": 2}

    def plan():
        return d._words_plan(qw, wd, 4, torch.bfloat16, False, torch.device("cpu"), 0, 256, qw.k_padded,
                             qw.rotation_block, 1, wd.passes[0], wd.passes[1])
    assert d.words_bound() == "bf16"
    p = plan()
    assert p.fused_consts[:4] == (4, 4, 2, 2) and p.levels[0] is wd.passes[0].words.fits["bf16"][1]
    monkeypatch.setenv("TQ_CUTILE_WORDS_BOUND", "strict")
    q = plan()
    assert q.fused_consts[:4] == (4, 5, 2, 2) and q.levels[0] is wd.passes[0].words.fits["strict"][1]
    assert q.levels[1] is wd.passes[1].words.fits["strict"][1]
    # the plan cache keys on the setting: a change applies to a weight already planned
    monkeypatch.setattr(d, "_sm_count", lambda dev: 132)
    cached = d._plan(qw, wd, 4, torch.bfloat16, False, torch.device("cpu"), 0)
    assert cached.fused_consts[1] == 5
    monkeypatch.delenv("TQ_CUTILE_WORDS_BOUND")
    assert d._plan(qw, wd, 4, torch.bfloat16, False, torch.device("cpu"), 0).fused_consts[1] == 4
    monkeypatch.setenv("TQ_CUTILE_WORDS_BOUND", "strict")
    assert d._plan(qw, wd, 4, torch.bfloat16, False, torch.device("cpu"), 0) is cached
    # a pass with no fit for the active bound is refused with the reason
    saved = wd.passes[0].words.fits.pop("strict")
    assert "'strict' bound" in d.words_reason(qw, wd, 4, torch.bfloat16)
    wd.passes[0].words.fits["strict"] = saved
    assert d.words_reason(qw, wd, 4, torch.bfloat16) is None
    monkeypatch.setenv("TQ_CUTILE_WORDS_BOUND", "loose")
    with pytest.raises(ValueError, match="TQ_CUTILE_WORDS_BOUND must be one of bf16, strict"):
        d.words_reason(qw, wd, 4, torch.bfloat16)


def test_dependent_launches_wait_before_reading():
    # A programmatic dependent may start before its primary's results exist: the split-K reduction
    # must wait (griddepcontrol.wait) before its first load, and the matmul, a dependent of the
    # rotation, must wait before it releases the reduction or loads anything.
    pytest.importorskip("cuda.tile", reason="cuda-tile is not installed")
    import inspect
    from tq.cutile import reduce, words

    def order(mod, kernel, *calls):
        # positions of the calls' first appearance in the kernel's body (up to the next decorator)
        src = inspect.getsource(mod)
        start = src.index(f"def {kernel}(")
        end = src.find("\n@", start)
        body = src[start:end if end >= 0 else None]
        return [body.index(c) for c in calls]
    w, ld = order(reduce, "splitk_reduce_kernel", "ct.grid_dependency_control_wait()", "ct.load(")
    assert w < ld
    w, rel, ld = order(words, "words_matmul_kernel", "ct.grid_dependency_control_wait()",
                       "ct.grid_dependency_control_launch_dependents()", "_scaled_part(")
    assert w < rel < ld


def test_scale_exponent_model():
    # rotate_words_kernel's per-tile scale 2^s: the largest scaled magnitude lands in [2^14, 2^15)
    # (inside fp16's range with 1 bit of headroom) and 2^-s is its exact inverse
    def scale(amax):
        eb = (np.array([amax], dtype=np.float32).view(np.int32) >> 23) & 255
        se = np.minimum(np.maximum(268 - eb, 1), 253)
        return (se << 23).view(np.float32)[0], ((254 - se) << 23).view(np.float32)[0]
    for amax in (1.0, 3.0e-5, 0.7, 65504.0, 1e30, 3e38, 1.5e-30):
        s, inv = scale(amax)
        assert 2**14 <= amax * s < 2**15 and float(s) * float(inv) == 1.0
    s, inv = scale(0.0)
    assert s == 2.0**126 and inv == 2.0**-126


# ---------------------------------------------------------------------------
# GPU parity
# ---------------------------------------------------------------------------
WORD_CONFIGS = [(4, None, 128), (4, None, 64), (2, None, 128), (4, 4, 128), (4, 2, 256), (2, 2, 128), (2, 4, 128),
                (4, None, 256), (3, None, 128), (3, 2, 128), (3, 3, 256), (4, 3, 128)]


def _plan_form(qw, x):
    wd = d.weight_data(qw)
    return "words" if d.words_reason(qw, wd, x.shape[0], x.dtype) is None else "classic"


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("codebook", ["gaussian", "beta-poly"])
@pytest.mark.parametrize("bits, residual, group", WORD_CONFIGS)
def test_words_parity(bits, residual, group, codebook):
    import tq.cutile as tqc
    seed = _seed()
    g = torch.Generator().manual_seed(seed)
    # odd N (bounds-checked tiles) for one codebook, whole 128-row tiles (the unchecked kernel) for the other
    n = int(torch.randint(33, 700, (1,), generator=g)) | 1 if codebook == "beta-poly" else 128 * (1 + seed % 5)
    k = int(torch.randint(300, 2000, (1,), generator=g)) | 1
    qw = tq.quantize(torch.randn(n, k, generator=g).cuda(), bits=bits, group_size=group, residual_bits=residual,
                     codebook=codebook, seed=seed % 1000)
    for batch in (1, 3, 8, 9, 16):
        x = torch.randn(batch, k, generator=g).to(torch.bfloat16).cuda()
        bias = torch.randn(n, generator=g).to(torch.bfloat16).cuda() if batch % 2 else None
        assert _plan_form(qw, x) == "words"
        ref = matmul_float64(x, qw, bias=bias)
        y = tqc.matmul(x, qw, bias=bias)
        assert y.dtype == torch.bfloat16 and tuple(y.shape) == (batch, n)
        err = _rel(y, ref)
        # bf16 output rounding (~2^-9 / sqrt(3)) and the levels' fit (within bf16's rounding of them)
        assert err < 4e-3, f"seed={seed} n={n} k={k} B={batch}: rel err {err:.2e}"


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("bits, residual, codebook, residual_codebook, margin", [
    (4, None, "gaussian", None, 1.1), (4, 4, "gaussian", "residual-poly", 1.1), (4, 4, "gaussian", "gaussian", 1.1),
    (4, None, "beta", None, 1.2)])
def test_words_bounds_against_bf16_dequant(monkeypatch, bits, residual, codebook, residual_codebook, margin):
    # Both level bounds on one weight and batch: "strict" (5 terms) is the more accurate, and the
    # default "bf16" (4 terms) stays close to a bf16 dequant's error (the levels rounded to bf16,
    # exact products, the output rounded to bf16), which is what the other paths do.  The bound is
    # bf16's average rounding (rms 1.66e-3); a given codebook can round better: Beta g128's levels
    # lose rms 1.21e-3 to bf16, its 4-term fit 1.31e-3, and the H200 measured 1.10x the dequant's
    # output error there (seventeenth session): its margin is 1.2x, Gaussian's (0.98x) 1.1x.
    import dataclasses
    import tq.cutile as tqc
    seed = _seed()
    g = torch.Generator().manual_seed(seed)
    n, k = 1024 + 128 * (seed % 4), 4096
    extra = {"residual_codebook": residual_codebook} if residual else {}
    qw = tq.quantize(torch.randn(n, k, generator=g).cuda(), bits=bits, group_size=128, residual_bits=residual,
                     codebook=codebook, seed=seed % 1000, **extra)
    x = torch.randn(16, k, generator=g).to(torch.bfloat16).cuda()
    ref = matmul_float64(x, qw)
    qb = dataclasses.replace(qw, passes=[dataclasses.replace(p, levels=p.levels.to(torch.bfloat16).float())
                                         for p in qw.passes])
    dq = _rel(torch.from_numpy(matmul_float64(x, qb)).to(torch.bfloat16), ref)
    errs = {}
    for bound, terms in (("bf16", 4), ("strict", 5)):
        monkeypatch.setenv("TQ_CUTILE_WORDS_BOUND", bound)
        errs[bound] = _rel(tqc.matmul(x, qw), ref)
        plan = next(p for key, p in d.weight_data(qw).plans.items() if p.rotate_form == "words" and bound in key)
        assert plan.fused_consts[1] == terms
    assert errs["strict"] < errs["bf16"] < margin * dq, f"seed={seed}: {errs} bf16 dequant {dq:.2e}"


@pytest.mark.gpu
@needs_gpu
def test_words_extreme_rows_and_graph(monkeypatch):
    # Per-(row, K tile) scales: rows of very different magnitude (and an all-zero row) each keep
    # their own relative accuracy, one K tile's outlier does not flatten the rest of its row, and
    # the call replays under a CUDA graph; TQ_CUTILE_WORDS=0 (fused.py) agrees.
    import tq.cutile as tqc
    seed = _seed()
    g = torch.Generator().manual_seed(seed)
    n, k = 517, 1536
    qw = tq.quantize(torch.randn(n, k, generator=g).cuda(), bits=4, group_size=128, seed=seed % 1000)
    x = torch.randn(6, k, generator=g, dtype=torch.float64)
    x[0] *= 3e4
    x[1] *= 1e-5
    x[2] = 0
    x[3, 5] = 6e4                      # one huge value in K tile 0
    x[4, :256] *= 1e-3                 # one tiny K tile (256 columns: the word decode's tile at g128)
    xb = x.to(torch.bfloat16).cuda()
    ref = matmul_float64(xb, qw)
    y = tqc.matmul(xb, qw).double().cpu().numpy()
    assert np.all(y[2] == 0)
    # the scales are per (row, K tile): 2^-s tracks each tile's own largest magnitude
    plan = next(p for p in d.weight_data(qw).plans.values() if p.rotate_form == "words")
    log_inv = torch.log2(plan.scratch["xinv"][:, :6].double().cpu())            # [K tiles, rows]
    assert log_inv[0, 3] >= log_inv[1:, 3].max() + 5      # row 3's outlier tile: far smaller scale
    assert log_inv[0, 4] <= log_inv[1:, 4].min() - 7      # row 4's 1e-3 tile: far larger scale
    assert (log_inv[:, 0] - log_inv[:, 1]).min() >= 20    # rows 0 and 1: 3e4 against 1e-5
    assert (log_inv == log_inv.round()).all()             # powers of two
    for r in (0, 1, 3, 4, 5):
        err = np.linalg.norm(y[r] - ref[r]) / np.linalg.norm(ref[r])
        assert err < 4e-3, f"seed={seed} row {r}: {err:.2e}"
    out = torch.empty(6, n, dtype=torch.bfloat16, device="cuda")
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        out.copy_(tqc.matmul(xb, qw))          # warm-up (plan, compile) on the capture stream
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=stream):
            out.copy_(tqc.matmul(xb, qw))
    torch.cuda.current_stream().wait_stream(stream)
    out.zero_()
    graph.replay()
    torch.cuda.synchronize()
    assert np.array_equal(out.double().cpu().numpy(), y)
    monkeypatch.setenv("TQ_CUTILE_WORDS", "0")
    assert _plan_form(qw, xb) == "classic"
    y0 = tqc.matmul(xb, qw).double().cpu().numpy()
    assert np.linalg.norm(y0 - ref) / np.linalg.norm(ref) < 1e-2


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("bits, residual, group, k, tile", [
    (4, None, 128, 2048, (256, 2)), (4, None, 128, 1920, (128, 1)), (4, 4, 256, 1792, (256, 1)),
    (2, 2, 128, 3072, (256, 2)), (4, 2, 128, 1536, (256, 2)), (4, None, 64, 2048, (64, 1)),
    (3, None, 128, 1920, (128, 1)), (3, 3, 128, 2048, (256, 2))])
def test_words_k_tiles_agree(monkeypatch, bits, residual, group, k, tile):
    # Each K tile form (two norms a tile, one, the 128-column tile) against the reference and
    # against TQ_CUTILE_WORDS_TK=128 on the same inputs; odd N, batches 1-16, bias.
    import tq.cutile as tqc
    seed = _seed()
    g = torch.Generator().manual_seed(seed)
    n = int(torch.randint(100, 900, (1,), generator=g)) | 1
    qw = tq.quantize(torch.randn(n, k, generator=g).cuda(), bits=bits, group_size=group, residual_bits=residual,
                     seed=seed % 1000)
    assert d.words_k_tile(qw, d.weight_data(qw)) == tile
    for batch in (1, 7, 16):
        x = torch.randn(batch, k, generator=g).to(torch.bfloat16).cuda()
        bias = torch.randn(n, generator=g).to(torch.bfloat16).cuda() if batch == 7 else None
        ref = matmul_float64(x, qw, bias=bias)
        y = tqc.matmul(x, qw, bias=bias)
        err = _rel(y, ref)
        assert err < 4e-3, f"seed={seed} n={n} B={batch} tile {tile}: rel err {err:.2e}"
        monkeypatch.setenv("TQ_CUTILE_WORDS_TK", "128")
        y1 = tqc.matmul(x, qw, bias=bias)
        monkeypatch.delenv("TQ_CUTILE_WORDS_TK")
        diff = float((y1.double() - y.double()).norm() / y.double().norm())
        assert diff < 2e-3, f"seed={seed} n={n} B={batch}: 128-column tiles differ by {diff:.2e}"


@pytest.mark.gpu
@needs_gpu
def test_words_pdl_repeats_and_graph(monkeypatch):
    # The matmul launched as a programmatic dependent of the rotation: two weights of one shape
    # (sharing the scratch) in alternation, repeated calls and CUDA-graph replays give the same
    # bits, and so does an ordinary launch (TQ_CUTILE_PDL=0).  Split-K over 16 K tiles.
    import tq.cutile as tqc
    seed = _seed()
    g = torch.Generator().manual_seed(seed)
    n, k = 1000, 4096
    qws = [tq.quantize(torch.randn(n, k, generator=g).cuda(), bits=4, group_size=128, seed=(seed + i) % 1000)
           for i in range(2)]
    for batch in (1, 5, 16):
        x = torch.randn(batch, k, generator=g).to(torch.bfloat16).cuda()
        bias = torch.randn(n, generator=g).to(torch.bfloat16).cuda() if batch == 5 else None
        first = [tqc.matmul(x, q, bias=bias) for q in qws]
        plan = next(p for p in d.weight_data(qws[0]).plans.values()
                    if p.rotate_form == "words" and p.tiling.tb == (8 if batch <= 8 else 16))
        assert plan.tiling.split > 1 and plan.pdl        # (split 8 here: 8 row tiles leave SMs to fill)
        for _ in range(3):
            for q, y0 in zip(qws, first):
                assert torch.equal(tqc.matmul(x, q, bias=bias), y0)
        for q, y0 in zip(qws, first):
            ref = matmul_float64(x, q, bias=bias)
            err = _rel(y0, ref)
            assert err < 4e-3, f"seed={seed} B={batch}: rel err {err:.2e}"
        out = torch.empty(2, batch, n, dtype=torch.bfloat16, device="cuda")
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for i, q in enumerate(qws):            # warm-up: plans and scratch of the capture stream
                out[i].copy_(tqc.matmul(x, q, bias=bias))
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, stream=stream):
                for i, q in enumerate(qws):
                    out[i].copy_(tqc.matmul(x, q, bias=bias))
        torch.cuda.current_stream().wait_stream(stream)
        for _ in range(3):
            out.zero_()
            graph.replay()
            torch.cuda.synchronize()
            assert all(torch.equal(out[i], first[i]) for i in range(2))
        monkeypatch.setenv("TQ_CUTILE_PDL", "0")
        for q, y0 in zip(qws, first):
            assert torch.equal(tqc.matmul(x, q, bias=bias), y0)
        monkeypatch.delenv("TQ_CUTILE_PDL")


@pytest.mark.gpu
@needs_gpu
def test_words_shapes_share_nothing_across_group_sizes():
    # Same N x K, same batch, different K tiles (g128 then g64 then g128 again): each keeps its own
    # scratch (a shared scale buffer sized for K/128 tiles broke the g64 weight: rel err 0.7).
    import tq.cutile as tqc
    seed = _seed()
    g = torch.Generator().manual_seed(seed)
    qws = [tq.quantize(torch.randn(1024, 2048, generator=g).cuda(), bits=4, group_size=gs, seed=seed % 1000)
           for gs in (128, 64)]
    x = torch.randn(4, 2048, generator=g).to(torch.bfloat16).cuda()
    for qw in (qws[0], qws[1], qws[0]):
        err = _rel(tqc.matmul(x, qw), matmul_float64(x, qw))
        assert err < 4e-3, f"seed={seed} g{qw.group_size}: {err:.2e}"
