//! Logging for every command: to stderr, at the level `-v`/`-q` choose, or as `PREWARM_LOG` says
//! (a `tracing` filter such as `prewarm_service=debug,info`).

use tracing_subscriber::EnvFilter;

/// Sets logging up once, before the command runs.
pub(crate) fn init(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => "warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    // sqlx's own logs (a TRUNCATE cascading, a bulk load's "slow statement") are noise to a
    // command: its errors only, its warnings at -v, everything at -vv.
    let directives = match verbose {
        0 => format!("{level},sqlx=error"),
        1 => format!("{level},sqlx=warn"),
        _ => level.to_string(),
    };
    let filter =
        EnvFilter::try_from_env("PREWARM_LOG").unwrap_or_else(|_| EnvFilter::new(directives));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
