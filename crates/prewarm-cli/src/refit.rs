//! `prewarm refit`: refit a fleet's forecast now and say what it did.

use std::path::PathBuf;

use clap::Args;
use prewarm_store::fleet_by_name;

use crate::database::{connect, runtime, DbArgs};

#[derive(Debug, Args)]
pub(crate) struct RefitArgs {
    /// The fleet to refit.
    #[arg(long)]
    fleet: String,
    /// The service's TOML configuration, for its `[planner]` settings (defaults otherwise).
    #[arg(long, short)]
    config: Option<PathBuf>,
    #[command(flatten)]
    db: DbArgs,
}

/// Refits one fleet now, as the service's scheduled refit would, and prints what it did.
pub(crate) fn run(args: &RefitArgs) -> anyhow::Result<()> {
    use prewarm_service::{
        clock::SystemClock,
        config::{Config, Mode, Redacted},
    };
    let mut config = match &args.config {
        Some(path) => Config::load(Some(path), std::env::vars())?,
        None => Config::default(),
    };
    // A refit orders nothing: no provisioner is needed.
    config.service.mode = Mode::ForecastOnly;
    config.database.url = Redacted(args.db.database_url.clone());
    config.validate()?;
    runtime()?.block_on(async {
        let pool = connect(&args.db).await?;
        let fleet = fleet_by_name(&pool, &args.fleet).await?;
        let service =
            prewarm_service::engine::Service::new(pool, config, std::sync::Arc::new(SystemClock))
                .map_err(anyhow::Error::msg)?;
        let report_at = chrono::Utc::now();
        let report = service.refit_fleet(fleet.id).await?;
        match (&report.skipped, report.forecast_id) {
            (Some(why), _) => println!("fleet `{}`: no forecast: {why}", fleet.name),
            (None, Some(id)) => println!(
                "fleet `{}`: forecast {id} made in {:.0} ms; band {} ({} errors per horizon{})",
                fleet.name,
                report.fit_secs * 1000.0,
                match report.calibrated_at {
                    Some(at) if report.calibrated && at < report_at => format!(
                        "calibrated at {} and kept (recalibrated hourly)",
                        at.format("%H:%M UTC")
                    ),
                    _ if report.calibrated => "calibrated".to_string(),
                    _ => "not calibrated yet".to_string(),
                },
                report.errors_used,
                if report.bootstrapped > 0 {
                    format!(", {} bootstrap backtest fits", report.bootstrapped)
                } else {
                    String::new()
                }
            ),
            (None, None) => println!("fleet `{}`: no forecast", fleet.name),
        }
        Ok(())
    })
}
