//! `prewarm provisioner-check`: a conformance run a provisioner's author points at their web hook.
//!
//! It sends what prewarm sends (docs/provisioner.md): signed boot and terminate orders, each
//! again under the same key, and requests a provisioner must refuse (no signature, a wrong
//! signature, a stale timestamp, a body changed after signing, an unknown kind). With
//! `--callback-listen` it also receives the provisioner's callbacks, as prewarm would, and checks
//! them: signed, bound to their path, one instance for a boot of one however often it was sent,
//! and a `terminated` naming the terminate order. With `--standby` it also sends the standby
//! tier's orders (stop, resume, terminate_standby) and checks their callbacks. Orders go to a fleet of their own
//! (`--fleet`, `prewarm-conformance`) and ask for one instance, which the run terminates again.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::Context;
use axum::{
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    routing::post,
    Router,
};
use clap::Args;
use prewarm_core::Span;
use prewarm_service::{
    callbacks::{Callback, Event},
    webhook::{OrderBody, Secret},
};

#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    /// The provisioner's web hook, e.g. http://127.0.0.1:9900/orders.
    url: String,
    /// The shared secret (`whsec_...`), as given to the provisioner.
    #[arg(long, env = "PREWARM_PROVISIONER__SECRET", hide_env_values = true)]
    secret: String,
    /// Fleet name the test orders are for.
    #[arg(long, default_value = "prewarm-conformance")]
    fleet: String,
    /// Also receive the provisioner's callbacks on this address (point the provisioner's
    /// callback base URL at it) and check them.
    #[arg(long)]
    callback_listen: Option<String>,
    /// How long to wait for each expected callback (an instance's boot included).
    #[arg(long, default_value = "15m")]
    wait: Span,
    /// Time allowed for one answer.
    #[arg(long, default_value = "10s")]
    timeout: Span,
    /// Also check the standby tier's orders: a stop of the instance, a resume, each sent twice
    /// (with --callback-listen: `stopped` and `resumed`, or `failed`, naming their orders), and a
    /// `terminate_standby` of none left in standby.
    #[arg(long)]
    standby: bool,
}

/// One check's outcome.
struct Outcome {
    name: &'static str,
    passed: bool,
    detail: String,
}

/// What the callback listener has received.
#[derive(Default)]
struct Received {
    /// (message id, path instance, path event, body), for valid deliveries.
    callbacks: Vec<(String, String, String, Callback)>,
    /// Deliveries that broke the contract, said plainly.
    problems: Vec<String>,
}

#[derive(Clone)]
struct Listener {
    secret: Secret,
    received: Arc<Mutex<Received>>,
}

async fn receive(
    State(l): State<Listener>,
    Path((instance, event)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let mut r = l.received.lock().expect("received");
    if let Err(e) = l.secret.verify(
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
        &body,
        chrono::Utc::now().timestamp(),
    ) {
        r.problems
            .push(format!("callback to /{instance}/{event} refused: {e}"));
        return StatusCode::UNAUTHORIZED;
    }
    let callback: Callback = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(e) => {
            r.problems.push(format!(
                "callback to /{instance}/{event} is not a callback body: {e}"
            ));
            return StatusCode::BAD_REQUEST;
        }
    };
    if callback.instance_id != instance || callback.event.as_str() != event {
        r.problems.push(format!(
            "callback to /{instance}/{event} carries instance `{}` and event `{}`: the body must name its path",
            callback.instance_id,
            callback.event.as_str()
        ));
        return StatusCode::UNPROCESSABLE_ENTITY;
    }
    let id = header("webhook-id").unwrap_or_default().to_string();
    r.callbacks.push((id, instance, event, callback));
    StatusCode::OK
}

struct Client {
    http: reqwest::Client,
    url: String,
    secret: Secret,
    timeout: Duration,
}

impl Client {
    /// Sends `body` under `id`, signed with `secret` at `timestamp`; returns the answer's status.
    async fn send(
        &self,
        id: &str,
        body: &[u8],
        sign_with: &Secret,
        timestamp: i64,
        signed_body: Option<&[u8]>,
        signed: bool,
    ) -> Result<u16, String> {
        let mut request = self
            .http
            .post(&self.url)
            .timeout(self.timeout)
            .header("content-type", "application/json")
            .body(body.to_vec());
        if signed {
            request = request
                .header("webhook-id", id)
                .header("webhook-timestamp", timestamp.to_string())
                .header(
                    "webhook-signature",
                    sign_with.sign(id, timestamp, signed_body.unwrap_or(body)),
                )
                .header("idempotency-key", id);
        }
        request
            .send()
            .await
            .map(|r| r.status().as_u16())
            .map_err(|e| {
                if e.is_timeout() {
                    format!("no answer within {} s", self.timeout.as_secs())
                } else {
                    format!("cannot reach it: {e}")
                }
            })
    }

    async fn order(&self, id: &str, body: &[u8]) -> Result<u16, String> {
        let now = chrono::Utc::now().timestamp();
        self.send(id, body, &self.secret, now, None, true).await
    }
}

/// An order as the dispatcher sends it; `kind` may be one prewarm never sends (`reboot`), to
/// check that the provisioner refuses it.
fn order_body(id: &str, fleet: &str, kind: &str, count: u32) -> Vec<u8> {
    let mut body = serde_json::to_value(OrderBody {
        id: id.to_string(),
        fleet: fleet.to_string(),
        kind: prewarm_store::OrderKind::Boot,
        count,
        created_at: chrono::Utc::now().to_rfc3339(),
    })
    .expect("an order serializes");
    body["kind"] = kind.into();
    serde_json::to_vec(&body).expect("an order serializes")
}

fn expect(
    name: &'static str,
    got: Result<u16, String>,
    ok: impl Fn(u16) -> bool,
    want: &str,
) -> Outcome {
    match got {
        Ok(status) => Outcome {
            name,
            passed: ok(status),
            detail: format!("answered {status}; expected {want}"),
        },
        Err(e) => Outcome {
            name,
            passed: false,
            detail: format!("{e}; expected {want}"),
        },
    }
}

/// Waits until `found` finds something in what was received, or `wait` passes.
async fn wait_for<T>(
    received: &Arc<Mutex<Received>>,
    wait: Duration,
    found: impl Fn(&Received) -> Option<T>,
) -> Option<T> {
    let started = Instant::now();
    loop {
        if let Some(t) = found(&received.lock().expect("received")) {
            return Some(t);
        }
        if started.elapsed() >= wait {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub(crate) fn run(args: &CheckArgs) -> anyhow::Result<()> {
    let secret = Secret::parse(&args.secret).map_err(anyhow::Error::msg)?;
    let wait = Duration::from_secs(args.wait.0 as u64);
    let timeout = Duration::from_secs(args.timeout.0.max(1) as u64);
    anyhow::ensure!(
        args.url.starts_with("http://") || args.url.starts_with("https://"),
        "the web hook must be an http(s) URL"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let outcomes = runtime.block_on(check(args, secret, wait, timeout))?;
    let failed = outcomes.iter().filter(|o| !o.passed).count();
    for o in &outcomes {
        println!(
            "{}  {:<34} {}",
            if o.passed { "pass" } else { "FAIL" },
            o.name,
            o.detail
        );
    }
    println!(
        "{} of {} checks passed{}",
        outcomes.len() - failed,
        outcomes.len(),
        if args.callback_listen.is_none() {
            " (callbacks not checked: add --callback-listen)"
        } else {
            ""
        }
    );
    anyhow::ensure!(
        failed == 0,
        "{failed} check(s) failed: the provisioner does not meet the contract (docs/provisioner.md)"
    );
    Ok(())
}

async fn check(
    args: &CheckArgs,
    secret: Secret,
    wait: Duration,
    timeout: Duration,
) -> anyhow::Result<Vec<Outcome>> {
    let received = Arc::new(Mutex::new(Received::default()));
    let _server = match &args.callback_listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr}"))?;
            let app = Router::new()
                .route("/v1/instances/{id}/{event}", post(receive))
                .with_state(Listener {
                    secret: secret.clone(),
                    received: received.clone(),
                });
            Some(tokio::spawn(async move {
                let _ = axum::serve(listener, app).await;
            }))
        }
        None => None,
    };
    let client = Client {
        http: reqwest::Client::new(),
        url: args.url.clone(),
        secret: secret.clone(),
        timeout,
    };
    let run = uuid_like();
    let boot_id = format!("ord_check_{run}_boot");
    let boot = order_body(&boot_id, &args.fleet, "boot", 1);
    let refused = |s: u16| s == 401;
    let mut out = Vec::new();

    // What must be refused, before anything is applied.
    let now = chrono::Utc::now().timestamp();
    out.push(expect(
        "unsigned order refused",
        client
            .send(&boot_id, &boot, &secret, now, None, false)
            .await,
        refused,
        "401",
    ));
    out.push(expect(
        "wrong secret refused",
        client
            .send(&boot_id, &boot, &Secret::generate(), now, None, true)
            .await,
        refused,
        "401",
    ));
    out.push(expect(
        "stale timestamp refused",
        client
            .send(&boot_id, &boot, &secret, now - 600, None, true)
            .await,
        refused,
        "401 (timestamps more than 5 minutes off)",
    ));
    let tampered = order_body(&boot_id, &args.fleet, "boot", 50);
    out.push(expect(
        "body changed after signing refused",
        client
            .send(&boot_id, &tampered, &secret, now, Some(&boot), true)
            .await,
        refused,
        "401",
    ));
    let odd_id = format!("ord_check_{run}_odd");
    out.push(expect(
        "unknown kind refused",
        client
            .order(&odd_id, &order_body(&odd_id, &args.fleet, "reboot", 1))
            .await,
        |s| (400..500).contains(&s),
        "a 4xx answer (not 2xx, not 5xx)",
    ));

    // A boot of one, then the same order again under its key.
    let accepted = |s: u16| (200..300).contains(&s);
    out.push(expect(
        "signed boot order accepted",
        client.order(&boot_id, &boot).await,
        accepted,
        "2xx",
    ));
    out.push(expect(
        "same boot order again accepted",
        client.order(&boot_id, &boot).await,
        accepted,
        "2xx (and applied once)",
    ));

    let terminate_id = format!("ord_check_{run}_terminate");
    let terminate = order_body(&terminate_id, &args.fleet, "terminate", 1);
    if args.callback_listen.is_some() {
        // The instance must be reported (ready, or failed) on its own path, once.
        let reported = wait_for(&received, wait, |r| {
            r.callbacks
                .iter()
                .find(|(_, _, _, c)| {
                    c.order_id == boot_id && matches!(c.event, Event::Ready | Event::Failed)
                })
                .map(|(_, i, e, _)| (i.clone(), e.clone()))
        })
        .await;
        out.push(Outcome {
            name: "boot reported by a signed callback",
            passed: reported.is_some(),
            detail: match &reported {
                Some((i, e)) => format!("instance `{i}` reported `{e}`"),
                None => format!(
                    "no ready or failed callback for the boot order within {} s",
                    wait.as_secs()
                ),
            },
        });
        tokio::time::sleep(Duration::from_secs(2)).await;
        let instances: std::collections::BTreeSet<String> = received
            .lock()
            .expect("received")
            .callbacks
            .iter()
            .filter(|(_, _, _, c)| c.order_id == boot_id)
            .map(|(_, i, _, _)| i.clone())
            .collect();
        out.push(Outcome {
            name: "repeated order applied once",
            passed: instances.len() == 1,
            detail: format!(
                "{} instance(s) reported for a boot of 1 sent twice; expected 1",
                instances.len()
            ),
        });
        if args.standby {
            standby_checks(&client, &args.fleet, &run, Some(&received), wait, &mut out).await;
        }
        out.push(expect(
            "signed terminate order accepted",
            client.order(&terminate_id, &terminate).await,
            accepted,
            "2xx",
        ));
        out.push(expect(
            "same terminate order again accepted",
            client.order(&terminate_id, &terminate).await,
            accepted,
            "2xx (and applied once)",
        ));
        let terminated = wait_for(&received, wait, |r| {
            r.callbacks
                .iter()
                .find(|(_, _, _, c)| c.order_id == boot_id && c.event == Event::Terminated)
                .map(|(_, _, _, c)| c.terminated_by.clone())
        })
        .await;
        out.push(Outcome {
            name: "termination reported, naming its order",
            passed: terminated
                .as_ref()
                .is_some_and(|by| by.as_deref() == Some(terminate_id.as_str()))
                || reported.as_ref().is_some_and(|(_, e)| e == "failed"),
            detail: match &terminated {
                Some(by) => format!("terminated_by = {by:?}; expected {terminate_id:?}"),
                None => format!("no terminated callback within {} s", wait.as_secs()),
            },
        });
        let problems = received.lock().expect("received").problems.clone();
        out.push(Outcome {
            name: "every callback signed and bound to its path",
            passed: problems.is_empty(),
            detail: if problems.is_empty() {
                "yes".into()
            } else {
                problems.join("; ")
            },
        });
    } else {
        if args.standby {
            standby_checks(&client, &args.fleet, &run, None, wait, &mut out).await;
        }
        out.push(expect(
            "signed terminate order accepted",
            client.order(&terminate_id, &terminate).await,
            accepted,
            "2xx",
        ));
        out.push(expect(
            "same terminate order again accepted",
            client.order(&terminate_id, &terminate).await,
            accepted,
            "2xx (and applied once)",
        ));
    }
    Ok(out)
}

/// The standby tier's orders: a stop of one, a resume of one, a `terminate_standby` of one, each
/// sent twice under its key; with a callback listener, the `stopped` and the `resumed` (or a
/// `failed` resume) naming their orders.
async fn standby_checks(
    client: &Client,
    fleet: &str,
    run: &str,
    received: Option<&Arc<Mutex<Received>>>,
    wait: Duration,
    out: &mut Vec<Outcome>,
) {
    let accepted = |s: u16| (200..300).contains(&s);
    let steps: [(&str, &'static str, &'static str, &[Event]); 3] = [
        (
            "stop",
            "signed stop order accepted",
            "same stop order again accepted",
            &[Event::Stopped],
        ),
        (
            "resume",
            "signed resume order accepted",
            "same resume order again accepted",
            &[Event::Resumed, Event::Failed],
        ),
        (
            "terminate_standby",
            "terminate_standby accepted",
            "same terminate_standby again accepted",
            &[],
        ),
    ];
    for (kind, first, again, events) in steps {
        let id = format!("ord_check_{run}_{kind}");
        let body = order_body(&id, fleet, kind, 1);
        out.push(expect(
            first,
            client.order(&id, &body).await,
            accepted,
            "2xx",
        ));
        out.push(expect(
            again,
            client.order(&id, &body).await,
            accepted,
            "2xx (and applied once)",
        ));
        let Some(received) = received.filter(|_| !events.is_empty()) else {
            continue;
        };
        let reported = wait_for(received, wait, |r| {
            r.callbacks
                .iter()
                .find(|(_, _, _, c)| {
                    events.contains(&c.event) && c.caused_by.as_deref() == Some(id.as_str())
                })
                .map(|(_, i, e, _)| (i.clone(), e.clone()))
        })
        .await;
        out.push(Outcome {
            name: if kind == "stop" {
                "stop reported, naming its order"
            } else {
                "resume reported, naming its order"
            },
            passed: reported.is_some(),
            detail: match &reported {
                Some((i, e)) => format!("instance `{i}` reported `{e}` with caused_by = {id:?}"),
                None => format!(
                    "no {} callback with caused_by = {id:?} within {} s",
                    events
                        .iter()
                        .map(|e| e.as_str())
                        .collect::<Vec<_>>()
                        .join(" or "),
                    wait.as_secs()
                ),
            },
        });
    }
}

/// A short random tag for this run's order ids.
fn uuid_like() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..16].to_string()
}
