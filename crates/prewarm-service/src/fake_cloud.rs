//! `fake-cloud`: the reference provisioner.
//!
//! It accepts signed orders at `POST /orders`, refuses bad signatures and stale timestamps with
//! 401, applies each order once by its `webhook-id` (a repeated delivery is acknowledged again
//! but changes nothing), and can be told through `POST /control` to fail or hang its next
//! answers. Tests and the demo use it; a team writing its own provisioner can read it as the
//! contract to meet.

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
use chrono::Utc;

use crate::webhook::Secret;

/// An order as the provisioner received it.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
pub struct ReceivedOrder {
    pub id: String,
    pub fleet: String,
    pub kind: String,
    pub count: u32,
    pub created_at: String,
}

/// What the fake cloud has seen.
#[derive(Debug, Default)]
pub struct CloudState {
    /// Orders applied, once each, in arrival order.
    pub applied: Vec<ReceivedOrder>,
    by_id: HashMap<String, usize>,
    /// Deliveries received (including failed and repeated ones).
    pub deliveries: u64,
    /// Deliveries refused for their signature or timestamp.
    pub refused: u64,
    fail_next: u32,
    hang_next: u32,
}

/// Faults to inject into the next answers.
#[derive(Debug, Default, serde::Deserialize, serde::Serialize)]
pub struct Control {
    /// Answer 503 to this many deliveries.
    #[serde(default)]
    pub fail_next: u32,
    /// Hold this many deliveries for 30 s before answering.
    #[serde(default)]
    pub hang_next: u32,
}

/// A fake cloud with its shared state.
#[derive(Clone)]
pub struct FakeCloud {
    secret: Secret,
    pub state: Arc<Mutex<CloudState>>,
}

impl FakeCloud {
    pub fn new(secret: Secret) -> Self {
        Self {
            secret,
            state: Arc::default(),
        }
    }

    /// The provisioner's routes.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/orders", post(receive).get(list))
            .route("/control", post(control))
            .route("/healthz", get(|| async { "ok" }))
            .with_state(self.clone())
    }

    /// Injects faults into the next answers.
    pub fn inject(&self, control: Control) {
        let mut state = self.state.lock().expect("fake-cloud state");
        state.fail_next = control.fail_next;
        state.hang_next = control.hang_next;
    }
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
    let (hang, fail) = {
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
        (hang, fail)
    };
    if hang {
        tokio::time::sleep(Duration::from_secs(30)).await;
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
    let mut state = cloud.state.lock().expect("fake-cloud state");
    let duplicate = state.by_id.contains_key(&order.id);
    if !duplicate {
        let index = state.applied.len();
        state.by_id.insert(order.id.clone(), index);
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
