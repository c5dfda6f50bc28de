//! docs/cli.md is the `--help` of every command; this test keeps it in step with the code.
//! After changing the CLI, refresh it with `LETHE_BLESS=1 cargo test --release --test docs`.

use std::process::Command;

const COMMANDS: [&str; 14] = [
    "unlearn",
    "unlearn-text",
    "run",
    "train",
    "train-text",
    "eval",
    "eval-text",
    "verify",
    "export",
    "convert",
    "pull",
    "diff",
    "bench",
    "bench-text",
];

fn help(args: &[&str]) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_lethe"))
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success());
    String::from_utf8(o.stdout).unwrap()
}

fn reference() -> String {
    let mut s = String::from(
        "# Command-line reference\n\nThe `--help` of every command, as the binary prints it \
         (`tests/docs.rs` keeps this page in step with the code).\n\n## lethe\n\n```text\n",
    );
    s.push_str(&help(&["--help"]));
    s.push_str("```\n");
    for c in COMMANDS {
        s.push_str(&format!("\n## lethe {c}\n\n```text\n"));
        s.push_str(&help(&[c, "--help"]));
        s.push_str("```\n");
    }
    s
}

#[test]
fn cli_reference_matches_the_binary() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/cli.md");
    let expected = reference();
    if std::env::var_os("LETHE_BLESS").is_some() {
        std::fs::write(path, &expected).unwrap();
    }
    let found = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        found == expected,
        "docs/cli.md is out of date: run LETHE_BLESS=1 cargo test --release --test docs"
    );
}
