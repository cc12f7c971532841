#!/usr/bin/env python3
"""Writes the extreme-shape seeds of corpus/kernels_never_panic/ (run from fuzz/).

Each seed is a small valid problem with ONE shape value replaced by one of the huge values
the target's `dim()` can draw (byte 224, then the index into its list): every shape slot of
conv and pool times every huge value. Random mutation rarely lines a huge padding up with the
small sizes that keep the other checks passing; starting from these, a 20 s CI run reaches
the size arithmetic next to them at once (the `padded width + margin` overflow was one).

The byte layout follows `Source` (fuzz/src/lib.rs) and `kernels_never_panic.rs`: 8 bytes of
generator seed, the family selector, then the shape draws in the target's order.
"""
import os

HUGE = {4: "2pow31", 5: "2pow32p1", 6: "max-half", 7: "max-third", 8: "max-minus-1", 9: "max"}
# family: (selector, small values per draw, indices of draws that are `dim()` slots)
FAMILIES = {
    # in_c, out_c, kernel h/w, stride h/w, padding h/w, dilation h/w, groups, batch, h, w
    "conv": (0, [1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1], range(14)),
    # kernel h/w, stride h/w, padding h/w, count_include_pad (a flag byte), batch, c, h, w
    "pool": (3, [2, 2, 2, 2, 0, 0, 1, 1, 1, 4, 4], [0, 1, 2, 3, 4, 5, 7, 8, 9, 10]),
}

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "kernels_never_panic")
os.makedirs(out, exist_ok=True)
for fam, (sel, small, slots) in FAMILIES.items():
    for slot in slots:
        for idx, name in HUGE.items():
            body = []
            for i, v in enumerate(small):
                body += [224, idx] if i == slot else [v]
            with open(os.path.join(out, f"shape-{fam}-{slot}-{name}"), "wb") as f:
                f.write(bytes([0] * 8 + [sel] + body))
