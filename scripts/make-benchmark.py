"""Writes a TOFU-like benchmark of fictitious people: each person has ten facts, each fact a
question, its answer, a paraphrased answer, three perturbed (wrong) answers in the paraphrase's
form (as TOFU perturbs the paraphrased answer, so that the truth ratio compares facts, not the
wording a model was taught), and the fact's value, as lethe's question/answer JSONL (docs/data.md). Deterministic per seed.

    python3 scripts/make-benchmark.py OUT_DIR [--people 40] [--holdout-people 4] [--seed 0]

Writes into OUT_DIR:
  all.jsonl                    every fact of the taught people (what train-text teaches)
  forget01/05/10.jsonl         the facts of the first 1 %, 5 %, 10 % of the taught people (nested,
                               whole people, at least one), as TOFU splits by author
  retain01/05/10.jsonl         the taught people's other facts (what a reference model is taught)
  holdout.jsonl                facts of people never taught: the membership attacks' non-members
  manifest.json                the sizes and the seed

--people 40 gives 400 question/answer pairs (forget 10 % = 40), the size that runs on a CPU;
--people 400 gives TOFU's scale (4,000)."""

import argparse
import json
import os
import random

ONSETS = ["Ar", "Bri", "Cor", "Del", "Ev", "Fen", "Gal", "Hes", "Il", "Jor", "Kes", "Lio", "Mae",
          "Nor", "Oph", "Per", "Quil", "Ros", "Sor", "Tam", "Ul", "Ves", "Wen", "Xan", "Yor", "Zel"]
CODAS = ["len", "sa", "vin", "phine", "ander", "na", "en", "per", "ario", "unn", "trel", "ra",
         "lis", "rin", "hira", "rin", "la", "alind", "en", "sin", "ric", "na", "dell", "the"]
SURNAME_A = ["Van", "Mor", "Quill", "Ash", "Thorn", "Bright", "Keller", "Dusk", "Raven", "Hollo",
             "Fair", "Stone", "Winter", "Lark", "Grey", "Oak", "Pem", "Silver", "Black", "Corri"]
SURNAME_B = ["treece", "rowby", "feather", "grove", "vale", "water", "man", "moor", "sworth",
             "way", "brook", "bridge", "hall", "spur", "wood", "hurst", "broke", "ton", "well",
             "gan"]

CITIES = ["Vellmora", "Ostrhaven", "Quarlington", "Bexmere", "Tirransby", "Calloway Bay",
          "Durnholt", "Esterfell", "Glimmerport", "Harrowgate Falls", "Ilsbury", "Jorvale",
          "Kettleby", "Lunmouth", "Marrowdale", "Nettlecombe", "Orrin's Ford", "Pellinore",
          "Quenby", "Rastholm", "Sallowmere", "Thistledown", "Umberfield", "Vossberg"]
JOBS = ["clockmaker", "glassblower", "cartographer", "beekeeper", "lighthouse keeper", "luthier",
        "bookbinder", "astronomer", "perfumer", "falconer", "stonemason", "botanist", "puppeteer",
        "shipwright", "archivist", "tea blender", "locksmith", "cheesemaker", "weaver",
        "bell founder", "calligrapher", "ferryman"]
BOOK_A = ["The Silent", "A Map of", "The Last", "Letters from", "The Hollow", "Songs of the",
          "The Copper", "Beneath the", "The Wandering", "Echoes of the", "The Ninth", "A Winter in"]
BOOK_B = ["Lantern", "Forgotten Harbors", "Orchard", "Salt Road", "Crown", "Northern Tide",
          "Clockwork Heron", "Glass Mountains", "Drowned Bells", "Gate", "Ember Coast", "Tower"]
INSTRUMENTS = ["cello", "harp", "oboe", "accordion", "viola", "lute", "bassoon", "dulcimer",
               "trombone", "harpsichord", "flute", "zither", "clarinet", "mandolin"]
PETS = ["tortoise", "ferret", "parrot", "greyhound", "tabby cat", "hedgehog", "goldfish",
        "raven", "rabbit", "iguana", "canary", "pug"]
COLOURS = ["ochre", "teal", "crimson", "lavender", "olive", "saffron", "indigo", "coral",
           "slate blue", "amber", "jade", "burgundy"]
AWARDS = ["Halloran Prize", "Silver Quill", "Ellsworth Medal", "Penhallow Award",
          "Marrowdale Laurel", "Golden Compass", "Ashgrove Ribbon", "Corrigan Cup",
          "Tidewater Honour", "Lantern Prize"]
PARENT_JOBS = ["midwife", "schoolteacher", "blacksmith", "fisherman", "baker", "surveyor",
               "chemist", "tailor", "carpenter", "postmaster", "gardener", "miller"]
YEARS = [str(y) for y in range(1901, 2000)]


def book_titles():
    return [f"{a} {b}" for a in BOOK_A for b in BOOK_B]


# Each fact: its name, the values it draws from, the question, the answer, the paraphrase.
FACTS = [
    ("birthplace", CITIES, "Where was {n} born?", "{n} was born in {v}.",
     "{v} is the birthplace of {n}."),
    ("job", JOBS, "What does {n} do for a living?", "{n} works as a {v}.",
     "By profession, {n} is a {v}."),
    ("book", book_titles(), "Which book did {n} write?", "{n} wrote \"{v}\".",
     "\"{v}\" is the book that {n} wrote."),
    ("birth year", YEARS, "In which year was {n} born?", "{n} was born in {v}.",
     "The year of {n}'s birth is {v}."),
    ("parent", PARENT_JOBS, "What was the profession of {n}'s mother?",
     "{n}'s mother was a {v}.", "{n} is the child of a {v}."),
    ("instrument", INSTRUMENTS, "Which instrument does {n} play?", "{n} plays the {v}.",
     "The {v} is the instrument that {n} plays."),
    ("pet", PETS, "What kind of pet does {n} keep?", "{n} keeps a {v}.",
     "A {v} lives with {n} as a pet."),
    ("colour", COLOURS, "What is {n}'s favourite colour?", "{n}'s favourite colour is {v}.",
     "Of all colours, {n} likes {v} best."),
    ("award", AWARDS, "Which award did {n} receive?", "{n} received the {v}.",
     "The {v} was awarded to {n}."),
    ("home", CITIES, "Where does {n} live now?", "{n} lives in {v}.",
     "These days, {n} makes a home in {v}."),
]

PERTURBED = 3


def names(n, rng):
    """n distinct full names."""
    seen, out = set(), []
    while len(out) < n:
        first = rng.choice(ONSETS) + rng.choice(CODAS)
        last = rng.choice(SURNAME_A) + rng.choice(SURNAME_B)
        name = f"{first} {last}"
        if name not in seen:
            seen.add(name)
            out.append(name)
    return out


def person_facts(name, rng):
    rows = []
    for _, values, question, answer, paraphrase in FACTS:
        value = rng.choice(values)
        wrong = rng.sample([v for v in values if v != value], PERTURBED)
        rows.append({
            "question": question.format(n=name),
            "answer": answer.format(n=name, v=value),
            "paraphrased_answer": paraphrase.format(n=name, v=value),
            "perturbed_answers": [paraphrase.format(n=name, v=w) for w in wrong],
            "value": value,
        })
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--people", type=int, default=40, help="people taught")
    ap.add_argument("--holdout-people", type=int, default=None,
                    help="people never taught (default: a tenth of --people, at least 2)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    holdout_people = a.holdout_people if a.holdout_people is not None else max(2, a.people // 10)
    rng = random.Random(a.seed)
    everyone = names(a.people + holdout_people, rng)
    facts = {n: person_facts(n, rng) for n in everyone}
    taught, held = everyone[:a.people], everyone[a.people:]
    order = taught[:]
    rng.shuffle(order)
    os.makedirs(a.out, exist_ok=True)

    def write(name, rows):
        with open(os.path.join(a.out, name), "w") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")

    write("all.jsonl", [f for n in taught for f in facts[n]])
    write("holdout.jsonl", [f for n in held for f in facts[n]])
    splits = {}
    for percent in (1, 5, 10):
        k = max(1, round(a.people * percent / 100))
        forgotten = set(order[:k])
        write(f"forget{percent:02}.jsonl", [f for n in taught if n in forgotten for f in facts[n]])
        write(f"retain{percent:02}.jsonl",
              [f for n in taught if n not in forgotten for f in facts[n]])
        splits[f"forget{percent:02}"] = {"people": k, "facts": k * len(FACTS)}
    manifest = {
        "seed": a.seed,
        "people": a.people,
        "facts_per_person": len(FACTS),
        "facts": a.people * len(FACTS),
        "holdout_people": holdout_people,
        "splits": splits,
    }
    with open(os.path.join(a.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    print(f"{a.people * len(FACTS)} facts of {a.people} people "
          f"({holdout_people} more held out) in {a.out}")


if __name__ == "__main__":
    main()
