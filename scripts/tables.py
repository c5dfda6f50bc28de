#!/usr/bin/env python3
"""Reproduces the result tables of the README: for class-wise forgetting (class Dress) and random
forgetting (10 % of the training data, seed 0) on the bundled model, it trains the gold-standard
model on the retain set only, runs every method on the same budget, and prints one markdown
table per setting. Standard library only; run from the repository root after
`cargo build --release` and `bash scripts/fetch-onnxruntime.sh`.
"""
import json, subprocess, sys, os

LETHE = "./target/release/lethe"
MODEL = "models/fashion-mnist-mlp"
DATA = "fixtures/fashion-mnist"
WORK = "target/tables"
# The bundled model's own training recipe (see models/fashion-mnist-mlp/README.md).
TRAIN = ["--data", DATA, "--epochs", "60"]

SETTINGS = [
    {
        "name": "class-wise: forget class Dress",
        "forget": ["--forget-class", "Dress"],
        "budget": ["--epochs", "2", "--lr", "0.003"],
        "methods": {
            "igs": [],
            "igs --fast": ["--fast"],
            "egs": ["--method", "egs"],
            "ft": ["--method", "ft"],
            "ga": ["--method", "ga"],
            "graddiff": ["--method", "graddiff"],
            "rl": ["--method", "rl"],
        },
    },
    {
        "name": "random: forget 10 % of the training data (seed 0)",
        "forget": ["--forget-fraction", "0.1"],
        "budget": ["--epochs", "20", "--optimizer", "adamw", "--lr", "0.0005"],
        "methods": {
            "igs --fast": ["--fast"],
            "igs": [],
            "egs": ["--method", "egs"],
            "ft": ["--method", "ft"],
            "ga": ["--method", "ga"],
            "graddiff": ["--method", "graddiff"],
            "rl": ["--method", "rl"],
        },
    },
]


def run(args, may_diverge=False):
    out = subprocess.run([LETHE] + args, capture_output=True, text=True)
    if may_diverge and "diverged" in out.stderr:
        return {"diverged": out.stderr.strip().removeprefix("error: ")}
    if out.returncode not in (0, 3):
        sys.exit(f"{' '.join(args)} failed:\n{out.stderr}")
    return json.loads(out.stdout)


def row(name, m, gap, wall, passes):
    gap_s = "—" if gap is None else f"{gap:.2f}"
    return f"| {name} | {m['ua']:.2f} | {m['ra']:.2f} | {m['ta']:.2f} | {m['mia']:.2f} | {gap_s} | {wall} | {passes} |"


def main():
    os.makedirs(WORK, exist_ok=True)
    for i, s in enumerate(SETTINGS):
        ref = f"{WORK}/retrained-{i}"
        if not os.path.isdir(ref):
            t = run(["train", "--json", "--out", ref] + TRAIN + s["forget"])
            retrain_wall = t["wall_seconds"]
        else:
            retrain_wall = json.load(open(f"{ref}/training.json"))["result"]["wall_seconds"]
        print(f"\n### {s['name']}\n")
        print("| model | UA % | RA % | TA % | MIA % | gap to retrained | wall time | passes (fwd/bwd) |")
        print("|---|---|---|---|---|---|---|---|")
        rows = []
        for label, extra in s["methods"].items():
            r = run(["unlearn", MODEL, "--json", "--data", DATA, "--reference", ref, "--out",
                     f"{WORK}/{i}-{label.replace(' ', '').replace('--', '-')}", "--overwrite"]
                    + s["forget"] + s["budget"] + extra, may_diverge=True)
            if "diverged" in r:
                rows.append(f"| {label} | {r['diverged']} | | | | | | |")
                continue
            m = r["metrics"]
            if not rows:
                print(row("original", m["before"], m["gap_to_reference_before"], "—", "—"))
                print(row("retrained on retain", m["reference"], 0.0, f"{retrain_wall:.1f} s", "(60 epochs)"))
            run_ = r["run"]
            rows.append(row(label, m["after"], m["gap_to_reference_after"], f"{run_['wall_seconds']:.1f} s",
                            f"{run_['forward_passes']}/{run_['backward_passes']}"))
        print("\n".join(rows))
        print(f"\nBudget for every method: `{' '.join(s['budget'])}` (batch 128 forget + 128 retain samples a step).")


def every_class():
    """Default igs, and the alternatives the defaults were chosen against, on each of the ten
    classes."""
    variants = {
        "igs (defaults)": [],
        "igs --dual-update adam": ["--dual-update", "adam"],
        "igs --dual-update adam --beta 0.1": ["--dual-update", "adam", "--beta", "0.1"],
        "igs --fast": ["--fast"],
        "egs": ["--method", "egs"],
        "rl": ["--method", "rl"],
    }
    print("\n### every class, default budget (`--epochs 2 --lr 0.003`)\n")
    print("| method | min UA % | min MIA % | largest TA fall | mean TA fall | mean RA fall |")
    print("|---|---|---|---|---|---|")
    for label, extra in variants.items():
        res = []
        for c in range(10):
            r = run(["unlearn", MODEL, "--json", "--data", DATA, "--forget-class", str(c)] + extra)
            b, a = r["metrics"]["before"], r["metrics"]["after"]
            res.append((a["ua"], a["mia"], b["ta"] - a["ta"], b["ra"] - a["ra"]))
        print(f"| {label} | {min(x[0] for x in res):.2f} | {min(x[1] for x in res):.2f} | "
              f"{max(x[2] for x in res):.2f} | {sum(x[2] for x in res) / 10:.2f} | {sum(x[3] for x in res) / 10:.2f} |")


if __name__ == "__main__":
    main()
    every_class()
