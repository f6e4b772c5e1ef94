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
    // sqlx's own notices (a TRUNCATE cascading, a slow statement) only at -vv.
    let directives = if verbose >= 2 {
        level.to_string()
    } else {
        format!("{level},sqlx=warn")
    };
    let filter =
        EnvFilter::try_from_env("PREWARM_LOG").unwrap_or_else(|_| EnvFilter::new(directives));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
