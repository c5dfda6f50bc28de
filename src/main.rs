//! The `lethe` command line: parses the arguments and hands each command to its module in
//! `cli/`, where its arguments and printing live; the work is in the library.

use clap::{CommandFactory, Parser, Subcommand};
use lethe::bench::PeakAlloc;
use std::process::ExitCode;

mod cli;

#[global_allocator]
static ALLOCATOR: PeakAlloc = PeakAlloc;

#[derive(Parser)]
#[command(
    name = "lethe",
    version,
    about = "Make a trained model forget what it must not know — a class or samples of a classifier, question/answer facts of a language model — with a bound on the damage to everything else; export safetensors, a PEFT adapter and ONNX, verified by ONNX Runtime.",
    after_help = "Exit status: 0 success, 1 error, 2 bad usage, 3 a gate or the ONNX parity check was not met, 130 interrupted by Ctrl-C."
)]
struct Cli {
    #[command(flatten)]
    global: cli::Global,
    #[command(subcommand)]
    command: Command,
}

// One command line is parsed once per process: the size of its largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Unlearn a forget set from a classifier, export it, verify it with ONNX Runtime and report.
    Unlearn(cli::unlearn::UnlearnArgs),
    /// Run a whole unlearning job described by one TOML file (docs/job.md).
    Run(cli::run::RunArgs),
    /// Download a checkpoint from a Hugging Face hub into the shared cache (docs/hub.md).
    Pull(cli::pull::PullArgs),
    /// Unlearn question/answer facts from a causal language model (LoRA or selected layers),
    /// export merged safetensors, a PEFT adapter and ONNX, verify and report.
    UnlearnText(cli::unlearn_text::UnlearnTextArgs),
    /// Measure a causal language model on forget and retain question/answer sets.
    EvalText(cli::eval_text::EvalTextArgs),
    /// Fine-tune a causal language model on JSONL question/answer data (e.g. to teach it facts).
    TrainText(cli::train_text::TrainTextArgs),
    /// Time LoRA igs steps of a causal LM on synthetic sequences (scripts/bench-vs-pytorch.sh).
    BenchText(cli::bench_text::BenchTextArgs),
    /// Convert a GGUF file (llama.cpp) into a Hugging Face-layout checkpoint lethe can edit.
    Convert(cli::convert::ConvertArgs),
    /// What changed between two models: per tensor, and in their outputs on a probe set.
    Diff(cli::diff::DiffArgs),
    /// Train a classifier from scratch (the bundled model, or a model retrained on the retain set).
    Train(cli::train::TrainArgs),
    /// Measure UA, RA, TA and MIA-efficacy of a classifier for a forget set.
    Eval(cli::eval::EvalArgs),
    /// Compare an exported model.onnx run by ONNX Runtime with the checkpoint run by candle.
    Verify(cli::verify::VerifyArgs),
    /// Write the ONNX model of a checkpoint (any architecture lethe knows).
    Export(cli::export::ExportArgs),
    /// Time and peak memory per step of igs, igs fast, egs and fine-tuning on the same samples.
    Bench(cli::bench::BenchArgs),
    /// Print the completion script of a shell (e.g. `lethe completions bash >
    /// ~/.local/share/bash-completion/completions/lethe`).
    Completions(cli::completions::CompletionsArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return cli::usage_error(e),
    };
    if let Command::Completions(a) = &cli.command {
        return cli::completions::run(a, &mut Cli::command());
    }
    lethe::interrupt::install_handler();
    let out = cli::Output::new(&cli.global);
    let outcome = match &cli.command {
        Command::Unlearn(a) => cli::unlearn::run(a, &out),
        Command::Run(a) => cli::run::run(a, &out),
        Command::Pull(a) => cli::pull::run(a, &out),
        Command::UnlearnText(a) => cli::unlearn_text::run(a, &out),
        Command::EvalText(a) => cli::eval_text::run(a, &out),
        Command::TrainText(a) => cli::train_text::run(a, &out),
        Command::BenchText(a) => cli::bench_text::run(a, &out),
        Command::Convert(a) => cli::convert::run(a, &out),
        Command::Diff(a) => cli::diff::run(a, &out),
        Command::Train(a) => cli::train::run(a, &out),
        Command::Eval(a) => cli::eval::run(a, &out),
        Command::Verify(a) => cli::verify::run(a, &out),
        Command::Export(a) => cli::export::run(a, &out),
        Command::Bench(a) => cli::bench::run(a, &out),
        Command::Completions(_) => unreachable!("answered before the run starts"),
    };
    out.finish(outcome)
}
