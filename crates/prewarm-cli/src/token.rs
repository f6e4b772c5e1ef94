//! `prewarm token`: create (with scopes), list and revoke API tokens.

use anyhow::ensure;
use clap::Subcommand;
use prewarm_store::{create_token, fleet_by_name, Actor, Scope};

use crate::database::{connect, runtime, DbArgs};

#[derive(Debug, Subcommand)]
pub(crate) enum TokenCommand {
    /// Create a bearer token for one fleet, or for all; prints it once.
    Create {
        /// The fleet the token is for; without it, every fleet.
        #[arg(long)]
        fleet: Option<String>,
        /// A label to recognise the token by (the audit log names it).
        #[arg(long, default_value = "")]
        label: String,
        /// What it may do, comma-separated: push (samples), read, operate (pause, pin, events,
        /// planner settings, refit), admin (fleets and tokens).
        #[arg(long, default_value = "push", value_delimiter = ',', value_parser = parse_scope)]
        scope: Vec<Scope>,
        #[command(flatten)]
        db: DbArgs,
    },
    /// List tokens (never the secrets): id, label, fleet, scopes, revoked.
    List {
        /// Only this fleet's tokens.
        #[arg(long)]
        fleet: Option<String>,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Revoke a token at once.
    Revoke {
        /// The token's id (from `token list`).
        id: i64,
        #[command(flatten)]
        db: DbArgs,
    },
}

fn parse_scope(text: &str) -> Result<Scope, String> {
    text.trim().parse()
}

pub(crate) fn run(command: &TokenCommand) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        match command {
            TokenCommand::Create {
                fleet,
                label,
                scope,
                db,
            } => {
                let mut scope = scope.clone();
                scope.sort();
                scope.dedup();
                let pool = connect(db).await?;
                let (id, token) =
                    create_token(&pool, fleet.as_deref(), label, &scope, &Actor::cli()).await?;
                eprintln!(
                    "token {id} ({}) for {}: keep it now, only its hash is stored and it cannot be shown again",
                    scope.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
                    fleet
                        .as_deref()
                        .map_or("every fleet".to_string(), |f| format!("fleet `{f}`"))
                );
                println!("{token}");
            }
            TokenCommand::List { fleet, db } => {
                let pool = connect(db).await?;
                let fleet_id = match fleet {
                    Some(name) => Some(fleet_by_name(&pool, name).await?.id),
                    None => None,
                };
                println!(
                    "{:>5} {:<24} {:<20} {:<26} revoked",
                    "id", "label", "fleet", "scopes"
                );
                for t in prewarm_store::list_tokens(&pool, fleet_id).await? {
                    println!(
                        "{:>5} {:<24} {:<20} {:<26} {}",
                        t.id,
                        t.label,
                        t.fleet.unwrap_or_else(|| "(every fleet)".into()),
                        t.scopes
                            .iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(","),
                        t.revoked_at.map_or("-".to_string(), |r| r.to_rfc3339())
                    );
                }
            }
            TokenCommand::Revoke { id, db } => {
                let pool = connect(db).await?;
                ensure!(
                    prewarm_store::revoke_token(&pool, *id, &Actor::cli()).await?,
                    "no token {id}, or it is revoked already (see `prewarm token list`)"
                );
                println!("revoked token {id}");
            }
        }
        Ok(())
    })
}
