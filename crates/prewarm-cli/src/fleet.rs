//! `prewarm fleet`: create, list, update and delete fleets.

use anyhow::ensure;
use clap::{Args, Subcommand};
use prewarm_store::{create_fleet, Actor, FleetSpec};

use crate::database::{connect, runtime, DbArgs};

/// A fleet's settings, as `fleet create` and `fleet update` take them.
#[derive(Debug, Args, Clone)]
pub(crate) struct FleetSettingsArgs {
    /// IANA time zone of the fleet's users.
    #[arg(long)]
    tz: Option<String>,
    /// GPU type, for people reading the config.
    #[arg(long)]
    gpu_type: Option<String>,
    /// Requests per second one GPU serves.
    #[arg(long)]
    gpu_rps: Option<f64>,
    /// Price of one GPU-hour in US dollars.
    #[arg(long)]
    price: Option<f64>,
    /// Fewest GPUs the fleet keeps.
    #[arg(long)]
    min_gpus: Option<i32>,
    /// Most GPUs the fleet may have.
    #[arg(long)]
    max_gpus: Option<i32>,
    /// Spending limit in US dollars per hour.
    #[arg(long)]
    budget: Option<f64>,
    /// A stored GPU profile (`prewarm profile import`): the fleet then plans in tokens, its
    /// work its prompt and output tokens at the profile's rates.
    #[arg(long)]
    gpu_profile: Option<String>,
    /// GPUs one replica holds (a vLLM pod with tensor parallelism 4 holds 4; default 1): a
    /// fleet scaled by KEDA is planned in GPUs and scaled in replicas.
    #[arg(long)]
    gpus_per_replica: Option<i32>,
}

/// The fleet's own planner settings `fleet create` and `fleet update` take (the rest of them:
/// `PUT /v1/fleets/{fleet}/planner`).
#[derive(Debug, Args, Clone, Default)]
pub(crate) struct PlannerFlags {
    /// The SLO: the most requests that may time out, as a share (0.001 is 0.1%; default: the
    /// service's `planner.max_timeout_share`).
    #[arg(long)]
    slo: Option<f64>,
    /// A request waiting longer than this times out (the SLO's other half; default 2m).
    #[arg(long)]
    queue_timeout: Option<crate::args::Span>,
    /// Keep up to this many GPUs in a standby tier (stopped, resumed in --resume); 0: none.
    #[arg(long)]
    standby_max: Option<u32>,
    /// A standby GPU's price as a share of the running price (default 0.01).
    #[arg(long)]
    standby_price: Option<f64>,
    /// Resume lead until real resumes teach one (default 2m).
    #[arg(long)]
    resume: Option<crate::args::Span>,
}

impl PlannerFlags {
    /// Whether any is given.
    fn any(&self) -> bool {
        self.slo.is_some()
            || self.queue_timeout.is_some()
            || self.standby_max.is_some()
            || self.standby_price.is_some()
            || self.resume.is_some()
    }

    /// `base` with the given ones set.
    fn over(&self, base: prewarm_planner::Settings) -> prewarm_planner::Settings {
        prewarm_planner::Settings {
            max_timeout_share: self.slo.or(base.max_timeout_share),
            queue_timeout_secs: self.queue_timeout.map(|t| t.0).or(base.queue_timeout_secs),
            standby_max_gpus: self.standby_max.or(base.standby_max_gpus),
            standby_price_share: self.standby_price.or(base.standby_price_share),
            resume_secs: self.resume.map(|r| r.0).or(base.resume_secs),
            ..base
        }
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum FleetCommand {
    /// Create a fleet (defaults: UTC, 1 request/s per GPU, $3 per GPU-hour, 1 to 100 GPUs).
    Create {
        /// Fleet name: letters, digits, '.', '_' or '-'.
        name: String,
        #[command(flatten)]
        settings: FleetSettingsArgs,
        #[command(flatten)]
        planner: PlannerFlags,
        #[command(flatten)]
        db: DbArgs,
    },
    /// List every fleet with its settings.
    List {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Change a fleet's settings (those given; the change is checked and audited).
    Update {
        /// The fleet's name.
        name: String,
        #[command(flatten)]
        settings: FleetSettingsArgs,
        #[command(flatten)]
        planner: PlannerFlags,
        /// Remove the spending limit.
        #[arg(long, conflicts_with = "budget")]
        no_budget: bool,
        /// Plan in requests again (at --gpu-rps), not with a GPU profile.
        #[arg(long, conflicts_with = "gpu_profile")]
        no_gpu_profile: bool,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Delete a fleet with its history, decisions, orders and tokens, in one transaction. A fleet
    /// that still has GPUs (running, booting, in standby, or ordered) is not deleted under them:
    /// the command refuses, or with --drain marks it draining.
    Delete {
        /// The fleet's name.
        name: String,
        /// Confirm: without it nothing is deleted.
        #[arg(long)]
        yes: bool,
        /// If the fleet has GPUs, drain it: the running service terminates every one, waits for
        /// the provisioner to confirm, then deletes the fleet (without --drain such a fleet is
        /// refused).
        #[arg(long)]
        drain: bool,
        #[command(flatten)]
        db: DbArgs,
    },
}

pub(crate) fn run(command: &FleetCommand) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        match command {
            FleetCommand::Create {
                name,
                settings,
                planner,
                db,
            } => {
                let pool = connect(db).await?;
                let d = FleetSpec::named(name);
                let spec = FleetSpec {
                    name: name.clone(),
                    time_zone: settings.tz.clone().unwrap_or(d.time_zone),
                    gpu_type: settings.gpu_type.clone().unwrap_or(d.gpu_type),
                    gpu_rps: settings.gpu_rps.unwrap_or(d.gpu_rps),
                    price_usd_per_gpu_hour: settings.price.unwrap_or(d.price_usd_per_gpu_hour),
                    min_gpus: settings.min_gpus.unwrap_or(d.min_gpus),
                    max_gpus: settings.max_gpus.unwrap_or(d.max_gpus),
                    budget_usd_per_hour: settings.budget,
                    gpu_profile: settings.gpu_profile.clone(),
                    gpus_per_replica: settings.gpus_per_replica.unwrap_or(d.gpus_per_replica),
                    planner: planner.any().then(|| planner.over(Default::default())),
                };
                let fleet = create_fleet(&pool, &spec).await?;
                let mut conn = pool.acquire().await?;
                prewarm_store::audit::record(
                    &mut conn,
                    &Actor::cli(),
                    Some((fleet.id, &fleet.name)),
                    "fleet.create",
                    None,
                    Some(serde_json::to_value(&fleet)?),
                )
                .await?;
                println!("created fleet `{}` (id {})", fleet.name, fleet.id);
            }
            FleetCommand::List { db } => {
                let pool = connect(db).await?;
                let fleets = prewarm_store::list_fleets(&pool).await?;
                let header = [
                    "fleet",
                    "time zone",
                    "capacity",
                    "GPUs/replica",
                    "$/GPU-h",
                    "min",
                    "max",
                    "budget $/h",
                    "state",
                ];
                let rows: Vec<[String; 9]> = fleets
                    .iter()
                    .map(|f| {
                        let state = match (f.draining_since, f.paused, f.pinned_gpus) {
                            (Some(since), _, _) => {
                                format!("draining since {}", since.format("%Y-%m-%d %H:%M UTC"))
                            }
                            (None, true, _) => "paused".to_string(),
                            (None, false, Some(pin)) => format!("pinned to {pin}"),
                            _ => "-".to_string(),
                        };
                        [
                            f.name.clone(),
                            f.time_zone.to_string(),
                            match &f.gpu_profile {
                                Some(p) => format!("profile {p}"),
                                None => format!("{} requests/s/GPU", f.gpu_rps),
                            },
                            f.gpus_per_replica.to_string(),
                            f.price_usd_per_gpu_hour.to_string(),
                            f.min_gpus.to_string(),
                            f.max_gpus.to_string(),
                            f.budget_usd_per_hour
                                .map_or("-".to_string(), |b| b.to_string()),
                            state,
                        ]
                    })
                    .collect();
                // Each column as wide as its widest cell: text left-aligned, numbers right.
                let widths: Vec<usize> = (0..header.len())
                    .map(|c| {
                        rows.iter()
                            .map(|r| r[c].chars().count())
                            .chain([header[c].len()])
                            .max()
                            .unwrap_or(0)
                    })
                    .collect();
                let line = |cells: &[&str]| {
                    cells
                        .iter()
                        .enumerate()
                        .map(|(c, v)| {
                            if (3..8).contains(&c) {
                                format!("{v:>w$}", w = widths[c])
                            } else if c == cells.len() - 1 {
                                v.to_string()
                            } else {
                                format!("{v:<w$}", w = widths[c])
                            }
                        })
                        .collect::<Vec<_>>()
                        .join("  ")
                };
                println!("{}", line(&header));
                for r in &rows {
                    let cells: Vec<&str> = r.iter().map(String::as_str).collect();
                    println!("{}", line(&cells));
                }
            }
            FleetCommand::Update {
                name,
                settings,
                planner,
                no_budget,
                no_gpu_profile,
                db,
            } => {
                let pool = connect(db).await?;
                let update = prewarm_store::FleetUpdate {
                    time_zone: settings.tz.clone(),
                    gpu_type: settings.gpu_type.clone(),
                    gpu_rps: settings.gpu_rps,
                    price_usd_per_gpu_hour: settings.price,
                    min_gpus: settings.min_gpus,
                    max_gpus: settings.max_gpus,
                    budget_usd_per_hour: if *no_budget {
                        Some(None)
                    } else {
                        settings.budget.map(Some)
                    },
                    gpu_profile: if *no_gpu_profile {
                        Some(None)
                    } else {
                        settings.gpu_profile.clone().map(Some)
                    },
                    gpus_per_replica: settings.gpus_per_replica,
                };
                // The planner's settings are checked before anything changes, then set with the
                // fleet's (each change audited).
                let planner_settings = if planner.any() {
                    let current = prewarm_store::fleet_by_name(&pool, name).await?;
                    let merged = planner.over(current.planner_settings());
                    merged.check().map_err(|e| {
                        use prewarm_planner::Setting;
                        let flag = match e.setting {
                            Setting::MaxTimeoutShare => "--slo",
                            Setting::QueueTimeout => "--queue-timeout",
                            Setting::StandbyMax => "--standby-max",
                            Setting::StandbyPrice => "--standby-price",
                            Setting::Resume => "--resume",
                            other => other.api_name(),
                        };
                        anyhow::anyhow!("{}", e.named(flag))
                    })?;
                    Some(merged)
                } else {
                    None
                };
                let (before, after) =
                    prewarm_store::update_fleet(&pool, name, &update, &Actor::cli()).await?;
                if let Some(settings) = planner_settings {
                    prewarm_store::fleets::change(
                        &pool,
                        &after,
                        &Actor::cli(),
                        &prewarm_store::fleets::OperatorChange::Planner(settings),
                    )
                    .await?;
                }
                println!(
                    "updated fleet `{}`:\n  before: {}\n  after:  {}",
                    after.name,
                    serde_json::to_string(&before)?,
                    serde_json::to_string(&after)?
                );
            }
            FleetCommand::Delete {
                name,
                yes,
                drain,
                db,
            } => {
                ensure!(
                    *yes,
                    "deleting fleet `{name}` removes its history, decisions, orders and tokens; add --yes to confirm"
                );
                let pool = connect(db).await?;
                let how = if *drain {
                    prewarm_store::fleets::Deletion::Drain
                } else {
                    prewarm_store::fleets::Deletion::IfEmpty
                };
                match prewarm_store::delete_fleet(&pool, name, &Actor::cli(), how, chrono::Utc::now())
                    .await?
                {
                    prewarm_store::fleets::Deleted::Deleted { samples_removed } => {
                        println!("deleted fleet `{name}` and its {samples_removed} samples")
                    }
                    prewarm_store::fleets::Deleted::Draining { held, since } => println!(
                        "fleet `{name}` is draining since {}: it still has {}. The service (`prewarm serve`) terminates them and deletes the fleet once the provisioner has confirmed; `prewarm fleet list` shows it until then",
                        since.to_rfc3339(),
                        held.describe()
                    ),
                }
            }
        }
        Ok(())
    })
}
