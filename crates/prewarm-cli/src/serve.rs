//! `prewarm serve`: run the service until SIGTERM or Ctrl-C.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::database::runtime;

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// TOML configuration file; `PREWARM_SECTION__KEY` variables override it (docs/service.md: Running the
    /// service).
    #[arg(long, short, env = "PREWARM_CONFIG")]
    config: Option<PathBuf>,
    /// Check the configuration, print it as TOML with secrets shown as `<redacted>`, and exit.
    #[arg(long)]
    check: bool,
}

pub(crate) fn run(args: &ServeArgs) -> anyhow::Result<()> {
    use prewarm_service::{clock::SystemClock, config::Config};
    let config = Config::load(args.config.as_deref(), std::env::vars())?;
    if args.check {
        print!("{}", config.to_toml_redacted());
        return Ok(());
    }
    runtime()?.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("cannot watch for SIGTERM")?;
        // Starting waits for the database (retrying, not ready meanwhile); a signal stops it.
        let running = tokio::select! {
            r = prewarm_service::serve::start(config, std::sync::Arc::new(SystemClock), true) => r?,
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = term.recv() => return Ok(()),
        };
        eprintln!(
            "prewarm serving on http://{} (replica {}); Ctrl-C or SIGTERM stops it",
            running.addr,
            running.service.replica()
        );
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        eprintln!("stopping: handing this replica's fleets to the others");
        running.stop().await;
        Ok(())
    })
}
