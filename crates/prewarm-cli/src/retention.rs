//! `prewarm retention`: fold old raw samples into hourly sums.

use clap::Args;

use crate::database::{connect, runtime, DbArgs};

#[derive(Debug, Args)]
pub(crate) struct RetentionArgs {
    /// Raw samples (buckets under an hour) older than this become hourly sums.
    #[arg(long, default_value = "35d")]
    keep_raw: prewarm_core::Span,
    #[command(flatten)]
    db: DbArgs,
}

pub(crate) fn run(args: &RetentionArgs) -> anyhow::Result<()> {
    let keep = args.keep_raw.0;
    runtime()?.block_on(async {
        let pool = connect(&args.db).await?;
        let cutoff = chrono::Utc::now() - chrono::Duration::seconds(keep);
        let (hourly, removed) = prewarm_store::downsample(&pool, cutoff).await?;
        println!(
            "raw samples before {}: {removed} folded into {hourly} hourly row(s)",
            cutoff.to_rfc3339()
        );
        Ok(())
    })
}
