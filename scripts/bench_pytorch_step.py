"""One LoRA igs step (NPO forget loss, answer NLL retain loss, log form, dual variable, AdamW,
a second forward pass for the dual update) in PyTorch with peft, on synthetic sequences: the
same step `lethe bench-text` times. Prints JSON with the median step time and peak RSS (and, on
a GPU, PyTorch's own peak of allocated and reserved memory).

With --dtype bf16 the frozen weights are bf16 and peft keeps the adapters in f32 (its default
for a bf16 base), log-probabilities and losses in f32: the mixed precision `lethe --dtype bf16`
uses."""

import argparse
import json
import math
import resource
import statistics
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--answer-len", type=int, default=32)
    ap.add_argument("--lora-rank", type=int, default=8)
    ap.add_argument("--lora-alpha", type=float, default=16.0)
    ap.add_argument("--lora-targets", default="q_proj,v_proj")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", choices=["f32", "bf16"], default="f32")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    device = torch.device(a.device)
    dtype = torch.bfloat16 if a.dtype == "bf16" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(a.model, torch_dtype=dtype).to(device)
    model = get_peft_model(model, LoraConfig(r=a.lora_rank, lora_alpha=a.lora_alpha,
                                             target_modules=a.lora_targets.split(","),
                                             lora_dropout=0.0))
    model.train()
    half = max(1, a.batch // 2)
    vocab = model.config.vocab_size
    forget = torch.randint(0, vocab, (half, a.seq_len)).to(device)
    retain = torch.randint(0, vocab, (half, a.seq_len)).to(device)
    start = a.seq_len - a.answer_len
    gpu = device.type == "cuda"

    def sync():
        if gpu:
            torch.cuda.synchronize(device)

    def answer_log_probs(ids):
        # Hidden states, then the head on the answer positions only (as lethe does).
        hidden = model.base_model.model.model(input_ids=ids).last_hidden_state
        h = hidden[:, start - 1:-1, :]
        logits = model.base_model.model.lm_head(h).float()
        lp = torch.log_softmax(logits, dim=-1)
        return lp.gather(-1, ids[:, start:].unsqueeze(-1)).squeeze(-1).sum(-1)

    with torch.no_grad():
        reference = answer_log_probs(forget)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0)
    lam, beta, eps, npo_beta = 1.0, 1.0, 0.0, 0.1

    def step():
        nonlocal lam
        ids = torch.cat([forget, retain])
        lp = answer_log_probs(ids)
        x = npo_beta * (lp[:half] - reference)
        forget_loss = (2.0 / npo_beta) * torch.nn.functional.softplus(x).mean()
        retain_loss = -lp[half:].sum() / (half * a.answer_len)
        total = torch.log(forget_loss + 1e-8) + lam * torch.log(retain_loss + 1e-8)
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        with torch.no_grad():
            after = -answer_log_probs(retain).sum() / (half * a.answer_len)
        # λ grows when the step raised the retain loss by more than ε (lethe's projected update).
        change = math.log(retain_loss.item() + 1e-8) - math.log(after.item() + 1e-8)
        lam = max(0.0, lam - beta * (change + eps))

    for _ in range(a.warmup):
        step()
    sync()
    if gpu:
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(a.steps):
        t = time.perf_counter()
        step()
        sync()
        times.append((time.perf_counter() - t) * 1000.0)
    gpu_memory = {}
    if gpu:
        gpu_memory = {
            "max_allocated_mib": torch.cuda.max_memory_allocated(device) / 2**20,
            "max_reserved_mib": torch.cuda.max_memory_reserved(device) / 2**20,
        }
    print(json.dumps({
        **gpu_memory,
        "step_ms_median": statistics.median(times),
        "step_ms": times,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "trainable_parameters": sum(p.numel() for p in params),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }))


if __name__ == "__main__":
    main()
