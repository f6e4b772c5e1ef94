//! `prewarm fake-cloud`: run the reference provisioner.

use std::time::Duration;

use anyhow::Context;
use clap::Args;
use prewarm_core::Span;

use crate::database::runtime;

#[derive(Debug, Args)]
pub(crate) struct FakeCloudArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9900")]
    listen: String,
    /// Shared web-hook secret (`whsec_...`); without it, a new one is made and printed.
    #[arg(long, env = "PREWARM_PROVISIONER__SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// prewarm's base URL for the ready/failed/terminated/stopped/resumed callbacks (e.g. http://127.0.0.1:8080).
    #[arg(long)]
    callback: Option<String>,
    /// Shortest boot.
    #[arg(long, default_value = "6m")]
    boot_min: Span,
    /// Longest boot (boot times are drawn uniformly, seeded).
    #[arg(long, default_value = "10m")]
    boot_max: Span,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Time from a stop order to the instance stopped.
    #[arg(long, default_value = "30s")]
    stop: Span,
    /// Shortest resume from standby.
    #[arg(long, default_value = "1m")]
    resume_min: Span,
    /// Longest resume (resume times are drawn uniformly, seeded).
    #[arg(long, default_value = "3m")]
    resume_max: Span,
}

/// Runs the reference provisioner until interrupted.
pub(crate) fn run(args: &FakeCloudArgs) -> anyhow::Result<()> {
    use prewarm_service::{
        clock::SystemClock,
        fake_cloud::{Behaviour, FakeCloud},
        webhook::Secret,
    };
    let secret = match &args.secret {
        Some(s) => Secret::parse(s).map_err(anyhow::Error::msg)?,
        None => {
            let s = Secret::generate();
            eprintln!("web-hook secret (give it to prewarm): {}", s.encoded());
            s
        }
    };
    let boot_secs = (args.boot_min.0, args.boot_max.0);
    anyhow::ensure!(
        boot_secs.1 >= boot_secs.0,
        "--boot-max must not be shorter than --boot-min"
    );
    anyhow::ensure!(
        args.resume_max.0 >= args.resume_min.0,
        "--resume-max must not be shorter than --resume-min"
    );
    if let Some(url) = &args.callback {
        anyhow::ensure!(
            url.starts_with("http://") || url.starts_with("https://"),
            "--callback must be prewarm's http(s) base URL"
        );
    }
    runtime()?.block_on(async {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        eprintln!(
            "fake-cloud listening on http://{}/orders (POST /control to inject failures, GET /instances)",
            listener.local_addr()?
        );
        let cloud = FakeCloud::with(
            secret,
            std::sync::Arc::new(SystemClock),
            Behaviour {
                boot_secs,
                callback_url: args.callback.clone(),
                seed: args.seed,
                stop_secs: args.stop.0,
                resume_secs: (args.resume_min.0, args.resume_max.0),
            },
        );
        let _processing = cloud.spawn_processing(Duration::from_secs(1));
        axum::serve(listener, cloud.router())
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .context("fake-cloud stopped")?;
        Ok(())
    })
}
