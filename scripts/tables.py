#!/usr/bin/env python3
"""Reproduces the classifier result tables of the README.

For class-wise forgetting (class Dress) and random forgetting (10 % of the training data) it
trains, for each of three seeds, the gold-standard model on the retain set only, runs every method
with lethe's defaults for that kind of forgetting (the same budget for all), and prints one
markdown table per setting with the mean ± standard deviation over the seeds. Seed s draws the
random forget set (--forget-seed s) and seeds both the retrained model and the unlearning run
(--seed s). Rows for the bundled CNN and for the digits data follow, and a sweep of default igs
over every class.

Standard library only; run from the repository root after `cargo build --release`:

    python3 scripts/tables.py            # everything (about 25 minutes on 2 cores)
    python3 scripts/tables.py --quick    # one seed, igs only: checks that the script runs
"""
import json, os, statistics, subprocess, sys

LETHE = "./target/release/lethe"
WORK = "target/tables"
FASHION = "fixtures/fashion-mnist"
DIGITS = "fixtures/digits.csv.gz"
QUICK = "--quick" in sys.argv
SEEDS = [0] if QUICK else [0, 1, 2]

# Each bundled model with its own training recipe (see its model card); the retrained models
# follow the same recipe on the retain set.
MLP = {"name": "MLP", "model": "models/fashion-mnist-mlp", "data": FASHION, "train": ["--epochs", "60"]}
CNN = {"name": "CNN", "model": "models/fashion-mnist-cnn", "data": FASHION,
       "train": ["--arch", "cnn", "--epochs", "15", "--lr", "0.003"]}
# The digits data has no bundled model: the script trains one with `lethe train`'s defaults.
DIGITS_MLP = {"name": "digits MLP", "model": f"{WORK}/digits-mlp", "data": DIGITS, "train": []}

METHODS = {
    "igs (defaults)": [],
    "igs --fast": ["--fast"],
    "egs": ["--method", "egs"],
    "ft": ["--method", "ft"],
    "ga": ["--method", "ga"],
    "graddiff": ["--method", "graddiff"],
    "rl": ["--method", "rl"],
}
if QUICK:
    METHODS = {"igs (defaults)": []}

SETTINGS = {
    "class": {"title": "class-wise: forget class Dress", "forget": lambda s: ["--forget-class", "Dress"]},
    "random": {"title": "random: forget 10 % of the training data",
               "forget": lambda s: ["--forget-fraction", "0.1", "--forget-seed", str(s)]},
}
KEYS = ["ua", "ra", "ta", "mia"]


def run(args, may_diverge=False):
    """lethe's JSON result; None for a run that diverged, when that may happen."""
    out = subprocess.run([LETHE] + args, capture_output=True, text=True)
    result = json.loads(out.stdout) if out.stdout.strip() else {}
    if out.returncode not in (0, 3):
        if may_diverge and "diverged" in result.get("error", ""):
            return None
        sys.exit(f"lethe {' '.join(args)} failed:\n{result.get('error', out.stderr)}")
    return result


def trained(model, setting, seed, tag="retrained"):
    """The model trained by `model`'s recipe on the retain set of `setting` at `seed`."""
    out = f"{WORK}/{model['name'].replace(' ', '-')}-{setting}-{tag}-{seed}"
    if not os.path.isdir(out):
        train_seed = seed if tag == "retrained" else seed + 100
        run(["train", "--json", "-q", "--data", model["data"], "--out", out, "--seed", str(train_seed)]
            + model["train"] + SETTINGS[setting]["forget"](seed))
    return out


def unlearn(model, setting, seed, extra, reference):
    return run(["unlearn", model["model"], "--json", "-q", "--data", model["data"], "--reference", reference,
                "--seed", str(seed)] + SETTINGS[setting]["forget"](seed) + extra, may_diverge=True)


def stat(values, digits=2):
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def row(label, metrics, gaps, extra=""):
    cells = [stat([m[k] for m in metrics]) for k in KEYS]
    return f"| {label} | " + " | ".join(cells) + f" | {stat(gaps)} |{extra}"


def header(extra=""):
    print("| model | UA % | RA % | TA % | MIA % | gap to retrained |" + extra)
    print("|---|---|---|---|---|---|" + "---|" * extra.count("|"))


def table(model, setting, methods, timing=True):
    """One setting on one model: the original, the retrained, and each method, over the seeds;
    with `timing`, each method's wall time and passes (for comparing methods with each other)."""
    print(f"\n#### {model['name']}, {SETTINGS[setting]['title']}\n")
    header(" wall time | passes (fwd/bwd) |" if timing else "")
    blank = " — | — |" if timing else ""
    results = {label: [] for label in methods}
    diverged = {label: 0 for label in methods}
    for s in SEEDS:
        ref = trained(model, setting, s)
        for label, extra in methods.items():
            r = unlearn(model, setting, s, extra, ref)
            if r is None:
                diverged[label] += 1
            else:
                results[label].append(r)
    first = next(rs for rs in results.values() if rs)
    before = [r["metrics"]["before"] for r in first]
    print(row("original", before, [r["metrics"]["gap_to_reference_before"] for r in first], blank))
    print(row("retrained on retain", [r["metrics"]["reference"] for r in first], [0.0] * len(first), blank))
    for label, rs in results.items():
        note = f" (diverged on {diverged[label]} of {len(SEEDS)} seeds)" if diverged[label] else ""
        if not rs:
            print(f"| {label} | diverged on every seed | | | | | | |")
            continue
        wall = stat([r["run"]["wall_seconds"] for r in rs], 1) + " s"
        passes = f"{rs[0]['run']['forward_passes']}/{rs[0]['run']['backward_passes']}"
        print(row(label + note, [r["metrics"]["after"] for r in rs],
                  [r["metrics"]["gap_to_reference_after"] for r in rs], f" {wall} | {passes} |" if timing else ""))
    if len(SEEDS) > 1 and results["igs (defaults)"]:
        gaps = " / ".join(f"{r['metrics']['gap_to_reference_after']:.2f}" for r in results["igs (defaults)"])
        print(f"\nigs (defaults), gap to retrained per seed: {gaps}")


def retrained_twice(model, setting):
    """The gap between two models retrained on the same retain set with different seeds: how
    close the measure can tell two equally good answers apart."""
    gaps = []
    for s in SEEDS:
        a, b = trained(model, setting, s), trained(model, setting, s, tag="second")
        ev = [run(["eval", m, "--json", "-q", "--data", model["data"]] + SETTINGS[setting]["forget"](s))["metrics"]
              for m in (a, b)]
        gaps.append(sum(abs(ev[0][k] - ev[1][k]) for k in KEYS) / 4)
    return gaps


def per_seed(gaps):
    return " / ".join(f"{g:.2f}" for g in gaps)


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
    print("\n#### MLP, every class, default budget\n")
    print("| method | min UA % | min MIA % | largest TA fall | mean TA fall | mean RA fall |")
    print("|---|---|---|---|---|---|")
    for label, extra in variants.items():
        res = []
        for c in range(10):
            r = run(["unlearn", MLP["model"], "--json", "-q", "--data", FASHION, "--forget-class", str(c)] + extra)
            b, a = r["metrics"]["before"], r["metrics"]["after"]
            res.append((a["ua"], a["mia"], b["ta"] - a["ta"], b["ra"] - a["ra"]))
        print(f"| {label} | {min(x[0] for x in res):.2f} | {min(x[1] for x in res):.2f} | "
              f"{max(x[2] for x in res):.2f} | {sum(x[2] for x in res) / 10:.2f} | {sum(x[3] for x in res) / 10:.2f} |")


def main():
    os.makedirs(WORK, exist_ok=True)
    print(f"Seeds: {', '.join(map(str, SEEDS))}; mean ± standard deviation over them.")
    for setting in SETTINGS:
        table(MLP, setting, METHODS)
        floor = retrained_twice(MLP, setting)
        print(f"\nRetrained twice (seeds s and s + 100), gap between the two: {stat(floor)} (per seed {per_seed(floor)})")
    for setting in SETTINGS:
        table(CNN, setting, {"igs (defaults)": []}, timing=False)
    if not os.path.isdir(DIGITS_MLP["model"]):
        run(["train", "--json", "-q", "--data", DIGITS, "--out", DIGITS_MLP["model"]])
    table(DIGITS_MLP, "random", {"igs (defaults)": []}, timing=False)
    floor = retrained_twice(DIGITS_MLP, "random")
    print(f"\nRetrained twice (seeds s and s + 100), gap between the two: {stat(floor)} (per seed {per_seed(floor)})")
    if not QUICK:
        every_class()


if __name__ == "__main__":
    main()
