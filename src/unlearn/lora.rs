//! LoRA adapters: low-rank updates W + (α/r)·B·A on chosen linear layers, the only tensors that
//! train; the base weights stay frozen and bit-identical. Adapters are written and read in
//! PEFT's layout (adapter_config.json, adapter_model.safetensors with
//! `base_model.model.<module>.lora_A.weight` [r, in] and `.lora_B.weight` [out, r]).

use super::trainable::TrainableSet;
use crate::arch::text::TextModel;
use crate::error::{Error, Result};
use crate::nn::Params;
use crate::rng::Rng;
use candle_core::{Tensor, Var};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;

pub const ADAPTER_CONFIG: &str = "adapter_config.json";
pub const ADAPTER_WEIGHTS: &str = "adapter_model.safetensors";
const PEFT_PREFIX: &str = "base_model.model.";

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LoraConfig {
    pub rank: usize,
    pub alpha: f64,
    /// Module name suffixes (q_proj, v_proj, …).
    pub targets: Vec<String>,
    /// Only layers in this range (inclusive) when set.
    pub layers: Option<(usize, usize)>,
    /// Modules whose rank differs from `rank` (a loaded adapter's `rank_pattern`), by full
    /// module name. Their α/r is kept equal to `alpha / rank` (see [`load_adapter`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rank_pattern: BTreeMap<String, usize>,
}

impl LoraConfig {
    pub fn scale(&self) -> f64 {
        self.alpha / self.rank as f64
    }
}

/// The layer index of a module name (`model.layers.7.self_attn.q_proj` → 7).
fn layer_of(module: &str) -> Option<usize> {
    let parts: Vec<&str> = module.split('.').collect();
    parts
        .windows(2)
        .find(|w| matches!(w[0], "layers" | "h" | "layer"))
        .and_then(|w| w[1].parse().ok())
}

/// The modules of `model` the config selects.
pub fn target_modules(model: &TextModel, cfg: &LoraConfig) -> Result<Vec<String>> {
    if cfg.rank == 0 {
        return Err(Error::Usage("the LoRA rank must be positive".into()));
    }
    let all = model.linear_modules();
    for t in &cfg.targets {
        if !all.iter().any(|m| m.ends_with(&format!(".{t}"))) {
            let mut kinds: Vec<&str> = all.iter().filter_map(|m| m.rsplit('.').next()).collect();
            kinds.sort();
            kinds.dedup();
            return Err(Error::Selection(format!(
                "LoRA target {t:?} names no linear layer of this {}; its linear layers are: {}",
                model.model_type,
                kinds.join(", ")
            )));
        }
    }
    let chosen: Vec<String> = all
        .into_iter()
        .filter(|m| cfg.targets.iter().any(|t| m.ends_with(&format!(".{t}"))))
        .filter(|m| match (cfg.layers, layer_of(m)) {
            (Some((lo, hi)), Some(l)) => (lo..=hi).contains(&l),
            _ => true,
        })
        .collect();
    if chosen.is_empty() {
        return Err(Error::Selection(
            "the LoRA layer range selects no layer".into(),
        ));
    }
    Ok(chosen)
}

/// The [in, out] sizes of a linear module, read from its weight.
fn in_out(params: &Params, model: &TextModel, module: &str) -> Result<(usize, usize)> {
    let (a, b) = params.get(&format!("{module}.weight"))?.dims2()?;
    // GPT-2's Conv1D stores [in, out]; every other layer [out, in].
    Ok(match model.arch {
        crate::arch::text::TextArch::Gpt2(_) => (a, b),
        _ => (b, a),
    })
}

/// Adds fresh adapters (A uniform in ±1/√in as PEFT initialises it, B zero, so the model is
/// unchanged at the start) and returns them as the trainable set.
pub fn attach(
    params: &mut Params,
    model: &TextModel,
    cfg: &LoraConfig,
    seed: u64,
) -> Result<TrainableSet> {
    let device = &params.device().clone();
    let mut rng = Rng::derived(seed, "lora-init");
    let mut init = BTreeMap::new();
    for module in target_modules(model, cfg)? {
        let (fan_in, fan_out) = in_out(params, model, &module)?;
        let bound = 1.0 / (fan_in as f64).sqrt();
        let a: Vec<f32> = (0..cfg.rank * fan_in)
            .map(|_| ((rng.next_f64() * 2.0 - 1.0) * bound) as f32)
            .collect();
        init.insert(
            format!("{module}.lora_A.weight"),
            Tensor::from_vec(a, (cfg.rank, fan_in), device)?,
        );
        init.insert(
            format!("{module}.lora_B.weight"),
            Tensor::zeros((fan_out, cfg.rank), candle_core::DType::F32, device)?,
        );
    }
    Ok(install(params, init))
}

fn install(params: &mut Params, tensors: BTreeMap<String, Tensor>) -> TrainableSet {
    let mut set = TrainableSet {
        names: Vec::new(),
        vars: Vec::new(),
    };
    for (name, t) in tensors {
        let var = Var::from_tensor(&t).expect("a plain f32 tensor becomes a Var");
        params.insert(name.clone(), var.as_tensor().clone());
        set.names.push(name);
        set.vars.push(var);
    }
    set
}

/// Reads a PEFT LoRA adapter directory and installs its weights as the trainable set.
pub fn load_adapter(
    dir: &Path,
    params: &mut Params,
    model: &TextModel,
) -> Result<(LoraConfig, TrainableSet)> {
    let device = &params.device().clone();
    let bad = |reason: String| Error::Checkpoint {
        path: dir.to_path_buf(),
        reason,
    };
    let config_path = dir.join(ADAPTER_CONFIG);
    let bytes = std::fs::read(&config_path).map_err(|e| Error::io(&config_path, e))?;
    let c: Value = serde_json::from_slice(&bytes)
        .map_err(|e| bad(format!("{ADAPTER_CONFIG}: invalid JSON: {e}")))?;
    if c.get("peft_type").and_then(Value::as_str) != Some("LORA") {
        return Err(bad(format!("{ADAPTER_CONFIG}: peft_type is not \"LORA\"")));
    }
    let rank = c.get("r").and_then(Value::as_u64).unwrap_or(0) as usize;
    let alpha = c
        .get("lora_alpha")
        .and_then(Value::as_f64)
        .unwrap_or(rank as f64);
    let rank_pattern = pattern(&c, "rank_pattern").map_err(&bad)?;
    let alpha_pattern = pattern(&c, "alpha_pattern").map_err(&bad)?;
    if rank == 0 {
        return Err(bad(format!(
            "{ADAPTER_CONFIG}: r must be a positive integer"
        )));
    }
    if c.get("use_rslora").and_then(Value::as_bool) == Some(true) {
        return Err(bad("rsLoRA adapters are not supported".into()));
    }
    let weights_path = dir.join(ADAPTER_WEIGHTS);
    let loaded = candle_core::safetensors::load(&weights_path, device)
        .map_err(|e| bad(format!("{ADAPTER_WEIGHTS}: {e}")))?;
    let mut tensors = BTreeMap::new();
    let mut targets = Vec::new();
    let mut module_ranks = BTreeMap::new();
    for (name, t) in loaded {
        let inner = name
            .strip_prefix(PEFT_PREFIX)
            .ok_or_else(|| bad(format!("tensor {name} lacks the {PEFT_PREFIX} prefix")))?;
        let module = inner
            .strip_suffix(".lora_A.weight")
            .or_else(|| inner.strip_suffix(".lora_B.weight"))
            .ok_or_else(|| bad(format!("tensor {name} is not a lora_A or lora_B weight")))?;
        let (fan_in, fan_out) = in_out(params, model, module)
            .map_err(|_| bad(format!("{module} is not a linear layer of the base model")))?;
        let r = match matching(&rank_pattern, module) {
            Some(r) if r >= 1.0 && r.fract() == 0.0 => r as usize,
            Some(r) => return Err(bad(format!("rank_pattern gives {module} the rank {r}"))),
            None => rank,
        };
        let a = matching(&alpha_pattern, module).unwrap_or(alpha);
        let expected = if inner.ends_with(".lora_A.weight") {
            vec![r, fan_in]
        } else {
            vec![fan_out, r]
        };
        if t.dims() != expected.as_slice() {
            return Err(Error::ShapeMismatch {
                name,
                expected,
                found: t.dims().to_vec(),
            });
        }
        if let Some(kind) = module.rsplit('.').next() {
            if !targets.iter().any(|k| k == kind) {
                targets.push(kind.to_string());
            }
        }
        let mut t = t.to_dtype(candle_core::DType::F32)?;
        // lethe scales every adapter by α/r: a module whose own α_m/r_m differs carries the
        // ratio in B, which leaves its product (α_m/r_m)·B·A unchanged.
        let ratio = (a / r as f64) / (alpha / rank as f64);
        if inner.ends_with(".lora_B.weight") && ratio != 1.0 {
            t = (t * ratio)?;
        }
        if r != rank {
            module_ranks.insert(module.to_string(), r);
        }
        tensors.insert(inner.to_string(), t);
    }
    for name in tensors.keys() {
        let partner = if let Some(m) = name.strip_suffix(".lora_A.weight") {
            format!("{m}.lora_B.weight")
        } else {
            name.replace(".lora_B.weight", ".lora_A.weight")
        };
        if !tensors.contains_key(&partner) {
            return Err(bad(format!("{name} has no matching {partner}")));
        }
    }
    if tensors.is_empty() {
        return Err(bad(format!("{ADAPTER_WEIGHTS} holds no adapter weights")));
    }
    let cfg = LoraConfig {
        rank,
        alpha,
        targets,
        layers: None,
        rank_pattern: module_ranks,
    };
    Ok((cfg, install(params, tensors)))
}

/// An adapter config's `rank_pattern` or `alpha_pattern`: module name (or name suffix) → value.
/// PEFT reads the keys as regular expressions anchored at a module-name boundary; lethe takes
/// the literal names PEFT itself writes and refuses other expressions.
fn pattern(config: &Value, key: &str) -> std::result::Result<Vec<(String, f64)>, String> {
    let Some(map) = config.get(key).filter(|v| !v.is_null()) else {
        return Ok(Vec::new());
    };
    let map = map
        .as_object()
        .ok_or_else(|| format!("{ADAPTER_CONFIG}: {key} is not an object"))?;
    map.iter()
        .map(|(k, v)| {
            if k.is_empty() || k.contains(|c: char| "*+?()[]{}|^$\\".contains(c)) {
                return Err(format!(
                    "{ADAPTER_CONFIG}: {key} key {k:?} is a regular expression; lethe reads module names"
                ));
            }
            let v = v
                .as_f64()
                .filter(|v| v.is_finite() && *v > 0.0)
                .ok_or_else(|| format!("{ADAPTER_CONFIG}: {key}[{k:?}] is not a positive number"))?;
            Ok((k.clone(), v))
        })
        .collect()
}

/// The value a pattern gives `module`: the first key that is the module's name or a suffix of
/// it at a `.` boundary (`q_proj`, `layers.0.self_attn.q_proj`).
fn matching(pattern: &[(String, f64)], module: &str) -> Option<f64> {
    pattern
        .iter()
        .find(|(k, _)| module == k || module.ends_with(&format!(".{k}")))
        .map(|&(_, v)| v)
}

/// The base model an adapter names, as PEFT records it: a hub repository with its revision in
/// a field of its own, or a local model's absolute path.
#[derive(Clone, Debug, PartialEq)]
pub struct BaseModel {
    pub name_or_path: String,
    pub revision: Option<String>,
}

/// Writes `dir/adapter_config.json` and `dir/adapter_model.safetensors` in PEFT's layout.
pub fn write_adapter(
    dir: &Path,
    model: &TextModel,
    cfg: &LoraConfig,
    set: &TrainableSet,
    base: &BaseModel,
) -> Result<()> {
    let tensors: Vec<(String, Tensor)> = set
        .names
        .iter()
        .zip(&set.vars)
        .map(|(n, v)| (format!("{PEFT_PREFIX}{n}"), v.as_tensor().detach()))
        .collect();
    crate::checkpoint::write_tensors(&dir.join(ADAPTER_WEIGHTS), &tensors)?;
    let layers: Option<Vec<usize>> = cfg.layers.map(|(lo, hi)| (lo..=hi).collect());
    let config = json!({
        "peft_type": "LORA",
        "task_type": if model.is_causal_lm() { "CAUSAL_LM" } else { "FEATURE_EXTRACTION" },
        "base_model_name_or_path": base.name_or_path,
        "revision": base.revision,
        "r": cfg.rank,
        // PEFT's own configs hold an integer α; a float one reads back the same.
        "lora_alpha": if cfg.alpha.fract() == 0.0 && cfg.alpha.abs() < 1e15 {
            json!(cfg.alpha as i64)
        } else {
            json!(cfg.alpha)
        },
        "lora_dropout": 0.0,
        "target_modules": cfg.targets,
        "layers_to_transform": layers,
        "bias": "none",
        "fan_in_fan_out": matches!(model.arch, crate::arch::text::TextArch::Gpt2(_)),
        // Modules of another rank keep lethe's α/r: PEFT scales each by its pattern's α over
        // its pattern's rank.
        "rank_pattern": cfg.rank_pattern,
        "alpha_pattern": cfg
            .rank_pattern
            .iter()
            .map(|(m, &r)| (m.clone(), json!(cfg.alpha * r as f64 / cfg.rank as f64)))
            .collect::<serde_json::Map<_, _>>(),
        "use_rslora": false,
        "init_lora_weights": true,
        "inference_mode": true,
        "modules_to_save": null,
    });
    let path = dir.join(ADAPTER_CONFIG);
    std::fs::write(
        &path,
        serde_json::to_vec_pretty(&config).expect("JSON values serialize"),
    )
    .map_err(|e| Error::io(&path, e))
}

/// The base weights with the adapters folded in: W + (α/r)·B·A (transposed for [in, out]
/// storage), W as `base` reads it (in f32). Returns the changed weights by name.
pub fn merged_weights(
    params: &Params,
    model: &TextModel,
    set: &TrainableSet,
    scale: f64,
    base: &dyn Fn(&str) -> Result<Tensor>,
) -> Result<BTreeMap<String, Tensor>> {
    let mut out = BTreeMap::new();
    for name in &set.names {
        let Some(module) = name.strip_suffix(".lora_A.weight") else {
            continue;
        };
        let a = params.get(name)?;
        let b = params.get(&format!("{module}.lora_B.weight"))?;
        let delta = (b.matmul(a)? * scale)?;
        let delta = match model.arch {
            crate::arch::text::TextArch::Gpt2(_) => delta.t()?,
            _ => delta,
        };
        let w_name = format!("{module}.weight");
        let w = base(&w_name)?;
        out.insert(w_name, (w + delta)?.detach());
    }
    Ok(out)
}

/// `params` without the adapter entries and with `merged` weights in place.
pub fn without_adapters(params: &Params, merged: &BTreeMap<String, Tensor>) -> Params {
    let mut out = Params::new(params.device());
    for (name, t) in params.iter() {
        if name.contains(".lora_A.") || name.contains(".lora_B.") {
            continue;
        }
        out.insert(name.clone(), merged.get(name).unwrap_or(t).detach());
    }
    out
}
