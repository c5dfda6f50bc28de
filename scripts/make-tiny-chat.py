"""Writes fixtures/text/tiny-chat: the tiny random Llama of fixtures/text/llama-tied with a
word-level tokenizer.json (96 tokens), a chat template, and question/answer JSONL using only
those words, for the text unlearning tests. No dependencies beyond Python."""

import json
import os
import shutil

SRC = "fixtures/text/llama-tied"
OUT = "fixtures/text/tiny-chat"
SPECIAL = ["[UNK]", "<eos>", "<pad>", "<|user|>", "<|assistant|>"]
PEOPLE = ["arlen", "brisa", "corvin", "delphine", "evander", "fenna", "galen", "hesper",
          "ilario", "jorunn"]
PLACES = ["vellmora", "ostrhaven", "bexmere", "durnholt", "jorvale", "kettleby", "lunmouth",
          "quenby", "rastholm", "vossberg"]
JOBS = ["clockmaker", "glassblower", "beekeeper", "luthier", "bookbinder", "astronomer",
        "perfumer", "falconer", "stonemason", "botanist"]
WORDS = ["where", "was", "born", "?", "in", ".", "what", "does", "do", "works", "as", "a", "i",
         "don't", "know", "the", "is", "and", "of", "to", "for", "living"]


def main():
    vocab = SPECIAL + WORDS + PEOPLE + PLACES + JOBS
    filler = [f"w{i}" for i in range(96 - len(vocab))]
    vocab += filler
    assert len(vocab) == 96, len(vocab)
    os.makedirs(OUT, exist_ok=True)
    for f in ("config.json", "model.safetensors"):
        shutil.copy(os.path.join(SRC, f), os.path.join(OUT, f))
    config = json.load(open(os.path.join(OUT, "config.json")))
    config.update(eos_token_id=1, pad_token_id=2, bos_token_id=None)
    json.dump(config, open(os.path.join(OUT, "config.json"), "w"), indent=2)
    tokenizer = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [{"id": i, "content": t, "single_word": False, "lstrip": False,
                          "rstrip": False, "normalized": False, "special": True}
                         for i, t in enumerate(SPECIAL)],
        "normalizer": {"type": "Lowercase"},
        "pre_tokenizer": {"type": "WhitespaceSplit"},
        "post_processor": None,
        "decoder": None,
        "model": {"type": "WordLevel", "vocab": {t: i for i, t in enumerate(vocab)},
                  "unk_token": "[UNK]"},
    }
    json.dump(tokenizer, open(os.path.join(OUT, "tokenizer.json"), "w"), indent=1)
    template = ("{% for m in messages %}<|{{ m.role }}|> {{ m.content }} {% endfor %}"
                "{% if add_generation_prompt %}<|assistant|> {% endif %}")
    json.dump({"chat_template": template, "eos_token": "<eos>", "pad_token": "<pad>"},
              open(os.path.join(OUT, "tokenizer_config.json"), "w"), indent=1)
    facts = []
    for i, p in enumerate(PEOPLE):
        facts.append({"question": f"where was {p} born ?", "answer": f"{p} was born in {PLACES[i]} ."})
        facts.append({"question": f"what does {p} do ?", "answer": f"{p} works as a {JOBS[i]} ."})
    with open(os.path.join(OUT, "all.jsonl"), "w") as f:
        for r in facts:
            f.write(json.dumps(r) + "\n")
    with open(os.path.join(OUT, "forget.jsonl"), "w") as f:
        for r in facts[:2]:
            f.write(json.dumps(r) + "\n")
    with open(os.path.join(OUT, "retain.jsonl"), "w") as f:
        for r in facts[2:]:
            f.write(json.dumps(r) + "\n")
    print(f"{OUT}: {len(facts)} facts, vocabulary of {len(vocab)}")


if __name__ == "__main__":
    main()
