"""Greedy continuations and last-position logits of the real Gemma-3-270M as transformers'
own GGUF loader computes them (dequantized to f32 by the gguf package), for the prompts of
tests/gemma3.rs: writes fixtures/gemma3-reference.json, which that test compares lethe's
converted checkpoint against. Needs torch, transformers 4.57.1 and gguf (the refenv of
scripts/make-text-fixtures.sh plus `pip install gguf`) and scripts/fetch-gemma3.sh's file.

    .lethe/refenv/bin/python scripts/gemma3-reference.py CONVERTED_DIR
"""
import json
import sys

import torch
import transformers
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM

PROMPTS = ["The capital of France is", "def fibonacci(n):", "Once upon a time"]
NEW_TOKENS = 10


def main():
    converted = sys.argv[1]
    # lethe's tokenizer (from the GGUF vocabulary) gives the prompt ids both sides start from.
    tok = Tokenizer.from_file(f"{converted}/tokenizer.json")
    model = AutoModelForCausalLM.from_pretrained(
        ".lethe/models", gguf_file="gemma-3-270m-q4_k_m.gguf", dtype=torch.float32,
        attn_implementation="eager").eval()
    cases = []
    for prompt in PROMPTS:
        ids = tok.encode(prompt).ids
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0, -1]
            out = model.generate(torch.tensor([ids]), max_new_tokens=NEW_TOKENS, do_sample=False)
        top = torch.topk(logits, 5)
        cases.append({"prompt": prompt, "ids": ids, "continuation": out[0, len(ids):].tolist(),
                      "top5_ids": top.indices.tolist(), "top5_logits": top.values.tolist()})
        print(prompt, repr(tok.decode(cases[-1]["continuation"])))
    with open("fixtures/gemma3-reference.json", "w") as f:
        json.dump({"made_by": f"transformers {transformers.__version__} GGUF loader, f32, greedy",
                   "cases": cases}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
