//! The closed sets of values the schema stores as text (and checks with `CHECK ... IN`), as Rust
//! enums: an unknown value read back is an error, not a string passed along.

use sqlx::{
    encode::IsNull,
    error::BoxDynError,
    postgres::{PgArgumentBuffer, PgTypeInfo, PgValueRef},
    Decode, Encode, Postgres, Type,
};

macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// Every value.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The text the database (and the JSON of the API) holds.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(format!(
                        "`{}` is not a {}: expected one of {}",
                        prewarm_core::shorten(other, 40),
                        stringify!($name),
                        [$($text),+].join(", ")
                    )),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Type<Postgres> for $name {
            fn type_info() -> PgTypeInfo {
                <str as Type<Postgres>>::type_info()
            }

            fn compatible(ty: &PgTypeInfo) -> bool {
                <str as Type<Postgres>>::compatible(ty)
            }
        }

        impl Encode<'_, Postgres> for $name {
            fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
                <&str as Encode<Postgres>>::encode(self.as_str(), buf)
            }
        }

        impl<'r> Decode<'r, Postgres> for $name {
            fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
                let text = <&str as Decode<Postgres>>::decode(value)?;
                Ok(text.parse::<$name>()?)
            }
        }
    };
}

text_enum! {
    /// What an order asks the provisioner to do.
    OrderKind {
        /// Start this many GPU servers.
        Boot => "boot",
        /// Terminate this many running GPU servers.
        Terminate => "terminate",
        /// Stop this many ready GPU servers into standby.
        Stop => "stop",
        /// Resume this many GPU servers from standby.
        Resume => "resume",
        /// Terminate this many GPU servers in standby.
        TerminateStandby => "terminate_standby",
    }
}

text_enum! {
    /// Where an order is in its delivery.
    OrderState {
        /// Queued, or failed and waiting to be retried under the same key.
        Pending => "pending",
        /// The provisioner acknowledged it.
        Delivered => "delivered",
        /// A newer plan replaced it before it was ever sent.
        Cancelled => "cancelled",
        /// Not delivered within its time to live: the next plan decides afresh.
        Expired => "expired",
    }
}

text_enum! {
    /// How a decision was made: what the operators had set for the fleet.
    DecisionMode {
        /// Planned and ordered.
        Act => "act",
        /// Planned and recorded; nothing ordered.
        ForecastOnly => "forecast-only",
        /// Paused by an operator: recorded, nothing ordered.
        Paused => "paused",
        /// Pinned to a count by an operator.
        Pinned => "pinned",
        /// Being deleted: every GPU terminated first.
        Draining => "draining",
    }
}

text_enum! {
    /// What the provisioner last reported about a GPU instance.
    InstanceState {
        /// Serving.
        Ready => "ready",
        /// Its boot failed.
        Failed => "failed",
        /// Stopped and no longer billed.
        Terminated => "terminated",
        /// Stopped into standby (billed at the standby price), resumable.
        Standby => "standby",
    }
}

impl OrderKind {
    /// An order's kind and count.
    pub fn of(order: prewarm_planner::Order) -> (OrderKind, u32) {
        match order {
            prewarm_planner::Order::Boot(n) => (OrderKind::Boot, n),
            prewarm_planner::Order::Terminate(n) => (OrderKind::Terminate, n),
            prewarm_planner::Order::Stop(n) => (OrderKind::Stop, n),
            prewarm_planner::Order::Resume(n) => (OrderKind::Resume, n),
            prewarm_planner::Order::TerminateStandby(n) => (OrderKind::TerminateStandby, n),
        }
    }
}

impl From<&prewarm_planner::Mode> for DecisionMode {
    fn from(mode: &prewarm_planner::Mode) -> Self {
        match mode {
            prewarm_planner::Mode::Act => DecisionMode::Act,
            prewarm_planner::Mode::ForecastOnly => DecisionMode::ForecastOnly,
            prewarm_planner::Mode::Paused => DecisionMode::Paused,
            prewarm_planner::Mode::Pinned { .. } => DecisionMode::Pinned,
            prewarm_planner::Mode::Draining { .. } => DecisionMode::Draining,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_reads_back_as_written_and_an_unknown_one_is_refused() {
        for k in OrderKind::ALL {
            assert_eq!(k.as_str().parse::<OrderKind>(), Ok(*k));
            assert_eq!(serde_json::to_string(k).unwrap(), format!("\"{k}\""));
        }
        for s in OrderState::ALL {
            assert_eq!(s.as_str().parse::<OrderState>(), Ok(*s));
        }
        for m in DecisionMode::ALL {
            assert_eq!(m.as_str().parse::<DecisionMode>(), Ok(*m));
        }
        let e = "reboot".parse::<OrderKind>().unwrap_err();
        assert!(e.contains("boot, terminate"), "{e}");
        assert!(serde_json::from_str::<OrderKind>("\"reboot\"").is_err());
    }
}
