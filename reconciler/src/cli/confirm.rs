//! `weft confirm`: keep what a `weft apply --confirm-within` applied.

use std::path::Path;
use std::process::ExitCode;

use weft::confirm::{self, ConfirmError};

use super::say;

pub fn run(state_dir: &Path) -> ExitCode {
    match confirm::confirm(state_dir) {
        Ok(info) => {
            say(format_args!(
                "confirmed: what `weft apply {}` (pid {}) applied stays",
                info.dir, info.pid
            ));
            ExitCode::SUCCESS
        }
        Err(e @ ConfirmError::NothingPending { .. }) => {
            say(format_args!("weft: {e}"));
            ExitCode::from(1)
        }
        Err(e) => {
            say(format_args!("weft: {e}"));
            ExitCode::from(2)
        }
    }
}
