# Variants of the cuTile word decode (tq/cutile/words.py), built at run time from the library's
# source by exact text replacements (applied left to right, "a+b"), each as a module of its own
# (cuTile reads the file).
#   today     the library's kernel (since this session: norms from the transposed copy words[3])
#   rownorms  the kernel before this session: each K tile's norms read as the [TN, NG] tile of the
#             [N, K_pad/G] norms (4-byte rows at NG = 2, too narrow for TMA: the compute warps load
#             it by cp.async and wait for it at once; Nsight: 6-7% of the K loop's stall samples);
#             row_norms() hands the kernel that layout
#   lat       the word-tile load with the DRAM latency hint 10 (cuTile's `latency=`, never tried)
#   halves    at NG = 2 (256-column tiles, two norm groups) the levels made one group half of the
#             word tile at a time: a quarter of the word registers live instead of the whole
#             tile's shifted copies (64 registers), so ptxas can keep more Horner chains in flight
#   occN      @ct.kernel(occupancy=N) instead of 2
#   nprefetch the norms of K tile kt + 1 loaded during tile kt (carried through the loop)
#   nopdlred  the split-K reduction an ordinary launch again, as before this session (the
#             matmul's release after its wait removed, the reduction's wait removed, _issue marking
#             only the matmul as a programmatic dependent)
#   pdlred    the reduction a programmatic dependent released at the matmul's end instead (after
#             its last store): ptxas re-pipelines the K loop (1332 -> 1418 instructions)
#   splitN    split-K N instead of the library's choice (TQ_CUTILE_DECODE's split)
# and a TN (rows per program) other than 128, through a patched dispatch._words_plan.
# The logged runs were made before the library took the transposed norms and the reduction's PDL;
# their names map to today's as follows.
#   logs/probe_variants.log: today -> rownorms+nopdlred, lat -> lat+rownorms+nopdlred, halves ->
#     halves+rownorms+nopdlred, occN -> occN+rownorms+nopdlred
#   logs/probe_norms.log: today -> rownorms+nopdlred, nprefetch -> nprefetch+rownorms+nopdlred,
#     normsT -> nopdlred, nprefetch+normsT -> nprefetch+nopdlred
#   logs/probe_pdl.log: today -> nopdlred, pdlred0 -> today, pdlred -> pdlred, splitN ->
#     splitN+nopdlred
# All of them ran with 5-term levels; since the sixteenth session the library's default is 4
# (TQ_CUTILE_WORDS_BOUND=strict gives 5 again).
import dataclasses
import importlib.util
import inspect
import os
import re
import tempfile

from tq.cutile import dispatch, reduce, words

LAT = ("    w = ct.load(words, (nt, kt), (TN, W), check_bounds=CN)\n",
       "    w = ct.load(words, (nt, kt), (TN, W), check_bounds=CN, latency=10)\n")

HALVES = ("""    shl = (w << 1) | _exponents(P)
    shr = (w >> 7) | _exponents(P)
    p0 = ct.zeros((TN, TB), ct.float32)
    p1 = ct.zeros((TN, TB), ct.float32)
    for i in ct.static_iter(range(16 // P)):
""", """    p0 = ct.zeros((TN, TB), ct.float32)
    p1 = ct.zeros((TN, TB), ct.float32)
    if NG == 2:
        for h in ct.static_iter(range(2)):
            wh = ct.extract(w, (0, h), (TN, W // 2))
            hl = (wh << 1) | _exponents(P)
            hr = (wh >> 7) | _exponents(P)
            p = ct.zeros((TN, TB), ct.float32)
            for i in ct.static_iter(range(16 // P)):
                lev = _field_levels(hl, hr, coef, i, P, T, TN, W // 2)
                xh = ct.load(xw, (i, 0, 2 * kt + h), (1, TB, W), check_bounds=False).reshape((TB, W))
                p = ct.mma(lev, ct.transpose(xh), p)
            if h == 0:
                p0 = p
            else:
                p1 = p
        return p0, p1
    shl = (w << 1) | _exponents(P)
    shr = (w >> 7) | _exponents(P)
    for i in ct.static_iter(range(16 // P)):
""")


NPREFETCH = [(inspect.getsource(words._scaled_part), """def _norms(norms, nt, kt, tiles_per_group, TN: ConstInt, NG: ConstInt, CN: ConstBool):
    # the norms of K tile kt: fp32 [TN, NG]
    if NG == 1:
        nrm = ct.load(norms, (kt // tiles_per_group, nt), (1, TN), check_bounds=CN)
        return ct.transpose(nrm.astype(ct.float32))
    return ct.transpose(ct.load(norms, (kt, nt), (2, TN), check_bounds=CN).astype(ct.float32))


def _scaled_part(xw, words, coef, nn, nt, kt, tiles_per_group, P: ConstInt, T: ConstInt, TN: ConstInt,
                 TK: ConstInt, TB: ConstInt, NG: ConstInt, CN: ConstBool):
    # one pass's K tile times its norms nn (fp32 [TN, NG]): fp32 [TN, TB]
    p0, p1 = _pass_part(xw, words, coef, nt, kt, P, T, TN, TK, TB, NG, CN)
    if NG == 1:
        return p0 * nn
    return p0 * ct.extract(nn, (0, 0), (TN, 1)) + p1 * ct.extract(nn, (0, 1), (TN, 1))
"""), ("""    acc = ct.zeros((TN, TB), ct.float32)
    for kt in range(k_begin, k_end):
        s = _scaled_part(xa, wa, ca, na, nt, kt, tiles_per_group, PA, TA, TN, TK, TB, NG, CN)
        if PB > 0:
            s = s + _scaled_part(xb, wb, cb_, nb, nt, kt, tiles_per_group, PB, TBT, TN, TK, TB, NG, CN)
        acc = acc + s * ct.load(xinv, (kt, 0), (1, TB), check_bounds=False)
""", """    acc = ct.zeros((TN, TB), ct.float32)
    ka = _norms(na, nt, min(k_begin, k_tiles - 1), tiles_per_group, TN, NG, CN)
    kb = _norms(nb, nt, min(k_begin, k_tiles - 1), tiles_per_group, TN, NG, CN)
    for kt in range(k_begin, k_end):
        kn = min(kt + 1, k_tiles - 1)
        ka_next = _norms(na, nt, kn, tiles_per_group, TN, NG, CN)
        kb_next = _norms(nb, nt, kn, tiles_per_group, TN, NG, CN) if PB > 0 else ka_next
        s = _scaled_part(xa, wa, ca, ka, nt, kt, tiles_per_group, PA, TA, TN, TK, TB, NG, CN)
        if PB > 0:
            s = s + _scaled_part(xb, wb, cb_, kb, nt, kt, tiles_per_group, PB, TBT, TN, TK, TB, NG, CN)
        acc = acc + s * ct.load(xinv, (kt, 0), (1, TB), check_bounds=False)
        ka = ka_next
        kb = kb_next
""")]


ROWNORMS = [("""        nrm = ct.load(norms, (kt // tiles_per_group, nt), (1, TN), check_bounds=CN)
        return""", """        nrm = ct.load(norms, (nt, kt // tiles_per_group), (TN, 1), check_bounds=CN)
        return"""),
            ("ct.transpose(nrm.astype(ct.float32))", "nrm.astype(ct.float32)"),
            ("ct.transpose(ct.load(norms, (kt, nt), (2, TN), check_bounds=CN).astype(ct.float32))",
             "ct.load(norms, (nt, kt), (TN, 2), check_bounds=CN).astype(ct.float32)")]


def row_norms(wd, on: bool):
    """Hand the word kernels each pass's [N, K_pad/G] norms (on) or the transposed copy (off)."""
    for p in wd.passes:
        if p.words is not None:
            p.words = dataclasses.replace(p.words, norms_t=p.norms if on else p.norms.t().contiguous())


# the matmul's release of the reduction: its comment and call, right after the matmul's own wait
RELEASE = re.compile(r"(    ct\.grid_dependency_control_wait\(\)\n)(    # The split-K reduction, a programmatic[^\n]*\n"
                     r"(?:    #[^\n]*\n)*    ct\.grid_dependency_control_launch_dependents\(\)\n)")
PDL_END = ("""        ct.store(out, (sk, 0, nt), res.reshape((1, TB, TN)), check_bounds=CN)
""", """        ct.store(out, (sk, 0, nt), res.reshape((1, TB, TN)), check_bounds=CN)
    ct.grid_dependency_control_launch_dependents()
""")
REDUCE_NOWAIT = ("""    # (after the word decode's matmul it is a programmatic dependent launch: wait for the
    # partials; a no-op in an ordinary launch)
    ct.grid_dependency_control_wait()
""", "")
ISSUE_ONE = ("plan.pdl and i >= 1", "plan.pdl and i == 1")


def source(name: str) -> str:
    src = inspect.getsource(words)
    src = src.replace("from .reduce import", "from tq.cutile.reduce import").replace(
        "from .rotate import", "from tq.cutile.rotate import")
    for part in name.split("+"):
        if part == "lat":
            old, new = LAT
        elif part == "halves":
            old, new = HALVES
        elif part.startswith("occ"):
            old, new = "@ct.kernel(occupancy=2)", f"@ct.kernel(occupancy={int(part[3:])})"
        elif part == "today" or part.startswith("split"):
            continue
        elif part in ("nopdlred", "pdlred"):
            src, n = RELEASE.subn(r"\1", src)
            assert n == 1, (part, "release")
            if part == "nopdlred":
                continue
            old, new = PDL_END
        elif part in ("nprefetch", "rownorms"):
            for old, new in (NPREFETCH if part == "nprefetch" else ROWNORMS):
                assert src.count(old) == 1, (part, old[:60])
                src = src.replace(old, new)
            continue
        else:
            raise ValueError(part)
        assert src.count(old) == 1, (part, old[:60])
        src = src.replace(old, new)
    return src


_mods = {}


def module(name: str):
    if all(p == "today" or p.startswith("split") for p in name.split("+")):
        return words
    if name not in _mods:
        path = os.path.join(tempfile.mkdtemp(), f"words_{name.replace('+', '_')}.py")
        with open(path, "w") as f:
            f.write(source(name))
        spec = importlib.util.spec_from_file_location(f"words_{name.replace('+', '_')}", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        _mods[name] = mod
    return _mods[name]


_ORIG_PLAN = dispatch._words_plan
_ORIG_KERNEL = words.words_matmul_kernel
_ORIG_REDUCE = reduce.splitk_reduce_kernel
_ORIG_ISSUE = dispatch._issue
_extra = {}


def _ordinary_reduction():
    """(reduce kernel without the wait, dispatch._issue launching only the matmul as a dependent)"""
    if not _extra:
        src = inspect.getsource(reduce)
        assert src.count(REDUCE_NOWAIT[0]) == 1
        path = os.path.join(tempfile.mkdtemp(), "reduce_nowait.py")
        with open(path, "w") as f:
            f.write(src.replace(*REDUCE_NOWAIT))
        spec = importlib.util.spec_from_file_location("reduce_nowait", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        isrc = inspect.getsource(_ORIG_ISSUE)
        assert isrc.count(ISSUE_ONE[0]) == 2
        ns = {}
        exec(compile(isrc.replace(*ISSUE_ONE), "<_issue without the reduction's pdl>", "exec"), dispatch.__dict__, ns)
        _extra["parts"] = (mod.splitk_reduce_kernel, ns["_issue"])
    return _extra["parts"]


def words_plan_tn(tn: int):
    """dispatch._words_plan with tn rows per program (the reduction keeps its 128-column tiles)."""
    src = inspect.getsource(_ORIG_PLAN)
    for old, new in [("              128, tk, tb, ng, split, has_bias, n % 128 != 0)",
                      f"              {tn}, tk, tb, ng, split, has_bias, n % {tn} != 0)"),
                     ("Tiling(128, tb, split", f"Tiling({tn}, tb, split"),
                     ("                (n_tiles, split, 1), consts", f"                (-(-n // {tn}), split, 1), consts")]:
        assert src.count(old) == 1, old
        src = src.replace(old, new)
    ns = {}
    exec(compile(src, f"<words_plan tn={tn}>", "exec"), dispatch.__dict__, ns)
    return ns["_words_plan"]


def use(name: str, tn: int = 128):
    """Make the library's dispatcher build word plans with this variant (new plans only)."""
    words.words_matmul_kernel = module(name).words_matmul_kernel if module(name) is not words else _ORIG_KERNEL
    dispatch._words_plan = _ORIG_PLAN if tn == 128 else words_plan_tn(tn)
    parts = name.split("+")
    red, issue = _ordinary_reduction() if "nopdlred" in parts else (_ORIG_REDUCE, _ORIG_ISSUE)
    reduce.splitk_reduce_kernel, dispatch._issue = red, issue
    split = [int(p[5:]) for p in parts if p.startswith("split")]
    if split:
        os.environ["TQ_CUTILE_DECODE"] = f"128,16,{split[0]}"
    else:
        os.environ.pop("TQ_CUTILE_DECODE", None)
