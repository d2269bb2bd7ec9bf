#!/usr/bin/python3
"""Reference optimizer trajectories from PyTorch for tests/test_optim.c.

Run with Debian's /usr/bin/python3 (python3-torch 1.13, CPU):

    /usr/bin/python3 tests/golden/make_optim_golden.py > tests/data/optim_golden.txt

A tiny 5-4-3 network (relu hidden layer, identity output, softmax
cross-entropy, mean over the batch), fixed float32 weights and a fixed batch
of 6 samples; each case runs 5 full-batch steps and records the loss and all
parameters after every step. Weight decay goes to the weights only (param
groups: weights with decay, biases without), as mmaint does. Clipping is
torch.nn.utils.clip_grad_norm_; schedules set group['lr'] before each step
from the closed forms documented in lib/optim/schedule.c.

The test suite reads the text file only; it never needs PyTorch.

Format (whitespace separated, read with fscanf):
    mmaint-optim-golden 1
    arch 5 4 3
    samples 6
    x <30 floats>
    labels <6 ints>
    init <39 floats: W0 (4x5), b0 (4), W1 (3x4), b1 (3)>
    cases <count>
    then per case:
      case <name> <kind> <number of settings>
      <setting name> <value>          (one per setting; names as mm_opt_param_name)
      steps <N>
      <loss> <39 floats>              (one line per step, parameters after the step)
"""
import math
import sys

import torch

STEPS = 5
N = 6
ARCH = (5, 4, 3)

# mm_schedule values
CONSTANT, STEP, EXPONENTIAL, COSINE = 0, 1, 2, 3


def lr_at(s, step):
    lr = s["learning_rate"]
    sched = s.get("schedule", CONSTANT)
    if sched == STEP:
        return lr * s["gamma"] ** (step // int(s["step_size"]))
    if sched == EXPONENTIAL:
        return lr * s["gamma"] ** step
    if sched == COSINE:
        w, t, lo = int(s.get("warmup_steps", 0)), int(s["total_steps"]), s.get("min_lr", 0.0)
        if step < w:
            return lr * (step + 1) / w
        if step >= t:
            return lo
        return lo + 0.5 * (lr - lo) * (1.0 + math.cos(math.pi * (step - w) / (t - w)))
    return lr


CASES = [
    ("sgd", "sgd", {"learning_rate": 0.1}),
    ("sgd_momentum", "sgd", {"learning_rate": 0.05, "momentum": 0.9}),
    ("sgd_nesterov_wd", "sgd",
     {"learning_rate": 0.05, "momentum": 0.9, "nesterov": 1, "weight_decay": 0.01}),
    ("sgd_clip_step", "sgd",
     {"learning_rate": 0.1, "momentum": 0.5, "clip_norm": 0.05, "schedule": STEP,
      "step_size": 2, "gamma": 0.5}),
    ("adam", "adam", {"learning_rate": 0.01}),
    ("adam_wd", "adam", {"learning_rate": 0.01, "weight_decay": 0.1}),
    ("adam_clip_exp", "adam",
     {"learning_rate": 0.01, "clip_norm": 0.1, "schedule": EXPONENTIAL, "gamma": 0.8}),
    ("adamw", "adamw", {"learning_rate": 0.01, "weight_decay": 0.1}),
    ("adamw_cosine", "adamw",
     {"learning_rate": 0.02, "weight_decay": 0.05, "beta1": 0.8, "beta2": 0.99,
      "epsilon": 1e-6, "schedule": COSINE, "warmup_steps": 2, "total_steps": 5,
      "min_lr": 0.001}),
]


def make_net(init):
    net = torch.nn.Sequential(torch.nn.Linear(ARCH[0], ARCH[1]), torch.nn.ReLU(),
                              torch.nn.Linear(ARCH[1], ARCH[2]))
    with torch.no_grad():
        for p, v in zip(net.parameters(), init):
            p.copy_(v)
    return net


def make_opt(kind, s, net):
    weights = [net[0].weight, net[2].weight]
    biases = [net[0].bias, net[2].bias]
    wd = s.get("weight_decay", 0.01 if kind == "adamw" else 0.0)
    groups = [{"params": weights, "weight_decay": wd}, {"params": biases, "weight_decay": 0.0}]
    lr = s["learning_rate"]
    if kind == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=s.get("momentum", 0.0),
                               nesterov=bool(s.get("nesterov", 0)))
    betas = (s.get("beta1", 0.9), s.get("beta2", 0.999))
    eps = s.get("epsilon", 1e-8)
    cls = torch.optim.Adam if kind == "adam" else torch.optim.AdamW
    return cls(groups, lr=lr, betas=betas, eps=eps)


def flat(net):
    return [float(v) for p in net.parameters() for v in p.detach().reshape(-1).tolist()]


def fmt(vals):
    return " ".join("%.9g" % v for v in vals)


def main():
    torch.manual_seed(3)  # every hidden unit active for some samples, not all
    torch.set_num_threads(1)
    x = (torch.rand(N, ARCH[0]) * 2 - 1).float()
    labels = torch.tensor([0, 1, 2, 1, 0, 2], dtype=torch.long)
    ref = torch.nn.Sequential(torch.nn.Linear(ARCH[0], ARCH[1]), torch.nn.ReLU(),
                              torch.nn.Linear(ARCH[1], ARCH[2]))
    init = [p.detach().clone() for p in ref.parameters()]

    out = sys.stdout
    out.write("mmaint-optim-golden 1\n")
    out.write("arch %d %d %d\n" % ARCH)
    out.write("samples %d\n" % N)
    out.write("x " + fmt(x.reshape(-1).tolist()) + "\n")
    out.write("labels " + " ".join(str(int(v)) for v in labels) + "\n")
    out.write("init " + fmt([float(v) for p in init for v in p.reshape(-1).tolist()]) + "\n")
    out.write("cases %d\n" % len(CASES))
    loss_fn = torch.nn.CrossEntropyLoss()
    for name, kind, s in CASES:
        net = make_net(init)
        opt = make_opt(kind, s, net)
        out.write("case %s %s %d\n" % (name, kind, len(s)))
        for k, v in s.items():
            out.write("%s %r\n" % (k, float(v)))
        out.write("steps %d\n" % STEPS)
        for step in range(STEPS):
            for g in opt.param_groups:
                g["lr"] = lr_at(s, step)
            opt.zero_grad()
            loss = loss_fn(net(x), labels)
            loss.backward()
            if s.get("clip_norm", 0) > 0:
                torch.nn.utils.clip_grad_norm_(net.parameters(), s["clip_norm"])
            opt.step()
            out.write("%.9g %s\n" % (loss.item(), fmt(flat(net))))


if __name__ == "__main__":
    main()
