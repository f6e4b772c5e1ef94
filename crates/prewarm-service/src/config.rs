//! `prewarm serve`'s configuration: a TOML file, then `PREWARM_...` environment variables on top
//! (`PREWARM_PROVISIONER__SECRET` sets `[provisioner] secret`). Everything is typed and checked at
//! start; an error names the setting and what it accepts. Secrets never appear in `Debug` output
//! or logs.

use std::{fmt, net::SocketAddr, path::Path, str::FromStr};

use figment::{
    providers::{Format, Serialized, Toml},
    Figment,
};
use serde::{Deserialize, Serialize};

/// A value that must not be printed: a secret, or a URL that may hold a password. It is read
/// from the configuration like a string, but neither `Debug` nor `Serialize` shows it: a secret
/// shows as `<redacted>`, a URL with its password (and query) hidden.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Redacted(pub String);

impl Redacted {
    /// What may be shown of the value.
    pub fn shown(&self) -> String {
        if self.0.is_empty() {
            String::new()
        } else if self.0.contains("://") {
            redact_url(&self.0)
        } else {
            "<redacted>".into()
        }
    }
}

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.shown())
    }
}

impl Serialize for Redacted {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.shown())
    }
}

/// Whether the service sends orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Plan, record and deliver orders.
    #[default]
    Act,
    /// Plan and record decisions; order nothing (a shadow run next to another autoscaler).
    ForecastOnly,
}

/// A duration in the configuration (`90s`, `15m`, `2h`, `1d`, or seconds).
pub use prewarm_core::Span;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
/// `[database]`: the PostgreSQL server.
pub struct DatabaseConfig {
    /// PostgreSQL URL (may hold a password: never logged).
    pub url: Redacted,
    /// Most connections in the pool.
    pub max_connections: u32,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: Redacted(String::new()),
            max_connections: 10,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
/// `[http]`: the API's address and the `/metrics` token.
pub struct HttpConfig {
    /// Address of the HTTP API (push, callbacks, operator endpoints, metrics).
    pub listen: String,
    /// When set, `/metrics` answers only requests with `Authorization: Bearer <this>` (or an API
    /// token with the `read` scope for every fleet): it shows every fleet's demand.
    pub metrics_token: Redacted,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            metrics_token: Redacted(String::new()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
/// `[provisioner]`: how decisions act on the fleet, where orders go and how they are signed.
pub struct ProvisionerConfig {
    /// How decisions act: `webhook` (signed orders to the provisioner's web hook, the fleet's
    /// state from its callbacks) or `keda` (no orders: KEDA's external scaler reads the replicas
    /// each fleet's latest decision wants from `[keda] listen`, and the fleet's state is observed
    /// through the pulls' `ready_query` and `desired_query`).
    pub kind: ProvisionerKind,
    /// The provisioner's web hook that receives boot and terminate orders.
    pub url: String,
    /// Shared signing secret, `whsec_` + base64 (also verifies the provisioner's callbacks).
    pub secret: Redacted,
    /// Time allowed for one delivery.
    pub timeout: Span,
}

impl Default for ProvisionerConfig {
    fn default() -> Self {
        Self {
            kind: ProvisionerKind::Webhook,
            url: String::new(),
            secret: Redacted(String::new()),
            timeout: Span(10),
        }
    }
}

/// How decisions act on the fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProvisionerKind {
    /// Orders (boot, terminate, stop, resume) to a signed web hook, exactly once; the fleet's
    /// state from the provisioner's callbacks.
    #[default]
    Webhook,
    /// Level-triggered: the desired replicas served to KEDA's external scaler; the fleet's state
    /// observed (ready and desired replicas from Prometheus).
    Keda,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
/// `[keda]`: KEDA's external scaler (with `provisioner.kind = "keda"`).
pub struct KedaConfig {
    /// Address of the gRPC scaler.
    pub listen: String,
    /// PEM certificate chain for TLS (empty: plain gRPC).
    pub tls_cert: String,
    /// PEM private key of `tls_cert`.
    pub tls_key: String,
    /// PEM CA whose client certificates are required (mutual TLS; empty: none required).
    pub client_ca: String,
    /// A decision older than this is not served (KEDA keeps the replicas it has): the service
    /// is down, or the fleet is not observed.
    pub stale_after: Span,
    /// How often `StreamIsActive` answers again.
    pub stream_every: Span,
    /// A fleet not observed for this long is not planned (its tick fails, saying so).
    pub observed_within: Span,
}

impl Default for KedaConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9095".into(),
            tls_cert: String::new(),
            tls_key: String::new(),
            client_ca: String::new(),
            stale_after: Span(300),
            stream_every: Span(15),
            observed_within: Span(300),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
/// `[service]`: the replica, its mode, leases and concurrency.
pub struct ServiceConfig {
    /// This process's name among replicas, for people (default: host name, process id and a
    /// random suffix, new at every start). Leases are held by a per-start token, not by this name,
    /// so two processes given the same id still never plan the same fleet.
    pub replica_id: String,
    /// What the operators had set when the decision was made.
    pub mode: Mode,
    /// A replica that stops renewing loses its fleets after this long.
    pub lease_ttl: Span,
    /// Most fleets planned at once by one replica. A tick round's plans wait for their round's
    /// writers, which write up to this many decisions (and tallies) in one statement, so it is
    /// the batch size more than a load on the database's connections.
    pub concurrency: usize,
    /// No fleet's plan is started later than this after its tick began: the fleets left are
    /// counted as not planned in time (`prewarm_fleets_not_planned_in_time_total`), come first
    /// at the next tick, and the replica hands what it cannot plan in time to other replicas.
    /// Below the tick's interval (a minute by default).
    pub tick_deadline: Span,
    /// How often each fleet is refitted: a refit run (`schedule.refit`) refits the fleets whose
    /// last refit is this old, the longest waiting first.
    pub refit_every: Span,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            replica_id: String::new(),
            mode: Mode::Act,
            lease_ttl: Span(15),
            concurrency: 64,
            tick_deadline: Span(45),
            refit_every: Span(900),
        }
    }
}

/// Cron patterns with seconds (`sec min hour day month weekday`), evaluated in UTC: they are
/// intervals, which daylight-saving time must not stretch or squeeze. Jobs tied to a fleet's local
/// calendar (retention) run once per local day through [`crate::jobs`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleConfig {
    /// Planning tick for every fleet.
    pub tick: String,
    /// Forecast refit for every fleet.
    pub refit: String,
    /// Retries of undelivered orders between ticks.
    pub dispatch: String,
    /// Lease renewal and takeover of fleets whose replica died.
    pub leases: String,
    /// Checks each fleet's local calendar for daily jobs (retention).
    pub daily: String,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            tick: "0 * * * * *".into(),
            refit: "30 */5 * * * *".into(),
            dispatch: "*/5 * * * * *".into(),
            leases: "*/5 * * * * *".into(),
            daily: "15 * * * * *".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
/// `[planner]`: the planner's settings for every fleet (a fleet's own settings go over them).
pub struct PlannerDefaults {
    /// The SLO: the largest share of requests that may time out (0.001 = 0.1%).
    pub max_timeout_share: f64,
    /// The SLO's queue timeout: a request that waited longer is lost.
    pub queue_timeout: Span,
    /// Expert override: plan on this quantile everywhere instead of the SLO-chosen levels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quantile: Option<f64>,
    /// Expert override: share of a GPU's capacity planned on (1: full load, the queue absorbs
    /// short bursts).
    pub target_utilization: f64,
    /// Expert override: when demand runs above the distribution's top quantile, keep load under
    /// this share at once (by default the forecast is corrected instead).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub miss_load: Option<f64>,
    /// Window after the boot lead a pre-warm is sized for.
    pub hold: Span,
    /// Boot lead until the fleet has reported enough boots to use their p95.
    pub boot_lead: Span,
    /// Boots needed before their p95 replaces `boot_lead`.
    pub min_boots_for_lead: i64,
    /// History a fit uses.
    pub history: Span,
    /// History needed before forecasting (the reactive rules run until then).
    pub min_history: Span,
    /// Forecast bucket width.
    pub step: Span,
    /// Most GPUs a fleet keeps in standby unless it says otherwise (0: no standby tier).
    pub standby_max_gpus: u32,
    /// A standby GPU's price as a share of the running price (volumes, addresses).
    pub standby_price_share: f64,
    /// Resume lead until a fleet has reported enough resumes to use their p95.
    pub resume: Span,
}

impl PlannerDefaults {
    /// The settings a fleet's own (`fleets.planner`) go over, in the planner's one type.
    pub fn settings(&self) -> prewarm_planner::Settings {
        prewarm_planner::Settings {
            max_timeout_share: Some(self.max_timeout_share),
            queue_timeout_secs: Some(self.queue_timeout.0),
            quantile: self.quantile,
            target_utilization: Some(self.target_utilization),
            miss_load: self.miss_load,
            hold_secs: Some(self.hold.0),
            boot_lead_secs: Some(self.boot_lead.0),
            exceed_max_share: None,
            standby_max_gpus: Some(self.standby_max_gpus),
            standby_price_share: Some(self.standby_price_share),
            resume_secs: Some(self.resume.0),
        }
    }
}

impl Default for PlannerDefaults {
    fn default() -> Self {
        let slo = prewarm_planner::Slo::default();
        Self {
            max_timeout_share: slo.max_timeout_share,
            queue_timeout: Span(slo.timeout_secs),
            quantile: None,
            target_utilization: prewarm_planner::defaults::TARGET_UTILIZATION,
            miss_load: None,
            hold: Span(prewarm_planner::defaults::HOLD_SECS),
            boot_lead: Span(prewarm_planner::defaults::BOOT_LEAD_SECS),
            min_boots_for_lead: 5,
            history: Span(21 * 86_400),
            min_history: Span(prewarm_planner::defaults::MIN_PLAN_HISTORY_SECS),
            step: Span(300),
            standby_max_gpus: 0,
            standby_price_share: prewarm_planner::standby::defaults::PRICE_SHARE,
            resume: Span(prewarm_planner::standby::defaults::RESUME_SECS),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
/// `[retention]`: how long raw samples and decisions are kept.
pub struct RetentionConfig {
    /// Raw samples older than this are folded into hourly sums.
    pub keep_raw: Span,
    /// Local time of day (fleet's time zone) the fold runs, `HH:MM`.
    pub at: String,
    /// Decisions and delivered orders older than this are deleted.
    pub keep_decisions: Span,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            keep_raw: Span(35 * 86_400),
            at: "03:00".into(),
            keep_decisions: Span(90 * 86_400),
        }
    }
}

/// One Prometheus pull.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullConfig {
    /// The fleet whose history receives the samples.
    pub fleet: String,
    /// Prometheus base URL.
    pub prometheus: String,
    /// PromQL giving requests per second.
    pub query: String,
    /// PromQL giving prompt tokens per second (with `tokens_out_query`), for a fleet that plans
    /// in tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_in_query: Option<String>,
    /// PromQL giving output tokens per second (with `tokens_in_query`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_out_query: Option<String>,
    /// PromQL giving the real fleet's ready replicas now (with `desired_query`), e.g.
    /// `kube_deployment_status_replicas_ready{namespace="llm",deployment="vllm"}`: the fleet is
    /// then observed, and planned on what it has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_query: Option<String>,
    /// PromQL giving the real fleet's desired replicas now (with `ready_query`), e.g.
    /// `kube_deployment_spec_replicas{namespace="llm",deployment="vllm"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_query: Option<String>,
    /// Bucket width.
    #[serde(default = "default_pull_step")]
    pub step: Span,
    /// Cron pattern (with seconds, UTC).
    #[serde(default = "default_pull_schedule")]
    pub schedule: String,
}

fn default_pull_step() -> Span {
    Span(60)
}
fn default_pull_schedule() -> String {
    "20 * * * * *".into()
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The database.
    pub database: DatabaseConfig,
    /// The HTTP API.
    pub http: HttpConfig,
    /// The provisioner's web hook.
    pub provisioner: ProvisionerConfig,
    /// `[service]`: the replica, its mode, leases and concurrency.
    pub service: ServiceConfig,
    /// When the jobs run.
    pub schedule: ScheduleConfig,
    /// The planner's defaults.
    pub planner: PlannerDefaults,
    /// How long history and decisions are kept.
    pub retention: RetentionConfig,
    /// Prometheus queries pulled on a schedule.
    pub pulls: Vec<PullConfig>,
    /// KEDA's external scaler.
    pub keda: KedaConfig,
}

/// Whether a setting's value may hold a secret (and is never quoted back or printed).
fn is_secret_key(path: &str) -> bool {
    path.ends_with("secret") || path.ends_with("url") || path.ends_with("token")
}

pub use prewarm_core::redact_url;

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(pub String);

impl Config {
    /// Reads `path` (when given), then `PREWARM_` variables from `env`, and checks the result.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(p) = path {
            if !p.exists() {
                return Err(ConfigError(format!(
                    "{} does not exist; pass the path of a TOML file (docs/service.md: Running the service)",
                    p.display()
                )));
            }
            // Parse the file here first: the TOML parser's own message quotes the offending line,
            // which may hold a secret. Ours gives the line and column only.
            let text = std::fs::read_to_string(p)
                .map_err(|e| ConfigError(format!("{}: cannot read: {e}", p.display())))?;
            if let Err(e) = toml::from_str::<toml::Table>(&text) {
                let (line, column) = e.span().map_or((0, 0), |span| {
                    let before = &text[..span.start.min(text.len())];
                    let line = before.matches('\n').count() + 1;
                    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                    (line, column)
                });
                return Err(ConfigError(format!(
                    "{}: line {line}, column {column}: not valid TOML ({}); the line is not shown, as it may hold a secret",
                    p.display(),
                    e.message().trim_end_matches('\n')
                )));
            }
            figment = figment.merge(Toml::string(&text));
        }
        // Variables are passed in rather than read here so tests do not race on the process
        // environment; `DATABASE_URL` is honoured as the usual fallback.
        let vars: Vec<(String, String)> = env.into_iter().collect();
        let database_url = vars
            .iter()
            .find(|(k, _)| k == "DATABASE_URL")
            .map(|(_, v)| v.clone());
        let prefixed: Vec<(String, String)> = vars
            .into_iter()
            // Only `PREWARM_SECTION__KEY` names a setting; others (`PREWARM_LOG`) are not ours.
            .filter_map(|(k, v)| {
                k.strip_prefix("PREWARM_")
                    .filter(|rest| rest.contains("__"))
                    .map(|rest| (rest.to_ascii_lowercase().replace("__", "."), v))
            })
            .collect();
        for (key, value) in prefixed {
            let parsed = figment::value::Value::from_str(&value)
                .unwrap_or_else(|_| figment::value::Value::from(value.clone()));
            // Secrets and URLs stay strings even when they look like numbers.
            let value = match parsed {
                figment::value::Value::String(..) => parsed,
                _ if key.ends_with("secret") || key.ends_with("url") => {
                    figment::value::Value::from(value)
                }
                other => other,
            };
            figment = figment.merge(Serialized::global(&key, value));
        }
        let mut config: Config = figment.extract().map_err(|e| {
            let mut messages: Vec<String> = e
                .into_iter()
                .map(|e| {
                    let path = e.path.join(".");
                    // A value sent for a secret (or a URL, which may carry credentials) is never
                    // quoted back.
                    let kind = match &e.kind {
                        figment::error::Kind::InvalidType(_, expected)
                        | figment::error::Kind::InvalidValue(_, expected)
                            if is_secret_key(&path) =>
                        {
                            format!("invalid value (not shown: it may be a secret), expected {expected}")
                        }
                        kind => kind.to_string(),
                    };
                    format!(
                        "{}{kind}",
                        if path.is_empty() {
                            String::new()
                        } else {
                            format!("`{path}`: ")
                        },
                    )
                })
                .collect();
            messages.dedup();
            ConfigError(messages.join("; "))
        })?;
        if config.database.url.0.is_empty() {
            if let Some(url) = database_url {
                config.database.url = Redacted(url);
            }
        }
        config.validate()?;
        Ok(config)
    }

    /// The configuration as TOML that can be pasted back into a file, with every secret shown
    /// as `<redacted>` and credentials inside URLs hidden (`prewarm serve --check`).
    pub fn to_toml_redacted(&self) -> String {
        // Secrets and the database URL hide themselves ([`Redacted`]); plain URLs may hold a
        // password too.
        let mut c = self.clone();
        c.provisioner.url = redact_url(&c.provisioner.url);
        for pull in &mut c.pulls {
            pull.prometheus = redact_url(&pull.prometheus);
        }
        toml::to_string_pretty(&c)
            .unwrap_or_else(|e| format!("# cannot print the configuration: {e}\n"))
    }

    /// Checks every setting.
    pub fn validate(&mut self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError(m));
        if self.database.url.0.is_empty() {
            return bad("`database.url` is not set: set it in the file or PREWARM_DATABASE__URL (or DATABASE_URL)".into());
        }
        if !self.database.url.0.starts_with("postgres://")
            && !self.database.url.0.starts_with("postgresql://")
        {
            return bad("`database.url` must start with postgres:// or postgresql://".into());
        }
        if self.database.max_connections == 0 {
            return bad("`database.max_connections` must be at least 1".into());
        }
        if self.http.listen.parse::<SocketAddr>().is_err() {
            return bad(format!(
                "`http.listen` = `{}` is not an address such as 127.0.0.1:8080",
                self.http.listen
            ));
        }
        let webhook = self.provisioner.kind == ProvisionerKind::Webhook;
        if webhook
            && (self.service.mode == Mode::Act || !self.provisioner.url.is_empty())
            && !(self.provisioner.url.starts_with("http://")
                || self.provisioner.url.starts_with("https://"))
        {
            return bad("`provisioner.url` must be the provisioner's http(s) web hook (or set `service.mode = \"forecast-only\"`)".into());
        }
        if (webhook && self.service.mode == Mode::Act) || !self.provisioner.secret.0.is_empty() {
            if let Err(e) = crate::webhook::Secret::parse(&self.provisioner.secret.0) {
                return bad(format!("`provisioner.secret`: {e}"));
            }
        }
        if self.provisioner.timeout.0 <= 0 || self.provisioner.timeout.0 > 300 {
            return bad("`provisioner.timeout` must be between 1s and 5m".into());
        }
        if self.service.lease_ttl.0 < 3 || self.service.lease_ttl.0 > 25 {
            return bad("`service.lease_ttl` must be between 3s and 25s (a dead replica's fleets are taken over within 30 s)".into());
        }
        if !(1..=3_600).contains(&self.service.tick_deadline.0) {
            return bad(
                "`service.tick_deadline` must be between 1s and 1h (below the tick's interval)"
                    .into(),
            );
        }
        if !(300..=86_400).contains(&self.service.refit_every.0) {
            return bad("`service.refit_every` must be between 5m and 1d".into());
        }
        if self.service.concurrency == 0 {
            return bad("`service.concurrency` must be at least 1".into());
        }
        if self.service.replica_id.is_empty() {
            // Unique per start: in containers every replica may be PID 1 on a host named alike.
            let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "replica".into());
            let suffix: u32 = rand::random();
            self.service.replica_id =
                format!("{host}-{}-{:06x}", std::process::id(), suffix & 0xff_ffff);
        }
        if self.service.replica_id.len() > 200 {
            return bad("`service.replica_id` is at most 200 characters".into());
        }
        for (name, pattern) in [
            ("tick", &self.schedule.tick),
            ("refit", &self.schedule.refit),
            ("dispatch", &self.schedule.dispatch),
            ("leases", &self.schedule.leases),
            ("daily", &self.schedule.daily),
        ] {
            if let Err(e) = crate::jobs::Pattern::parse(pattern) {
                return bad(format!("`schedule.{name}`: {e}"));
            }
        }
        let p = &self.planner;
        if let Err(e) = p.settings().check() {
            return bad(e.named(&format!("`{}`", e.setting.config_key())));
        }
        if p.step.0 < 60 || 86_400 % p.step.0 != 0 {
            return bad("`planner.step` must be at least 1m and divide a day".into());
        }
        if p.min_history.0 <= 0 || p.history.0 < p.min_history.0 {
            return bad(
                "`planner.min_history` must be positive and `planner.history` at least as long"
                    .into(),
            );
        }
        if !(1..=1_000).contains(&p.min_boots_for_lead) {
            return bad("`planner.min_boots_for_lead` must be 1 to 1000".into());
        }
        if crate::jobs::parse_local_time(&self.retention.at).is_none() {
            return bad(format!(
                "`retention.at` = `{}` is not a time such as 03:00",
                self.retention.at
            ));
        }
        for (i, pull) in self.pulls.iter().enumerate() {
            if pull.tokens_in_query.is_some() != pull.tokens_out_query.is_some() {
                return bad(format!(
                    "`pulls[{i}]`: give both tokens_in_query and tokens_out_query, or neither"
                ));
            }
            if !pull.prometheus.starts_with("http") || pull.query.trim().is_empty() {
                return bad(format!(
                    "`pulls[{i}]` needs a Prometheus http(s) URL and a query"
                ));
            }
            if let Err(e) = crate::jobs::Pattern::parse(&pull.schedule) {
                return bad(format!("`pulls[{i}].schedule`: {e}"));
            }
            if pull.ready_query.is_some() != pull.desired_query.is_some() {
                return bad(format!(
                    "`pulls[{i}]`: give both ready_query and desired_query (the real fleet's ready and desired replicas), or neither"
                ));
            }
            if [&pull.ready_query, &pull.desired_query]
                .iter()
                .any(|q| q.as_deref().is_some_and(|q| q.trim().is_empty()))
            {
                return bad(format!(
                    "`pulls[{i}]`: ready_query and desired_query cannot be empty"
                ));
            }
        }
        let k = &self.keda;
        if !webhook {
            if k.listen.parse::<SocketAddr>().is_err() {
                return bad(format!(
                    "`keda.listen` = `{}` is not an address such as 0.0.0.0:9095",
                    k.listen
                ));
            }
            if k.tls_cert.is_empty() != k.tls_key.is_empty() {
                return bad(
                    "`keda.tls_cert` and `keda.tls_key` go together: give both, or neither".into(),
                );
            }
            if !k.client_ca.is_empty() && k.tls_cert.is_empty() {
                return bad(
                    "`keda.client_ca` (mutual TLS) needs `keda.tls_cert` and `keda.tls_key`".into(),
                );
            }
            for (name, span) in [
                ("stale_after", k.stale_after),
                ("stream_every", k.stream_every),
                ("observed_within", k.observed_within),
            ] {
                if span.0 < 1 || span.0 > 86_400 {
                    return bad(format!("`keda.{name}` must be between 1s and 1d"));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod redaction {
    use super::Redacted;

    #[test]
    fn a_secret_never_serializes_or_prints_and_a_url_hides_its_password() {
        let secret = Redacted("whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQ=".into());
        assert_eq!(serde_json::to_string(&secret).unwrap(), "\"<redacted>\"");
        assert_eq!(format!("{secret:?}"), "\"<redacted>\"");
        let url = Redacted("postgres://app:hunter2@db:5432/prewarm".into());
        let shown = serde_json::to_string(&url).unwrap();
        assert!(
            !shown.contains("hunter2") && shown.contains("db:5432"),
            "{shown}"
        );
        assert!(!format!("{url:?}").contains("hunter2"));
        assert_eq!(serde_json::to_string(&Redacted::default()).unwrap(), "\"\"");
    }
}
