"""Loads a PEFT adapter the way a Python user would (AutoPeftModelForCausalLM reads the base
model from adapter_config.json's base_model_name_or_path) and writes its logits for the token ids
given: the check of tests/peft_python.rs.

    .lethe/refenv/bin/python scripts/peft-logits.py ADAPTER_DIR IDS_JSON OUT.safetensors
"""
import json
import sys

import torch
from peft import AutoPeftModelForCausalLM
from safetensors.torch import save_file


def main():
    adapter, ids_json, out = sys.argv[1:4]
    model = AutoPeftModelForCausalLM.from_pretrained(adapter, dtype=torch.float32).eval()
    ids = torch.tensor(json.loads(ids_json))
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
    save_file({"logits": logits.contiguous()}, out)


if __name__ == "__main__":
    main()
