"""Summarises target/scenario: the metrics of each method next to the model that never saw the
forgotten facts. Usage: python3 scripts/scenario_table.py target/scenario"""

import json
import os
import re
import sys

out = sys.argv[1]
never = json.load(open(os.path.join(out, "never-metrics.json")))


def rss(method):
    try:
        text = open(os.path.join(out, f"{method}.time")).read()
        return int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1)) / 1024
    except (OSError, AttributeError):
        return float("nan")


print(f"never saw the forget facts: forget ROUGE-L {100 * never['forget']['rouge_l']:.1f}, "
      f"retain ROUGE-L {100 * never['retain']['rouge_l']:.1f}, perplexity {never['perplexity']:.2f}")
print()
print(f"{'method':<10}{'forget R-L':>11}{'retain R-L':>11}{'Δ retain':>9}{'ppl':>8}{'Δ ppl %':>9}"
      f"{'forget NLL':>11}{'retain NLL':>11}{'unlearn s':>10}{'peak RSS MiB':>13}")
first = True
for method in ["igs", "ga", "graddiff", "npo"]:
    path = os.path.join(out, f"{method}.json")
    try:
        r = json.load(open(path))
    except (OSError, ValueError):
        print(f"{method:<10} (no report)")
        continue
    b, a = r["metrics"]["before"], r["metrics"]["after"]
    if first:
        print(f"{'taught':<10}{100 * b['forget']['rouge_l']:>11.1f}{100 * b['retain']['rouge_l']:>11.1f}"
              f"{'':>9}{b['perplexity']:>8.2f}{'':>9}{b['forget']['nll']:>11.3f}{b['retain']['nll']:>11.3f}")
        first = False
    print(f"{method:<10}{100 * a['forget']['rouge_l']:>11.1f}{100 * a['retain']['rouge_l']:>11.1f}"
          f"{100 * (a['retain']['rouge_l'] - b['retain']['rouge_l']):>9.1f}{a['perplexity']:>8.3g}"
          f"{100 * (a['perplexity'] / b['perplexity'] - 1):>9.3g}{a['forget']['nll']:>11.3f}"
          f"{a['retain']['nll']:>11.3f}{r['run']['wall_seconds']:>10.0f}{rss(method):>13.0f}")
