//! Ctrl-C. The first one asks the work in progress to stop at its next boundary: a training loop
//! saves its state for `--resume`, every other long loop (downloads, conversion, export,
//! verification, measurements) returns [`Error::Cancelled`]. Outputs are only ever committed at
//! the end, so nothing half-written is left behind. A second Ctrl-C ends the process at once.

use crate::error::{Error, Result};
use std::sync::atomic::{AtomicBool, Ordering};

/// Exit status of a command stopped by Ctrl-C (128 + SIGINT, as shells report it).
pub const EXIT_STATUS: u8 = 130;

static REQUESTED: AtomicBool = AtomicBool::new(false);

/// Installs the handler; the binary calls it once at start-up.
pub fn install_handler() {
    let _ = ctrlc::set_handler(|| {
        if REQUESTED.swap(true, Ordering::SeqCst) {
            std::process::exit(EXIT_STATUS as i32);
        }
    });
}

/// Whether Ctrl-C has been pressed.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// Asks for a stop as Ctrl-C does (tests, and embedders with their own signal handling).
pub fn request() {
    REQUESTED.store(true, Ordering::SeqCst);
}

/// `Err(Error::Cancelled)` once Ctrl-C has been pressed: long loops call it between items.
pub fn check() -> Result<()> {
    if requested() {
        Err(Error::Cancelled)
    } else {
        Ok(())
    }
}
