//! `weft trace`: the packet traces in weft_trace, one line each (or one JSON object per line
//! with --json): for every packet on an interface bpfLogLevel Debug and bpfLogFilters trace,
//! what parsing, conntrack, policy (with the deciding rule) and translation made of it, and
//! the verdict. Read as `weft flows` reads its ring; --iface keeps one interface's records.

use std::path::Path;
use std::process::ExitCode;

use weft::events::ring::Ring;

use super::flows::{self, Options};
use super::{HostArgs, LoadArgs};

pub async fn run(
    dir: Option<&Path>,
    load: LoadArgs,
    host: &HostArgs,
    json: bool,
    follow: bool,
    iface: Option<&str>,
) -> ExitCode {
    flows::read(
        Ring::Trace,
        &Options {
            dir,
            load,
            host,
            json,
            follow,
            iface,
        },
    )
    .await
}
