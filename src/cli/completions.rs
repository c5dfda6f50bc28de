//! `lethe completions SHELL`: the shell's completion script for every command and flag.

use clap::Args;
use std::io::Write;
use std::process::ExitCode;

#[derive(Args)]
pub struct CompletionsArgs {
    /// The shell to complete in.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Writes the script for `command` (the whole command line) to stdout.
pub fn run(a: &CompletionsArgs, command: &mut clap::Command) -> ExitCode {
    // Generated into memory first: clap_complete panics on a failed write, and a reader that
    // stops early (`| head`) is no error.
    let mut script = Vec::new();
    clap_complete::generate(a.shell, command, "lethe", &mut script);
    match std::io::stdout().write_all(&script) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: writing the completion script: {e}");
            ExitCode::from(1)
        }
    }
}
