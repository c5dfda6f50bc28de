//! The tensor names of each architecture family, as data: one table per family that loading
//! (the checkpoint's names and shapes), LoRA (the linear layers adapters attach to) and GGUF
//! conversion (llama.cpp's names) all read. A name is written here once.

/// What a tensor group is, whatever a family calls it. An architecture gives each role its
/// shape; the names come from its [`Family`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Token embeddings [vocab, hidden].
    Embedding,
    /// Learned position embeddings [positions, hidden].
    PositionEmbedding,
    /// Segment embeddings [types, hidden] (BERT).
    TokenTypeEmbedding,
    /// The norm after the embeddings (BERT).
    EmbeddingNorm,
    /// The norm before attention (pre-norm decoders).
    AttentionNorm,
    /// Linear layers of attention: separate projections…
    Query,
    Key,
    Value,
    /// …or one fused q/k/v projection (GPT-2).
    QueryKeyValue,
    /// The attention's output projection.
    AttentionOutput,
    /// RMSNorms of each query and key head, before the rotary positions (Qwen3).
    QueryNorm,
    KeyNorm,
    /// The norm of the attention's output, before the residual add (Gemma 3).
    PostAttentionNorm,
    /// The norm after attention (BERT) or before the MLP (pre-norm decoders).
    MlpNorm,
    /// Linear layers of the MLP: a gated MLP's gate and up projections…
    Gate,
    Up,
    /// …or a plain MLP's input projection; and the projection back.
    MlpIn,
    Down,
    /// The norm after the MLP (BERT).
    OutputNorm,
    /// The norm of the MLP's output, before the residual add (Gemma 3).
    PostMlpNorm,
    /// The norm after the last layer.
    FinalNorm,
    /// The output head [vocab, hidden] (absent when tied to the embeddings).
    Head,
}

impl Role {
    /// Linear layers: where LoRA adapters attach.
    pub fn is_linear(self) -> bool {
        matches!(
            self,
            Role::Query
                | Role::Key
                | Role::Value
                | Role::QueryKeyValue
                | Role::AttentionOutput
                | Role::Gate
                | Role::Up
                | Role::MlpIn
                | Role::Down
        )
    }

    /// Norm weights (RMSNorm or LayerNorm scales).
    pub fn is_norm(self) -> bool {
        matches!(
            self,
            Role::EmbeddingNorm
                | Role::AttentionNorm
                | Role::QueryNorm
                | Role::KeyNorm
                | Role::PostAttentionNorm
                | Role::MlpNorm
                | Role::OutputNorm
                | Role::PostMlpNorm
                | Role::FinalNorm
        )
    }
}

/// A module: its Hugging Face name (relative to the model, or to its layer), its GGUF name
/// where the family has a GGUF layout, and its role.
#[derive(Clone, Copy, Debug)]
pub struct Module {
    pub hf: &'static str,
    pub gguf: Option<&'static str>,
    pub role: Role,
}

const fn module(hf: &'static str, gguf: Option<&'static str>, role: Role) -> Module {
    Module { hf, gguf, role }
}

/// A family's names: the modules outside the layers, the prefix of each layer, and the modules
/// of a layer, each list in checkpoint order.
#[derive(Debug)]
pub struct Family {
    /// Modules before the layers.
    pub head_modules: &'static [Module],
    /// The prefix of layer i is `{layers}.{i}` (Hugging Face) or `{gguf_layers}.{i}` (GGUF).
    pub layers: &'static str,
    pub gguf_layers: Option<&'static str>,
    pub layer: &'static [Module],
    /// Modules after the layers.
    pub tail_modules: &'static [Module],
}

// The modules of the Llama-style decoders, each named once and shared by their families.
const EMBED_TOKENS: Module = module("model.embed_tokens", Some("token_embd"), Role::Embedding);
const INPUT_NORM: Module = module("input_layernorm", Some("attn_norm"), Role::AttentionNorm);
const Q_PROJ: Module = module("self_attn.q_proj", Some("attn_q"), Role::Query);
const K_PROJ: Module = module("self_attn.k_proj", Some("attn_k"), Role::Key);
const V_PROJ: Module = module("self_attn.v_proj", Some("attn_v"), Role::Value);
const O_PROJ: Module = module(
    "self_attn.o_proj",
    Some("attn_output"),
    Role::AttentionOutput,
);
const Q_NORM: Module = module("self_attn.q_norm", Some("attn_q_norm"), Role::QueryNorm);
const K_NORM: Module = module("self_attn.k_norm", Some("attn_k_norm"), Role::KeyNorm);
const POST_ATTENTION_NORM: Module =
    module("post_attention_layernorm", Some("ffn_norm"), Role::MlpNorm);
const GATE_PROJ: Module = module("mlp.gate_proj", Some("ffn_gate"), Role::Gate);
const UP_PROJ: Module = module("mlp.up_proj", Some("ffn_up"), Role::Up);
const DOWN_PROJ: Module = module("mlp.down_proj", Some("ffn_down"), Role::Down);
const FINAL_NORM: Module = module("model.norm", Some("output_norm"), Role::FinalNorm);
const LM_HEAD: Module = module("lm_head", Some("output"), Role::Head);

/// Llama, Mistral and Qwen2: pre-norm decoders with a gated MLP.
pub const LLAMA: Family = Family {
    head_modules: &[EMBED_TOKENS],
    layers: "model.layers",
    gguf_layers: Some("blk"),
    layer: &[
        INPUT_NORM,
        Q_PROJ,
        K_PROJ,
        V_PROJ,
        O_PROJ,
        POST_ATTENTION_NORM,
        GATE_PROJ,
        UP_PROJ,
        DOWN_PROJ,
    ],
    tail_modules: &[FINAL_NORM, LM_HEAD],
};

/// Qwen3: Llama's layout plus an RMSNorm of each query and key head before the rotary
/// positions.
pub const QWEN3: Family = Family {
    head_modules: &[EMBED_TOKENS],
    layers: "model.layers",
    gguf_layers: Some("blk"),
    layer: &[
        INPUT_NORM,
        Q_PROJ,
        K_PROJ,
        V_PROJ,
        O_PROJ,
        Q_NORM,
        K_NORM,
        POST_ATTENTION_NORM,
        GATE_PROJ,
        UP_PROJ,
        DOWN_PROJ,
    ],
    tail_modules: &[FINAL_NORM, LM_HEAD],
};

// Gemma 3 normalises the attention's and the MLP's outputs too; llama.cpp calls the norm before
// the MLP `ffn_norm`, as for Llama.
const GEMMA_POST_ATTENTION_NORM: Module = module(
    "post_attention_layernorm",
    Some("post_attention_norm"),
    Role::PostAttentionNorm,
);
const GEMMA_PRE_MLP_NORM: Module =
    module("pre_feedforward_layernorm", Some("ffn_norm"), Role::MlpNorm);
const GEMMA_POST_MLP_NORM: Module = module(
    "post_feedforward_layernorm",
    Some("post_ffw_norm"),
    Role::PostMlpNorm,
);

/// Gemma 3's text decoder: Qwen3's attention with four norms per block.
pub const GEMMA3: Family = Family {
    head_modules: &[EMBED_TOKENS],
    layers: "model.layers",
    gguf_layers: Some("blk"),
    layer: &[
        INPUT_NORM,
        Q_PROJ,
        K_PROJ,
        V_PROJ,
        O_PROJ,
        Q_NORM,
        K_NORM,
        GEMMA_POST_ATTENTION_NORM,
        GEMMA_PRE_MLP_NORM,
        GEMMA_POST_MLP_NORM,
        GATE_PROJ,
        UP_PROJ,
        DOWN_PROJ,
    ],
    tail_modules: &[FINAL_NORM, LM_HEAD],
};

/// GPT-2 (names relative to its prefix, `transformer.` in most checkpoints).
pub const GPT2: Family = Family {
    head_modules: &[
        module("wte", None, Role::Embedding),
        module("wpe", None, Role::PositionEmbedding),
    ],
    layers: "h",
    gguf_layers: None,
    layer: &[
        module("ln_1", None, Role::AttentionNorm),
        module("attn.c_attn", None, Role::QueryKeyValue),
        module("attn.c_proj", None, Role::AttentionOutput),
        module("ln_2", None, Role::MlpNorm),
        module("mlp.c_fc", None, Role::MlpIn),
        module("mlp.c_proj", None, Role::Down),
    ],
    tail_modules: &[module("ln_f", None, Role::FinalNorm)],
};

/// BERT encoders (names relative to their prefix, `bert.` in some checkpoints).
pub const BERT: Family = Family {
    head_modules: &[
        module("embeddings.word_embeddings", None, Role::Embedding),
        module(
            "embeddings.position_embeddings",
            None,
            Role::PositionEmbedding,
        ),
        module(
            "embeddings.token_type_embeddings",
            None,
            Role::TokenTypeEmbedding,
        ),
        module("embeddings.LayerNorm", None, Role::EmbeddingNorm),
    ],
    layers: "encoder.layer",
    gguf_layers: None,
    layer: &[
        module("attention.self.query", None, Role::Query),
        module("attention.self.key", None, Role::Key),
        module("attention.self.value", None, Role::Value),
        module("attention.output.dense", None, Role::AttentionOutput),
        module("intermediate.dense", None, Role::MlpIn),
        module("output.dense", None, Role::Down),
        module("attention.output.LayerNorm", None, Role::MlpNorm),
        module("output.LayerNorm", None, Role::OutputNorm),
    ],
    tail_modules: &[],
};

impl Family {
    /// The module of a role outside the layers.
    pub fn global(&self, role: Role) -> &'static str {
        self.head_modules
            .iter()
            .chain(self.tail_modules)
            .find(|m| m.role == role)
            .map(|m| m.hf)
            .unwrap_or_else(|| panic!("the family has no {role:?} module"))
    }

    /// Whether the family's layers have a module of `role`.
    pub fn has(&self, role: Role) -> bool {
        self.layer.iter().any(|m| m.role == role)
    }

    /// The name of layer `i`'s module of `role`, e.g. `model.layers.3.self_attn.q_proj`.
    pub fn layer_module(&self, i: usize, role: Role) -> String {
        let m = self
            .layer
            .iter()
            .find(|m| m.role == role)
            .unwrap_or_else(|| panic!("the family's layers have no {role:?} module"));
        format!("{}.{i}.{}", self.layers, m.hf)
    }

    /// Every module of a checkpoint with `layers` layers and its role, in checkpoint order:
    /// the modules before the layers, each layer's, then those after.
    pub fn modules(&self, layers: usize) -> Vec<(String, Role)> {
        let global = |m: &Module| (m.hf.to_string(), m.role);
        let layered = (0..layers).flat_map(|i| {
            self.layer
                .iter()
                .map(move |m| (format!("{}.{i}.{}", self.layers, m.hf), m.role))
        });
        self.head_modules
            .iter()
            .map(global)
            .chain(layered)
            .chain(self.tail_modules.iter().map(global))
            .collect()
    }

    /// Every linear module of `layers` layers, layer by layer, in checkpoint order.
    pub fn linear_modules(&self, layers: usize) -> Vec<String> {
        self.modules(layers)
            .into_iter()
            .filter(|(_, role)| role.is_linear())
            .map(|(name, _)| name)
            .collect()
    }

    /// The Hugging Face name and the role of a GGUF tensor (`blk.3.attn_q.weight` →
    /// `model.layers.3.self_attn.q_proj.weight`, a query), for families with a GGUF layout.
    pub fn from_gguf(&self, gguf_name: &str) -> Option<(String, Role)> {
        let (module, kind) = gguf_name.rsplit_once('.')?;
        let global = self
            .head_modules
            .iter()
            .chain(self.tail_modules)
            .find(|m| m.gguf == Some(module));
        if let Some(m) = global {
            return Some((format!("{}.{kind}", m.hf), m.role));
        }
        let rest = module.strip_prefix(self.gguf_layers?)?.strip_prefix('.')?;
        let (layer, part) = rest.split_once('.')?;
        let layer: usize = layer.parse().ok()?;
        let m = self.layer.iter().find(|m| m.gguf == Some(part))?;
        Some((format!("{}.{layer}.{}.{kind}", self.layers, m.hf), m.role))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gguf_names_map_to_hugging_face_names() {
        let cases = [
            ("token_embd.weight", "model.embed_tokens.weight"),
            ("output_norm.weight", "model.norm.weight"),
            ("output.weight", "lm_head.weight"),
            (
                "blk.0.attn_q.weight",
                "model.layers.0.self_attn.q_proj.weight",
            ),
            (
                "blk.12.attn_k.bias",
                "model.layers.12.self_attn.k_proj.bias",
            ),
            (
                "blk.3.attn_output.weight",
                "model.layers.3.self_attn.o_proj.weight",
            ),
            (
                "blk.3.ffn_norm.weight",
                "model.layers.3.post_attention_layernorm.weight",
            ),
            (
                "blk.3.ffn_down.weight",
                "model.layers.3.mlp.down_proj.weight",
            ),
        ];
        for (gguf, hf) in cases {
            let (name, _) = LLAMA.from_gguf(gguf).unwrap();
            assert_eq!(name, hf, "{gguf}");
        }
        assert_eq!(
            LLAMA.from_gguf("blk.2.attn_q.weight").unwrap().1,
            Role::Query
        );
        for unknown in [
            "blk.x.attn_q.weight",
            "blk.1.rope_freqs.weight",
            "blk.weight",
            "x",
        ] {
            assert!(LLAMA.from_gguf(unknown).is_none(), "{unknown}");
        }
        assert!(GPT2.from_gguf("token_embd.weight").is_none());
        assert_eq!(
            QWEN3.from_gguf("blk.1.attn_k_norm.weight").unwrap(),
            (
                "model.layers.1.self_attn.k_norm.weight".to_string(),
                Role::KeyNorm
            )
        );
        assert!(LLAMA.from_gguf("blk.1.attn_k_norm.weight").is_none());
    }

    #[test]
    fn linear_modules_are_the_layers_linear_layers_in_order() {
        assert_eq!(
            LLAMA.linear_modules(1),
            [
                "model.layers.0.self_attn.q_proj",
                "model.layers.0.self_attn.k_proj",
                "model.layers.0.self_attn.v_proj",
                "model.layers.0.self_attn.o_proj",
                "model.layers.0.mlp.gate_proj",
                "model.layers.0.mlp.up_proj",
                "model.layers.0.mlp.down_proj",
            ]
        );
        assert_eq!(GPT2.linear_modules(2).len(), 8);
        assert_eq!(BERT.linear_modules(1)[5], "encoder.layer.0.output.dense");
        assert_eq!(
            LLAMA.layer_module(7, Role::MlpNorm),
            "model.layers.7.post_attention_layernorm"
        );
    }
}
