//! Database housekeeping for tools: scratch databases for the demo and the benchmarks, and
//! refreshing the planner statistics after a bulk load.

use sqlx::{Executor, PgPool};

/// Refuses a database name that would need quoting (it is spliced into the statement).
fn plain_name(name: &str) -> Result<(), sqlx::Error> {
    let plain = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        return Ok(());
    }
    Err(sqlx::Error::Configuration(
        format!("`{name}` is not a plain database name (lower-case letters, digits, '_')").into(),
    ))
}

/// Creates an empty database (the connecting user needs CREATEDB).
pub async fn create_database(admin: &PgPool, name: &str) -> Result<(), sqlx::Error> {
    plain_name(name)?;
    admin
        .execute(format!("CREATE DATABASE {name}").as_str())
        .await?;
    Ok(())
}

/// Drops a database, closing the connections still open to it.
pub async fn drop_database(admin: &PgPool, name: &str) -> Result<(), sqlx::Error> {
    plain_name(name)?;
    admin
        .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
        .await?;
    Ok(())
}

/// Refreshes the query planner's statistics of every table, after a bulk load.
pub async fn analyze(pool: &PgPool) -> Result<(), sqlx::Error> {
    pool.execute("ANALYZE").await?;
    Ok(())
}
