//! Errors of the storage crate.

/// One bad item of a batch: which one, which field, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ItemError {
    /// Fleet the item was sent for (multi-fleet batches).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fleet: Option<String>,
    /// Position of the item in its list, from 0.
    pub index: usize,
    /// The field that is wrong.
    pub field: &'static str,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for ItemError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(fleet) = &self.fleet {
            write!(f, "fleet `{fleet}`: ")?;
        }
        write!(f, "item {}: `{}`: {}", self.index, self.field, self.message)
    }
}

/// Up to five bad items, then how many more: what an error message can show.
fn some_items(items: &[ItemError]) -> String {
    let mut text: Vec<String> = items.iter().take(5).map(|i| i.to_string()).collect();
    if items.len() > 5 {
        text.push(format!("and {} more", items.len() - 5));
    }
    text.join("; ")
}

/// Why history could not be stored or read.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The batch has bad items; nothing was stored.
    #[error("{} bad item(s), nothing was stored: {}", .0.len(), some_items(.0))]
    Invalid(Vec<ItemError>),
    /// No fleet of that name.
    #[error("no fleet named `{0}`; create it first (`prewarm fleet create {0}`)")]
    UnknownFleet(String),
    /// A fleet's settings are out of range.
    #[error("invalid fleet: {0}")]
    InvalidFleet(String),
    /// A token cannot be made as asked.
    #[error("invalid token: {0}")]
    InvalidToken(String),
    /// The change cannot be made in the state things are in (a fleet with GPUs running cannot be
    /// deleted under them); the message says what to do instead.
    #[error("{0}")]
    Conflict(String),
    /// The database could not be reached or dropped the connection: try again.
    #[error("the database is unavailable ({0}); nothing was stored, retry later")]
    Unavailable(String),
    /// Any other database error.
    #[error("database error: {0}")]
    Database(sqlx::Error),
}

/// Whether `e` says the database could not be reached or is going away (worth retrying), rather
/// than that it refused the query.
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        // 57P01 admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now, 08xxx
        // connection failures, 55000 "database is not currently accepting connections".
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("57P") || c.starts_with("08") || c == "55000"),
        _ => false,
    }
}

/// When the database refused a value a query carried (SQLSTATE class 22, a data exception such as
/// a NUL character in text or a number out of range; or 23514, a check constraint), what it said,
/// cut short: the request was wrong, and sending it again will not help.
pub fn refused_value(e: &sqlx::Error) -> Option<String> {
    match e {
        sqlx::Error::Database(db)
            if db
                .code()
                .is_some_and(|c| c.starts_with("22") || c == "23514") =>
        {
            Some(prewarm_core::shorten(db.message(), 200))
        }
        _ => None,
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        if is_unavailable(&e) {
            StoreError::Unavailable(e.to_string())
        } else {
            StoreError::Database(e)
        }
    }
}
