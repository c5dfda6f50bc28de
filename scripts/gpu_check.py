#!/usr/bin/env python3
"""The GPU check (docs/gpu.md, "The GPU check"), run by scripts/gpu-check.sh.

On a machine with an NVIDIA GPU, CUDA 13 (driver 580), PyTorch, transformers and peft, with the
CUDA build of lethe (scripts/build-cuda.sh), in one run:

  a. parity: every tiny transformer fixture's logits on cuda against ONNX Runtime on the CPU
     (f32, within 1e-4 as `lethe verify` checks); a text model's answer NLLs on cuda, f32 and
     bf16, against the CPU; LoRA gradients on cuda against the CPU (one plain SGD step from
     B = 0 with learning rate 1 leaves B = −∂L/∂B);
  b. the demo's class-wise unlearning on cuda against the CPU (every metric within 0.5 points);
  c. a LoRA igs step (8 × 512 tokens, bf16 frozen weights, r = 16 on every linear layer) on a
     SmolLM2-135M-shaped and a 1 B Llama-shaped model with random weights made here, timed in
     lethe and in PyTorch + peft on the same GPU, alternating; step time and peak GPU memory;
  d. the largest Llama config (up to 8 B) whose LoRA igs step fits the GPU;
  e. everything into OUT/gpu-check.json and OUT/gpu-check.md.

Where no GPU is present the GPU parts are skipped, each saying so, and what can run on the CPU
does (a build without CUDA must refuse `--device cuda` cleanly); `--quick` shrinks the models so
that the whole script can be tried on a CPU. Peak GPU memory is the device's used memory above
its level before the run, sampled by nvidia-smi every 20 ms, the same way for both frameworks.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = ["llama", "llama-tied", "mistral", "qwen2", "gpt2", "bert"]
ALL_LINEAR = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"

# Llama-architecture configs: (name, layers, hidden, heads, kv heads, intermediate, vocab, tied)
SMOLLM2_135M = ("SmolLM2-135M shape", 30, 576, 9, 3, 1536, 49152, True)
LLAMA_1B = ("Llama 1B (16 × 2048)", 16, 2048, 32, 8, 8192, 128256, False)
LLAMA_3B = ("Llama 3B (28 × 3072)", 28, 3072, 24, 8, 8192, 128256, False)
LLAMA_8B = ("Llama 8B (32 × 4096)", 32, 4096, 32, 8, 14336, 128256, False)
QUICK = ("tiny Llama (quick)", 2, 64, 4, 2, 128, 512, False)

STEP = dict(batch=8, seq_len=512, answer_len=64, rank=16, alpha=32)
QUICK_STEP = dict(batch=4, seq_len=32, answer_len=8, rank=4, alpha=8)


def log(msg):
    print(f"[gpu-check {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Deadline:
    """The run's time budget: parts that would start after it are skipped, and say so."""

    def __init__(self, seconds):
        self.end = time.monotonic() + seconds

    def left(self):
        return self.end - time.monotonic()


def cuda_library_path():
    """LD_LIBRARY_PATH with the lib directories of the NVIDIA wheels PyTorch uses (cuBLAS,
    cuRAND, ...): the CUDA build of lethe loads them by name when a device is opened."""
    dirs = []
    try:
        import nvidia  # noqa: F401  (the namespace package of the NVIDIA wheels)
        for base in nvidia.__path__:
            for root, _, files in os.walk(base):
                if any(".so" in f for f in files) and os.path.basename(root) == "lib":
                    dirs.append(root)
    except ImportError:
        pass
    old = os.environ.get("LD_LIBRARY_PATH", "")
    return ":".join(sorted(set(dirs)) + ([old] if old else []))


def onnxruntime_library():
    """The ONNX Runtime shared library lethe's check loads: the project's, else the one inside
    the Python onnxruntime package."""
    own = os.path.join(ROOT, ".lethe/onnxruntime/libonnxruntime.so")
    if os.path.exists(own):
        return own
    try:
        import onnxruntime
        capi = os.path.join(os.path.dirname(onnxruntime.__file__), "capi")
        for f in sorted(os.listdir(capi)):
            if f.startswith("libonnxruntime.so"):
                return os.path.join(capi, f)
    except ImportError:
        pass
    return None


class GpuMemory:
    """Peak used memory of GPU 0 above its level when started, sampled by nvidia-smi."""

    def __init__(self):
        self.proc = None
        self.peak = 0
        self.base = None

    @staticmethod
    def used_mib():
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits",
                              "-i", "0"], capture_output=True, text=True, check=True).stdout
        return int(out.split()[0])

    def __enter__(self):
        self.base = self.used_mib()
        self.proc = subprocess.Popen(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits",
                                      "-i", "0", "-lms", "20"], stdout=subprocess.PIPE, text=True)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        return self

    def _read(self):
        for line in self.proc.stdout:
            try:
                self.peak = max(self.peak, int(line.split()[0]))
            except (ValueError, IndexError):
                pass

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.wait()
        self.thread.join(timeout=2)

    def peak_above_base(self):
        return max(0, self.peak - self.base)


class Check:
    def __init__(self, args):
        self.args = args
        self.lethe = os.path.abspath(args.lethe)
        self.out = os.path.abspath(args.out)
        self.work = tempfile.mkdtemp(prefix="gpu-check-")
        self.env = dict(os.environ, LD_LIBRARY_PATH=cuda_library_path())
        self.deadline = Deadline(args.budget_s)
        self.ort = onnxruntime_library()
        self.results = {"parts": {}}
        self.gpu = None
        try:
            import torch  # noqa: F401
            import peft  # noqa: F401
            self.has_torch = True
        except ImportError:
            self.has_torch = False

    # -- running things ------------------------------------------------------------------------

    def run(self, cmd, timeout=None, check=True):
        timeout = min(timeout or 1e9, max(5.0, self.deadline.left()))
        log("+ " + " ".join(cmd))
        done = subprocess.run(cmd, capture_output=True, text=True, env=self.env, timeout=timeout, cwd=ROOT)
        if check and done.returncode not in (0, 3):
            raise RuntimeError(f"{' '.join(cmd[:3])} … exited {done.returncode}: "
                               f"{(done.stdout + done.stderr).strip()[-800:]}")
        return done

    def lethe_json(self, args, timeout=None):
        done = self.run([self.lethe] + args + ["--json", "-q"], timeout)
        return json.loads(done.stdout)

    def part(self, key, title, fn, needs_gpu=True):
        if needs_gpu and not self.gpu:
            self.results["parts"][key] = {"title": title, "status": "skipped", "why": "no usable GPU here"}
            log(f"{key}: skipped (no usable GPU)")
            return
        if self.deadline.left() < 20:
            self.results["parts"][key] = {"title": title, "status": "skipped", "why": "out of time"}
            log(f"{key}: skipped (out of time)")
            return
        start = time.monotonic()
        try:
            figures = fn()
            status = "passed" if figures.pop("passed", True) else "failed"
            if figures.get("why_skipped"):
                status = "skipped"
            self.results["parts"][key] = {"title": title, "status": status, **figures}
        except Exception as e:  # one part failing must not lose the others' figures
            self.results["parts"][key] = {"title": title, "status": "error", "error": str(e)[-1500:]}
        self.results["parts"][key]["seconds"] = round(time.monotonic() - start, 1)
        log(f"{key}: {self.results['parts'][key]['status']}")
        self.save()

    # -- the machine ---------------------------------------------------------------------------

    def probe(self):
        r = self.results
        r["lethe"] = self.run([self.lethe, "--version"]).stdout.strip()
        r["onnxruntime_library"] = self.ort
        smi = shutil.which("nvidia-smi") and subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True, text=True)
        r["nvidia_smi"] = smi.stdout.strip() if smi and smi.returncode == 0 else None
        # What `--device cuda` says here: on a GPU machine it must open the device; elsewhere it
        # must refuse with exit 1 and a message, never a panic.
        probe = self.run([self.lethe, "eval", "--forget-class", "Dress", "--device", "cuda", "--json", "-q"],
                         check=False)
        said = (probe.stdout + probe.stderr).strip()
        r["device_cuda"] = {"exit_status": probe.returncode, "said": said[-600:]}
        clean = probe.returncode == 0 or (probe.returncode == 1 and "panicked" not in said)
        r["device_cuda"]["clean"] = clean
        self.gpu = r["nvidia_smi"] if (r["nvidia_smi"] and probe.returncode == 0) else None
        r["gpu"] = self.gpu
        # Without a GPU, --quick runs every part on the CPU instead: the script's own paths are
        # exercised, the figures compare the CPU with itself.
        self.dut = "cuda" if self.gpu else "cpu"
        r["device_under_test"] = self.dut
        log(f"GPU: {self.gpu or 'none'}; --device cuda exit {probe.returncode}")

    # -- a: parity -----------------------------------------------------------------------------

    def parity(self):
        if not self.ort:
            raise RuntimeError("no ONNX Runtime library (scripts/fetch-onnxruntime.sh, or pip onnxruntime)")
        rows, ok = [], True
        for name in FIXTURES:
            d = os.path.join(self.work, "fixture-" + name)
            shutil.copytree(os.path.join(ROOT, "fixtures/text", name), d)
            self.run([self.lethe, "export", d, "--out", os.path.join(d, "model.onnx"), "-q"])
            row = {"fixture": name}  # max |candle − ONNX Runtime (CPU)| per device
            for device in ("cpu", self.dut):
                v = self.lethe_json(["verify", d, "--device", device, "--onnxruntime", self.ort])
                row[device] = v["max_abs_diff"]
                ok &= v["passed"]
            rows.append(row)
        tiny = os.path.join(ROOT, "fixtures/text/tiny-chat")
        sets = ["--forget-set", f"{tiny}/forget.jsonl", "--retain-set", f"{tiny}/retain.jsonl"]
        nll = {}
        under_test = (("cpu", "f32"), (self.dut, "f32"), (self.dut, "bf16"))
        for device, dtype in under_test:
            m = self.lethe_json(["eval-text", tiny] + sets + ["--device", device, "--dtype", dtype])
            nll[f"{device}-{dtype}"] = {s: m[s]["nll"] for s in ("forget", "retain")}
        base = nll["cpu-f32"]
        nll_f32 = max(abs(nll[f"{self.dut}-f32"][s] - base[s]) for s in base)
        nll_bf16 = max(abs(nll[f"{self.dut}-bf16"][s] - base[s]) / base[s] for s in base)
        grads = {}
        for i, (device, dtype) in enumerate(under_test):
            out = os.path.join(self.work, f"grad-{i}-{device}-{dtype}")
            self.run([self.lethe, "unlearn-text", tiny] + sets + [
                "--lora-rank", "4", "--lora-targets", ALL_LINEAR, "--steps", "1",
                "--optimizer", "sgd", "--momentum", "0", "--weight-decay", "0", "--lr", "1",
                "--no-verify", "--device", device, "--dtype", dtype, "--out", out, "-q"])
            grads[f"{device}-{dtype}"] = read_safetensors(os.path.join(out, "adapter/adapter_model.safetensors"))
        cpu = grads["cpu-f32"]
        scale = max(max(abs(x) for x in v) for k, v in cpu.items() if "lora_B" in k)

        def grad_diff(other):
            return max(max(abs(a - b) for a, b in zip(cpu[k], other[k])) for k in cpu if "lora_B" in k) / scale
        g32, g16 = grad_diff(grads[f"{self.dut}-f32"]), grad_diff(grads[f"{self.dut}-bf16"])
        # bf16's tolerances are 5× the error bf16 gives on the CPU in the same runs (relative
        # NLL 6.6e-5, relative gradient 3.9e-3): cuBLAS accumulates bf16 products in f32 as the
        # CPU does, so a correct CUDA path lands near the CPU's figures.
        ok &= nll_f32 <= 1e-4 and g32 <= 1e-4 and nll_bf16 <= 5e-4 and g16 <= 0.02
        return {
            "passed": ok,
            "logits_vs_onnxruntime_cpu": rows,
            "answer_nll": nll,
            "answer_nll_cuda_f32_max_abs_diff": nll_f32,
            "answer_nll_cuda_bf16_max_rel_diff": nll_bf16,
            "lora_grad_cuda_f32_max_rel_diff": g32,
            "lora_grad_cuda_bf16_max_rel_diff": g16,
            "lora_grad_scale": scale,
            "tolerances": {"logits_f32_abs": 1e-4, "nll_f32_abs": 1e-4, "grad_f32_rel": 1e-4,
                           "nll_bf16_rel": 5e-4, "grad_bf16_rel": 0.02},
        }

    # -- b: the demo ---------------------------------------------------------------------------

    def demo(self):
        runs = {}
        for i, device in enumerate(("cpu", self.dut)):
            out = os.path.join(self.work, f"demo-{i}-{device}")
            r = self.lethe_json(["unlearn", "--forget-class", "Dress", "--device", device, "--no-verify",
                                 "--out", out])
            runs[device] = r["metrics"]["after"]
        diff = {k: abs(runs[self.dut][k] - runs["cpu"][k]) for k in runs["cpu"]}
        return {"passed": max(diff.values()) <= 0.5, "cpu": runs["cpu"], self.dut: runs[self.dut],
                "abs_diff_points": diff}

    # -- c, d: speed and size ------------------------------------------------------------------

    def make_model(self, cfg):
        name, layers, hidden, heads, kv, inter, vocab, tied = cfg
        d = os.path.join(self.work, "model-" + "".join(c for c in name if c.isalnum()))
        if not os.path.exists(d):
            log(f"making {name} with random weights")
            make_llama(d, layers, hidden, heads, kv, inter, vocab, tied)
        return d

    def bench_args(self, step):
        return ["--batch", str(step["batch"]), "--seq-len", str(step["seq_len"]),
                "--answer-len", str(step["answer_len"]), "--lora-rank", str(step["rank"]),
                "--lora-alpha", str(step["alpha"]), "--lora-targets", ALL_LINEAR]

    def lethe_step(self, model, step, steps, warmup, device="cuda"):
        cmd = [self.lethe, "bench-text", model] + self.bench_args(step) + [
            "--steps", str(steps), "--warmup", str(warmup), "--device", device, "--dtype", "bf16", "--json", "-q"]
        with GpuMemory() if self.gpu else _NoMemory() as mem:
            r = json.loads(self.run(cmd).stdout)
        r["gpu_peak_mib"] = mem.peak_above_base()
        return r

    def torch_step(self, model, step, steps, warmup, device="cuda"):
        cmd = [sys.executable, os.path.join(ROOT, "scripts/bench_pytorch_step.py"), model] + self.bench_args(step) + [
            "--steps", str(steps), "--warmup", str(warmup), "--device", device, "--dtype", "bf16"]
        with GpuMemory() if self.gpu else _NoMemory() as mem:
            r = json.loads(self.run(cmd).stdout)
        r["gpu_peak_mib"] = mem.peak_above_base()
        return r

    def speed(self):
        quick = self.args.quick
        step = QUICK_STEP if quick else STEP
        device = self.dut
        models = [QUICK] if quick else [SMOLLM2_135M, LLAMA_1B]
        rounds, steps, warmup = (1, 2, 1) if quick else (3, 5, 2)
        table, ok = [], True
        for cfg in models:
            d = self.make_model(cfg)
            pairs = []
            if not self.has_torch:
                r = self.lethe_step(d, step, steps, warmup, device)
                table.append({"model": cfg[0], "lethe_step_ms": [r["step_ms_median"]]})
                continue
            for _ in range(rounds):  # alternating, so that each ratio compares neighbours in time
                lethe = self.lethe_step(d, step, steps, warmup, device)
                torch_ = self.torch_step(d, step, steps, warmup, device)
                pairs.append((lethe, torch_))
            time_ratio = statistics.median(l["step_ms_median"] / t["step_ms_median"] for l, t in pairs)
            mem_ratio = (statistics.median(l["gpu_peak_mib"] / t["gpu_peak_mib"] for l, t in pairs)
                         if all(t["gpu_peak_mib"] for _, t in pairs) else None)
            table.append({
                "model": cfg[0],
                "lethe_step_ms": [l["step_ms_median"] for l, _ in pairs],
                "torch_step_ms": [t["step_ms_median"] for _, t in pairs],
                "time_ratio": time_ratio,
                "lethe_gpu_peak_mib": [l["gpu_peak_mib"] for l, _ in pairs],
                "torch_gpu_peak_mib": [t["gpu_peak_mib"] for _, t in pairs],
                "torch_max_allocated_mib": [t.get("max_allocated_mib") for _, t in pairs],
                "memory_ratio": mem_ratio,
                "trainable_parameters": {"lethe": pairs[0][0]["trainable_parameters"],
                                         "torch": pairs[0][1]["trainable_parameters"]},
                "torch": pairs[0][1]["torch"],
            })
            if cfg is LLAMA_1B:
                ok &= time_ratio <= 1.5 and (mem_ratio is None or mem_ratio <= 1.0)
        result = {"passed": ok, "device": device, "step": step, "rounds": rounds, "rows": table}
        if not self.has_torch:
            result["why_skipped"] = "PyTorch and peft are not installed here: lethe's side only"
        return result

    def largest(self):
        step = QUICK_STEP if self.args.quick else STEP
        configs = [QUICK] if self.args.quick else [LLAMA_8B, LLAMA_3B, LLAMA_1B]
        tried = []
        for cfg in configs:  # largest first: the first that fits is the answer
            d = self.make_model(cfg)
            try:
                r = self.lethe_step(d, step, 2, 1, self.dut)
                tried.append({"model": cfg[0], "fits": True, "step_ms": r["step_ms_median"],
                              "gpu_peak_mib": r["gpu_peak_mib"]})
                shutil.rmtree(d, ignore_errors=True)
                return {"passed": cfg is LLAMA_8B or self.args.quick, "largest": cfg[0], "tried": tried}
            except (RuntimeError, subprocess.TimeoutExpired) as e:
                tried.append({"model": cfg[0], "fits": False, "error": str(e)[-600:]})
            shutil.rmtree(d, ignore_errors=True)
        return {"passed": False, "largest": None, "tried": tried}

    # -- output --------------------------------------------------------------------------------

    def save(self):
        os.makedirs(self.out, exist_ok=True)
        with open(os.path.join(self.out, "gpu-check.json"), "w") as f:
            json.dump(self.results, f, indent=2)
        with open(os.path.join(self.out, "gpu-check.md"), "w") as f:
            f.write(markdown(self.results))


class _NoMemory:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def peak_above_base(self):
        return 0


def read_safetensors(path):
    """Every tensor of a safetensors file as a flat list of floats (f32 and bf16)."""
    import struct
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        raw = data[a:b]
        if info["dtype"] == "F32":
            out[name] = list(struct.unpack(f"<{len(raw) // 4}f", raw))
        elif info["dtype"] == "BF16":
            halves = struct.unpack(f"<{len(raw) // 2}H", raw)
            out[name] = [struct.unpack("<f", struct.pack("<I", h << 16))[0] for h in halves]
    return out


def make_llama(d, layers, hidden, heads, kv, inter, vocab, tied):
    """A Llama checkpoint with random bf16 weights (std 0.02, norms 1), config.json as
    transformers writes it, and a tokenizer (ids are synthetic; any tokenizer file serves)."""
    os.makedirs(d, exist_ok=True)
    head_dim = hidden // heads
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": hidden,
        "intermediate_size": inter, "num_hidden_layers": layers, "num_attention_heads": heads,
        "num_key_value_heads": kv, "head_dim": head_dim, "vocab_size": vocab,
        "max_position_embeddings": 4096, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
        "hidden_act": "silu", "tie_word_embeddings": tied, "torch_dtype": "bfloat16",
        "attention_bias": False, "mlp_bias": False, "bos_token_id": 1, "eos_token_id": 2,
    }
    shapes = {"model.embed_tokens.weight": (vocab, hidden), "model.norm.weight": (hidden,)}
    if not tied:
        shapes["lm_head.weight"] = (vocab, hidden)
    for i in range(layers):
        p = f"model.layers.{i}."
        shapes.update({
            p + "input_layernorm.weight": (hidden,), p + "post_attention_layernorm.weight": (hidden,),
            p + "self_attn.q_proj.weight": (heads * head_dim, hidden),
            p + "self_attn.k_proj.weight": (kv * head_dim, hidden),
            p + "self_attn.v_proj.weight": (kv * head_dim, hidden),
            p + "self_attn.o_proj.weight": (hidden, heads * head_dim),
            p + "mlp.gate_proj.weight": (inter, hidden), p + "mlp.up_proj.weight": (inter, hidden),
            p + "mlp.down_proj.weight": (hidden, inter),
        })
    write_random_bf16(os.path.join(d, "model.safetensors"), shapes)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    shutil.copy(os.path.join(ROOT, "fixtures/text/tiny-chat/tokenizer.json"), d)


def write_random_bf16(path, shapes):
    """A safetensors file of bf16 tensors: N(0, 0.02) matrices, vectors of ones. Made on the GPU
    with PyTorch where there is one (an 8 B model in seconds), else with numpy."""
    import struct
    header, offset = {}, 0
    for name, shape in shapes.items():
        size = 2 * prod(shape)
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    try:
        import torch
        gen = torch.Generator(device="cuda").manual_seed(0) if torch.cuda.is_available() else None
    except ImportError:
        torch, gen = None, None
    rng = None
    with open(path + ".partial", "wb") as f:
        f.write(struct.pack("<Q", len(head)) + head)
        for name, shape in shapes.items():
            if gen is not None:
                t = (torch.ones(shape, device="cuda", dtype=torch.bfloat16) if len(shape) == 1 else
                     (torch.randn(shape, device="cuda", generator=gen) * 0.02).to(torch.bfloat16))
                f.write(t.view(torch.int16).cpu().numpy().tobytes())
            else:
                import numpy as np
                rng = rng or np.random.default_rng(0)
                x = (np.ones(shape, np.float32) if len(shape) == 1 else
                     (rng.standard_normal(shape, dtype=np.float32) * 0.02))
                f.write((x.view(np.uint32) >> 16).astype(np.uint16).tobytes())
    os.replace(path + ".partial", path)


def prod(shape):
    n = 1
    for s in shape:
        n *= s
    return n


def markdown(r):
    lines = ["# GPU check", "", f"- GPU: {r.get('gpu') or 'none'}", f"- lethe: {r.get('lethe')}",
             f"- `--device cuda` here: exit {r.get('device_cuda', {}).get('exit_status')}"
             f" ({'clean' if r.get('device_cuda', {}).get('clean') else 'NOT clean'})", ""]
    lines += ["| part | status | figures |", "|---|---|---|"]
    for key, p in r["parts"].items():
        figures = {k: v for k, v in p.items() if k not in ("title", "status", "rows", "tried",
                                                            "logits_vs_onnxruntime_cpu", "answer_nll")}
        lines.append(f"| {key}. {p['title']} | {p['status']} | `{json.dumps(figures)[:300]}` |")
    speed = r["parts"].get("c", {})
    if speed.get("rows") and all("time_ratio" in row for row in speed["rows"]):
        lines += ["", "| model | lethe ms | PyTorch + peft ms | time ratio | lethe MiB | PyTorch MiB | memory ratio |",
                  "|---|---|---|---|---|---|---|"]
        for row in speed["rows"]:
            mr = row["memory_ratio"]
            lines.append(
                f"| {row['model']} | {statistics.median(row['lethe_step_ms']):.0f} | "
                f"{statistics.median(row['torch_step_ms']):.0f} | {row['time_ratio']:.2f} | "
                f"{statistics.median(row['lethe_gpu_peak_mib']):.0f} | "
                f"{statistics.median(row['torch_gpu_peak_mib']):.0f} | "
                f"{'—' if mr is None else f'{mr:.2f}'} |")
    big = r["parts"].get("d", {})
    if big.get("tried"):
        lines += ["", "| config | fits | step ms | GPU MiB |", "|---|---|---|---|"]
        for t in big["tried"]:
            lines.append(f"| {t['model']} | {t['fits']} | {t.get('step_ms', '—')} | {t.get('gpu_peak_mib', '—')} |")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lethe", default=os.path.join(ROOT, "target/cuda/release/lethe"))
    ap.add_argument("--out", default=os.path.join(ROOT, "target/gpu-check"))
    ap.add_argument("--budget-s", type=float, default=470, help="stop starting parts after this")
    ap.add_argument("--quick", action="store_true", help="tiny models: try the script on a CPU")
    args = ap.parse_args()
    c = Check(args)
    try:
        c.probe()
        c.part("a", "parity with the CPU", c.parity, needs_gpu=not args.quick)
        c.part("b", "class-wise unlearning on cuda vs cpu", c.demo, needs_gpu=not args.quick)
        c.part("c", "LoRA igs step vs PyTorch + peft", c.speed, needs_gpu=not args.quick)
        c.part("d", "largest Llama whose step fits", c.largest, needs_gpu=not args.quick)
    finally:
        c.save()
        shutil.rmtree(c.work, ignore_errors=True)
    print(markdown(c.results))
    clean = c.results.get("device_cuda", {}).get("clean", False)
    failed = [k for k, p in c.results["parts"].items() if p["status"] in ("failed", "error")]
    sys.exit(0 if clean and not failed else 1)


if __name__ == "__main__":
    main()
