//! The `lethe` command line: argument parsing and output only; the work is in the library.

use clap::{Args, Parser, Subcommand, ValueEnum};
use lethe::bench::{self, BenchJob, PeakAlloc};
use lethe::data::{DataSpec, ForgetSpec};
use lethe::job::{self, JobFile};
use lethe::pipeline::{self, ArchChoice, TrainJob, UnlearnJob};
use lethe::report::{self, GateSpec};
use lethe::train::TrainConfig;
use lethe::unlearn::{
    defaults, DualUpdate, ForgetObjective, LossForm, MethodKind, OptimizerKind, UnlearnConfig,
};
use std::path::PathBuf;
use std::process::ExitCode;

mod text_cli;

#[global_allocator]
static ALLOCATOR: PeakAlloc = PeakAlloc;

/// Exit status when the run worked but a gate (or ONNX parity) was not met.
const EXIT_GATE: u8 = 3;

const DEFAULT_MODEL: &str = "models/fashion-mnist-mlp";
const DEFAULT_DATA: &str = "fixtures/fashion-mnist";

#[derive(Parser)]
#[command(
    name = "lethe",
    version,
    about = "Make a trained classifier forget a class or samples, with a bound on the damage to everything else; export safetensors + ONNX, verified by ONNX Runtime.",
    after_help = "Exit status: 0 success, 1 error, 2 bad usage, 3 a gate or the ONNX parity check was not met."
)]
struct Cli {
    /// Print machine-readable JSON on stdout instead of tables.
    #[arg(long, global = true)]
    json: bool,
    /// No progress bars or notes on stderr.
    #[arg(long, short, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Unlearn a forget set from a model, export it, verify it with ONNX Runtime and report.
    Unlearn(UnlearnArgs),
    /// Run a whole unlearning job described by one TOML file (docs/job.md).
    Run(RunArgs),
    /// Download a checkpoint from a Hugging Face hub into the shared cache (docs/hub.md).
    Pull(PullArgs),
    /// Unlearn question/answer facts from a causal language model (LoRA or selected layers),
    /// export merged safetensors, a PEFT adapter and ONNX, verify and report.
    UnlearnText(text_cli::UnlearnTextArgs),
    /// Measure a causal language model on forget and retain question/answer sets.
    EvalText(text_cli::EvalTextArgs),
    /// Fine-tune a causal language model on JSONL question/answer data (e.g. to teach it facts).
    TrainText(text_cli::TrainTextArgs),
    /// Time LoRA igs steps of a causal LM on synthetic sequences (scripts/bench-vs-pytorch.sh).
    BenchText(BenchTextArgs),
    /// Convert a GGUF file (llama.cpp) into a Hugging Face-layout checkpoint lethe can edit.
    Convert(ConvertArgs),
    /// What changed between two models: per tensor, and in their outputs on a probe set.
    Diff(DiffArgs),
    /// Train a classifier from scratch (the bundled model, or a model retrained on the retain set).
    Train(TrainArgs),
    /// Measure UA, RA, TA and MIA-efficacy of a model for a forget set.
    Eval(EvalArgs),
    /// Compare an exported model.onnx run by ONNX Runtime with the checkpoint run by candle.
    Verify(VerifyArgs),
    /// Write the ONNX model of a checkpoint.
    Export(ExportArgs),
    /// Time and peak memory per step of igs, igs fast, egs and fine-tuning on the same samples.
    Bench(BenchArgs),
}

#[derive(Args, Clone)]
struct DataArgs {
    /// Training data: a directory of IDX files (train-*/t10k-*), an *-images-idx3-ubyte[.gz] file,
    /// a digits *.csv[.gz], or a lethe *.safetensors dataset.
    #[arg(long, default_value = DEFAULT_DATA)]
    data: PathBuf,
    /// Test data, when --data is not a directory that holds it.
    #[arg(long)]
    test_data: Option<PathBuf>,
    /// Without test data, hold out this share of the training file as the test set.
    #[arg(long, default_value_t = defaults::HOLDOUT)]
    holdout: f64,
    /// Seed of the holdout draw. Keep it fixed across train, unlearn and eval runs so that they
    /// all see the same split.
    #[arg(long, default_value_t = 0)]
    holdout_seed: u64,
}

impl DataArgs {
    fn spec(&self) -> DataSpec {
        DataSpec {
            train: self.data.clone(),
            test: self.test_data.clone(),
            holdout: self.holdout,
            seed: self.holdout_seed,
        }
    }
}

#[derive(Args, Clone)]
#[group(multiple = false)]
struct ForgetArgs {
    /// Forget a class, by index or label name (e.g. 3 or Dress).
    #[arg(long)]
    forget_class: Option<String>,
    /// Forget the training samples whose indices this file lists.
    #[arg(long)]
    forget_indices: Option<PathBuf>,
    /// Forget a random share of the training data (drawn with --forget-seed).
    #[arg(long)]
    forget_fraction: Option<f64>,
}

impl ForgetArgs {
    fn spec(&self, seed: u64) -> Option<ForgetSpec> {
        if let Some(c) = &self.forget_class {
            Some(ForgetSpec::Class(c.clone()))
        } else if let Some(p) = &self.forget_indices {
            Some(ForgetSpec::Indices(p.clone()))
        } else {
            self.forget_fraction
                .map(|fraction| ForgetSpec::Fraction { fraction, seed })
        }
    }

    fn required(&self, seed: u64) -> Result<ForgetSpec, lethe::Error> {
        self.spec(seed).ok_or_else(|| {
            lethe::Error::Usage(
                "say what to forget: --forget-class, --forget-indices or --forget-fraction".into(),
            )
        })
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum OptimizerName {
    Sgd,
    Adamw,
}

impl OptimizerName {
    fn kind(self, momentum: f64, weight_decay: f64) -> OptimizerKind {
        match self {
            OptimizerName::Sgd => OptimizerKind::Sgd {
                momentum,
                weight_decay,
            },
            OptimizerName::Adamw => OptimizerKind::adamw(weight_decay),
        }
    }
}

#[derive(Args, Clone)]
struct HyperArgs {
    /// Unlearning method.
    #[arg(long, value_enum, default_value_t = MethodKind::Igs)]
    method: MethodKind,
    /// Forget objective of igs and egs [default: random-label for a class, held-out-level for
    /// samples].
    #[arg(long, value_enum)]
    objective: Option<ForgetObjective>,
    /// How losses enter the surgery objective: log(x + 1e-8) or as they are [default: plain for
    /// held-out-level, else log].
    #[arg(long, value_enum)]
    loss_form: Option<LossForm>,
    /// Update rule of igs's dual variable.
    #[arg(long, value_enum, default_value_t = DualUpdate::Projected)]
    dual_update: DualUpdate,
    /// igs: read the retain loss after a step from the next batch (no extra forward pass).
    #[arg(long)]
    fast: bool,
    /// Tolerated rise of the retain loss per step (ε, in units of the loss form; negative
    /// values demand an improvement).
    #[arg(long, default_value_t = defaults::EPSILON, allow_negative_numbers = true)]
    epsilon: f64,
    /// Dual step size β.
    #[arg(long, default_value_t = defaults::BETA)]
    beta: f64,
    /// Initial dual variable λ₀.
    #[arg(long, default_value_t = defaults::LAMBDA0)]
    lambda0: f64,
    #[arg(long, value_enum, default_value_t = OptimizerName::Sgd)]
    optimizer: OptimizerName,
    /// Learning rate.
    #[arg(long, default_value_t = defaults::LR)]
    lr: f64,
    /// SGD momentum.
    #[arg(long, default_value_t = defaults::MOMENTUM)]
    momentum: f64,
    #[arg(long, default_value_t = defaults::WEIGHT_DECAY)]
    weight_decay: f64,
    /// Passes over the retain set.
    #[arg(long, default_value_t = defaults::EPOCHS)]
    epochs: usize,
    /// Number of steps (overrides --epochs).
    #[arg(long)]
    steps: Option<usize>,
    /// Retain samples per step (and forget samples, unless --forget-batch-size is given).
    #[arg(long, default_value_t = defaults::BATCH_SIZE)]
    batch_size: usize,
    /// Forget samples per step.
    #[arg(long)]
    forget_batch_size: Option<usize>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

impl HyperArgs {
    fn config(&self, forget: &ForgetSpec) -> UnlearnConfig {
        let objective = self
            .objective
            .unwrap_or_else(|| ForgetObjective::default_for(forget));
        UnlearnConfig {
            method: self.method,
            objective,
            held_out_loss: f32::NAN,
            loss_form: self
                .loss_form
                .unwrap_or_else(|| LossForm::default_for(objective)),
            dual_update: self.dual_update,
            fast: self.fast,
            epsilon: self.epsilon,
            beta: self.beta,
            lambda0: self.lambda0,
            optimizer: self.optimizer.kind(self.momentum, self.weight_decay),
            lr: self.lr,
            epochs: self.epochs,
            steps: self.steps,
            batch_size: self.batch_size,
            forget_batch_size: self.forget_batch_size,
            seed: self.seed,
        }
    }
}

#[derive(Args)]
struct UnlearnArgs {
    /// The model: a checkpoint directory (config.json + safetensors).
    #[arg(default_value = DEFAULT_MODEL)]
    model: PathBuf,
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    forget: ForgetArgs,
    /// Seed of --forget-fraction's draw.
    #[arg(long, default_value_t = 0)]
    forget_seed: u64,
    #[command(flatten)]
    hyper: HyperArgs,
    /// Train only parameters matching these globs (repeatable; default: all).
    #[arg(long = "train", value_name = "GLOB", default_value = "*")]
    train_patterns: Vec<String>,
    /// Keep parameters matching these globs frozen (repeatable).
    #[arg(long = "freeze", value_name = "GLOB")]
    freeze_patterns: Vec<String>,
    /// Output directory for the edited checkpoint, model.onnx and report.json.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Replace --out if it exists.
    #[arg(long)]
    overwrite: bool,
    /// A reference model (e.g. retrained on the retain set) to report the gap to.
    #[arg(long)]
    reference: Option<PathBuf>,
    /// Gate: TA may fall by at most this many points.
    #[arg(long)]
    max_test_drop: Option<f64>,
    /// Gate: UA must reach this (percent).
    #[arg(long)]
    min_ua: Option<f64>,
    /// Gate: MIA-efficacy must reach this (percent).
    #[arg(long)]
    min_mia: Option<f64>,
    /// Gate: the gap to --reference must be at most this (points).
    #[arg(long, requires = "reference")]
    max_gap: Option<f64>,
    /// Skip the ONNX Runtime check of the exported model.
    #[arg(long)]
    no_verify: bool,
    /// Save the run's state every N steps beside --out (in OUT.lethe-state), for --resume.
    #[arg(long, value_name = "N", requires = "out")]
    checkpoint_every: Option<usize>,
    /// Continue an interrupted run from its saved state (same command, same inputs).
    #[arg(long, requires = "out")]
    resume: bool,
    /// Path of libonnxruntime.so (default: $ORT_DYLIB_PATH, then .lethe/onnxruntime/).
    #[arg(long)]
    onnxruntime: Option<PathBuf>,
}

#[derive(Args)]
struct DiffArgs {
    /// The model before (a checkpoint directory or hub id).
    a: PathBuf,
    /// The model after.
    b: PathBuf,
    /// Probe data: its test split is run through both models (a directory of IDX files, or a
    /// file with --test-data).
    #[arg(long)]
    data: Option<PathBuf>,
    #[arg(long)]
    test_data: Option<PathBuf>,
    /// Language models: JSONL probe ({"question", "answer"} or {"text"} per line); both models'
    /// greedy continuations are shown side by side.
    #[arg(long, conflicts_with = "data")]
    prompts: Option<PathBuf>,
    /// Longest greedy continuation for --prompts.
    #[arg(long, default_value_t = 32)]
    max_new_tokens: usize,
    /// Write a self-contained HTML report with plots here.
    #[arg(long)]
    html: Option<PathBuf>,
    /// Tensors to list in the terminal summary.
    #[arg(long, default_value_t = 10)]
    top: usize,
}

#[derive(Args)]
struct PullArgs {
    /// The repository: org/name or org/name@revision.
    repo: String,
}

#[derive(Args)]
struct ConvertArgs {
    /// The GGUF file (F32, F16, BF16, Q8_0, Q4_0 and Q4_1 tensors are dequantized to f32).
    gguf: PathBuf,
    /// The output directory: config.json, model.safetensors, tokenizer.json, tokenizer_config.json.
    out: PathBuf,
    /// Replace the output directory if it exists.
    #[arg(long)]
    overwrite: bool,
}

#[derive(Args)]
struct RunArgs {
    /// The job file.
    job: PathBuf,
    /// Check the file, open the model, and print the resolved job without running it.
    #[arg(long)]
    dry_run: bool,
    /// Write the outputs here instead of the job's [output] dir.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum ArchName {
    Mlp,
    Cnn,
}

#[derive(Args)]
struct TrainArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Leave this forget set out of training (the "retrained on the retain set" gold standard).
    #[command(flatten)]
    exclude: ForgetArgs,
    #[arg(long, default_value_t = 0)]
    forget_seed: u64,
    #[arg(long, value_enum, default_value_t = ArchName::Mlp)]
    arch: ArchName,
    /// MLP hidden layer widths.
    #[arg(long, value_delimiter = ',', default_value = "256,128")]
    hidden: Vec<usize>,
    /// CNN stage widths.
    #[arg(long, value_delimiter = ',', default_value = "16,32")]
    channels: Vec<usize>,
    #[arg(long, default_value_t = 3)]
    kernel_size: usize,
    /// CNN: batch norm after each convolution.
    #[arg(long)]
    batch_norm: bool,
    #[arg(long, default_value_t = 40)]
    epochs: usize,
    #[arg(long, default_value_t = 128)]
    batch_size: usize,
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    #[arg(long, value_enum, default_value_t = OptimizerName::Adamw)]
    optimizer: OptimizerName,
    #[arg(long, default_value_t = 0.9)]
    momentum: f64,
    #[arg(long, default_value_t = 0.0)]
    weight_decay: f64,
    /// Keep the learning rate constant instead of cosine decay.
    #[arg(long)]
    constant_lr: bool,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output checkpoint directory.
    #[arg(long)]
    out: PathBuf,
    #[arg(long)]
    overwrite: bool,
}

#[derive(Args)]
struct EvalArgs {
    #[arg(default_value = DEFAULT_MODEL)]
    model: PathBuf,
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    forget: ForgetArgs,
    #[arg(long, default_value_t = 0)]
    forget_seed: u64,
    /// Seed of the membership-inference attack's sampling.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(Args)]
struct VerifyArgs {
    /// A directory with config.json, safetensors and model.onnx (as `lethe unlearn --out` writes).
    dir: PathBuf,
    #[command(flatten)]
    data: DataArgs,
    /// Compare at most this many samples of each set.
    #[arg(long)]
    limit: Option<usize>,
    #[arg(long)]
    onnxruntime: Option<PathBuf>,
}

#[derive(Args)]
struct ExportArgs {
    #[arg(default_value = DEFAULT_MODEL)]
    model: PathBuf,
    /// The ONNX file to write.
    #[arg(long)]
    out: PathBuf,
    #[arg(long)]
    overwrite: bool,
}

#[derive(Args)]
struct BenchArgs {
    #[arg(default_value = DEFAULT_MODEL)]
    model: PathBuf,
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    forget: ForgetArgs,
    #[arg(long, default_value_t = 0)]
    forget_seed: u64,
    #[command(flatten)]
    hyper: HyperArgs,
    /// Measured steps per method and round.
    #[arg(long, default_value_t = 40)]
    bench_steps: usize,
    #[arg(long, default_value_t = 5)]
    warmup: usize,
    /// Rounds over all methods (the median is reported).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

#[derive(Args)]
struct BenchTextArgs {
    /// A causal LM checkpoint directory.
    model: PathBuf,
    /// Sequences per step: half forget, half retain.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    #[arg(long, default_value_t = 128)]
    seq_len: usize,
    /// Tokens at the end of each sequence that carry the loss.
    #[arg(long, default_value_t = 32)]
    answer_len: usize,
    #[arg(long, default_value_t = 8)]
    lora_rank: usize,
    #[arg(long, default_value_t = 16.0)]
    lora_alpha: f64,
    #[arg(long, value_delimiter = ',', default_value = "q_proj,v_proj")]
    lora_targets: Vec<String>,
    #[arg(long, default_value_t = 5)]
    steps: usize,
    #[arg(long, default_value_t = 1)]
    warmup: usize,
}

/// Exit status of a run stopped by Ctrl-C (128 + SIGINT, as shells report it).
const EXIT_INTERRUPTED: u8 = 130;

fn main() -> ExitCode {
    lethe::runtime::tune_for_training();
    let cli = Cli::parse();
    // The first Ctrl-C asks the run to stop at the next step and save its state; a second one
    // ends the process at once (the outputs are still untouched: they are committed last).
    let _ = ctrlc::set_handler(|| {
        if lethe::unlearn::resume::INTERRUPTED.swap(true, std::sync::atomic::Ordering::SeqCst) {
            std::process::exit(EXIT_INTERRUPTED as i32);
        }
    });
    match run(&cli) {
        Ok(code) => code,
        Err(e @ lethe::Error::Interrupted { .. }) => {
            eprintln!("{e}");
            ExitCode::from(EXIT_INTERRUPTED)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// Runs an unlearning job and prints its report; gates decide the exit status.
fn finish_unlearn(cli: &Cli, job: &UnlearnJob) -> Result<ExitCode, lethe::Error> {
    let report = pipeline::unlearn(job)?;
    if cli.json {
        print_json(&report);
    } else if !cli.quiet {
        print!("{}", report::render(&report));
    }
    Ok(if report.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_GATE)
    })
}

fn print_json<T: serde::Serialize>(value: &T) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("serialises")
    );
}

fn run(cli: &Cli) -> Result<ExitCode, lethe::Error> {
    let progress = !cli.quiet && !cli.json;
    match &cli.command {
        Command::Unlearn(a) => {
            let forget = a.forget.required(a.forget_seed)?;
            let job = UnlearnJob {
                model: a.model.clone(),
                data: a.data.spec(),
                config: a.hyper.config(&forget),
                forget,
                train_patterns: a.train_patterns.clone(),
                freeze_patterns: a.freeze_patterns.clone(),
                out: a.out.clone(),
                overwrite: a.overwrite,
                reference: a.reference.clone(),
                gates: GateSpec {
                    max_test_drop: a.max_test_drop,
                    min_ua: a.min_ua,
                    min_mia: a.min_mia,
                    max_gap: a.max_gap,
                },
                onnxruntime: a.onnxruntime.clone(),
                verify: !a.no_verify && a.out.is_some(),
                progress,
                attachments: Vec::new(),
                checkpoint_every: a.checkpoint_every,
                resume: a.resume,
            };
            if a.out.is_none() && !cli.quiet && !cli.json {
                eprintln!("note: no --out given: nothing is exported or verified");
            }
            finish_unlearn(cli, &job)
        }
        Command::Diff(a) => {
            let probe = match (&a.data, &a.prompts) {
                (Some(d), _) => Some(lethe::diff::Probe::Data(lethe::diff::probe_spec(
                    d,
                    a.test_data.as_deref(),
                ))),
                (None, Some(p)) => Some(lethe::diff::Probe::Prompts {
                    file: p.clone(),
                    max_new_tokens: a.max_new_tokens,
                }),
                (None, None) => None,
            };
            let report = lethe::diff::diff(&a.a, &a.b, probe.as_ref())?;
            if let Some(path) = &a.html {
                let page = lethe::report::html::diff_page(&report);
                let tmp = path.with_extension("html.partial");
                std::fs::write(&tmp, page)
                    .and_then(|()| std::fs::rename(&tmp, path))
                    .map_err(|e| {
                        let _ = std::fs::remove_file(&tmp);
                        lethe::Error::io(path, e)
                    })?;
            }
            if cli.json {
                print_json(&report);
            } else {
                println!(
                    "{} of {} shared tensors changed",
                    report.changed_tensors,
                    report.tensors.len()
                );
                for t in report.tensors.iter().take(a.top) {
                    println!(
                        "  {:<32} rel {:>10.6}  max |Δ| {:>10.6}",
                        t.name, t.relative_frobenius, t.max_abs_change
                    );
                }
                if let Some(o) = &report.outputs {
                    println!(
                        "outputs on {} samples: mean KL {:.4}, top-1 flips {} ({:.2} %)",
                        o.samples, o.mean_kl, o.top1_flips, o.flip_rate
                    );
                    for c in &o.per_class_accuracy {
                        println!("  {:<16} {:>7.2} % → {:>7.2} %", c.label, c.a, c.b);
                    }
                }
                if let Some(o) = &report.text_outputs {
                    println!(
                        "outputs on {} prompts: mean next-token KL {:.4} (largest {:.4}); {} greedy continuations changed",
                        o.prompts, o.mean_kl, o.max_kl, o.changed_generations
                    );
                    for g in &o.generations {
                        println!(
                            "  {}
    A: {}
    B: {}",
                            g.prompt, g.a, g.b
                        );
                    }
                }
                if let Some(p) = &a.html {
                    println!("HTML report: {}", p.display());
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Pull(a) => {
            let id = lethe::hub::HubId::parse(&a.repo).ok_or_else(|| {
                lethe::Error::Usage(format!(
                    "{:?} is not a hub id of the form org/name[@revision]",
                    a.repo
                ))
            })?;
            let env = lethe::hub::HubEnv::from_env();
            let dir = lethe::hub::pull(&id, &env, progress)?;
            if cli.json {
                print_json(&serde_json::json!({
                    "repo": id.repo,
                    "revision": id.revision,
                    "path": dir.display().to_string(),
                }));
            } else {
                println!("{}", dir.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::UnlearnText(a) => {
            let report = lethe::text_pipeline::unlearn_text(&a.job(progress)?)?;
            if cli.json {
                print_json(&report);
            } else if !cli.quiet {
                print!("{}", text_cli::render(&report));
            }
            Ok(if report.passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_GATE)
            })
        }
        Command::EvalText(a) => {
            let m = lethe::text_pipeline::eval_text(
                &a.model,
                &a.sets.forget_set,
                &a.sets.retain_set,
                a.sets.eval_text.as_deref(),
                a.prompt_format,
                &lethe::text_pipeline::MeasureSettings {
                    max_new_tokens: a.sets.max_new_tokens,
                    perplexity_tokens: a.sets.perplexity_tokens,
                    progress,
                },
            )?;
            if cli.json {
                print_json(&m);
            } else {
                print!("{}", text_cli::render_metrics(&m));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::TrainText(a) => {
            let r = lethe::text_pipeline::train_text(&a.job(progress)?)?;
            if cli.json {
                print_json(&r);
            } else if !cli.quiet {
                println!(
                    "{}: answer NLL {:.3} → {:.3} over {} examples ({} steps, {:.1} s; {} trainable parameters)",
                    r.out,
                    r.answer_nll_before,
                    r.answer_nll_after,
                    r.examples,
                    r.run.steps,
                    r.run.wall_seconds,
                    r.trainable_parameters
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::BenchText(a) => {
            let r = bench::run_text(&bench::TextBenchJob {
                model: a.model.clone(),
                batch: a.batch,
                seq_len: a.seq_len,
                answer_len: a.answer_len,
                lora: lethe::unlearn::lora::LoraConfig {
                    rank: a.lora_rank,
                    alpha: a.lora_alpha,
                    targets: a.lora_targets.clone(),
                    layers: None,
                },
                steps: a.steps,
                warmup: a.warmup,
            })?;
            if cli.json {
                print_json(&r);
            } else {
                println!(
                    "igs LoRA step: median {:.0} ms over {} steps; peak RSS {:.0} MiB; {} trainable parameters",
                    r.step_ms_median,
                    r.step_ms.len(),
                    r.peak_rss_mib,
                    r.trainable_parameters
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Convert(a) => {
            if progress {
                eprintln!("converting {} …", a.gguf.display());
            }
            let r = lethe::convert::convert_gguf(&a.gguf, &a.out, a.overwrite)?;
            if cli.json {
                print_json(&r);
            } else {
                let types: Vec<String> = r
                    .tensor_types
                    .iter()
                    .map(|(t, n)| format!("{n} {t}"))
                    .collect();
                println!(
                    "{}: {} ({} tensors: {}; {:.1} M parameters; {} embeddings{}{})",
                    r.out.display(),
                    r.architecture,
                    r.tensors,
                    types.join(", "),
                    r.parameters as f64 / 1e6,
                    if r.tied_embeddings { "tied" } else { "untied" },
                    if r.tokenizer { "; tokenizer.json" } else { "" },
                    if r.chat_template {
                        "; chat template"
                    } else {
                        ""
                    },
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(a) => {
            let file = JobFile::read(&a.job)?;
            file.check_provenance(&a.job)?;
            let mut resolved = file.resolved(&a.job)?;
            if let Some(out) = &a.out {
                resolved.output.dir =
                    std::path::absolute(out).map_err(|e| lethe::Error::io(out, e))?;
            }
            resolved.provenance = Some(resolved.provenance()?);
            if resolved.is_text() {
                let mut job = resolved.to_text_job(&a.job, progress)?;
                if a.dry_run {
                    lethe::text_pipeline::TextModelDir::open(&job.model)?;
                    print!("{}", resolved.to_toml());
                    return Ok(ExitCode::SUCCESS);
                }
                job.attachments.push((
                    job::RESOLVED_FILE.to_string(),
                    resolved.to_toml().into_bytes(),
                ));
                let report = lethe::text_pipeline::unlearn_text(&job)?;
                if cli.json {
                    print_json(&report);
                } else if !cli.quiet {
                    print!("{}", text_cli::render(&report));
                }
                return Ok(if report.passed {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(EXIT_GATE)
                });
            }
            let mut job = resolved.to_unlearn_job(&a.job, progress)?;
            if a.dry_run {
                // Opening the model checks config, weights and architecture without running.
                pipeline::LoadedModel::open(&job.model)?;
                print!("{}", resolved.to_toml());
                return Ok(ExitCode::SUCCESS);
            }
            job.attachments.push((
                job::RESOLVED_FILE.to_string(),
                resolved.to_toml().into_bytes(),
            ));
            finish_unlearn(cli, &job)
        }
        Command::Train(a) => {
            let arch = match a.arch {
                ArchName::Mlp => ArchChoice::Mlp(lethe::arch::MlpConfig {
                    hidden_sizes: a.hidden.clone(),
                }),
                ArchName::Cnn => ArchChoice::Cnn(lethe::arch::CnnConfig {
                    channels: a.channels.clone(),
                    kernel_size: a.kernel_size,
                    batch_norm: a.batch_norm,
                }),
            };
            let optimizer = a.optimizer.kind(a.momentum, a.weight_decay);
            let job = TrainJob {
                arch,
                data: a.data.spec(),
                exclude: a.exclude.spec(a.forget_seed),
                train: TrainConfig {
                    epochs: a.epochs,
                    batch_size: a.batch_size,
                    lr: a.lr,
                    optimizer,
                    cosine: !a.constant_lr,
                    seed: a.seed,
                },
                out: a.out.clone(),
                overwrite: a.overwrite,
                command: std::env::args().collect::<Vec<_>>().join(" "),
                progress,
            };
            let report = pipeline::train_model(&job)?;
            if cli.json {
                print_json(&report);
            } else if !cli.quiet {
                println!(
                    "trained {} samples in {:.1} s: train accuracy {:.2} %, test accuracy {:.2} % → {}",
                    report.train_samples,
                    report.wall_seconds,
                    report.train_accuracy,
                    report.test_accuracy,
                    report.out
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Eval(a) => {
            let forget = a.forget.required(a.forget_seed)?;
            let (m, split) = pipeline::eval(&a.model, &a.data.spec(), &forget, a.seed)?;
            if cli.json {
                print_json(&serde_json::json!({
                    "model": a.model.display().to_string(),
                    "forget": forget.describe(),
                    "forget_samples": split.forget.len(),
                    "retain_samples": split.retain.len(),
                    "metrics": m,
                }));
            } else {
                println!(
                    "{}: forget {} ({} samples): UA {:.2} %  RA {:.2} %  TA {:.2} %  MIA {:.2} %",
                    a.model.display(),
                    forget.describe(),
                    split.forget.len(),
                    m.ua,
                    m.ra,
                    m.ta,
                    m.mia
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify(a) => {
            let parity =
                pipeline::verify_dir(&a.dir, &a.data.spec(), a.onnxruntime.as_deref(), a.limit)?;
            if cli.json {
                print_json(&parity);
            } else {
                println!(
                    "{}: max |Δlogit| ONNX Runtime vs candle = {:.2e} over {} samples (tolerance {:.0e}); ONNX Runtime accuracy {:.2} % — {}",
                    a.dir.display(),
                    parity.max_abs_diff,
                    parity.samples,
                    parity.tolerance,
                    parity.onnx_accuracy,
                    if parity.passed { "ok" } else { "FAILED" }
                );
            }
            Ok(if parity.passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_GATE)
            })
        }
        Command::Export(a) => {
            pipeline::export_onnx(&a.model, &a.out, a.overwrite)?;
            if !cli.quiet && !cli.json {
                println!("wrote {}", a.out.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(a) => {
            let forget = a
                .forget
                .spec(a.forget_seed)
                .unwrap_or(ForgetSpec::Class("0".into()));
            let job = BenchJob {
                model: a.model.clone(),
                data: a.data.spec(),
                forget: forget.clone(),
                batch_size: a.hyper.batch_size,
                steps: a.bench_steps,
                warmup: a.warmup,
                rounds: a.rounds.max(1),
                base: a.hyper.config(&forget),
            };
            let rows = bench::run(&job, |name, round| {
                if progress {
                    eprintln!("round {} · {name}", round + 1);
                }
            })?;
            if cli.json {
                print_json(&rows);
            } else {
                println!(
                    "{:<16} {:>10} {:>9} {:>12} {:>9} {:>6} {:>6}",
                    "method", "ms/step", "× ft", "peak MiB", "× ft", "fwd", "bwd"
                );
                for r in &rows {
                    println!(
                        "{:<16} {:>10.3} {:>9.3} {:>12.2} {:>9.3} {:>6.1} {:>6.1}",
                        r.method,
                        r.step_ms,
                        r.time_vs_ft,
                        r.peak_bytes as f64 / (1024.0 * 1024.0),
                        r.memory_vs_ft,
                        r.forwards_per_step,
                        r.backwards_per_step
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
