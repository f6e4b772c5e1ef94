//! GPU profiles: what one GPU (or replica) of a type does for one model, and what it costs.
//!
//! A profile is data: a name, the token rates of a [`crate::capacity::TokenRates`], and a price.
//! Profiles live in TOML files (`[[profile]]` tables, read by the command line) and, for the
//! service, in the database. [`from_vllm_bench`] derives the rates from load-test results written
//! by `vllm bench serve --save-result`.

use crate::capacity::{Capacity, TokenRates};

/// One GPU type running one model.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuProfile {
    /// The profile's name (1 to 63 letters, digits, `.`, `_`, `-`).
    pub name: String,
    /// Prompt tokens one GPU prefills per second at full load.
    pub prefill_tps: f64,
    /// Output tokens one GPU decodes per second at full load (over its whole batch).
    pub decode_tps: f64,
    /// Price of one GPU-hour, US dollars (none: the fleet's or the command's price).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_usd_per_gpu_hour: Option<f64>,
    /// The GPU type, for people.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub gpu_type: String,
    /// The model served, for people.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub model: String,
    /// Where the rates come from (a benchmark file, a date).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
}

/// A profile name's rule, the same as a fleet name's.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && name.len() <= 63
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

impl GpuProfile {
    /// Checks the profile; the message names the profile and what is wrong.
    pub fn check(&self) -> Result<(), String> {
        if !valid_name(&self.name) {
            return Err(format!(
                "profile name `{}` must be 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit",
                prewarm_core::shorten(&self.name, 80)
            ));
        }
        self.rates()
            .check()
            .map_err(|e| format!("profile `{}`: {e}", self.name))?;
        if let Some(p) = self.price_usd_per_gpu_hour {
            if !(p.is_finite() && p >= 0.0) {
                return Err(format!(
                    "profile `{}`: price_usd_per_gpu_hour must be zero or more, got {p}",
                    self.name
                ));
            }
        }
        for (field, text, most) in [
            ("gpu_type", &self.gpu_type, 100),
            ("model", &self.model, 200),
            ("source", &self.source, 500),
        ] {
            if text.chars().count() > most || text.contains('\0') {
                return Err(format!(
                    "profile `{}`: {field} is at most {most} characters, with no NUL",
                    self.name
                ));
            }
        }
        Ok(())
    }

    /// The token rates.
    pub fn rates(&self) -> TokenRates {
        TokenRates {
            prefill_tps: self.prefill_tps,
            decode_tps: self.decode_tps,
        }
    }

    /// The capacity the profile gives a fleet.
    pub fn capacity(&self) -> Capacity {
        Capacity::Tokens(self.rates())
    }
}

/// A file of profiles: `[[profile]]` tables.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileFile {
    /// The profiles, in the file's order.
    #[serde(default, rename = "profile")]
    pub profiles: Vec<GpuProfile>,
}

impl ProfileFile {
    /// Checks every profile and that no name is used twice.
    pub fn check(&self) -> Result<(), String> {
        let mut seen = std::collections::HashSet::new();
        for p in &self.profiles {
            p.check()?;
            if !seen.insert(p.name.as_str()) {
                return Err(format!("profile `{}` is defined twice", p.name));
            }
        }
        Ok(())
    }
}

/// What one `vllm bench serve --save-result` file says, the fields [`from_vllm_bench`] reads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BenchRun {
    /// `duration`: the run's length, seconds.
    pub duration_secs: f64,
    /// `completed`: requests completed.
    pub completed: f64,
    /// `total_input_tokens`.
    pub input_tokens: f64,
    /// `total_output_tokens`.
    pub output_tokens: f64,
    /// `mean_tpot_ms`: mean time per output token after the first, milliseconds.
    pub mean_tpot_ms: f64,
    /// `mean_ttft_ms`: mean time to the first token, milliseconds.
    pub mean_ttft_ms: f64,
    /// `max_concurrency`, when the run set one.
    pub max_concurrency: Option<f64>,
    /// `mean_e2el_ms`: mean end-to-end latency, when the run measured it.
    pub mean_e2el_ms: Option<f64>,
}

/// The fields a run must have.
pub const BENCH_REQUIRED: [&str; 6] = [
    "duration",
    "completed",
    "total_input_tokens",
    "total_output_tokens",
    "mean_ttft_ms",
    "mean_tpot_ms",
];

impl BenchRun {
    /// Reads a result's JSON; the error names every required field that is missing or not a
    /// positive number.
    pub fn read(json: &serde_json::Value) -> Result<Self, String> {
        let number = |k: &str| json.get(k).and_then(serde_json::Value::as_f64);
        let bad: Vec<&str> = BENCH_REQUIRED
            .iter()
            .copied()
            .filter(|k| !number(k).is_some_and(|v| v.is_finite() && v > 0.0))
            .collect();
        if !bad.is_empty() {
            return Err(format!(
                "missing or not a positive number: {}; a `vllm bench serve --save-result` file has them all",
                bad.iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let positive = |k: &str| number(k).filter(|v| v.is_finite() && *v > 0.0);
        Ok(Self {
            duration_secs: positive("duration").unwrap_or(1.0),
            completed: positive("completed").unwrap_or(1.0),
            input_tokens: positive("total_input_tokens").unwrap_or(1.0),
            output_tokens: positive("total_output_tokens").unwrap_or(1.0),
            mean_tpot_ms: positive("mean_tpot_ms").unwrap_or(1.0),
            mean_ttft_ms: positive("mean_ttft_ms").unwrap_or(1.0),
            max_concurrency: positive("max_concurrency"),
            mean_e2el_ms: positive("mean_e2el_ms"),
        })
    }

    /// Requests in flight on average: the run's `max_concurrency` when it set one, else by
    /// Little's law (completed per second times the mean latency: `mean_e2el_ms`, or TTFT plus
    /// the mean output length's TPOTs).
    pub fn concurrency(&self) -> f64 {
        if let Some(c) = self.max_concurrency {
            return c;
        }
        let rate = self.completed / self.duration_secs;
        let latency_ms = self.mean_e2el_ms.unwrap_or_else(|| {
            let mean_out = self.output_tokens / self.completed;
            self.mean_ttft_ms + (mean_out - 1.0).max(0.0) * self.mean_tpot_ms
        });
        rate * latency_ms / 1_000.0
    }
}

/// Token rates from benchmark runs at saturation (`--request-rate inf`, a `--max-concurrency` near
/// the server's batch size), under the linear model the planner uses: a run's duration is its
/// prompt tokens over the prefill rate plus its output tokens over the decode rate.
///
/// - Two or more runs (prompt and output lengths that differ): the two rates that fit every
///   run's duration best (least squares on `duration = input / prefill + output / decode`).
/// - One run: the decode rate from the batch (`concurrency / TPOT`: the sequences in flight each
///   produce a token every TPOT), and the prefill rate from the rest of the run's time.
///
/// An error says why the rates cannot be separated (a run that spent all its time decoding, runs
/// too alike), and what run to add.
pub fn from_vllm_bench(runs: &[BenchRun]) -> Result<TokenRates, String> {
    let rates = match runs {
        [] => return Err("no benchmark run given".into()),
        [run] => {
            let decode_tps = run.concurrency() / (run.mean_tpot_ms / 1_000.0);
            let decoding = run.output_tokens / decode_tps;
            let prefilling = run.duration_secs - decoding;
            if prefilling <= 0.05 * run.duration_secs {
                return Err(format!(
                    "the run's {:.0} output tokens at {decode_tps:.0} tokens/s (concurrency {:.1} over a {:.1} ms TPOT) take {decoding:.1} s of its {:.1} s: nothing is left to measure prefill by. Was it run at saturation (--request-rate inf)? Give a second run with longer prompts (--random-input-len) and the rates are fitted on both",
                    run.output_tokens,
                    run.concurrency(),
                    run.mean_tpot_ms,
                    run.duration_secs
                ));
            }
            TokenRates {
                prefill_tps: run.input_tokens / prefilling,
                decode_tps,
            }
        }
        runs => {
            // Least squares for a = 1/prefill, b = 1/decode: duration = a * input + b * output.
            let (mut xx, mut xy, mut yy, mut xd, mut yd) = (0.0, 0.0, 0.0, 0.0, 0.0);
            for r in runs {
                let (x, y, d) = (r.input_tokens, r.output_tokens, r.duration_secs);
                xx += x * x;
                xy += x * y;
                yy += y * y;
                xd += x * d;
                yd += y * d;
            }
            let det = xx * yy - xy * xy;
            if det.abs() <= 1e-9 * xx * yy {
                return Err(
                    "the runs have the same mix of prompt and output tokens, so prefill and decode cannot be told apart: give runs whose prompt and output lengths differ (e.g. --random-input-len 2048 --random-output-len 64 and 128/1024)".into(),
                );
            }
            let a = (xd * yy - yd * xy) / det;
            let b = (yd * xx - xd * xy) / det;
            if a <= 0.0 || b <= 0.0 {
                return Err(format!(
                    "the runs' durations do not fit a positive prefill and decode rate (1/prefill = {a:.3e} s, 1/decode = {b:.3e} s per token): were all of them run at saturation (--request-rate inf)?"
                ));
            }
            TokenRates {
                prefill_tps: 1.0 / a,
                decode_tps: 1.0 / b,
            }
        }
    };
    rates.check()?;
    Ok(rates)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: f64, output: f64, rates: TokenRates) -> BenchRun {
        let duration = input / rates.prefill_tps + output / rates.decode_tps;
        BenchRun {
            duration_secs: duration,
            completed: 100.0,
            input_tokens: input,
            output_tokens: output,
            mean_tpot_ms: 20.0,
            mean_ttft_ms: 200.0,
            max_concurrency: None,
            mean_e2el_ms: None,
        }
    }

    #[test]
    fn two_runs_of_different_mixes_give_back_the_rates_they_were_made_with() {
        let truth = TokenRates {
            prefill_tps: 9_000.0,
            decode_tps: 1_800.0,
        };
        let got = from_vllm_bench(&[
            run(204_800.0, 6_400.0, truth),
            run(12_800.0, 102_400.0, truth),
        ])
        .unwrap();
        assert!((got.prefill_tps - 9_000.0).abs() < 1e-6, "{got:?}");
        assert!((got.decode_tps - 1_800.0).abs() < 1e-6, "{got:?}");
        // Runs of one mix cannot separate them, and say so.
        let e = from_vllm_bench(&[run(10_000.0, 1_000.0, truth), run(20_000.0, 2_000.0, truth)])
            .unwrap_err();
        assert!(e.contains("cannot be told apart"), "{e}");
    }

    #[test]
    fn one_run_takes_decode_from_its_batch_and_prefill_from_the_rest() {
        // 32 in flight, a token every 20 ms each: 1,600 tokens/s decoded. 64,000 output tokens
        // take 40 s of the 50 s run; 90,000 prompt tokens in the other 10 s: 9,000 tokens/s.
        let one = BenchRun {
            duration_secs: 50.0,
            completed: 500.0,
            input_tokens: 90_000.0,
            output_tokens: 64_000.0,
            mean_tpot_ms: 20.0,
            mean_ttft_ms: 150.0,
            max_concurrency: Some(32.0),
            mean_e2el_ms: None,
        };
        let got = from_vllm_bench(&[one]).unwrap();
        assert!((got.decode_tps - 1_600.0).abs() < 1e-9, "{got:?}");
        assert!((got.prefill_tps - 9_000.0).abs() < 1e-6, "{got:?}");
        // All of its time decoding: refused, saying what to add.
        let busy = BenchRun {
            duration_secs: 40.0,
            ..one
        };
        assert!(from_vllm_bench(&[busy])
            .unwrap_err()
            .contains("second run with longer prompts"));
    }

    #[test]
    fn a_result_missing_fields_names_them() {
        let json = serde_json::json!({"duration": 12.5, "completed": 100, "total_input_tokens": 0});
        let e = BenchRun::read(&json).unwrap_err();
        for k in [
            "total_input_tokens",
            "total_output_tokens",
            "mean_ttft_ms",
            "mean_tpot_ms",
        ] {
            assert!(e.contains(k), "{e}");
        }
        assert!(!e.contains("`duration`"), "{e}");
    }

    #[test]
    fn profiles_with_rates_that_are_not_rates_are_refused() {
        let mut p = GpuProfile {
            name: "h100-8b".into(),
            prefill_tps: 10_000.0,
            decode_tps: 2_000.0,
            price_usd_per_gpu_hour: Some(3.0),
            gpu_type: "H100".into(),
            model: String::new(),
            source: String::new(),
        };
        assert!(p.check().is_ok());
        p.decode_tps = 0.0;
        assert!(p.check().unwrap_err().contains("decode_tps"));
        p.decode_tps = 2_000.0;
        p.prefill_tps = -1.0;
        assert!(p.check().unwrap_err().contains("prefill_tps"));
        p.prefill_tps = 1.0;
        p.name = "bad name".into();
        assert!(p.check().unwrap_err().contains("profile name"));
    }
}
