//! Delivering pending orders to the provisioner's web hook.
//!
//! Due orders are claimed with `FOR UPDATE SKIP LOCKED`, and each claim is committed (attempt
//! counted, order held for one delivery time-out) before the delivery, so several replicas can
//! dispatch from one database without sending the same order twice at once. Each delivery is
//! signed ([`crate::webhook`]) and carries the order's idempotency key as `webhook-id`, the same on
//! every retry: should a process die after a delivery but before recording it, the order is
//! delivered again and the provisioner applies it once. Failures and time-outs are retried with exponential
//! backoff and jitter until the order expires.

use std::time::Duration;

use chrono::{DateTime, Utc};
use prewarm_store::ledger::{self, ClaimScope, DueOrder};
use sqlx::PgPool;

use crate::webhook::Secret;

/// Where and how orders are delivered.
#[derive(Debug, Clone)]
pub struct Dispatcher {
    /// The HTTP client.
    pub client: reqwest::Client,
    /// The provisioner's web hook.
    pub url: String,
    /// The shared web-hook secret.
    pub secret: Secret,
    /// Time allowed for one delivery.
    pub timeout: Duration,
    /// Most orders claimed per round.
    pub batch: i64,
}

/// What one dispatch round did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct DispatchReport {
    /// Orders delivered.
    pub delivered: u32,
    /// Deliveries that failed (retried later).
    pub failed: u32,
    /// Orders that expired undelivered.
    pub expired: u32,
    /// Time each delivery attempt took, in microseconds.
    pub latencies_us: Vec<u64>,
}

/// A delivery error as it is stored and shown: the client's error without the URL it names (the
/// provisioner's address may carry credentials or a token in its query), with its causes
/// (`connection refused`), and any URL a cause quotes redacted.
fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    prewarm_core::scrub_urls(&text)
}

/// Delay before retry `attempt` (1 = first retry): 1 s doubling to a minute, times 0.5 to 1.5.
pub fn backoff(attempt: i32) -> chrono::Duration {
    let base = 2f64.powi(attempt.clamp(1, 7) - 1).min(60.0);
    chrono::Duration::milliseconds((base * (0.5 + rand::random::<f64>()) * 1000.0) as i64)
}

impl Dispatcher {
    /// Delivers the orders due at `now`.
    pub async fn dispatch_due(
        &self,
        pool: &PgPool,
        now: DateTime<Utc>,
    ) -> Result<DispatchReport, sqlx::Error> {
        self.dispatch(pool, now, ClaimScope::default()).await
    }

    /// Delivers the orders due at `now` within `scope`.
    pub async fn dispatch(
        &self,
        pool: &PgPool,
        now: DateTime<Utc>,
        scope: ClaimScope<'_>,
    ) -> Result<DispatchReport, sqlx::Error> {
        let mut report = DispatchReport::default();
        // Claim: the attempt is recorded (committed) before anything is sent, so an order whose
        // delivery may have reached the provisioner is known to be in doubt if this process
        // dies: it is then never cancelled by a newer plan, the planner counts it, and the next
        // round sends it again under the same key. The claim holds the order for one delivery
        // time-out, so no other dispatcher sends it meanwhile.
        let hold = chrono::Duration::milliseconds(self.timeout.as_millis() as i64 + 1_000);
        let (claimed, expired) = ledger::claim_due(pool, now, self.batch, hold, scope).await?;
        report.expired += expired as u32;

        for order in claimed {
            let started = std::time::Instant::now();
            let outcome = self.deliver(&order).await;
            report
                .latencies_us
                .push(started.elapsed().as_micros() as u64);
            match outcome {
                Ok(()) => {
                    ledger::mark_delivered(pool, order.id, now).await?;
                    report.delivered += 1;
                }
                Err(error) => {
                    let retry_at = now + backoff(order.attempts + 1);
                    ledger::mark_failed(pool, order.id, retry_at, &error).await?;
                    report.failed += 1;
                }
            }
        }
        Ok(report)
    }

    async fn deliver(&self, order: &DueOrder) -> Result<(), String> {
        let body = serde_json::to_vec(&crate::webhook::OrderBody {
            id: order.idempotency_key.clone(),
            fleet: order.fleet.clone(),
            kind: order.kind,
            count: order.count.max(0) as u32,
            created_at: order.created_at.to_rfc3339(),
        })
        .map_err(|e| e.to_string())?;
        // Signatures are about transport, so they use the wall clock, not the planner's clock.
        let timestamp = Utc::now().timestamp();
        let response = self
            .client
            .post(&self.url)
            .timeout(self.timeout)
            .header("content-type", "application/json")
            .header("webhook-id", &order.idempotency_key)
            .header("webhook-timestamp", timestamp.to_string())
            .header(
                "webhook-signature",
                self.secret.sign(&order.idempotency_key, timestamp, &body),
            )
            .header("idempotency-key", &order.idempotency_key)
            .body(body)
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    format!("no answer within {} ms", self.timeout.as_millis())
                } else {
                    format!("cannot reach the provisioner: {}", describe(e))
                }
            })?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("the provisioner answered {}", response.status()))
        }
    }
}
