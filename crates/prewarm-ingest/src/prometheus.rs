//! Pulling request-rate history from Prometheus.
//!
//! A fleet's request rate is often already in Prometheus (e.g. `sum(rate(vllm:request_success_total[1m]))`).
//! [`pull`] reads it through the `query_range` HTTP API in chunks Prometheus accepts, sums the
//! series of each step, and stores one sample per step (`requests` = rate x step). An LLM fleet's
//! token rates come the same way, from two more queries (vLLM's `vllm:prompt_tokens_total` and
//! `vllm:generation_tokens_total`: `tokens_in` and `tokens_out` = rate x step), stored in the
//! same samples. A chunk is
//! stored before the next is read, so an interrupted backfill keeps what it got and a rerun
//! replaces, never duplicates. Prometheus being down or overloaded is retried with backoff;
//! a query Prometheus rejects fails at once with Prometheus' own message.

use std::{collections::BTreeMap, time::Duration};

use chrono::{DateTime, Utc};
use serde::Deserialize;
use sqlx::PgPool;

use prewarm_store::{samples::store_samples, Sample, StoreError};

/// Most points Prometheus returns per series and query (its limit is 11,000).
const MAX_POINTS: i64 = 10_000;

/// Where and what to read.
#[derive(Debug, Clone)]
pub struct PromSource {
    /// Base URL, e.g. `http://127.0.0.1:9090`.
    pub base_url: String,
    /// A PromQL expression giving requests per second.
    pub query: String,
    /// Resolution, in seconds (the stored bucket width).
    pub step_secs: i64,
    /// A PromQL expression giving prompt tokens per second (with `tokens_out_query`).
    pub tokens_in_query: Option<String>,
    /// A PromQL expression giving output tokens per second (with `tokens_in_query`).
    pub tokens_out_query: Option<String>,
}

/// The recipe for a vLLM fleet: requests, prompt tokens and output tokens per second, from
/// vLLM's own counters summed over its pods (`rate` over `window`, e.g. `1m`).
pub fn vllm_queries(window: &str, selector: &str) -> (String, String, String) {
    let q = |metric: &str| format!("sum(rate({metric}{selector}[{window}]))");
    (
        q("vllm:request_success_total"),
        q("vllm:prompt_tokens_total"),
        q("vllm:generation_tokens_total"),
    )
}

/// How hard to try when Prometheus does not answer.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// Delivery attempts made.
    pub attempts: u32,
    /// Delay before the first retry; doubled each time.
    pub first_delay: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            attempts: 5,
            first_delay: Duration::from_millis(500),
        }
    }
}

/// Why a pull failed.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// Prometheus rejected the query; retrying will not help.
    #[error("Prometheus rejected the query ({kind}): {message}")]
    Rejected {
        /// Prometheus's error type.
        kind: String,
        /// Prometheus's message.
        message: String,
    },
    /// Prometheus could not be reached or kept failing.
    #[error("Prometheus at {url} did not answer after {attempts} attempt(s): {last}; samples stored so far are kept, rerun to continue")]
    Unreachable {
        /// The URL asked.
        url: String,
        /// Delivery attempts made.
        attempts: u32,
        /// The last error.
        last: String,
    },
    /// The answer was not what `query_range` returns.
    #[error("unexpected answer from Prometheus: {0}")]
    Malformed(String),
    /// Storing failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a pull did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct PullReport {
    /// Queries sent to Prometheus.
    pub requests_sent: u32,
    /// Samples stored.
    pub samples_stored: u64,
    /// Steps of the range with no value (gaps in Prometheus' data).
    pub missing_steps: u64,
    /// Warnings Prometheus attached to its answers.
    pub warnings: Vec<String>,
}

/// An answer of Prometheus' HTTP API, its `data` of the kind the endpoint returns.
#[derive(Deserialize)]
struct Answer<D> {
    status: String,
    #[serde(default = "none")]
    data: Option<D>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    warnings: Vec<String>,
}

fn none<D>() -> Option<D> {
    None
}

/// GETs `path` of Prometheus' API with `params` and returns its data and warnings. Prometheus
/// being down, unreachable or answering 5xx is retried with backoff (each request counted in
/// `sent`); a query it rejects (its error in a 4xx answer) fails at once with its own message.
async fn api_get<D: serde::de::DeserializeOwned>(
    client: &reqwest::Client,
    base_url: &str,
    path: &str,
    params: &[(&str, &str)],
    retry: Retry,
    sent: &mut u32,
) -> Result<(D, Vec<String>), PullError> {
    let url = format!("{}/api/v1/{path}", base_url.trim_end_matches('/'));
    let mut delay = retry.first_delay;
    let mut last = String::new();
    for attempt in 1..=retry.attempts.max(1) {
        *sent += 1;
        let response = client
            .get(&url)
            .query(params)
            .timeout(Duration::from_secs(30))
            .send()
            .await;
        match response {
            Ok(r) if r.status().is_success() || r.status().is_client_error() => {
                let status = r.status();
                let answer: Answer<D> = r
                    .json()
                    .await
                    .map_err(|e| PullError::Malformed(format!("{status}: {}", e.without_url())))?;
                if answer.status != "success" {
                    return Err(PullError::Rejected {
                        kind: answer.error_type.unwrap_or_else(|| status.to_string()),
                        message: answer.error.unwrap_or_default(),
                    });
                }
                let data = answer
                    .data
                    .ok_or_else(|| PullError::Malformed("no data".into()))?;
                return Ok((data, answer.warnings));
            }
            Ok(r) => last = format!("HTTP {}", r.status()),
            // The client's error names the URL with the query sent; the base URL may carry
            // credentials: neither reaches a log or a message.
            Err(e) => last = prewarm_core::scrub_urls(&e.without_url().to_string()),
        }
        if attempt < retry.attempts {
            // Exponential backoff with jitter, so many pullers do not retry in step.
            let jitter = 0.5 + rand::random::<f64>();
            tokio::time::sleep(delay.mul_f64(jitter)).await;
            delay *= 2;
        }
    }
    Err(PullError::Unreachable {
        url: prewarm_core::redact_url(base_url),
        attempts: retry.attempts,
        last,
    })
}

#[derive(Deserialize)]
struct Matrix {
    #[serde(rename = "resultType")]
    result_type: String,
    result: Vec<Series>,
}

#[derive(Deserialize)]
struct Series {
    values: Vec<(f64, String)>,
}

/// Reads `[start, end]` and returns (step start, summed requests per second).
async fn query_range(
    client: &reqwest::Client,
    src: &PromSource,
    query: &str,
    start: i64,
    end: i64,
    retry: Retry,
    report: &mut PullReport,
) -> Result<BTreeMap<i64, f64>, PullError> {
    let (start, end, step) = (
        start.to_string(),
        end.to_string(),
        src.step_secs.to_string(),
    );
    let params = [
        ("query", query),
        ("start", start.as_str()),
        ("end", end.as_str()),
        ("step", step.as_str()),
    ];
    let (matrix, warnings): (Matrix, _) = api_get(
        client,
        &src.base_url,
        "query_range",
        &params,
        retry,
        &mut report.requests_sent,
    )
    .await?;
    report.warnings.extend(warnings);
    if matrix.result_type != "matrix" {
        return Err(PullError::Malformed(format!(
            "result type `{}`, expected a range vector (matrix)",
            matrix.result_type
        )));
    }
    let mut sums: BTreeMap<i64, f64> = BTreeMap::new();
    for series in matrix.result {
        for (t, v) in series.values {
            if let Ok(v) = v.parse::<f64>() {
                if v.is_finite() {
                    *sums.entry(t.round() as i64).or_default() += v.max(0.0);
                }
            }
        }
    }
    Ok(sums)
}

/// Pulls `[from, to)` into a fleet's history, chunk by chunk.
pub async fn pull(
    pool: &PgPool,
    client: &reqwest::Client,
    fleet_id: i64,
    src: &PromSource,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    retry: Retry,
) -> Result<PullReport, PullError> {
    if !(1..=86_400).contains(&src.step_secs) {
        return Err(PullError::Rejected {
            kind: "bad_step".into(),
            message: format!("step {} s must be between 1 s and 1 day", src.step_secs),
        });
    }
    if src.tokens_in_query.is_some() != src.tokens_out_query.is_some() {
        return Err(PullError::Rejected {
            kind: "bad_queries".into(),
            message: "give both token queries (prompt and output tokens per second), or neither"
                .into(),
        });
    }
    let step = src.step_secs;
    let mut report = PullReport::default();
    // Align to the step so that re-pulls land on the same buckets.
    let mut start = from.timestamp().div_euclid(step) * step;
    let end = to.timestamp();
    while start < end {
        let chunk_end = (start + (MAX_POINTS - 1) * step).min(end - 1);
        let sums = query_range(
            client,
            src,
            &src.query,
            start,
            chunk_end,
            retry,
            &mut report,
        )
        .await?;
        let mut tokens = [BTreeMap::new(), BTreeMap::new()];
        for (k, q) in [&src.tokens_in_query, &src.tokens_out_query]
            .iter()
            .enumerate()
        {
            if let Some(q) = q {
                tokens[k] =
                    query_range(client, src, q, start, chunk_end, retry, &mut report).await?;
            }
        }
        let expected = (chunk_end - start) / step + 1;
        report.missing_steps += (expected - sums.len() as i64).max(0) as u64;
        let samples: Vec<Sample> = sums
            .into_iter()
            .filter_map(|(t, rps)| {
                Some(Sample {
                    timestamp: DateTime::from_timestamp(t, 0)?,
                    requests: rps * step as f64,
                    bucket_secs: step as i32,
                    tokens_in: tokens[0].get(&t).map(|r| r * step as f64),
                    tokens_out: tokens[1].get(&t).map(|r| r * step as f64),
                })
            })
            .collect();
        if !samples.is_empty() {
            report.samples_stored += store_samples(pool, &[(fleet_id, &samples)]).await?;
        }
        start = chunk_end + step;
    }
    Ok(report)
}

/// Pulls what is new since the fleet's latest stored bucket of this step (or, with nothing
/// stored, since `now - backfill`) up to `now`: what a scheduled pull runs each time.
pub async fn pull_new(
    pool: &PgPool,
    client: &reqwest::Client,
    fleet_id: i64,
    src: &PromSource,
    now: DateTime<Utc>,
    backfill: chrono::Duration,
    retry: Retry,
) -> Result<PullReport, PullError> {
    let latest = prewarm_store::samples::newest_of_width(pool, fleet_id, src.step_secs)
        .await
        .map_err(StoreError::from)?;
    // Re-read the last stored step too: Prometheus may have had only part of it.
    let from = latest.unwrap_or(now - backfill);
    pull(pool, client, fleet_id, src, from, now, retry).await
}

#[derive(Deserialize)]
struct Vector {
    #[serde(rename = "resultType")]
    result_type: String,
    result: serde_json::Value,
}

/// The value of an instant query at `at`, summed over its series (a scalar answer is its value).
/// A query that returns no series is an error that says so (the fleet is not observed, rather
/// than observed at zero); a value that is not a number is returned as NaN for the caller to
/// refuse.
pub async fn query_instant(
    client: &reqwest::Client,
    base_url: &str,
    query: &str,
    at: DateTime<Utc>,
    retry: Retry,
) -> Result<f64, PullError> {
    let time = format!("{:.3}", at.timestamp_millis() as f64 / 1e3);
    let params = [("query", query), ("time", time.as_str())];
    let mut sent = 0;
    let (data, _): (Vector, _) =
        api_get(client, base_url, "query", &params, retry, &mut sent).await?;
    let value = |v: &serde_json::Value| -> Result<f64, PullError> {
        let text = v.get(1).and_then(|x| x.as_str()).ok_or_else(|| {
            PullError::Malformed(format!("a sample is not [time, \"value\"]: {v}"))
        })?;
        // Prometheus spells NaN and the infinities its own way; all are refused later.
        Ok(text.parse::<f64>().unwrap_or(f64::NAN))
    };
    match data.result_type.as_str() {
        "scalar" => value(&data.result),
        "vector" => {
            let series = data.result.as_array().cloned().unwrap_or_default();
            if series.is_empty() {
                return Err(PullError::Rejected {
                    kind: "no_data".into(),
                    message: format!(
                        "`{}` returned no series (is the workload's name right, and is it scraped?)",
                        prewarm_core::shorten(query, 200)
                    ),
                });
            }
            let mut sum = 0.0;
            for s in &series {
                sum += value(s.get("value").unwrap_or(&serde_json::Value::Null))?;
            }
            Ok(sum)
        }
        other => Err(PullError::Malformed(format!(
            "result type `{other}`, expected an instant vector or a scalar"
        ))),
    }
}

/// Where a fleet's real replicas are read: a Prometheus and two instant queries.
#[derive(Debug, Clone)]
pub struct ReplicaQueries {
    /// Prometheus base URL.
    pub base_url: String,
    /// PromQL giving the replicas ready (e.g. kube-state-metrics'
    /// `kube_deployment_status_replicas_ready{deployment="vllm"}`).
    pub ready_query: String,
    /// PromQL giving the replicas desired (`kube_deployment_spec_replicas{deployment="vllm"}`).
    pub desired_query: String,
}

/// Observes a fleet's real replicas at `now` (two instant queries: ready and desired) and
/// records the observation with the boot times it teaches. A query that returns nothing or a
/// value that is not a whole number of zero or more is refused, saying which, and nothing is
/// stored.
pub async fn observe(
    pool: &PgPool,
    client: &reqwest::Client,
    fleet_id: i64,
    queries: &ReplicaQueries,
    now: DateTime<Utc>,
    retry: Retry,
) -> Result<prewarm_store::observed::Observation, PullError> {
    let base = &queries.base_url;
    let ready = query_instant(client, base, &queries.ready_query, now, retry).await?;
    let desired = query_instant(client, base, &queries.desired_query, now, retry).await?;
    let o = prewarm_store::observed::Observation::from_values(now, ready, desired).map_err(
        |message| PullError::Rejected {
            kind: "bad_value".into(),
            message,
        },
    )?;
    prewarm_store::observed::record(pool, fleet_id, &o).await?;
    Ok(o)
}
