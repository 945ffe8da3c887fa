# Summarize an Nsight Compute source-page CSV (--page source --csv --print-source sass): stall samples by
# reason, by opcode, and the hottest instructions.  argv: the CSV file.
import csv, sys, collections

rows = list(csv.reader(open(sys.argv[1], newline="", errors="replace")))
head_i = next(i for i, r in enumerate(rows) if "Source" in r)
head = rows[head_i]
body = [r for r in rows[head_i + 1:] if len(r) == len(head)]
col = {h: i for i, h in enumerate(head)}
src = col["Source"]
total_c = next(h for h in head if h.startswith("Warp Stall Sampling (All"))
reasons = [h for h in head if h.startswith("stall_") or (h.startswith("Warp Stall Sampling") and "(" not in h)]
if not reasons:
    reasons = [h for h in head if "stall" in h.lower() and h != total_c and "Not-issued" not in h]

def num(r, h):
    try:
        return float(r[col[h]].replace(",", ""))
    except ValueError:
        return 0.0

tot = sum(num(r, total_c) for r in body) or 1.0
print(f"columns: {len(head)}; SASS lines: {len(body)}; samples: {tot:.0f}")
by_reason = collections.Counter({h: sum(num(r, h) for r in body) for h in reasons})
print("by reason: " + ", ".join(f"{h} {100 * v / tot:.1f}%" for h, v in by_reason.most_common(10) if v))
ops = collections.defaultdict(collections.Counter)
for r in body:
    op = r[src].split()[0] if r[src].split() else "?"
    if op.startswith("@"):
        op = r[src].split()[1]
    op = op.split(".")[0]
    ops[op]["all"] += num(r, total_c)
    for h in reasons:
        ops[op][h] += num(r, h)
for op, c in sorted(ops.items(), key=lambda kv: -kv[1]["all"])[:12]:
    top = sorted(((v, h) for h, v in c.items() if h != "all"), reverse=True)[:3]
    print(f"  {op:10s} {100 * c['all'] / tot:5.1f}%   " + ", ".join(f"{h} {100 * v / tot:.1f}%" for v, h in top if v))
print("hottest instructions:")
for r in sorted(body, key=lambda r: -num(r, total_c))[:15]:
    top = sorted(((num(r, h), h) for h in reasons), reverse=True)[:2]
    print(f"  {100 * num(r, total_c) / tot:5.1f}%  {r[src][:70]:70s} " + ", ".join(f"{h} {100 * v / tot:.1f}%" for v, h in top if v))

# The compute warps' K loop: the instructions executed exactly as often as the group of equally
# often executed instructions that holds the most samples (one K tile per pass through the loop;
# the out-of-line retry paths of its barrier waits and the producer's loops run other counts).
execd = lambda r: int(r[col["Instructions Executed"]].replace(",", "") or 0)
groups = collections.defaultdict(list)
for r in body:
    groups[execd(r)].append(r)
count, inside = max(groups.items(), key=lambda kv: sum(num(q, total_c) for q in kv[1]))
s = sum(num(q, total_c) for q in inside)
own = [h for h in reasons if "Not Issued" not in h]
c = collections.Counter({h: sum(num(q, h) for q in inside) for h in own})
cs = sum(c.values()) or 1.0
print(f"compute K loop (instructions executed {count} times): {len(inside)} instructions, {100 * s / tot:.1f}% of all "
      "samples; its own: " + ", ".join(f"{h[6:]} {100 * v / cs:.1f}%" for h, v in c.most_common(7)))
for i, q in enumerate(inside):
    if "LDGSTS." in q[src] and "ARRIVES" not in q[src]:
        waits = [w for w in inside[i:i + 80] if "BRA" in w[src] and "@!P0" in w[src]][:1]
        if waits:
            print(f"  cp.async load in the loop: {q[src].strip()[:60]}; the branch of its wait holds "
                  f"{100 * num(waits[0], total_c) / cs:.1f}% of the loop's samples")
