"""NumPy model of kw.dec_words' bit operations + host prep (perm, coefficients, x scales)."""
import numpy as np, torch

def field_consts(i, p):
    o = i * p
    if o + p <= 8:
        lo, m = True, o + 1
    else:
        lo, m = False, o - 7
    log_lam = 1 - p
    e = 10 - m + log_lam
    magic = ((e + 15) << 10) * 0x00010001
    mask = (((1 << p) - 1) << m) * 0x00010001
    center = 2.0 ** e + 2.0 ** log_lam * ((1 << p) - 1) * 0.5
    return lo, magic, mask, center

def word_perm(k_pad, p):
    v, S, E = 8 // p, 16 // p, k_pad * p // 16
    e = np.arange(E)
    cols = np.empty((S, E), np.int64)
    for i in range(S):
        q, f = i // v, i % v
        bt = 2 * e + q
        cols[i] = 32 * (bt // (4 * p)) + f * 4 * p + bt % (4 * p)
    return cols

def fit_coefs(levels, p, terms):
    L = np.asarray(levels, np.float64)
    n = 1 << p
    u = 2.0 ** (1 - p) * (np.arange(n) - (n - 1) / 2)
    a = np.stack([u ** (2 * j + 1) for j in range(terms)], 1)
    w = 1 / np.abs(L)
    d = np.linalg.lstsq(a * w[:, None], L * w, rcond=None)[0]
    return d

def f16_levels(d, p):
    f = lambda z: np.asarray(z, np.float64).astype(np.float16).astype(np.float64)
    n = 1 << p
    u = f(2.0 ** (1 - p) * (np.arange(n) - (n - 1) / 2))
    d16 = f(d)
    t = f(u * u)
    h = np.full_like(u, d16[-1])
    for j in range(len(d16) - 2, -1, -1):
        h = f(h * t + d16[j])
    return f(h * u)

def model_levels_from_words(words, p, d):
    """words: int32 [N, W] -> fp16 level values per slice: [S, N, 2W] (float64), via the kernel's ops."""
    w = words.astype(np.int64) & 0xFFFFFFFF
    sh_lo = (w << 1) & 0xFFFFFFFF
    sh_hi = np.where(w >= 2**31, (w - 2**32) >> 7, w >> 7) & 0xFFFFFFFF   # arithmetic shift
    out = []
    lv = f16_levels(d, p)
    f = lambda z: np.asarray(z, np.float64).astype(np.float16).astype(np.float64)
    for i in range(16 // p):
        lo, magic, mask, center = field_consts(i, p)
        q = ((sh_lo if lo else sh_hi) & mask) | magic
        halves = np.stack([q & 0xFFFF, q >> 16], -1).reshape(q.shape[0], -1).astype(np.uint16)
        fv = halves.view(np.float16).astype(np.float64)
        u = f(fv - center)
        t = f(u * u)
        h = np.full_like(u, f(d)[-1])
        for j in range(len(d) - 2, -1, -1):
            h = f(h * t + f(d)[j])
        out.append(f(h * u))
    return np.stack(out)
