"""Loads a directory that `lethe export MODEL --out DIR` wrote with optimum-onnx's
ORTModelForCausalLM and generates greedily from a left-padded batch of two prompts, beside
transformers running the checkpoint it came from: prints both as JSON. The check of
tests/optimum_onnx.rs.

    .lethe/refenv/bin/python scripts/optimum-generate.py EXPORT_DIR CHECKPOINT_DIR
"""
import json
import sys

import torch
from optimum.onnxruntime import ORTModelForCausalLM
from transformers import AutoModelForCausalLM

NEW_TOKENS = 12


def main():
    export, checkpoint = sys.argv[1:3]
    onnx = ORTModelForCausalLM.from_pretrained(export)
    reference = AutoModelForCausalLM.from_pretrained(checkpoint, attn_implementation="eager").eval()
    ids = torch.tensor([[0, 0, 5, 17, 33], [9, 41, 2, 60, 7]])
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    settings = dict(max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False,
                    pad_token_id=0)
    with torch.no_grad():
        ours = onnx.generate(input_ids=ids, attention_mask=mask, **settings)
        theirs = reference.generate(input_ids=ids, attention_mask=mask, **settings)
    inputs = [i.name for i in onnx.session.get_inputs()]
    print(json.dumps({"optimum": ours.tolist(), "transformers": theirs.tolist(),
                      "inputs": inputs, "uses_cache": bool(onnx.can_use_cache)}))


if __name__ == "__main__":
    main()
