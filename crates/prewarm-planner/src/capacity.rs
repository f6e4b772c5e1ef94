//! What one GPU does: the one capacity model behind planning, accounting and reports.
//!
//! A fleet's load in a bucket is its requests and, for an LLM fleet, the prompt (`tokens_in`) and
//! output (`tokens_out`) tokens they carry. Everything that sizes or counts GPUs works on one number
//! per bucket, the bucket's *work*, in the unit the fleet's [`Capacity`] gives it:
//!
//! - [`Capacity::Requests`]: a fleet with no token data. Work is requests; one GPU serves `gpu_rps`
//!   of them per second at full load.
//! - [`Capacity::Tokens`]: an LLM fleet. Work is GPU-seconds: a bucket's prompt tokens over the
//!   GPU's prefill rate plus its output tokens over its decode rate, the time one GPU at full load
//!   takes to do it (the linear model Dynamo's planner and the scorers of LLM serving use). One GPU
//!   does one GPU-second of work per second, so a work rate *is* the number of GPUs busy.
//!
//! The forecast, the demand distribution, the SLO sizer and `plan()` see work rates only, and the
//! queue ([`crate::accounting`]) serves work first-in first-out while counting the requests that
//! carry it: a request lost to the timeout is counted as a request, whatever its size.
//!
//! A "GPU" is the unit the fleet orders: one GPU, or one replica of several (a model served with
//! tensor parallelism), whose rates and price are then the replica's.

/// How a fleet's load becomes GPUs.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "unit", rename_all = "snake_case")]
pub enum Capacity {
    /// Work is requests: one GPU serves `gpu_rps` requests per second at full load.
    Requests {
        /// Requests per second one GPU serves at full load.
        gpu_rps: f64,
    },
    /// Work is GPU-seconds of prompt and output tokens.
    Tokens(TokenRates),
}

/// What one GPU (or replica) does per second at full load, in tokens.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TokenRates {
    /// Prompt tokens prefilled per second.
    pub prefill_tps: f64,
    /// Output tokens decoded per second (over the whole batch).
    pub decode_tps: f64,
}

/// A bucket's load: requests, and the tokens they carry (NaN when not known).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Load {
    /// Requests that arrived.
    pub requests: f64,
    /// Their prompt tokens.
    pub tokens_in: f64,
    /// Their output tokens.
    pub tokens_out: f64,
}

impl Load {
    /// A load of requests only.
    pub fn requests(requests: f64) -> Self {
        Self {
            requests,
            tokens_in: f64::NAN,
            tokens_out: f64::NAN,
        }
    }
}

/// The most a rate may be: past it, a number is a unit mistake (tokens per day taken for tokens
/// per second), not a GPU.
pub const MAX_RATE: f64 = 1e9;

impl TokenRates {
    /// Checks the rates: finite, above zero and at most [`MAX_RATE`]; the message names the rate.
    pub fn check(&self) -> Result<(), String> {
        for (name, v) in [
            ("prefill_tps", self.prefill_tps),
            ("decode_tps", self.decode_tps),
        ] {
            if !(v.is_finite() && v > 0.0 && v <= MAX_RATE) {
                return Err(format!(
                    "{name} must be a number of tokens per second above 0 and at most {MAX_RATE:e}, got {v}"
                ));
            }
        }
        Ok(())
    }

    /// GPU-seconds that `tokens_in` prompt and `tokens_out` output tokens take.
    pub fn gpu_secs(&self, tokens_in: f64, tokens_out: f64) -> f64 {
        tokens_in / self.prefill_tps + tokens_out / self.decode_tps
    }
}

impl Capacity {
    /// A request-counted fleet.
    pub fn requests(gpu_rps: f64) -> Self {
        Capacity::Requests { gpu_rps }
    }

    /// A token-counted fleet, checked.
    pub fn tokens(prefill_tps: f64, decode_tps: f64) -> Result<Self, String> {
        let rates = TokenRates {
            prefill_tps,
            decode_tps,
        };
        rates.check()?;
        Ok(Capacity::Tokens(rates))
    }

    /// Checks the capacity; the message names what is wrong.
    pub fn check(&self) -> Result<(), String> {
        match self {
            Capacity::Requests { gpu_rps } => {
                if gpu_rps.is_finite() && *gpu_rps > 0.0 && *gpu_rps <= MAX_RATE {
                    Ok(())
                } else {
                    Err(format!(
                        "gpu_rps must be a number of requests per second above 0 and at most {MAX_RATE:e}, got {gpu_rps}"
                    ))
                }
            }
            Capacity::Tokens(rates) => rates.check(),
        }
    }

    /// Whether work is counted in tokens.
    pub fn is_tokens(&self) -> bool {
        matches!(self, Capacity::Tokens(_))
    }

    /// The token rates, for a token-counted fleet.
    pub fn token_rates(&self) -> Option<TokenRates> {
        match self {
            Capacity::Tokens(r) => Some(*r),
            Capacity::Requests { .. } => None,
        }
    }

    /// A bucket's work: its requests, or the GPU-seconds its tokens take (NaN when a token count
    /// is missing: the bucket is then missing, as a bucket with no requests is).
    pub fn work(&self, load: &Load) -> f64 {
        match self {
            Capacity::Requests { .. } => load.requests,
            Capacity::Tokens(r) => r.gpu_secs(load.tokens_in, load.tokens_out),
        }
    }

    /// Work one GPU does per second at full load: `gpu_rps` requests, or one GPU-second.
    pub fn per_gpu(&self) -> f64 {
        match self {
            Capacity::Requests { gpu_rps } => *gpu_rps,
            Capacity::Tokens(_) => 1.0,
        }
    }

    /// GPUs that do `rate` work per second at `utilization` of each (at least 0).
    pub fn gpus_for(&self, rate: f64, utilization: f64) -> u32 {
        if rate <= 0.0 || !rate.is_finite() {
            return 0;
        }
        let gpus = (rate / (self.per_gpu() * utilization) - 1e-9).ceil();
        gpus.clamp(0.0, u32::MAX as f64) as u32
    }

    /// Work `gpus` GPUs do in `secs` seconds at full load.
    pub fn served(&self, gpus: u32, secs: f64) -> f64 {
        gpus as f64 * self.per_gpu() * secs
    }

    /// The same capacity with `scale` times the work per GPU (a GPU sized so a trace's peak
    /// needs some number of GPUs).
    pub fn scaled(&self, scale: f64) -> Self {
        match self {
            Capacity::Requests { gpu_rps } => Capacity::Requests {
                gpu_rps: gpu_rps * scale,
            },
            Capacity::Tokens(r) => Capacity::Tokens(TokenRates {
                prefill_tps: r.prefill_tps * scale,
                decode_tps: r.decode_tps * scale,
            }),
        }
    }

    /// A work rate as people read it: `12.30 rps`, or `12.30 GPUs of work`.
    pub fn rate(&self, rate: f64) -> String {
        match self {
            Capacity::Requests { .. } => format!("{rate:.2} rps"),
            Capacity::Tokens(_) => format!("{rate:.2} GPUs of work"),
        }
    }

    /// The unit of a work rate, for tables and charts: `requests/s` or `GPU-s/s`.
    pub fn unit(&self) -> &'static str {
        match self {
            Capacity::Requests { .. } => "requests/s",
            Capacity::Tokens(_) => "GPU-s/s",
        }
    }

    /// What one GPU does, in words.
    pub fn describe(&self) -> String {
        match self {
            Capacity::Requests { gpu_rps } => format!("{gpu_rps:.4} requests/s per GPU"),
            Capacity::Tokens(r) => format!(
                "{:.0} prompt tokens/s (prefill) and {:.0} output tokens/s (decode) per GPU",
                r.prefill_tps, r.decode_tps
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_fleet_counts_requests_and_a_token_fleet_gpu_seconds() {
        let r = Capacity::requests(2.5);
        assert_eq!(r.work(&Load::requests(10.0)), 10.0);
        assert_eq!(r.gpus_for(5.0, 1.0), 2);
        assert_eq!(r.gpus_for(5.01, 1.0), 3);
        assert_eq!(r.served(2, 60.0), 300.0);
        let t = Capacity::tokens(10_000.0, 2_000.0).unwrap();
        // 3,000 prompt and 500 output tokens: 0.3 s of prefill, 0.25 s of decode.
        let load = Load {
            requests: 1.0,
            tokens_in: 3_000.0,
            tokens_out: 500.0,
        };
        assert!((t.work(&load) - 0.55).abs() < 1e-12);
        // A 100/20 request is a tenth of its work: the GPU's work is tokens, not requests.
        let small = Load {
            requests: 1.0,
            tokens_in: 100.0,
            tokens_out: 20.0,
        };
        assert!((t.work(&load) / t.work(&small) - 0.55 / 0.02).abs() < 1e-9);
        assert_eq!(t.gpus_for(3.2, 1.0), 4);
        assert!(t.work(&Load::requests(1.0)).is_nan());
    }

    #[test]
    fn rates_that_are_not_rates_are_refused_by_name() {
        assert!(Capacity::tokens(0.0, 1.0)
            .unwrap_err()
            .contains("prefill_tps"));
        assert!(Capacity::tokens(1.0, -3.0)
            .unwrap_err()
            .contains("decode_tps"));
        assert!(Capacity::tokens(f64::NAN, 1.0).is_err());
        assert!(Capacity::requests(0.0)
            .check()
            .unwrap_err()
            .contains("gpu_rps"));
        assert!(Capacity::requests(1.0).check().is_ok());
    }
}
