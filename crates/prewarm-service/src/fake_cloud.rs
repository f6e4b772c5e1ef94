//! `fake-cloud`: the reference provisioner.
//!
//! It accepts signed orders at `POST /orders`, refuses bad signatures and stale timestamps with
//! 401, and applies each order once by its `webhook-id` (a repeated delivery is acknowledged again
//! but changes nothing). A boot order of N starts N instances that become ready after a random
//! boot time; a terminate order ends N running ones (booting first, then resuming, then ready,
//! newest first). The standby tier: a stop order stops N ready instances (stopped after a stop
//! delay), a resume order resumes N stopped ones (serving after a random resume time, or failing
//! when told to: the cloud had no capacity for them), a `terminate_standby` order ends N stopped
//! ones. Each change is reported back to prewarm, signed with the same secret:
//! `POST {callback}/v1/instances/{id}/ready`, `/failed`, `/terminated`, `/stopped` or `/resumed`,
//! retried until prewarm acknowledges. Through `POST /control` it can be told to fail or hang its
//! next answers, to fail boots or resumes, or to send its callbacks twice. Tests and
//! the demo use it; a team writing its own provisioner can read it as the contract to meet.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    routing::{get, post},
    Json, Router,
};
use chrono::{DateTime, Utc};

use prewarm_store::OrderKind;

use crate::{
    callbacks::{Callback, Event},
    clock::SharedClock,
    webhook::Secret,
};

/// An order as the provisioner received it.
pub type ReceivedOrder = crate::webhook::OrderBody;

/// What the fake cloud has seen.
#[derive(Debug, Default)]
struct CloudState {
    /// Orders applied, once each, in arrival order.
    pub applied: Vec<ReceivedOrder>,
    by_id: HashMap<String, usize>,
    /// Deliveries received (including failed and repeated ones).
    pub deliveries: u64,
    /// Deliveries refused for their signature or timestamp.
    pub refused: u64,
    fail_next: u32,
    hang_next: u32,
    hang_secs: u64,
    fail_boots_next: u32,
    fail_resumes_next: u32,
    duplicate_next: u32,
    /// Every instance started, in order.
    pub instances: Vec<Instance>,
    /// Callbacks prewarm acknowledged, and attempts that failed (retried).
    pub callbacks_sent: u64,
    pub callbacks_failed: u64,
    draws: u64,
}

/// Where an instance is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Ordered, not yet serving.
    Booting,
    /// Serving.
    Ready,
    /// Its boot (or a resume) failed.
    Failed,
    /// Stopped and no longer billed.
    Terminated,
    /// Stopping into standby.
    Stopping,
    /// Stopped, resumable (billed at the standby price).
    Standby,
    /// Resuming from standby.
    Resuming,
}

/// One GPU instance.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Instance {
    /// The instance's id.
    pub id: String,
    /// The fleet's name.
    pub fleet: String,
    /// The order that started it.
    pub order_id: String,
    /// When it was ordered.
    pub ordered_at: DateTime<Utc>,
    /// When it is (or was) ready.
    pub ready_at: DateTime<Utc>,
    /// Where it is in its life.
    pub phase: Phase,
    /// When it stopped being billed (terminated or failed).
    pub ended_at: Option<DateTime<Utc>>,
    /// The order that terminated it.
    pub terminated_by: Option<String>,
    /// The stop or resume order under way, and when it completes.
    pub transition: Option<(String, DateTime<Utc>)>,
    /// Whether the resume under way fails.
    #[serde(skip)]
    resume_fails: bool,
    /// Events to report, oldest first, with their times and the stop or resume order that caused
    /// them.
    #[serde(skip)]
    outbox: Vec<(Event, DateTime<Utc>, Option<String>)>,
    /// Send each callback this many times.
    #[serde(skip)]
    repeat: u32,
    fails: bool,
}

/// Instances of a fleet by phase at some moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    /// Instances booting.
    pub booting: u32,
    /// Instances ready.
    pub ready: u32,
    /// Instances stopping or stopped.
    pub standby: u32,
    /// Instances resuming.
    pub resuming: u32,
}

/// Faults to inject into the next answers.
#[derive(Debug, Default, serde::Deserialize, serde::Serialize)]
pub struct Control {
    /// Answer 503 to this many deliveries.
    #[serde(default)]
    pub fail_next: u32,
    /// Hold this many deliveries for `hang_secs` (default 30) before answering.
    #[serde(default)]
    pub hang_next: u32,
    #[serde(default)]
    /// How long a held delivery waits (default 30).
    pub hang_secs: Option<u64>,
    /// The next this many instances fail to boot (reported as `failed`).
    #[serde(default)]
    pub fail_boots_next: u32,
    /// Send the callbacks of the next this many orders twice.
    #[serde(default)]
    pub duplicate_next: u32,
    /// The next this many resumes fail (reported as `failed`, naming the resume order).
    #[serde(default)]
    pub fail_resumes_next: u32,
}

/// How instances boot and whom to tell.
#[derive(Debug, Clone)]
pub struct Behaviour {
    /// Boot time drawn uniformly in this range, seconds.
    pub boot_secs: (i64, i64),
    /// prewarm's base URL for callbacks (`None`: no callbacks).
    pub callback_url: Option<String>,
    /// Seed of the boot-time draws.
    pub seed: u64,
    /// Time from a stop order to the instance stopped, seconds.
    pub stop_secs: i64,
    /// Resume time drawn uniformly in this range, seconds.
    pub resume_secs: (i64, i64),
}

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            boot_secs: (360, 600),
            callback_url: None,
            seed: 1,
            stop_secs: 30,
            resume_secs: (60, 180),
        }
    }
}

/// What the fake cloud has seen, at one moment (a copy: the cloud goes on).
#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// Orders applied, once each, in arrival order.
    pub applied: Vec<ReceivedOrder>,
    /// Deliveries received (including failed and repeated ones).
    pub deliveries: u64,
    /// Deliveries refused for their signature or timestamp.
    pub refused: u64,
    /// Every instance started, in order.
    pub instances: Vec<Instance>,
    /// Callbacks prewarm acknowledged, and attempts that failed (retried).
    pub callbacks_sent: u64,
    /// Callback attempts that failed (retried).
    pub callbacks_failed: u64,
}

/// A fake cloud: clones share one state, which callers read through [`FakeCloud::seen`] and
/// [`FakeCloud::counts`] and steer through [`FakeCloud::inject`].
#[derive(Clone)]
pub struct FakeCloud {
    secret: Secret,
    state: Arc<Mutex<CloudState>>,
    clock: SharedClock,
    behaviour: Behaviour,
    client: reqwest::Client,
}

impl FakeCloud {
    /// A fake cloud on the system clock that calls nobody back (it records orders only).
    pub fn new(secret: Secret) -> Self {
        Self::with(
            secret,
            Arc::new(crate::clock::SystemClock),
            Behaviour::default(),
        )
    }

    /// A fake cloud that boots instances on `clock` and reports them as `behaviour` says.
    pub fn with(secret: Secret, clock: SharedClock, behaviour: Behaviour) -> Self {
        Self {
            secret,
            state: Arc::default(),
            clock,
            behaviour,
            client: reqwest::Client::new(),
        }
    }

    /// What the cloud has seen so far.
    pub fn seen(&self) -> Seen {
        let state = self.state.lock().expect("fake cloud state");
        Seen {
            applied: state.applied.clone(),
            deliveries: state.deliveries,
            refused: state.refused,
            instances: state.instances.clone(),
            callbacks_sent: state.callbacks_sent,
            callbacks_failed: state.callbacks_failed,
        }
    }

    /// Moves instances along to `now` and sends the callbacks that are due; those prewarm does
    /// not acknowledge are kept and sent again next time. Returns callbacks acknowledged.
    pub async fn process(&self) -> u64 {
        let now = self.clock.now();
        let mut due: Vec<(Event, Callback, u32)> = Vec::new();
        {
            let mut state = self.state.lock().expect("fake-cloud state");
            for inst in state.instances.iter_mut() {
                if inst.phase == Phase::Booting && inst.ready_at <= now {
                    if inst.fails {
                        inst.phase = Phase::Failed;
                        inst.ended_at = Some(inst.ready_at);
                        inst.outbox.push((Event::Failed, inst.ready_at, None));
                    } else {
                        inst.phase = Phase::Ready;
                        inst.outbox.push((Event::Ready, inst.ready_at, None));
                    }
                }
                if let Some((cause, at)) = inst.transition.clone().filter(|(_, at)| *at <= now) {
                    match inst.phase {
                        Phase::Stopping => {
                            inst.phase = Phase::Standby;
                            inst.outbox.push((Event::Stopped, at, Some(cause)));
                        }
                        Phase::Resuming if inst.resume_fails => {
                            inst.phase = Phase::Failed;
                            inst.ended_at = Some(at);
                            inst.outbox.push((Event::Failed, at, Some(cause)));
                        }
                        Phase::Resuming => {
                            inst.phase = Phase::Ready;
                            inst.outbox.push((Event::Resumed, at, Some(cause)));
                        }
                        _ => {}
                    }
                    inst.transition = None;
                }
                if self.behaviour.callback_url.is_some() {
                    for (event, at, cause) in &inst.outbox {
                        due.push((
                            *event,
                            Callback {
                                instance_id: inst.id.clone(),
                                event: *event,
                                order_id: inst.order_id.clone(),
                                at: *at,
                                terminated_by: (*event == Event::Terminated)
                                    .then(|| inst.terminated_by.clone())
                                    .flatten(),
                                caused_by: cause.clone(),
                            },
                            inst.repeat.max(1),
                        ));
                    }
                }
            }
        }
        let Some(base) = &self.behaviour.callback_url else {
            return 0;
        };
        let mut acknowledged = 0;
        for (event, body, repeat) in due {
            let id = body.instance_id.clone();
            let mut ok = false;
            for _ in 0..repeat {
                ok |= self.send_callback(base, &body).await;
            }
            let mut state = self.state.lock().expect("fake-cloud state");
            if ok {
                state.callbacks_sent += 1;
                acknowledged += 1;
                if let Some(inst) = state.instances.iter_mut().find(|i| i.id == id) {
                    inst.outbox
                        .retain(|(e, _, c)| !(*e == event && *c == body.caused_by));
                }
            } else {
                state.callbacks_failed += 1;
            }
        }
        acknowledged
    }

    async fn send_callback(&self, base: &str, body: &Callback) -> bool {
        let Ok(bytes) = serde_json::to_vec(body) else {
            return false;
        };
        let (id, event) = (&body.instance_id, body.event.as_str());
        // One message id per instance, event and cause: a retry of the same news carries the same
        // id, a second stop of the same instance another.
        let msg_id = match &body.caused_by {
            Some(cause) => format!("cb-{id}-{event}-{cause}"),
            None => format!("cb-{id}-{event}"),
        };
        let ts = Utc::now().timestamp();
        self.client
            .post(format!("{base}/v1/instances/{id}/{event}"))
            .timeout(Duration::from_secs(10))
            .header("content-type", "application/json")
            .header("webhook-id", &msg_id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", self.secret.sign(&msg_id, ts, &bytes))
            .body(bytes)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    }

    /// Calls [`FakeCloud::process`] every `every` until the task is dropped (the system-clock mode
    /// of `prewarm fake-cloud`).
    pub fn spawn_processing(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                me.process().await;
            }
        })
    }

    /// A fleet's instances by phase now.
    pub fn counts(&self, fleet: &str) -> Counts {
        let state = self.state.lock().expect("fake-cloud state");
        let mut c = Counts::default();
        for i in state.instances.iter().filter(|i| i.fleet == fleet) {
            match i.phase {
                Phase::Booting => c.booting += 1,
                Phase::Ready => c.ready += 1,
                Phase::Stopping | Phase::Standby => c.standby += 1,
                Phase::Resuming => c.resuming += 1,
                Phase::Failed | Phase::Terminated => {}
            }
        }
        c
    }

    /// The next seeded draw, uniform in `(lo, hi)` seconds (boot and resume times share one
    /// sequence of draws).
    fn draw_secs(&self, state: &mut CloudState, (lo, hi): (i64, i64)) -> i64 {
        state.draws += 1;
        prewarm_planner::accounting::boot_secs(lo, hi, self.behaviour.seed, state.draws)
    }

    fn apply(&self, state: &mut CloudState, order: &ReceivedOrder) {
        let now = self.clock.now();
        let repeat = if state.duplicate_next > 0 {
            state.duplicate_next -= 1;
            2
        } else {
            1
        };
        match order.kind {
            OrderKind::Boot => {
                for k in 0..order.count {
                    let secs = self.draw_secs(state, self.behaviour.boot_secs);
                    let fails = state.fail_boots_next > 0;
                    state.fail_boots_next = state.fail_boots_next.saturating_sub(1);
                    state.instances.push(Instance {
                        id: format!("{}-{k}", order.id),
                        fleet: order.fleet.clone(),
                        order_id: order.id.clone(),
                        ordered_at: now,
                        ready_at: now + chrono::Duration::seconds(secs),
                        phase: Phase::Booting,
                        ended_at: None,
                        terminated_by: None,
                        transition: None,
                        resume_fails: false,
                        outbox: Vec::new(),
                        repeat,
                        fails,
                    });
                }
            }
            OrderKind::Terminate | OrderKind::TerminateStandby => {
                let phases: &[Phase] = if order.kind == OrderKind::Terminate {
                    &[Phase::Booting, Phase::Resuming, Phase::Ready]
                } else {
                    &[Phase::Standby, Phase::Stopping]
                };
                for _ in 0..order.count {
                    let Some(k) = phases.iter().find_map(|p| pick(state, &order.fleet, *p)) else {
                        break;
                    };
                    let inst = &mut state.instances[k];
                    inst.phase = Phase::Terminated;
                    inst.ended_at = Some(now);
                    inst.transition = None;
                    inst.terminated_by = Some(order.id.clone());
                    inst.outbox.retain(|(e, _, _)| *e != Event::Ready);
                    inst.outbox.push((Event::Terminated, now, None));
                    inst.repeat = inst.repeat.max(repeat);
                }
            }
            OrderKind::Stop => {
                for _ in 0..order.count {
                    let Some(k) = pick(state, &order.fleet, Phase::Ready) else {
                        break;
                    };
                    let inst = &mut state.instances[k];
                    inst.phase = Phase::Stopping;
                    inst.transition = Some((
                        order.id.clone(),
                        now + chrono::Duration::seconds(self.behaviour.stop_secs),
                    ));
                    inst.repeat = inst.repeat.max(repeat);
                }
            }
            OrderKind::Resume => {
                for _ in 0..order.count {
                    let Some(k) = pick(state, &order.fleet, Phase::Standby) else {
                        break;
                    };
                    let secs = self.draw_secs(state, self.behaviour.resume_secs);
                    let fails = state.fail_resumes_next > 0;
                    state.fail_resumes_next = state.fail_resumes_next.saturating_sub(1);
                    let inst = &mut state.instances[k];
                    inst.phase = Phase::Resuming;
                    inst.resume_fails = fails;
                    inst.transition = Some((
                        order.id.clone(),
                        // A resume that fails fails after a minute (no capacity).
                        now + chrono::Duration::seconds(if fails { 60 } else { secs }),
                    ));
                    inst.repeat = inst.repeat.max(repeat);
                }
            }
        }
    }

    /// The provisioner's routes.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/orders", post(receive).get(list))
            .route("/control", post(control))
            .route("/instances", get(instances))
            .route("/healthz", get(|| async { "ok" }))
            .with_state(self.clone())
    }

    /// Injects faults into the next answers.
    pub fn inject(&self, control: Control) {
        let mut state = self.state.lock().expect("fake-cloud state");
        state.fail_next = control.fail_next;
        state.hang_next = control.hang_next;
        state.hang_secs = control.hang_secs.unwrap_or(30);
        state.fail_boots_next = control.fail_boots_next;
        state.fail_resumes_next = control.fail_resumes_next;
        state.duplicate_next = control.duplicate_next;
    }
}

/// The newest instance of `fleet` in `phase`.
fn pick(state: &CloudState, fleet: &str, phase: Phase) -> Option<usize> {
    state
        .instances
        .iter()
        .rposition(|i| i.fleet == fleet && i.phase == phase)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

async fn receive(
    State(cloud): State<FakeCloud>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, Json<serde_json::Value>) {
    let verified = cloud.secret.verify(
        header(&headers, "webhook-id"),
        header(&headers, "webhook-timestamp"),
        header(&headers, "webhook-signature"),
        &body,
        Utc::now().timestamp(),
    );
    let (hang, fail, hang_secs) = {
        let mut state = cloud.state.lock().expect("fake-cloud state");
        state.deliveries += 1;
        if let Err(e) = verified {
            state.refused += 1;
            return (
                StatusCode::UNAUTHORIZED,
                Json(serde_json::json!({ "error": e.to_string() })),
            );
        }
        let hang = state.hang_next > 0;
        state.hang_next = state.hang_next.saturating_sub(1);
        let fail = !hang && state.fail_next > 0;
        if fail {
            state.fail_next -= 1;
        }
        (hang, fail, state.hang_secs)
    };
    if hang {
        tokio::time::sleep(Duration::from_secs(hang_secs)).await;
    }
    if fail {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "error": "injected failure" })),
        );
    }
    let order: ReceivedOrder = match serde_json::from_slice(&body) {
        Ok(o) => o,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(serde_json::json!({ "error": e.to_string() })),
            )
        }
    };
    if order.count > 10_000 {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(serde_json::json!({ "error": "count must be at most 10000" })),
        );
    }
    let mut state = cloud.state.lock().expect("fake-cloud state");
    let duplicate = state.by_id.contains_key(&order.id);
    if !duplicate {
        let index = state.applied.len();
        state.by_id.insert(order.id.clone(), index);
        cloud.apply(&mut state, &order);
        state.applied.push(order);
    }
    (
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "accepted": true, "duplicate": duplicate })),
    )
}

async fn list(State(cloud): State<FakeCloud>) -> Json<Vec<ReceivedOrder>> {
    Json(
        cloud
            .state
            .lock()
            .expect("fake-cloud state")
            .applied
            .clone(),
    )
}

async fn control(State(cloud): State<FakeCloud>, Json(c): Json<Control>) -> StatusCode {
    cloud.inject(c);
    StatusCode::NO_CONTENT
}

async fn instances(State(cloud): State<FakeCloud>) -> Json<Vec<Instance>> {
    Json(
        cloud
            .state
            .lock()
            .expect("fake-cloud state")
            .instances
            .clone(),
    )
}

impl std::fmt::Debug for FakeCloud {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeCloud")
            .field("behaviour", &self.behaviour)
            .finish_non_exhaustive()
    }
}
