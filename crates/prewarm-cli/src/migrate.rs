//! `prewarm migrate`: bring the schema up to date.

use crate::database::{connect, redacted, runtime, DbArgs};

pub(crate) fn run(args: &DbArgs) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        connect(args).await?;
        println!(
            "the schema of {} is up to date",
            redacted(&args.database_url)
        );
        Ok(())
    })
}
