#!/usr/bin/env python3
"""Expected values for tinycnn's training-recipe tests, from PyTorch itself.

Prints the learning-rate (and momentum) sequences of torch.optim.lr_scheduler's StepLR,
CosineAnnealingLR and OneCycleLR, and the results of torch.nn.utils.clip_grad_norm_, as Rust
array literals; crates/tinycnn/tests/recipes.rs holds the output. Base learning rates are
powers of two, so PyTorch's Python floats and tinycnn's f32 learning rates start equal.

    python3 scripts/torch_recipes.py
"""
import torch


def fmt(values):
    return "[" + ", ".join(repr(float(v)) for v in values) + "]"


def run(make_opt, make_sched, steps, momentum_key=None):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = make_opt([p])
    sched = make_sched(opt)
    lrs, moms = [sched.get_last_lr()[0]], []
    get_m = lambda: (opt.param_groups[0]["betas"][0] if momentum_key == "betas"
                     else opt.param_groups[0]["momentum"])
    if momentum_key:
        moms.append(get_m())
    for _ in range(steps):
        p.grad = torch.ones(1)
        opt.step()
        sched.step()
        lrs.append(sched.get_last_lr()[0])
        if momentum_key:
            moms.append(get_m())
    return lrs, moms


def main():
    S = torch.optim.lr_scheduler
    sgd = lambda lr: (lambda ps: torch.optim.SGD(ps, lr=lr))
    adam = lambda lr: (lambda ps: torch.optim.Adam(ps, lr=lr))

    lrs, _ = run(sgd(0.5), lambda o: S.StepLR(o, step_size=3, gamma=0.1), 10)
    print("// StepLR(lr 0.5, step_size 3, gamma 0.1), 10 steps")
    print("const STEP_LR:", fmt(lrs))

    lrs, _ = run(sgd(0.125), lambda o: S.CosineAnnealingLR(o, T_max=5, eta_min=0.001), 13)
    print("// CosineAnnealingLR(lr 0.125, T_max 5, eta_min 0.001), 13 steps (past T_max)")
    print("const COSINE_LR:", fmt(lrs))

    lrs, moms = run(sgd(0.01), lambda o: S.OneCycleLR(o, max_lr=0.1, total_steps=10), 10, "momentum")
    print("// OneCycleLR(SGD, max_lr 0.1, total_steps 10), 10 steps: lr, momentum")
    print("const ONECYCLE_LR:", fmt(lrs))
    print("const ONECYCLE_MOMENTUM:", fmt(moms))

    lrs, moms = run(adam(0.01), lambda o: S.OneCycleLR(
        o, max_lr=0.25, total_steps=9, pct_start=0.25, anneal_strategy="linear",
        three_phase=True), 9, "betas")
    print("// OneCycleLR(Adam, max_lr 0.25, total_steps 9, pct_start 0.25, linear, three_phase)")
    print("const ONECYCLE3_LR:", fmt(lrs))
    print("const ONECYCLE3_BETA1:", fmt(moms))

    # clip_grad_norm_: two tensors, clipped and not clipped, and a non-finite gradient.
    def clip(grads, max_norm):
        ps = [torch.nn.Parameter(torch.zeros(len(g))) for g in grads]
        for p, g in zip(ps, grads):
            p.grad = torch.tensor(g, dtype=torch.float32)
        total = torch.nn.utils.clip_grad_norm_(ps, max_norm)
        return total.item(), [p.grad.tolist() for p in ps]

    g = [[0.5, -1.25, 2.0], [3.0, 0.75]]
    for max_norm in [1.0, 10.0]:
        total, out = clip(g, max_norm)
        print(f"// clip_grad_norm_({g}, {max_norm})")
        print(f"// total {total!r}, grads {[[repr(v) for v in t] for t in out]}")
    total, out = clip([[1.0, float("inf")], [2.0]], 1.0)
    print(f"// with an infinite gradient: total {total!r}, grads {out}")


if __name__ == "__main__":
    main()
