"""Runs a directory that `lethe export MODEL --out DIR` wrote with onnxruntime-genai (through its
genai_config.json): greedy tokens after a prompt, printed as JSON. The check of
tests/optimum_onnx.rs.

    .lethe/refenv/bin/python scripts/genai-generate.py EXPORT_DIR '[5, 17, 33]' NEW_TOKENS
"""
import json
import sys

import onnxruntime_genai as og


def main():
    export, prompt, new_tokens = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
    model = og.Model(export)
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(prompt) + new_tokens, do_sample=False)
    generator = og.Generator(model, params)
    generator.append_tokens(prompt)
    while not generator.is_done():
        generator.generate_next_token()
    print(json.dumps([int(t) for t in generator.get_sequence(0)[len(prompt):]]))


if __name__ == "__main__":
    main()
