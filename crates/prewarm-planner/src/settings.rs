//! One set of planner settings: what a fleet may set, and the ranges each one accepts.
//!
//! The service's configuration (`[planner]`), the operator API (`PUT /v1/fleets/{f}/planner`),
//! `simulate` and `tune` all check their values here, so a setting accepted in one place is
//! accepted in all of them; each front end only names the setting its own way (a TOML key, a JSON
//! field, a flag).

use crate::{OverMax, PlannerConfig, Slo};

/// The limits every front end applies.
pub mod limits {
    /// The most GPUs a fleet may be given: catches a typo before it reaches a bill.
    pub const MAX_GPUS: u32 = 100_000;
    /// The longest queue timeout an SLO may state, seconds.
    pub const MAX_QUEUE_TIMEOUT_SECS: i64 = 3_600;
    /// The longest hold a pre-warm may be sized for, seconds.
    pub const MAX_HOLD_SECS: i64 = 1_800;
    /// The shortest and longest boot lead, seconds.
    pub const BOOT_LEAD_SECS: (i64, i64) = (60, 3_600);
    /// The largest share above `max_gpus` a plan may be allowed.
    pub const MAX_EXCEED_SHARE: f64 = 10.0;
    /// The shortest and longest resume lead, seconds.
    pub const RESUME_SECS: (i64, i64) = (10, 3_600);
}

/// A planner setting, as the operator API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    /// The SLO's share of requests that may time out.
    MaxTimeoutShare,
    /// The SLO's queue timeout.
    QueueTimeout,
    /// Plan on one quantile everywhere.
    Quantile,
    /// Share of a GPU's capacity planned on.
    TargetUtilization,
    /// Load kept when demand runs above the top quantile.
    MissLoad,
    /// The hold after the boot lead.
    Hold,
    /// The boot lead.
    BootLead,
    /// Share above `max_gpus` the plan may go.
    ExceedMaxShare,
    /// Most GPUs in standby (0: no standby tier).
    StandbyMax,
    /// A standby GPU's price as a share of the running price.
    StandbyPrice,
    /// The resume lead until one is learned from real resumes.
    Resume,
}

impl Setting {
    /// The name in the operator API's JSON (`fleets.planner`).
    pub fn api_name(self) -> &'static str {
        match self {
            Setting::MaxTimeoutShare => "max_timeout_share",
            Setting::QueueTimeout => "queue_timeout_secs",
            Setting::Quantile => "quantile",
            Setting::TargetUtilization => "target_utilization",
            Setting::MissLoad => "miss_load",
            Setting::Hold => "hold_secs",
            Setting::BootLead => "boot_lead_secs",
            Setting::ExceedMaxShare => "exceed_max_share",
            Setting::StandbyMax => "standby_max_gpus",
            Setting::StandbyPrice => "standby_price_share",
            Setting::Resume => "resume_secs",
        }
    }

    /// The key in the service configuration's `[planner]` table.
    pub fn config_key(self) -> &'static str {
        match self {
            Setting::MaxTimeoutShare => "planner.max_timeout_share",
            Setting::QueueTimeout => "planner.queue_timeout",
            Setting::Quantile => "planner.quantile",
            Setting::TargetUtilization => "planner.target_utilization",
            Setting::MissLoad => "planner.miss_load",
            Setting::Hold => "planner.hold",
            Setting::BootLead => "planner.boot_lead",
            Setting::ExceedMaxShare => "planner.exceed_max_share",
            Setting::StandbyMax => "planner.standby_max_gpus",
            Setting::StandbyPrice => "planner.standby_price_share",
            Setting::Resume => "planner.resume",
        }
    }

    /// The command-line flag of `simulate` and `tune`.
    pub fn flag(self) -> &'static str {
        match self {
            Setting::MaxTimeoutShare => "--slo",
            Setting::QueueTimeout => "--timeout",
            Setting::Quantile => "--quantile",
            Setting::TargetUtilization => "--utilization",
            Setting::MissLoad => "--miss-load",
            Setting::Hold => "--hold",
            Setting::BootLead => "--boot",
            Setting::ExceedMaxShare => "--exceed-max-share",
            Setting::StandbyMax => "--standby-max",
            Setting::StandbyPrice => "--standby-price",
            Setting::Resume => "--resume",
        }
    }
}

/// A setting out of its range: which one, the value given and the range it accepts.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{} {rule}, not {value}", setting.api_name())]
pub struct SettingError {
    /// Which setting.
    pub setting: Setting,
    /// The value found.
    pub value: String,
    /// The range it accepts.
    pub rule: &'static str,
}

impl SettingError {
    /// The message with the setting named as a front end spells it.
    pub fn named(&self, name: &str) -> String {
        format!("{name} {}, not {}", self.rule, self.value)
    }
}

/// The planner settings a fleet, the configuration or a command line may set; unset ones keep
/// what is under them (the fleet's over the configuration's over [`crate::defaults`]).
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The SLO: the largest share of requests that may time out (0.001 = 0.1%).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_timeout_share: Option<f64>,
    /// The SLO's queue timeout, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_timeout_secs: Option<i64>,
    /// Expert override: plan on this quantile everywhere.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quantile: Option<f64>,
    /// Expert override: share of a GPU's capacity planned on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_utilization: Option<f64>,
    /// Expert override: keep load under this share at once when demand runs above the
    /// distribution's top quantile.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub miss_load: Option<f64>,
    /// Window after the boot lead a pre-warm is sized for, seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hold_secs: Option<i64>,
    /// Boot lead until one is learned from real boots, seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub boot_lead_secs: Option<i64>,
    /// Share above `max_gpus` the plan may go (unset: stay at the limit).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exceed_max_share: Option<f64>,
    /// Most GPUs kept in standby (0: no standby tier; at most the fleet's `max_gpus`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub standby_max_gpus: Option<u32>,
    /// A standby GPU's price as a share of the running price (volumes, addresses).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub standby_price_share: Option<f64>,
    /// Resume lead until one is learned from real resumes, seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resume_secs: Option<i64>,
}

fn fail<T: ToString>(setting: Setting, value: T, rule: &'static str) -> Result<(), SettingError> {
    Err(SettingError {
        setting,
        value: value.to_string(),
        rule,
    })
}

impl Settings {
    /// Checks every setting that is set against its range.
    pub fn check(&self) -> Result<(), SettingError> {
        use Setting::*;
        if let Some(x) = self.max_timeout_share {
            if !(x > 0.0 && x < 0.5) {
                return fail(
                    MaxTimeoutShare,
                    x,
                    "must be above 0 and below 0.5 (0.001 is 0.1% of requests timed out)",
                );
            }
        }
        if let Some(t) = self.queue_timeout_secs {
            if !(1..=limits::MAX_QUEUE_TIMEOUT_SECS).contains(&t) {
                return fail(QueueTimeout, t, "must be 1 to 3600 seconds (1 s to 1 hour)");
            }
        }
        if let Some(q) = self.quantile {
            if !(0.5..1.0).contains(&q) {
                return fail(Quantile, q, "must be at least 0.5 and below 1");
            }
        }
        if let Some(u) = self.target_utilization {
            if !(u > 0.0 && u <= 1.0) {
                return fail(TargetUtilization, u, "must be above 0 and at most 1");
            }
        }
        if let Some(m) = self.miss_load {
            if !(m > 0.0 && m <= 1.0) {
                return fail(MissLoad, m, "must be above 0 and at most 1");
            }
        }
        if let Some(h) = self.hold_secs {
            if !(0..=limits::MAX_HOLD_SECS).contains(&h) {
                return fail(Hold, h, "must be 0 to 1800 seconds (30m)");
            }
        }
        if let Some(b) = self.boot_lead_secs {
            let (lo, hi) = limits::BOOT_LEAD_SECS;
            if !(lo..=hi).contains(&b) {
                return fail(BootLead, b, "must be 60 to 3600 seconds");
            }
        }
        if let Some(x) = self.exceed_max_share {
            if !(x.is_finite() && (0.0..=limits::MAX_EXCEED_SHARE).contains(&x)) {
                return fail(ExceedMaxShare, x, "must be 0 to 10");
            }
        }
        if let Some(n) = self.standby_max_gpus {
            if n > limits::MAX_GPUS {
                return fail(StandbyMax, n, "must be 0 to 100000 (and at most max_gpus)");
            }
        }
        if let Some(x) = self.standby_price_share {
            if !(x.is_finite() && (0.0..=1.0).contains(&x)) {
                return fail(
                    StandbyPrice,
                    x,
                    "must be 0 to 1 of the running price (0.01 is 1%)",
                );
            }
        }
        if let Some(r) = self.resume_secs {
            let (lo, hi) = limits::RESUME_SECS;
            if !(lo..=hi).contains(&r) {
                return fail(Resume, r, "must be 10 to 3600 seconds");
            }
        }
        Ok(())
    }

    /// These settings over `under`: each one set here wins.
    pub fn over(&self, under: &Settings) -> Settings {
        Settings {
            max_timeout_share: self.max_timeout_share.or(under.max_timeout_share),
            queue_timeout_secs: self.queue_timeout_secs.or(under.queue_timeout_secs),
            quantile: self.quantile.or(under.quantile),
            target_utilization: self.target_utilization.or(under.target_utilization),
            miss_load: self.miss_load.or(under.miss_load),
            hold_secs: self.hold_secs.or(under.hold_secs),
            boot_lead_secs: self.boot_lead_secs.or(under.boot_lead_secs),
            exceed_max_share: self.exceed_max_share.or(under.exceed_max_share),
            standby_max_gpus: self.standby_max_gpus.or(under.standby_max_gpus),
            standby_price_share: self.standby_price_share.or(under.standby_price_share),
            resume_secs: self.resume_secs.or(under.resume_secs),
        }
    }

    /// Writes the settings that are set into a planner configuration.
    pub fn apply(&self, cfg: &mut PlannerConfig) {
        cfg.slo = Slo {
            max_timeout_share: self.max_timeout_share.unwrap_or(cfg.slo.max_timeout_share),
            timeout_secs: self.queue_timeout_secs.unwrap_or(cfg.slo.timeout_secs),
        };
        if self.quantile.is_some() {
            cfg.quantile = self.quantile;
        }
        if let Some(u) = self.target_utilization {
            cfg.target_utilization = u;
        }
        if self.miss_load.is_some() {
            cfg.reactive.miss_load = self.miss_load;
        }
        if let Some(h) = self.hold_secs {
            cfg.hold_secs = h;
        }
        if let Some(b) = self.boot_lead_secs {
            cfg.boot_lead_secs = b;
        }
        if let Some(x) = self.exceed_max_share {
            cfg.over_max = OverMax::Exceed(x);
        }
        cfg.standby =
            self.standby_max_gpus
                .filter(|n| *n > 0)
                .map(|max_gpus| crate::StandbyConfig {
                    resume_secs: self
                        .resume_secs
                        .unwrap_or(crate::standby::defaults::RESUME_SECS),
                    price_share: self
                        .standby_price_share
                        .unwrap_or(crate::standby::defaults::PRICE_SHARE),
                    max_gpus: max_gpus.min(cfg.max_gpus),
                });
    }

    /// Checks the standby limit against the fleet's `max_gpus`.
    pub fn check_standby(&self, max_gpus: u32) -> Result<(), SettingError> {
        match self.standby_max_gpus {
            Some(n) if n > max_gpus => fail(
                Setting::StandbyMax,
                n,
                "must be at most the fleet's max_gpus",
            ),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_range_is_checked_and_named() {
        let bad = [
            (
                Settings {
                    max_timeout_share: Some(0.5),
                    ..Default::default()
                },
                Setting::MaxTimeoutShare,
            ),
            (
                Settings {
                    queue_timeout_secs: Some(0),
                    ..Default::default()
                },
                Setting::QueueTimeout,
            ),
            (
                Settings {
                    quantile: Some(1.0),
                    ..Default::default()
                },
                Setting::Quantile,
            ),
            (
                Settings {
                    target_utilization: Some(0.0),
                    ..Default::default()
                },
                Setting::TargetUtilization,
            ),
            (
                Settings {
                    miss_load: Some(f64::NAN),
                    ..Default::default()
                },
                Setting::MissLoad,
            ),
            (
                Settings {
                    hold_secs: Some(1_801),
                    ..Default::default()
                },
                Setting::Hold,
            ),
            (
                Settings {
                    boot_lead_secs: Some(59),
                    ..Default::default()
                },
                Setting::BootLead,
            ),
            (
                Settings {
                    exceed_max_share: Some(f64::INFINITY),
                    ..Default::default()
                },
                Setting::ExceedMaxShare,
            ),
        ];
        for (settings, which) in bad {
            let e = settings.check().unwrap_err();
            assert_eq!(e.setting, which);
            assert!(e.to_string().starts_with(which.api_name()), "{e}");
            assert!(e.named(which.flag()).starts_with(which.flag()));
        }
        assert_eq!(Settings::default().check(), Ok(()));
    }

    #[test]
    fn the_upper_layer_wins_and_unset_keeps_the_default() {
        let config = Settings {
            hold_secs: Some(300),
            quantile: Some(0.9),
            ..Default::default()
        };
        let fleet = Settings {
            hold_secs: Some(120),
            exceed_max_share: Some(0.2),
            ..Default::default()
        };
        let mut cfg = PlannerConfig::new(1.0);
        fleet.over(&config).apply(&mut cfg);
        assert_eq!(cfg.hold_secs, 120);
        assert_eq!(cfg.quantile, Some(0.9));
        assert_eq!(cfg.over_max, OverMax::Exceed(0.2));
        assert_eq!(
            cfg.target_utilization,
            crate::defaults::TARGET_UTILIZATION,
            "unset keeps the default"
        );
    }
}
