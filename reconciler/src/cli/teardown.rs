//! `weft teardown`: remove everything weft created, and nothing else.

use std::process::ExitCode;

use weft::run;
use weft::state::HostState;

use super::{report, say, HostArgs};

pub async fn run(host: &HostArgs) -> ExitCode {
    let _writer = match super::writer(host) {
        Ok(w) => w,
        Err(code) => return code,
    };
    let r = async {
        let mut h = host.open().await?;
        run::teardown(&mut h, run::log_progress()).await
    }
    .await;
    match r {
        Ok(o) if o.converged(&HostState::default()) => {
            if o.ops == 0 {
                say(format_args!("nothing to remove"));
            }
            ExitCode::SUCCESS
        }
        Ok(_) => {
            say(format_args!("weft: some of weft's objects remain"));
            ExitCode::from(2)
        }
        Err(e) => report(&e),
    }
}
