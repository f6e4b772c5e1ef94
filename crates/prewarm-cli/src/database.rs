//! The database the commands use: connecting (and migrating), and scratch databases for the
//! demo and the benchmarks.

use std::time::Duration;

use anyhow::Context;
use clap::Args;
use sqlx::{postgres::PgPoolOptions, PgPool};

/// Where the database is.
#[derive(Debug, Args, Clone)]
pub(crate) struct DbArgs {
    /// PostgreSQL connection URL, e.g. postgres://user@127.0.0.1:5432/prewarm.
    #[arg(long, env = "PREWARM_DATABASE__URL")]
    pub database_url: String,
}

/// The URL without its password, for messages.
pub(crate) fn redacted(url: &str) -> String {
    prewarm_service::config::redact_url(url)
}

/// Connects and brings the schema up to date.
pub(crate) async fn connect(args: &DbArgs) -> anyhow::Result<PgPool> {
    let pool = PgPoolOptions::new()
        .max_connections(16)
        .acquire_timeout(Duration::from_secs(5))
        .connect(&args.database_url)
        .await
        .with_context(|| {
            format!(
                "cannot connect to the database at {}; is PostgreSQL running, and is PREWARM_DATABASE__URL (or DATABASE_URL) right?",
                redacted(&args.database_url)
            )
        })?;
    prewarm_store::MIGRATOR
        .run(&pool)
        .await
        .context("cannot bring the database schema up to date")?;
    Ok(pool)
}

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Runs `work` on a scratch database `{prefix}_{pid}` made on the server of `url` (its name and
/// URL are passed in), and drops it afterwards unless `keep`.
pub(crate) async fn scratch_database<T, F, Fut>(
    url: &str,
    prefix: &str,
    keep: bool,
    work: F,
) -> anyhow::Result<T>
where
    F: FnOnce(String, String) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let admin = connect_plain(url)
        .await
        .context("is PostgreSQL running, and is PREWARM_DATABASE__URL (or DATABASE_URL) right?")?;
    let name = format!("{prefix}_{}", std::process::id());
    prewarm_store::admin::create_database(&admin, &name)
        .await
        .context("cannot create a scratch database (the user needs CREATEDB)")?;
    let result = work(name.clone(), with_database(url, &name)).await;
    if !keep {
        prewarm_store::admin::drop_database(&admin, &name).await?;
    }
    result
}

async fn connect_plain(url: &str) -> anyhow::Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(2)
        .connect(url)
        .await
        .with_context(|| format!("cannot connect to {}", redacted(url)))
}

fn with_database(url: &str, database: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let slash = base
        .rfind('/')
        .filter(|i| *i > base.find("://").map_or(0, |s| s + 2))
        .unwrap_or(base.len());
    let mut out = format!("{}/{}", &base[..slash], database);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}
