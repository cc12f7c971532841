#!/usr/bin/env python3
"""Estimates Cortex-M4 cycles of the LeNet firmware from a QEMU execution trace.

QEMU counts instructions, not cycles. This script runs a firmware ELF in QEMU 7.2
(`-machine netduinoplus2`, as scripts/mcu-test.sh does) with `-d in_asm,exec,nochain`:
`in_asm` prints each translation block's guest addresses once, `exec` (with chaining off)
prints every execution of a block, so the two give the exact executed instruction stream.
Each instruction is weighted by the Cortex-M4 Technical Reference Manual (ARM DDI 0439B,
r0p1), section 3.3.1 "Cortex-M4 instructions" (Table 3-1, processor instruction set
summary), the load/store pipelining rules of section 3.3.2 "Load/store timings", and
chapter 7 "Floating Point Unit" (Table 7-1, FPU instruction set), all at zero wait states:

  data processing, moves, shifts, compares, extends (SXTB16, ...), bit field, saturate,
  packing (PKHBT), parallel add/sub, IT, NOP                      1
  MUL, MLA, MLS, SMULL, UMULL, SMLAL, UMLAL, SMMUL, SMLAD, SMUAD, 1
  SMLABB ... (all 32-bit-result and DSP multiplies)
  SDIV, UDIV                                                       2 to 12 (early termination;
                                                                   counted as --div, default 7)
  LDR, LDRB, LDRH, LDRSB, LDRSH (single)                           2
  ... after a single LDR whose destination is not this one's
      address register (pipelined, 3.3.2)                          1
  STR, STRB, STRH with immediate or no offset                      1 (3.3.2: "always one cycle")
  STR with register offset                                         2
  LDRD, STRD                                                       3 (1 + N), not pipelined
  LDM, STM, PUSH, POP                                              1 + N (+ P with PC)
  LDR to PC                                                        2 + P
  B, BL, BX, BLX                                                   1 + P
  B<cond>, CBZ, CBNZ                                               1 + P taken, 1 not taken
  TBB, TBH                                                         2 + P
  MRS, MSR                                                         2;  DMB, DSB 1;  ISB 1 + P
  VADD, VSUB, VMUL, VNMUL, VABS, VNEG, VCMP, VCVT, VMOV, VMRS      1
  VMOV two core registers <-> doubleword                           2
  VMLA, VMLS, VNMLA, VNMLS, VFMA, VFMS, VFNMA, VFNMS               3
  VDIV, VSQRT                                                      14
  VLDR, VSTR                                                       2;  VLDM, VSTM, VPUSH, VPOP 1 + N

P is the pipeline refill after a taken branch, 1 to 3 cycles "depending on the alignment and
width of the target instruction, and whether the processor manages to speculate the
address early" (Table 3-1 notes); the estimate uses P = 2 and reports P = 1 and P = 3 as
bounds. Whether a conditional branch was taken comes from the trace (the next block's
address against the branch's fall-through address).

Error sources (what this model does not see): flash wait states (the STM32F405 at 168 MHz
needs 5; ST's ART accelerator prefetches and caches 1 KiB of instructions and 8 lines of
literals, so loops mostly hide them, straight code and flash-resident data such as the
weights do not), bus contention between instruction fetch and data access on the same
memory, the one-cycle stall of a load/store whose address a preceding ALU instruction
computed (3.3.2, not modelled), IT folding (an IT can cost 0), unaligned accesses (split
into two bus transfers), division's data-dependent time, and interrupts (none run here).
On a real board the firmware's DWT cycle counter gives the truth (`cycles N` lines).

Regions: the firmware calls `cycles_mark_<name>_begin` / `cycles_mark_<name>_end`; the
script sums the instructions executed between them (each inference: `inference`; the
validation loop: `loop`). The validation loop is an asm block whose cycle count the TRM
fixes (1 + N (8 + P) - P, see `validation_loop` in crates/mcu/src/main.rs); the script
checks that its estimate of exactly those instructions equals the formula for P = 1, 2, 3.

Usage:
  scripts/mcu-cycles.py ELF [--macs N] [--profile K] [--div C] [--value]
  scripts/mcu-cycles.py --build [plain|dsp] [--profile K]   # builds the int8 lenet-relu firmware
  scripts/mcu-cycles.py ELF --split REGEX [--layer-macs N,N,...]
Per op: the executor's per-op functions are inlined into the firmware's `main`; mark
`run_int8` (or `run_f32`) in crates/kernels/src/deploy/exec.rs `#[inline(never)]` in a
scratch build and split with `--split run_int8` (one segment per op of the plan, in order).
Prints per region: count, instructions and cycles per occurrence; with --macs, cycles per
multiply-accumulate; with --profile K, the K functions with most cycles inside the regions.
With --split REGEX, each region is cut into segments: a new segment starts whenever the
first instruction of a function whose (mangled or plain) symbol matches REGEX executes
(a layer's entry point), and everything up to the next such entry (the glue after the
layer included) belongs to it; --layer-macs gives each segment's multiply-accumulates.
"""

import argparse
import bisect
import os
import re
import subprocess
import sys
import tempfile
import threading
from collections import Counter, defaultdict

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MCU = os.path.join(REPO, "crates", "mcu")
LENET_MACS = 6 * 28 * 28 * 25 + 16 * 10 * 10 * 150 + 400 * 120 + 120 * 84 + 84 * 10  # 416,520

LOADS = {"ldr", "ldrb", "ldrh", "ldrsb", "ldrsh", "ldrt", "ldrbt", "ldrht", "ldrex", "ldrexb", "ldrexh"}
STORES = {"str", "strb", "strh", "strt", "strex", "strexb", "strexh"}
MULS = {
    "mul", "muls", "mla", "mls", "smull", "umull", "smlal", "umlal", "smmul", "smmulr", "smmla",
    "smmlar", "smmls", "smmlsr", "smlad", "smladx", "smlsd", "smlsdx", "smuad", "smuadx",
    "smusd", "smusdx", "smlald", "smlaldx", "smlsld", "smlsldx", "umaal",
    "smulbb", "smulbt", "smultb", "smultt", "smulwb", "smulwt", "smlabb", "smlabt",
    "smlatb", "smlatt", "smlawb", "smlawt", "smlalbb", "smlalbt", "smlaltb", "smlaltt",
}
CONDS = {"eq", "ne", "cs", "hs", "cc", "lo", "mi", "pl", "vs", "vc", "hi", "ls", "ge", "lt", "gt", "le"}
REG = re.compile(r"\b(r\d+|sp|lr|pc|ip|fp|sb|sl)\b")


def base_mnemonic(m):
    """`ldr.w` -> `ldr`; `bne.w` -> `bne`; `vadd.f32` -> `vadd`."""
    return m.split(".")[0].lower()


def strip_cond(m):
    """Mnemonic without a condition suffix (`addeq` -> `add`, `bne` -> `b`)."""
    for c in CONDS:
        if m.endswith(c) and len(m) > len(c):
            stem = m[: -len(c)]
            if stem in ("b", "bx", "bl", "blx") or stem + "s" in ("movs",) or len(stem) >= 2:
                return stem, c
    return m, None


class Insn:
    __slots__ = ("addr", "next", "mn", "ops", "kind", "base", "dest", "addr_regs", "nregs", "has_pc", "reg_offset")

    def __init__(self, addr, nxt, mnemonic, ops):
        self.addr, self.next, self.ops = addr, nxt, ops
        self.mn = base_mnemonic(mnemonic)
        self.dest = None
        self.addr_regs = set()
        self.nregs = 0
        self.has_pc = False
        self.reg_offset = False
        self.kind = self.classify()

    def classify(self):
        m, ops = self.mn, self.ops
        regs = REG.findall(ops)
        brace = re.search(r"\{([^}]*)\}", ops)
        if m in ("push", "pop", "ldm", "ldmia", "ldmfd", "ldmdb", "stm", "stmia", "stmdb", "stmea", "stmfd"):
            lst = brace.group(1) if brace else ""
            n = 0
            for part in lst.split(","):
                part = part.strip()
                if "-" in part:
                    a, b = part.split("-")
                    n += int(b.strip()[1:]) - int(a.strip()[1:]) + 1
                elif part:
                    n += 1
            self.nregs = n
            self.has_pc = "pc" in lst
            return "multi"
        if m in ("vpush", "vpop", "vldmia", "vldmdb", "vstmia", "vstmdb", "vldm", "vstm"):
            lst = brace.group(1) if brace else ""
            n = 0
            for part in lst.split(","):
                part = part.strip()
                if "-" in part:
                    a, b = part.split("-")
                    n += int(b.strip()[1:]) - int(a.strip()[1:]) + 1
                elif part:
                    n += 1
            self.nregs = n
            return "vmulti"
        if m in ("ldrd", "strd"):
            return "dual"
        if m in LOADS or m in STORES:
            self.dest = regs[0] if regs else None
            inside = re.search(r"\[([^\]]*)\]", ops)
            if inside:
                ir = REG.findall(inside.group(1))
                self.addr_regs = set(ir)
                self.reg_offset = len(ir) > 1
            if m in LOADS and self.dest == "pc":
                return "ldrpc"
            return "load" if m in LOADS else "store"
        if m in ("tbb", "tbh"):
            return "table"
        if m in ("cbz", "cbnz"):
            return "condbranch"
        if m in ("b", "bl", "bx", "blx"):
            return "branch"
        stem, cond = strip_cond(m)
        if stem == "b" and cond:
            return "condbranch"
        if m in ("sdiv", "udiv"):
            return "div"
        if m in MULS or stem in MULS:
            return "alu"
        if m in ("vmla", "vmls", "vnmla", "vnmls", "vfma", "vfms", "vfnma", "vfnms"):
            return "vmac"
        if m in ("vdiv", "vsqrt"):
            return "vdiv"
        if m in ("vldr", "vstr"):
            return "vmem"
        if m == "vmov" and len(regs) >= 2 and ops.count(",") >= 2:
            return "vmov2"
        if m in ("mrs", "msr"):
            return "sysreg"
        if m == "isb":
            return "isb"
        if m in ("mov", "add") and regs and regs[0] == "pc":
            return "branch"
        if m.startswith(".") or m in ("udf", "bkpt", "svc", "wfi", "wfe"):
            return "other"
        return "alu"


def cost(insn, prev, taken, p, div):
    """Cycles of `insn` given the instruction executed before it and whether it branched."""
    k = insn.kind
    if k == "alu" or k == "other":
        return 1
    if k in ("load", "store"):
        if prev is not None and prev.kind == "load" and prev.dest not in insn.addr_regs:
            return 1  # pipelined behind the previous LDR (3.3.2)
        if k == "store" and not insn.reg_offset:
            return 1
        return 2
    if k == "dual":
        return 3
    if k == "multi":
        return 1 + insn.nregs + (p if insn.has_pc else 0)
    if k == "vmulti":
        return 1 + insn.nregs
    if k == "ldrpc":
        return 2 + p
    if k == "branch":
        return 1 + p
    if k == "condbranch":
        return 1 + p if taken else 1
    if k == "table":
        return 2 + p
    if k == "div":
        return div
    if k == "vmac":
        return 3
    if k == "vdiv":
        return 14
    if k in ("vmem", "vmov2", "sysreg"):
        return 2
    if k == "isb":
        return 1 + p
    return 1


def disassemble(elf):
    out = subprocess.run(["llvm-objdump", "-d", "--no-show-raw-insn", elf], check=True,
                         capture_output=True, text=True).stdout
    insns = {}
    order = []
    line_re = re.compile(r"^\s*([0-9a-f]+):\s+(\S+)\s*(.*)$")
    for line in out.splitlines():
        mt = line_re.match(line)
        if not mt:
            continue
        addr = int(mt.group(1), 16)
        mn, ops = mt.group(2), mt.group(3).split("@")[0].strip()
        order.append((addr, mn, ops))
    for i, (addr, mn, ops) in enumerate(order):
        nxt = order[i + 1][0] if i + 1 < len(order) else addr + 2
        insns[addr] = Insn(addr, nxt, mn, ops)
    return insns


def symbols(elf):
    out = subprocess.run(["llvm-nm", "-n", "--defined-only", elf], check=True,
                         capture_output=True, text=True).stdout
    syms = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1].lower() == "t":
            syms.append((int(parts[0], 16) & ~1, parts[2]))
    syms.sort()
    return syms


def demangle(names):
    try:
        out = subprocess.run(["llvm-cxxfilt"], input="\n".join(names), capture_output=True,
                             text=True, check=True).stdout.split("\n")
        return dict(zip(names, out))
    except (OSError, subprocess.CalledProcessError):
        return {n: n for n in names}


def trace(elf, timeout):
    """Yields ('tb', pc, [addrs]) for each translation and ('exec', pc, ptr) per execution."""
    tmp = tempfile.mkdtemp(prefix="mcu-cycles-")
    fifo = os.path.join(tmp, "trace")
    os.mkfifo(fifo)
    cmd = ["qemu-system-arm", "-machine", "netduinoplus2", "-nographic", "-monitor", "none",
           "-semihosting-config", "enable=on,target=native", "-icount", "shift=0",
           "-d", "in_asm,exec,nochain", "-D", fifo, "-kernel", elf]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    output = {}

    def drain():
        output["stdout"] = proc.stdout.read()

    t = threading.Thread(target=drain)
    t.start()
    exec_re = re.compile(r"^Trace \d+: (0x[0-9a-f]+|\S+) \[[0-9a-f]+/([0-9a-f]+)/")
    addr_re = re.compile(r"^0x([0-9a-f]+):")
    try:
        with open(fifo) as f:
            block = None
            block_pc = None
            for line in f:
                if line.startswith("Trace"):
                    if block is not None:
                        yield ("tb", block_pc, block)
                        block = None
                    mt = exec_re.match(line)
                    if mt:
                        yield ("exec", int(mt.group(2), 16), mt.group(1))
                elif line.startswith("Stopped execution of TB chain before"):
                    # The block just logged did not start (icount budget or an exit request):
                    # none of its instructions ran.
                    mt = re.search(r"\[([0-9a-f]+)\]", line)
                    yield ("stop", int(mt.group(1), 16) if mt else None, None)
                elif line.startswith("IN:"):
                    if block is not None:
                        yield ("tb", block_pc, block)
                    block, block_pc = [], None
                elif block is not None:
                    mt = addr_re.match(line)
                    if mt:
                        a = int(mt.group(1), 16)
                        if block_pc is None:
                            block_pc = a
                        block.append(a)
            if block is not None:
                yield ("tb", block_pc, block)
    finally:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
        t.join()
        os.unlink(fifo)
        os.rmdir(tmp)
    if proc.returncode != 0:
        sys.stderr.write(output.get("stdout", "") + proc.stderr.read())
        raise SystemExit(f"mcu-cycles: the firmware exited with status {proc.returncode}")
    trace.stdout = output.get("stdout", "")


def estimate(elf, div, profile, split=None, timeout=600):
    insns = disassemble(elf)
    syms = symbols(elf)
    sym_addrs = [a for a, _ in syms]
    marks = {a: n for a, n in syms if n.startswith("cycles_mark_")}
    split_re = re.compile(split) if split else None
    entries = {a: n for a, n in syms if split_re and split_re.search(n)}
    segment = [None, -1]  # (region, index) the current instruction belongs to
    segments = defaultdict(lambda: {"fn": "", "count": 0, "insns": 0, "cycles": [0, 0, 0]})
    loop_fn = [a for a, n in syms if "validation_loop" in n]
    # The validation loop's asm: from the `mov` before the backward `bne` target to the `bne`.
    loop_range = None
    if loop_fn:
        start = loop_fn[0]
        i = bisect.bisect_right(sym_addrs, start)
        end = sym_addrs[i] if i < len(sym_addrs) else start + 256
        for a in sorted(x for x in insns if start <= x < end):
            ins = insns[a]
            mt = re.search(r"0x([0-9a-f]+)", ins.ops)
            if ins.mn == "bne" and mt and int(mt.group(1), 16) < a:
                target = int(mt.group(1), 16)
                before = max(x for x in insns if x < target)
                loop_range = (before, a)
    tbs = {}
    latest = {}
    ps = (1, 2, 3)
    region = None  # (name, counters)
    results = defaultdict(lambda: {"count": 0, "insns": 0, "cycles": [0, 0, 0]})
    per_fn = Counter()
    loop_cycles = [0, 0, 0]
    prev_insn = None
    pending = None  # last instruction of the previous block, waiting for the next pc
    cur = None

    def fn_of(addr):
        i = bisect.bisect_right(sym_addrs, addr) - 1
        return syms[i][1] if i >= 0 else "?"

    def account(ins, taken, prev):
        nonlocal region
        if cur is None:
            return
        c = [cost(ins, prev, taken, p, div) for p in ps]
        r = results[cur]
        r["insns"] += 1
        for j in range(3):
            r["cycles"][j] += c[j]
        if split_re:
            sg = segments[(cur, segment[1])]
            sg["insns"] += 1
            for j in range(3):
                sg["cycles"][j] += c[j]
        if profile:
            per_fn[fn_of(ins.addr)] += c[1]
        if loop_range and loop_range[0] <= ins.addr <= loop_range[1]:
            for j in range(3):
                loop_cycles[j] += c[j]

    def events():
        """Block executions, minus those QEMU logged and then did not start."""
        queued = None
        for ev in trace(elf, timeout):
            if ev[0] == "tb":
                latest[ev[1]] = ev[2]
            elif ev[0] == "stop":
                if queued is not None and (ev[1] is None or ev[1] == queued[1]):
                    queued = None
            else:
                if queued is not None:
                    yield queued
                queued = ev
        if queued is not None:
            yield queued

    for _, pc, ptr in events():
        # Settle the previous block's last instruction now that the next pc is known.
        if pending is not None:
            ins, prev = pending
            taken = pc != ins.next
            account(ins, taken, prev)
            pending = None
        if pc in marks:
            name = marks[pc][len("cycles_mark_"):]
            kind, _, edge = name.rpartition("_")
            if edge == "begin":
                cur = kind
                results[kind]["count"] += 1
                segment[1] = -1
            elif edge == "end":
                cur = None
        if cur is not None and pc in entries:
            segment[1] += 1
            sg = segments[(cur, segment[1])]
            sg["fn"] = entries[pc]
            sg["count"] += 1
        key = (ptr, pc)
        addrs = tbs.get(key)
        if addrs is None:
            addrs = latest.get(pc)
            if addrs is None:
                raise SystemExit(f"mcu-cycles: no translation seen for block at {pc:#x}")
            tbs[key] = addrs
        for a in addrs[:-1]:
            ins = insns.get(a)
            if ins is None:
                continue
            account(ins, False, prev_insn)
            prev_insn = ins
        last = insns.get(addrs[-1])
        if last is not None:
            pending = (last, prev_insn)
            prev_insn = last
    return results, per_fn, loop_range, loop_cycles, trace.stdout, segments


def build(kernels):
    feats = "firmware" + (",plain" if kernels == "plain" else "")
    tdir = os.path.join(MCU, "target", "cycles-" + kernels)
    env = dict(os.environ)
    env.pop("CARGO_TARGET_DIR", None)
    env.pop("RUSTFLAGS", None)
    env["TINYCNN_DEPLOY"] = "deployments/lenet-relu-int8"
    subprocess.run(["cargo", "build", "--quiet", "--release", "--target", "thumbv7em-none-eabihf",
                    "--features", feats, "--target-dir", tdir], cwd=MCU, check=True, env=env)
    return os.path.join(tdir, "thumbv7em-none-eabihf", "release", "tinycnn-firmware")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("elf", nargs="?")
    ap.add_argument("--build", choices=["plain", "dsp"], help="build the int8 lenet-relu firmware first")
    ap.add_argument("--macs", type=int, help="multiply-accumulates per inference (default: LeNet's with --build)")
    ap.add_argument("--div", type=int, default=7, help="cycles per SDIV/UDIV (2 to 12; default 7)")
    ap.add_argument("--profile", type=int, default=0, metavar="K", help="show the K costliest functions")
    ap.add_argument("--split", metavar="REGEX",
                    help="cut each region into segments at entries of functions matching REGEX")
    ap.add_argument("--layer-macs", metavar="N,N,...",
                    help="multiply-accumulates of each --split segment, in order (for cycles/MAC)")
    ap.add_argument("--value", action="store_true",
                    help="print only the estimated cycles per inference (P = 2), for scripts")
    args = ap.parse_args()
    if args.build:
        elf = build(args.build)
        macs = args.macs or LENET_MACS
    elif args.elf:
        elf, macs = args.elf, args.macs
    else:
        ap.error("give an ELF or --build")
    results, per_fn, loop_range, loop_cycles, stdout, segments = estimate(
        elf, args.div, args.profile, args.split)
    layer_macs = [int(v) for v in args.layer_macs.split(",")] if args.layer_macs else []
    if args.value:
        r = results.get("inference")
        if not r or not r["count"]:
            raise SystemExit("mcu-cycles: no inference region in the trace")
        print(round(r["cycles"][1] / r["count"]))
        return
    model = next((l for l in stdout.splitlines() if l.startswith("model ")), "model ?")
    print(f"firmware {os.path.relpath(elf, REPO)} ({model})")
    print("cycle model: Cortex-M4 TRM r0p1 Table 3-1 / 3.3.2 / Table 7-1, zero wait states; "
          f"P = pipeline refill (2; bounds 1 and 3); SDIV/UDIV = {args.div}")
    for name, r in sorted(results.items()):
        n = max(r["count"], 1)
        c = [v / n for v in r["cycles"]]
        line = (f"region {name}: {r['count']} x, {r['insns'] / n:,.0f} instructions, "
                f"{c[1]:,.0f} cycles (P=1: {c[0]:,.0f}, P=3: {c[2]:,.0f})")
        if name == "inference" and macs:
            line += f", {c[1] / macs:.2f} cycles/MAC ({c[0] / macs:.2f} .. {c[2] / macs:.2f}) for {macs:,} MACs"
        print(line)
        if args.split:
            keys = sorted(k for k in segments if k[0] == name)
            if len(keys) < 2:
                keys = []
            if keys and keys[0][1] == -1:
                # What ran before the first entry: input mapping and calls, counted once per
                # region occurrence.
                segments[keys[0]]["count"] = r["count"]
                segments[keys[0]]["fn"] = "(before the first entry)"
            names = demangle([segments[k]["fn"] for k in keys])
            for k in keys:
                sg = segments[k]
                m = max(sg["count"], 1)
                sc = [v / m for v in sg["cycles"]]
                line = (f"  segment {k[1]}: {names.get(sg['fn'], sg['fn'])[:60]}: "
                        f"{sg['insns'] / m:,.0f} instructions, {sc[1]:,.0f} cycles "
                        f"(P=1: {sc[0]:,.0f}, P=3: {sc[2]:,.0f})")
                if 0 <= k[1] < len(layer_macs) and layer_macs[k[1]]:
                    line += f", {sc[1] / layer_macs[k[1]]:.2f} cycles/MAC for {layer_macs[k[1]]:,} MACs"
                print(line)
    ok = True
    if loop_range:
        n_iter = 1000
        for line in stdout.splitlines():
            if line.startswith("validation loop iterations"):
                n_iter = int(line.split()[3])
        want = [1 + n_iter * (8 + p) - p for p in (1, 2, 3)]
        same = want == loop_cycles
        ok = ok and same
        print(f"validation loop ({n_iter} iterations of ldr, ldr, smlad, mla, str, subs, bne): "
              f"estimated {loop_cycles}, TRM {want} for P = 1, 2, 3: {'ok' if same else 'MISMATCH'}")
    else:
        print("validation loop: not found in the ELF")
        ok = False
    if args.profile:
        names = [n for n, _ in per_fn.most_common(args.profile)]
        dm = demangle(names)
        total = sum(per_fn.values())
        print(f"costliest functions (cycles at P=2 inside the regions, all regions together):")
        for n in names:
            print(f"  {per_fn[n]:>12,} {100 * per_fn[n] / total:5.1f} %  {dm.get(n, n)[:100]}")
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
