//! `prewarm pull`: read a fleet's request rate from Prometheus into its history.

use std::time::Duration;

use clap::Args;
use prewarm_core::Span;
use prewarm_store::fleet_by_name;

use crate::database::{connect, runtime, DbArgs};

#[derive(Debug, Args)]
pub(crate) struct PullArgs {
    /// The fleet whose history receives the samples.
    #[arg(long)]
    fleet: String,
    /// Prometheus base URL.
    #[arg(
        long,
        env = "PREWARM_PROMETHEUS_URL",
        default_value = "http://127.0.0.1:9090"
    )]
    prometheus: String,
    /// PromQL expression giving the fleet's requests per second.
    #[arg(long, required_unless_present = "vllm", conflicts_with = "vllm")]
    query: Option<String>,
    /// PromQL expression giving prompt tokens per second (with --tokens-out-query): the fleet's
    /// samples then carry tokens, for a fleet that plans in tokens.
    #[arg(long, requires = "tokens_out_query", conflicts_with = "vllm")]
    tokens_in_query: Option<String>,
    /// PromQL expression giving output tokens per second (with --tokens-in-query).
    #[arg(long, requires = "tokens_in_query", conflicts_with = "vllm")]
    tokens_out_query: Option<String>,
    /// The vLLM recipe: requests, prompt and output tokens per second from vLLM's own counters
    /// (`vllm:request_success_total`, `vllm:prompt_tokens_total`,
    /// `vllm:generation_tokens_total`), summed over the series --vllm-selector picks.
    #[arg(long)]
    vllm: bool,
    /// Label selector for --vllm, e.g. '{model_name="meta-llama/Llama-3.1-8B-Instruct"}'.
    #[arg(long, default_value = "", requires = "vllm")]
    vllm_selector: String,
    /// Rate window for --vllm (at least two scrape intervals).
    #[arg(long, default_value = "1m", requires = "vllm")]
    vllm_window: String,
    /// How far back to read when the fleet has no samples of this step yet (backfill); with
    /// samples, the pull starts from the latest stored one.
    #[arg(long, default_value = "28d")]
    from: Span,
    /// Resolution: one stored bucket per step.
    #[arg(long, default_value = "1m")]
    step: Span,
    /// After the backfill, keep pulling what is new at this interval until interrupted.
    #[arg(long)]
    every: Option<Span>,
    #[command(flatten)]
    db: DbArgs,
}

pub(crate) fn run(args: &PullArgs) -> anyhow::Result<()> {
    let (back, step) = (args.from.0, args.step.0);
    runtime()?.block_on(async {
        let pool = connect(&args.db).await?;
        let fleet = fleet_by_name(&pool, &args.fleet).await?;
        let (query, tokens_in_query, tokens_out_query) = if args.vllm {
            let (r, i, o) =
                prewarm_ingest::prometheus::vllm_queries(&args.vllm_window, &args.vllm_selector);
            (r, Some(i), Some(o))
        } else {
            (
                args.query.clone().unwrap_or_default(),
                args.tokens_in_query.clone(),
                args.tokens_out_query.clone(),
            )
        };
        let source = prewarm_ingest::prometheus::PromSource {
            base_url: args.prometheus.clone(),
            query,
            step_secs: step,
            tokens_in_query,
            tokens_out_query,
        };
        let client = reqwest::Client::new();
        let every = args.every.map(|e| e.0);
        let mut ticker = tokio::time::interval(Duration::from_secs(every.unwrap_or(1) as u64));
        loop {
            ticker.tick().await;
            let report = prewarm_ingest::prometheus::pull_new(
                &pool,
                &client,
                fleet.id,
                &source,
                chrono::Utc::now(),
                chrono::Duration::seconds(back),
                prewarm_ingest::prometheus::Retry::default(),
            )
            .await;
            match report {
                Ok(report) => {
                    println!(
                        "pulled {} samples into fleet `{}` in {} request(s); {} step(s) had no data",
                        report.samples_stored, fleet.name, report.requests_sent, report.missing_steps
                    );
                    for w in &report.warnings {
                        println!("Prometheus warned: {w}");
                    }
                }
                // On a schedule, a failed pull is reported and retried at the next tick: the
                // next pull starts from the latest stored bucket, so nothing is lost.
                Err(e) if every.is_some() => eprintln!("pull failed: {e}"),
                Err(e) => return Err(e.into()),
            }
            if every.is_none() {
                break;
            }
        }
        Ok(())
    })
}
