//! `lethe train-text`: fine-tune a causal language model on JSONL question/answer data (e.g. to
//! teach it facts, then to make it forget some of them).

use super::args::{ChatTemplateArgs, TrainableArgs};
use super::Output;
use clap::Args;
use lethe::defaults::{self, text, train_text as d};
use lethe::pipeline::train::{train_text, TextTrainJob};
use lethe::text::PromptFormat;
use lethe::unlearn::{ForgetObjective, MethodKind, UnlearnConfig};
use lethe::Error;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct TrainTextArgs {
    /// A causal LM checkpoint directory or hub id.
    pub model: PathBuf,
    /// JSONL to learn: {"question", "answer"} or {"text"} per line.
    #[arg(long)]
    pub data: PathBuf,
    #[command(flatten)]
    pub trainable: TrainableArgs,
    #[arg(long, default_value_t = d::LR)]
    pub lr: f64,
    #[arg(long, default_value_t = d::EPOCHS)]
    pub epochs: usize,
    #[arg(long, default_value_t = d::BATCH_SIZE)]
    pub batch_size: usize,
    #[arg(long, default_value_t = defaults::SEED)]
    pub seed: u64,
    #[arg(long, value_enum)]
    pub prompt_format: Option<PromptFormat>,
    #[command(flatten)]
    pub chat: ChatTemplateArgs,
    /// Output directory: merged model.safetensors, adapter/ (PEFT), model.onnx, report.json.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long)]
    pub overwrite: bool,
}

pub fn run(a: &TrainTextArgs, out: &Output) -> Result<ExitCode, Error> {
    // Fine-tuning is the retain term alone (the method `ft`) with AdamW.
    let config = UnlearnConfig {
        method: MethodKind::Ft,
        objective: ForgetObjective::Npo,
        held_out_loss: 0.0,
        loss_form: text::LOSS_FORM,
        dual_update: defaults::DUAL_UPDATE,
        fast: false,
        epsilon: 0.0,
        beta: text::BETA,
        lambda0: text::LAMBDA0,
        optimizer: text::OPTIMIZER.kind(text::MOMENTUM, text::WEIGHT_DECAY),
        lr: a.lr,
        lr_schedule: text::LR_SCHEDULE,
        epochs: a.epochs,
        steps: None,
        batch_size: a.batch_size,
        forget_batch_size: None,
        seed: a.seed,
    };
    let device = out.device(None)?;
    let job = TextTrainJob {
        model: a.model.clone(),
        data: a.data.clone(),
        trainable: a.trainable.resolve()?,
        config,
        prompt_format: a.prompt_format,
        chat_template_kwargs: a.chat.vars(),
        out: a.out.clone(),
        overwrite: a.overwrite,
        precision: out.precision(None, &device, true)?,
        device,
        progress: out.progress(),
    };
    let r = train_text(&job)?;
    out.result(&r, || {
        format!(
            "{}: answer NLL {:.3} → {:.3} over {} examples ({} steps, {:.1} s; {} trainable parameters)\n",
            r.out,
            r.answer_nll_before,
            r.answer_nll_after,
            r.examples,
            r.run.steps,
            r.run.wall_seconds,
            r.trainable_parameters
        )
    });
    Ok(ExitCode::SUCCESS)
}
