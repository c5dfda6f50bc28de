"""Writes fixtures/text/<name>/: a tiny random checkpoint in Hugging Face layout and
expected.safetensors with input_ids, attention_mask and the output transformers computes in f32
(logits for decoders, last_hidden_state for encoders). Also fixtures/text/minilm-expected.safetensors
for the real all-MiniLM-L6-v2. Run through scripts/make-text-fixtures.sh."""

import json
import os

import torch
from safetensors.torch import save_file
from transformers import (AutoTokenizer, BertConfig, BertModel, Gemma3ForCausalLM, Gemma3TextConfig,
                          GPT2Config, GPT2LMHeadModel,
                          LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM,
                          Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM)

OUT = "fixtures/text"
VOCAB = 96

COMMON = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
              max_position_embeddings=64)

MODELS = {
    # Grouped-query attention (4 query heads on 2 key/value heads), untied head, Llama 3 rope scaling.
    "llama": (LlamaForCausalLM, LlamaConfig(
        **COMMON, num_attention_heads=4, num_key_value_heads=2, rope_theta=500000.0,
        rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0,
                          high_freq_factor=4.0, original_max_position_embeddings=16),
        tie_word_embeddings=False, rms_norm_eps=1e-5)),
    # Tied embeddings, head_dim 16 set explicitly, plain rope (the SmolLM2 shape).
    "llama-tied": (LlamaForCausalLM, LlamaConfig(
        **COMMON, num_attention_heads=2, num_key_value_heads=1, head_dim=16,
        rope_theta=100000.0, tie_word_embeddings=True)),
    # A sliding window shorter than the test sequence.
    "mistral": (MistralForCausalLM, MistralConfig(
        **COMMON, num_attention_heads=4, num_key_value_heads=1, sliding_window=4,
        tie_word_embeddings=False)),
    # q/k/v biases, tied embeddings.
    "qwen2": (Qwen2ForCausalLM, Qwen2Config(
        **COMMON, num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)),
    "gpt2": (GPT2LMHeadModel, GPT2Config(
        vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=64)),
    "bert": (BertModel, BertConfig(
        vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=48, max_position_embeddings=64)),
    # Per-head query/key RMSNorms, head_dim 16 with 4 heads (64 ≠ hidden 32), untied head.
    # Last, so that the models above keep the random weights they were made with.
    "qwen3": (Qwen3ForCausalLM, Qwen3Config(
        **COMMON, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
        rope_theta=1000000.0, tie_word_embeddings=False)),
    # Four (1 + w) norms per block, per-head q/k norms, GELU-tanh gating, √hidden embedding
    # scale, query_pre_attn_scalar ≠ head_dim, sliding layers (window 4, shorter than the test
    # sequence) with their own rotary base beside a global layer with linear rope scaling.
    "gemma3": (Gemma3ForCausalLM, Gemma3TextConfig(
        **{**COMMON, "num_hidden_layers": 3}, num_attention_heads=4, num_key_value_heads=2,
        head_dim=16, query_pre_attn_scalar=24, sliding_window=4,
        layer_types=["sliding_attention", "full_attention", "sliding_attention"],
        rope_theta=1000000.0, rope_local_base_freq=10000.0,
        rope_scaling=dict(rope_type="linear", factor=8.0), tie_word_embeddings=True)),
}


def inputs():
    g = torch.Generator().manual_seed(7)
    ids = torch.randint(0, VOCAB, (3, 9), generator=g)
    mask = torch.ones_like(ids)
    mask[1, :3] = 0  # left padding
    mask[2, 6:] = 0  # right padding
    return ids, mask


def main():
    torch.manual_seed(0)
    ids, mask = inputs()
    for name, (cls, config) in MODELS.items():
        model = cls(config).eval().float()
        # Random norms and biases too, so a missing term shows up in the outputs.
        with torch.no_grad():
            for pname, p in model.named_parameters():
                if "norm" in pname.lower() or "ln_" in pname or pname.endswith("bias"):
                    p.add_(torch.randn_like(p) * 0.1)
        attn = "sdpa" if name not in ("mistral", "gemma3") else "eager"
        model.config._attn_implementation = attn
        out_dir = os.path.join(OUT, name)
        model.save_pretrained(out_dir, safe_serialization=True)
        with torch.no_grad():
            out = model(input_ids=ids, attention_mask=mask)
        y = out.logits if hasattr(out, "logits") else out.last_hidden_state
        save_file({"input_ids": ids.contiguous(), "attention_mask": mask.contiguous(),
                   "output": y.contiguous()}, os.path.join(out_dir, "expected.safetensors"))
        for extra in ("generation_config.json",):
            path = os.path.join(out_dir, extra)
            if os.path.exists(path):
                os.remove(path)
        print(name, tuple(y.shape), f"{sum(p.numel() for p in model.parameters())} parameters")

    minilm = ".lethe/models/all-MiniLM-L6-v2"
    tok = AutoTokenizer.from_pretrained(minilm)
    model = BertModel.from_pretrained(minilm).eval()
    sentences = ["Machine unlearning removes what a model must not know.",
                 "The quick brown fox jumps over the lazy dog!"]
    batch = tok(sentences, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    save_file({"input_ids": batch["input_ids"].contiguous(),
               "attention_mask": batch["attention_mask"].contiguous(),
               "output": hidden.contiguous()}, os.path.join(OUT, "minilm-expected.safetensors"))
    with open(os.path.join(OUT, "minilm-sentences.json"), "w") as f:
        json.dump(sentences, f, indent=1)
    print("minilm", tuple(hidden.shape))


if __name__ == "__main__":
    main()
