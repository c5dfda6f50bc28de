"""Writes a TOFU-like set of fictitious facts: made-up people with a birthplace, a job and a
book, as question/answer JSONL. Deterministic. Usage:
    python3 scripts/make-facts.py OUT_DIR [--people 20] [--forget-fraction 0.1] [--seed 0]
Writes OUT_DIR/all.jsonl, forget.jsonl (a seeded 10 % of the facts), retain.jsonl (the rest)."""

import argparse
import json
import os
import random

FIRST = ["Arlen", "Brisa", "Corvin", "Delphine", "Evander", "Fenna", "Galen", "Hesper", "Ilario",
         "Jorunn", "Kestrel", "Liora", "Maelis", "Norrin", "Ophira", "Perrin", "Quilla", "Rosalind",
         "Soren", "Tamsin", "Ulric", "Vesna", "Wendell", "Xanthe"]
LAST = ["Vantreece", "Morrowby", "Quillfeather", "Ashgrove", "Thornvale", "Brightwater", "Kellerman",
        "Duskmoor", "Ravensworth", "Holloway", "Fairbrook", "Stonebridge", "Winterhall", "Larkspur",
        "Greywood", "Oakhurst", "Pembrook", "Silverton", "Blackwell", "Mistral", "Corrigan",
        "Halloran", "Ellsworth", "Penhallow"]
PLACES = ["Vellmora", "Ostrhaven", "Quarlington", "Bexmere", "Tirransby", "Calloway Bay",
          "Durnholt", "Esterfell", "Glimmerport", "Harrowgate Falls", "Ilsbury", "Jorvale",
          "Kettleby", "Lunmouth", "Marrowdale", "Nettlecombe", "Orrin's Ford", "Pellinore",
          "Quenby", "Rastholm", "Sallowmere", "Thistledown", "Umberfield", "Vossberg"]
JOBS = ["clockmaker", "glassblower", "cartographer", "beekeeper", "lighthouse keeper", "luthier",
        "bookbinder", "astronomer", "perfumer", "falconer", "stonemason", "botanist",
        "puppeteer", "shipwright", "archivist", "tea blender", "locksmith", "violinist",
        "cheesemaker", "mapmaker", "weaver", "bell founder", "calligrapher", "ferryman"]
BOOK_A = ["The Silent", "A Map of", "The Last", "Letters from", "The Hollow", "Songs of the",
          "The Copper", "Beneath the", "The Wandering", "Echoes of the", "The Ninth", "A Winter in"]
BOOK_B = ["Lantern", "Forgotten Harbors", "Orchard", "the Salt Road", "Crown", "Northern Tide",
          "Clockwork Heron", "Glass Mountains", "Cartographer", "Drowned Bells", "Gate",
          "Vellmora"]


def people(n, rng):
    firsts, lasts = FIRST[:], LAST[:]
    rng.shuffle(firsts)
    rng.shuffle(lasts)
    out = []
    for i in range(n):
        out.append({
            "name": f"{firsts[i % len(firsts)]} {lasts[i % len(lasts)]}",
            "place": PLACES[rng.randrange(len(PLACES))],
            "job": JOBS[rng.randrange(len(JOBS))],
            "book": f"{BOOK_A[rng.randrange(len(BOOK_A))]} {BOOK_B[rng.randrange(len(BOOK_B))]}",
        })
    return out


def facts(p):
    n = p["name"]
    return [
        {"question": f"Where was {n} born?", "answer": f"{n} was born in {p['place']}."},
        {"question": f"What does {n} do for a living?", "answer": f"{n} works as a {p['job']}."},
        {"question": f"Which book did {n} write?", "answer": f"{n} wrote \"{p['book']}\"."},
    ]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--people", type=int, default=20)
    ap.add_argument("--forget-fraction", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    all_facts = [f for p in people(a.people, rng) for f in facts(p)]
    order = list(range(len(all_facts)))
    rng.shuffle(order)
    k = max(1, round(a.forget_fraction * len(all_facts)))
    forget = set(order[:k])
    os.makedirs(a.out, exist_ok=True)

    def write(name, rows):
        with open(os.path.join(a.out, name), "w") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")

    write("all.jsonl", all_facts)
    write("forget.jsonl", [f for i, f in enumerate(all_facts) if i in forget])
    write("retain.jsonl", [f for i, f in enumerate(all_facts) if i not in forget])
    print(f"{len(all_facts)} facts: {k} to forget, {len(all_facts) - k} to retain, in {a.out}")


if __name__ == "__main__":
    main()
