//! The command line's shared pieces: the global flags, how results and errors are printed, the
//! exit statuses, and the argument groups several commands take (`args`). Each command's own
//! arguments and printing are in a module of its own.

pub mod args;
pub mod bench;
pub mod bench_text;
pub mod completions;
pub mod convert;
pub mod diff;
pub mod eval;
pub mod eval_text;
pub mod export;
pub mod pull;
pub mod run;
pub mod train;
pub mod train_text;
pub mod unlearn;
pub mod unlearn_text;
pub mod verify;

use candle_core::Device;
use clap::Args;
use lethe::precision::Precision;
use lethe::Error;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Exit status when a run worked but a gate (or the ONNX parity check) was not met.
pub const EXIT_GATE: u8 = 3;
/// Exit status of bad usage: arguments, settings or selections that cannot work.
pub const EXIT_USAGE: u8 = 2;
/// Exit status of any other error.
pub const EXIT_ERROR: u8 = 1;

/// Flags every command takes.
#[derive(Args)]
pub struct Global {
    /// Print machine-readable JSON on stdout (results and errors) instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// No progress bars or notes on stderr.
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// The device to compute on: cpu, cuda or cuda:N (cuda needs a CUDA build, docs/gpu.md)
    /// [default: cpu; a job file's `device` for `lethe run`].
    #[arg(long, global = true, value_name = "DEVICE")]
    pub device: Option<String>,
    /// What a language model's frozen weights are held in: f32 or bf16 (trainable weights,
    /// adapters, optimizer state and losses stay f32; outputs keep the checkpoint's dtype)
    /// [default: bf16 for language models on a GPU, else f32; a job file's `dtype`].
    #[arg(long, global = true, value_name = "DTYPE")]
    pub dtype: Option<String>,
}

/// How a command speaks: tables or JSON on stdout, progress and notes on stderr unless quiet.
pub struct Output {
    pub json: bool,
    pub quiet: bool,
    device: Option<String>,
    dtype: Option<String>,
}

impl Output {
    pub fn new(global: &Global) -> Output {
        Output {
            json: global.json,
            quiet: global.quiet,
            device: global.device.clone(),
            dtype: global.dtype.clone(),
        }
    }

    /// Whether progress bars and notes go to stderr.
    pub fn progress(&self) -> bool {
        !self.quiet && !self.json
    }

    /// A note on stderr (not with -q or --json).
    pub fn note(&self, message: &str) {
        if self.progress() {
            eprintln!("note: {message}");
        }
    }

    /// The command's result on stdout: `value` as JSON with --json, else `table()`. (-q quiets
    /// stderr only: a result is what the command is for.)
    pub fn result<T: serde::Serialize>(&self, value: &T, table: impl FnOnce() -> String) {
        if self.json {
            print_json(value);
        } else {
            print!("{}", table());
        }
    }

    /// The device this command computes on: `--device`, else `job_device` (a job file's), else
    /// the default. Prepares the process for it (CPU tuning runs for CPU runs only).
    pub fn device(&self, job_device: Option<&str>) -> Result<Device, Error> {
        let name = self
            .device
            .as_deref()
            .or(job_device)
            .unwrap_or(lethe::defaults::DEVICE);
        let device = lethe::device::parse(name)?;
        lethe::device::prepare(&device);
        Ok(device)
    }

    /// The precision of a run on `device`: `--dtype`, else `job_dtype` (a job file's), else the
    /// default; `text` says whether the model is a language model (classifiers take f32 only).
    pub fn precision(
        &self,
        job_dtype: Option<&str>,
        device: &Device,
        text: bool,
    ) -> Result<Precision, Error> {
        let chosen = self.dtype.as_deref().or(job_dtype);
        Precision::resolve(chosen, device.is_cuda(), text)
    }

    /// For commands that work on the checkpoint's weights as they are (export, verify): a
    /// `--dtype` other than f32 is refused rather than ignored.
    pub fn full_precision_only(&self, command: &str) -> Result<(), Error> {
        match self.dtype.as_deref() {
            None | Some("f32") => Ok(()),
            Some(other) => Err(Error::Usage(format!(
                "--dtype {other}: `lethe {command}` works on the checkpoint's weights in f32"
            ))),
        }
    }

    /// The `--dtype` given on the command line, if any.
    pub fn dtype_flag(&self) -> Option<&str> {
        self.dtype.as_deref()
    }

    /// The `--device` given on the command line, if any.
    pub fn device_flag(&self) -> Option<&str> {
        self.device.as_deref()
    }

    /// The exit status of a command's outcome; errors are printed here, once.
    pub fn finish(&self, outcome: Result<ExitCode, Error>) -> ExitCode {
        let e = match outcome {
            Ok(code) => return code,
            Err(e) => e,
        };
        let (kind, status) = match &e {
            Error::Interrupted { .. } | Error::Cancelled => {
                ("interrupted", lethe::interrupt::EXIT_STATUS)
            }
            e if e.is_usage() => ("usage", EXIT_USAGE),
            _ => ("error", EXIT_ERROR),
        };
        let message = match hint(&e) {
            Some(h) => format!("{e}; {h}"),
            None => e.to_string(),
        };
        if self.json {
            print_json(
                &serde_json::json!({ "error": message, "kind": kind, "exit_status": status }),
            );
        } else if kind == "interrupted" {
            eprintln!("{message}");
        } else {
            eprintln!("error: {message}");
        }
        ExitCode::from(status)
    }
}

/// A command line clap refused (or --help, --version): exit 2 for bad usage, 0 for help; as
/// JSON on stdout when --json is among the arguments.
pub fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    let help = matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    );
    if !help && std::env::args().any(|a| a == "--json") {
        let rendered = e.to_string();
        let message = rendered.trim().trim_start_matches("error: ");
        print_json(&serde_json::json!({
            "error": message,
            "kind": "usage",
            "exit_status": EXIT_USAGE,
        }));
        return ExitCode::from(EXIT_USAGE);
    }
    e.exit()
}

/// What to type instead, for errors whose remedy is a flag.
fn hint(e: &Error) -> Option<&'static str> {
    match e {
        Error::OutputNotEmpty(_) => Some("pass --overwrite to replace it"),
        Error::Interrupted { .. } => Some("rerun the same command with --resume to continue"),
        _ => None,
    }
}

pub fn print_json<T: serde::Serialize>(value: &T) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("a result serialises")
    );
}

/// The device of a classifier command, whose weights are f32 only: a `--dtype` other than f32
/// is refused.
pub fn classifier_device(out: &Output) -> Result<Device, Error> {
    let device = out.device(None)?;
    out.precision(None, &device, false)?;
    Ok(device)
}

/// Exit status 0, or 3 when a gate was not met.
pub fn gated(passed: bool) -> ExitCode {
    if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_GATE)
    }
}

/// The bundled model the commands default to, inside lethe's source checkout.
pub const BUNDLED_MODEL: &str = "models/fashion-mnist-mlp";
/// The bundled data the commands default to, inside lethe's source checkout.
pub const BUNDLED_DATA: &str = "fixtures/fashion-mnist";

/// A path given on the command line, or the bundled default `bundled`, which only exists in
/// lethe's source checkout (run from its top): refused with what to pass instead elsewhere.
pub fn or_bundled(given: Option<&Path>, bundled: &str, flag: &str) -> Result<PathBuf, Error> {
    if let Some(p) = given {
        return Ok(p.to_path_buf());
    }
    let path = PathBuf::from(bundled);
    if path.exists() {
        return Ok(path);
    }
    Err(Error::Usage(format!(
        "no {flag} given, and the default {bundled} is not here: it is bundled in lethe's source checkout and found when lethe runs from its top directory; name one with {flag}"
    )))
}
