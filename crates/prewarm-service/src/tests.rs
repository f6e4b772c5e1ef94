//! Delivery tests against a real PostgreSQL and a real HTTP provisioner (fake-cloud on loopback).

use std::time::Duration;

use chrono::{DateTime, Utc};
use prewarm_planner::{Decision, FleetState, Order};
use prewarm_store::{create_fleet, FleetSpec};
use sqlx::PgPool;

use prewarm_store::ledger::{orders, record_decision, ORDER_TTL_SECS};

use crate::{
    dispatcher::Dispatcher,
    fake_cloud::{Control, FakeCloud},
    webhook::Secret,
};

async fn start_cloud(secret: &Secret) -> (FakeCloud, String) {
    let cloud = FakeCloud::new(secret.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/orders", listener.local_addr().unwrap());
    let router = cloud.router();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (cloud, url)
}

fn dispatcher(url: &str, secret: &Secret) -> Dispatcher {
    Dispatcher {
        client: reqwest::Client::new(),
        url: url.to_string(),
        secret: secret.clone(),
        timeout: Duration::from_millis(500),
        batch: 100,
    }
}

fn boot(n: u32) -> Decision {
    Decision {
        desired_gpus: n,
        orders: vec![Order::Boot(n)],
        reason: format!("pre-warm: {n}"),
        breach: None,
        forecast_p50_rps: Some(1.0),
        forecast_upper_rps: Some(2.0),
    }
}

/// A fake cloud on loopback, a fleet, and a boot order of `n` GPUs recorded now.
struct Harness {
    cloud: FakeCloud,
    url: String,
    secret: Secret,
    fleet_id: i64,
    now: DateTime<Utc>,
}

async fn harness(pool: &PgPool, n: u32) -> Harness {
    let secret = Secret::generate();
    let (cloud, url) = start_cloud(&secret).await;
    let fleet_id = create_fleet(pool, &FleetSpec::named("chat"))
        .await
        .unwrap()
        .id;
    let now = Utc::now();
    record_decision(pool, fleet_id, now, &FleetState::default(), &boot(n))
        .await
        .unwrap();
    Harness {
        cloud,
        url,
        secret,
        fleet_id,
        now,
    }
}

/// Runs dispatch rounds, moving the clock past each backoff, until nothing is pending.
async fn drain(d: &Dispatcher, pool: &PgPool, mut now: DateTime<Utc>) -> u32 {
    let mut rounds = 0;
    loop {
        rounds += 1;
        d.dispatch_due(pool, now).await.unwrap();
        let pending: i64 =
            sqlx::query_scalar("SELECT count(*) FROM orders WHERE state = 'pending'")
                .fetch_one(pool)
                .await
                .unwrap();
        if pending == 0 || rounds > 50 {
            return rounds;
        }
        now += chrono::Duration::seconds(90);
    }
}

#[sqlx::test(migrator = "prewarm_store::MIGRATOR")]
async fn an_order_is_applied_once_despite_failures_and_time_outs(pool: PgPool) {
    let Harness {
        cloud,
        url,
        secret,
        fleet_id,
        now,
    } = harness(&pool, 3).await;
    cloud.inject(Control {
        fail_next: 2,
        hang_next: 1,
        ..Default::default()
    });
    let d = dispatcher(&url, &secret);
    drain(&d, &pool, now).await;
    let state = cloud.seen();
    assert_eq!(state.applied.len(), 1);
    assert_eq!(
        (state.applied[0].kind.as_str(), state.applied[0].count),
        ("boot", 3)
    );
    assert_eq!(
        state.deliveries, 4,
        "a time-out, two failures, then the delivery"
    );
    drop(state);
    let stored = orders(&pool, fleet_id).await.unwrap();
    assert_eq!(
        (stored[0].state.as_str(), stored[0].attempts),
        ("delivered", 4)
    );
}

#[sqlx::test(migrator = "prewarm_store::MIGRATOR")]
async fn a_delivery_repeated_after_a_crash_is_applied_once(pool: PgPool) {
    let Harness {
        cloud,
        url,
        secret,
        now,
        ..
    } = harness(&pool, 2).await;
    let d = dispatcher(&url, &secret);
    d.dispatch_due(&pool, now).await.unwrap();
    // The process dies after the provisioner answered but before the delivery was recorded:
    // on restart the order is pending again (its claim committed, so it is in doubt) and goes
    // out again with the same webhook-id once the claim's hold has passed.
    sqlx::query("UPDATE orders SET state = 'pending', delivered_at = NULL")
        .execute(&pool)
        .await
        .unwrap();
    d.dispatch_due(&pool, now).await.unwrap();
    assert_eq!(cloud.seen().deliveries, 1, "held by its claim");
    d.dispatch_due(&pool, now + chrono::Duration::seconds(3))
        .await
        .unwrap();
    let state = cloud.seen();
    assert_eq!(state.deliveries, 2);
    assert_eq!(state.applied.len(), 1, "applied once in effect");
    // The same for the standby tier's orders, and the state counts the order in doubt.
    let later = now + chrono::Duration::minutes(1);
    let fleet_id: i64 = sqlx::query_scalar("SELECT id FROM fleets")
        .fetch_one(&pool)
        .await
        .unwrap();
    record_decision(
        &pool,
        fleet_id,
        later,
        &FleetState::default(),
        &orders_of(vec![Order::Stop(1), Order::Resume(1)]),
    )
    .await
    .unwrap();
    d.dispatch_due(&pool, later).await.unwrap();
    sqlx::query("UPDATE orders SET state = 'pending', delivered_at = NULL WHERE kind <> 'boot'")
        .execute(&pool)
        .await
        .unwrap();
    let s = prewarm_store::state::fleet_state(&pool, fleet_id, later, 1_800)
        .await
        .unwrap();
    assert_eq!(
        (s.standby, s.resuming.len()),
        (0, 1),
        "in doubt: the stop and the resume both count"
    );
    d.dispatch_due(&pool, later + chrono::Duration::seconds(3))
        .await
        .unwrap();
    let state = cloud.seen();
    assert_eq!(state.deliveries, 6);
    let kinds: Vec<&str> = state.applied.iter().map(|o| o.kind.as_str()).collect();
    assert_eq!(
        kinds,
        ["boot", "stop", "resume"],
        "each applied once in effect"
    );
}

#[sqlx::test(migrator = "prewarm_store::MIGRATOR")]
async fn a_newer_plan_cancels_undelivered_orders_and_old_ones_expire(pool: PgPool) {
    let Harness {
        cloud,
        url,
        secret,
        fleet_id,
        now,
    } = harness(&pool, 5).await;
    record_decision(
        &pool,
        fleet_id,
        now + chrono::Duration::seconds(60),
        &FleetState::default(),
        &boot(2),
    )
    .await
    .unwrap();
    let d = dispatcher(&url, &secret);
    d.dispatch_due(&pool, now + chrono::Duration::seconds(60))
        .await
        .unwrap();
    let applied = cloud.seen().applied.clone();
    assert_eq!(applied.len(), 1);
    assert_eq!(
        applied[0].count, 2,
        "the superseded order was not delivered late"
    );
    let stored = orders(&pool, fleet_id).await.unwrap();
    assert_eq!(stored[0].state, prewarm_store::OrderState::Cancelled);

    // An order the provisioner never acknowledges expires instead of arriving late.
    record_decision(&pool, fleet_id, now, &FleetState::default(), &boot(4))
        .await
        .unwrap();
    cloud.inject(Control {
        fail_next: 1_000,
        hang_next: 0,
        ..Default::default()
    });
    d.dispatch_due(&pool, now).await.unwrap();
    let report = d
        .dispatch_due(&pool, now + chrono::Duration::seconds(ORDER_TTL_SECS + 1))
        .await
        .unwrap();
    assert_eq!(report.expired, 1);
    assert_eq!(cloud.seen().applied.len(), 1);
}

#[sqlx::test(migrator = "prewarm_store::MIGRATOR")]
async fn a_wrong_secret_is_refused_and_nothing_is_applied(pool: PgPool) {
    let Harness {
        cloud,
        url,
        fleet_id,
        now,
        ..
    } = harness(&pool, 1).await;
    let wrong = dispatcher(&url, &Secret::generate());
    let report = wrong.dispatch_due(&pool, now).await.unwrap();
    assert_eq!(report.failed, 1);
    let state = cloud.seen();
    assert_eq!((state.refused, state.applied.len()), (1, 0));
    drop(state);
    let stored = orders(&pool, fleet_id).await.unwrap();
    assert!(
        stored[0].last_error.as_deref().unwrap().contains("401"),
        "{:?}",
        stored[0]
    );
    assert_eq!(
        stored[0].state,
        prewarm_store::OrderState::Pending,
        "retried later, not lost"
    );
}

#[sqlx::test(migrator = "prewarm_store::MIGRATOR")]
async fn two_dispatchers_never_send_the_same_order_at_once(pool: PgPool) {
    // The harness's own order plus 19 more fleets' orders.
    let Harness {
        cloud,
        url,
        secret,
        now,
        ..
    } = harness(&pool, 1).await;
    for i in 1..20 {
        let f = create_fleet(&pool, &FleetSpec::named(&format!("f{i}")))
            .await
            .unwrap();
        record_decision(&pool, f.id, now, &FleetState::default(), &boot(1))
            .await
            .unwrap();
    }
    let (a, b) = (dispatcher(&url, &secret), dispatcher(&url, &secret));
    let (ra, rb) = tokio::join!(a.dispatch_due(&pool, now), b.dispatch_due(&pool, now));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(ra.delivered + rb.delivered, 20);
    let state = cloud.seen();
    assert_eq!(
        (state.deliveries, state.applied.len()),
        (20, 20),
        "no order sent twice"
    );
}

/// Sends a callback signed with `signer` to callback routes that trust `secret`.
async fn callback_signed(
    pool: &PgPool,
    secret: &Secret,
    signer: &Secret,
    path: &str,
    body: serde_json::Value,
    signed_at: i64,
) -> axum::http::StatusCode {
    use tower::ServiceExt;
    // The body names the path's instance and event, as the contract asks, unless the test
    // says otherwise.
    let mut body = body;
    let mut parts = path.trim_start_matches("/v1/instances/").split('/');
    let (instance, event) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if body.get("instance_id").is_none() {
        body["instance_id"] = serde_json::json!(instance);
    }
    if body.get("event").is_none() {
        body["event"] = serde_json::json!(event);
    }
    let body = serde_json::to_vec(&body).unwrap();
    let id = format!("cb-{}", rand::random::<u64>());
    let request = axum::http::Request::post(path)
        .header("content-type", "application/json")
        .header("webhook-id", &id)
        .header("webhook-timestamp", signed_at.to_string())
        .header("webhook-signature", signer.sign(&id, signed_at, &body))
        .body(axum::body::Body::from(body))
        .unwrap();
    // The service's clock reads two hours after the orders: callbacks dated up to then are in
    // bounds.
    let clock = crate::clock::ManualClock::new(Utc::now() + chrono::Duration::hours(2));
    crate::callbacks::router(pool.clone(), secret.clone(), std::sync::Arc::new(clock))
        .oneshot(request)
        .await
        .unwrap()
        .status()
}

async fn callback(
    pool: &PgPool,
    secret: &Secret,
    path: &str,
    body: serde_json::Value,
    signed_at: i64,
) -> axum::http::StatusCode {
    callback_signed(pool, secret, secret, path, body, signed_at).await
}

#[sqlx::test(migrator = "prewarm_store::MIGRATOR")]
async fn callbacks_teach_boot_times_and_bad_ones_change_nothing(pool: PgPool) {
    use axum::http::StatusCode;
    let Harness {
        secret,
        fleet_id,
        now,
        ..
    } = harness(&pool, 3).await;
    let order = orders(&pool, fleet_id).await.unwrap()[0]
        .idempotency_key
        .clone();
    let ordered_at: DateTime<Utc> = sqlx::query_scalar("SELECT created_at FROM orders")
        .fetch_one(&pool)
        .await
        .unwrap();
    let wall = Utc::now().timestamp();
    let ready = |secs: i64| serde_json::json!({"order_id": order, "at": (ordered_at + chrono::Duration::seconds(secs)).to_rfc3339()});
    let stats = || crate::callbacks::boot_stats(&pool, fleet_id, now - chrono::Duration::days(1));

    assert_eq!(
        callback(&pool, &secret, "/v1/instances/i-1/ready", ready(420), wall).await,
        StatusCode::OK
    );
    assert_eq!(stats().await.unwrap().p95_secs, Some(420.0));
    // Answered twice: the first ready wins.
    assert_eq!(
        callback(&pool, &secret, "/v1/instances/i-1/ready", ready(900), wall).await,
        StatusCode::OK
    );
    assert_eq!(stats().await.unwrap().count, 1);
    assert_eq!(stats().await.unwrap().max_secs, Some(420.0));
    // A bad signature, or a stale timestamp, is refused and changes nothing.
    let other = Secret::generate();
    assert_eq!(
        callback_signed(
            &pool,
            &secret,
            &other,
            "/v1/instances/i-2/ready",
            ready(60),
            wall
        )
        .await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        callback(
            &pool,
            &secret,
            "/v1/instances/i-2/ready",
            ready(60),
            wall - 3_600
        )
        .await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(stats().await.unwrap().count, 1);
    // An unknown order, an unknown event.
    let unknown = serde_json::json!({"order_id": "order-x", "at": Utc::now().to_rfc3339()});
    assert_eq!(
        callback(&pool, &secret, "/v1/instances/i-3/ready", unknown, wall).await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        callback(&pool, &secret, "/v1/instances/i-1/exploded", ready(1), wall).await,
        StatusCode::NOT_FOUND
    );
    // Termination keeps the boot time.
    assert_eq!(
        callback(
            &pool,
            &secret,
            "/v1/instances/i-1/terminated",
            ready(5_000),
            wall
        )
        .await,
        StatusCode::OK
    );
    let state: String = sqlx::query_scalar("SELECT state FROM instances WHERE instance_id = 'i-1'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(state, "terminated");
    assert_eq!(stats().await.unwrap().max_secs, Some(420.0));

    // The p95 of boot times 300, 320, ..., 680 s (20 instances plus i-1 at 420).
    for k in 0..20 {
        let status = callback(
            &pool,
            &secret,
            &format!("/v1/instances/b-{k}/ready"),
            ready(300 + 20 * k),
            wall,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
    }
    let s = stats().await.unwrap();
    assert_eq!(s.count, 21);
    assert!((s.p95_secs.unwrap() - 660.0).abs() < 1e-9, "{s:?}");
}

fn orders_of(orders: Vec<Order>) -> Decision {
    Decision {
        desired_gpus: 0,
        orders,
        reason: "test".into(),
        breach: None,
        forecast_p50_rps: None,
        forecast_upper_rps: None,
    }
}

#[sqlx::test(migrator = "prewarm_store::MIGRATOR")]
async fn stop_resume_and_standby_terminations_are_applied_once_despite_failures_and_time_outs(
    pool: PgPool,
) {
    let Harness {
        cloud,
        url,
        secret,
        fleet_id,
        now,
    } = harness(&pool, 3).await;
    let d = dispatcher(&url, &secret);
    drain(&d, &pool, now).await;
    for (k, order) in [Order::Stop(2), Order::Resume(1), Order::TerminateStandby(1)]
        .into_iter()
        .enumerate()
    {
        let at = now + chrono::Duration::minutes(k as i64 + 1);
        record_decision(
            &pool,
            fleet_id,
            at,
            &FleetState::default(),
            &orders_of(vec![order]),
        )
        .await
        .unwrap();
        cloud.inject(Control {
            fail_next: 2,
            hang_next: 1,
            ..Default::default()
        });
        drain(&d, &pool, at).await;
    }
    let applied: Vec<(String, u32)> = cloud
        .seen()
        .applied
        .iter()
        .map(|o| (o.kind.as_str().to_string(), o.count))
        .collect();
    assert_eq!(
        applied,
        [
            ("boot".to_string(), 3),
            ("stop".to_string(), 2),
            ("resume".to_string(), 1),
            ("terminate_standby".to_string(), 1)
        ],
        "each order applied once, in order"
    );
    let stored = orders(&pool, fleet_id).await.unwrap();
    assert!(stored.iter().all(|o| o.state.as_str() == "delivered"));
}

#[sqlx::test(migrator = "prewarm_store::MIGRATOR")]
async fn standby_callbacks_count_once_in_any_order_and_bad_ones_change_nothing(pool: PgPool) {
    use axum::http::StatusCode;
    use serde_json::json;
    let Harness {
        secret,
        fleet_id,
        now,
        url,
        ..
    } = harness(&pool, 3).await;
    let d = dispatcher(&url, &secret);
    drain(&d, &pool, now).await;
    let boot_key = orders(&pool, fleet_id).await.unwrap()[0]
        .idempotency_key
        .clone();
    let wall = Utc::now().timestamp();
    let at = |mins: i64| (now + chrono::Duration::minutes(mins)).to_rfc3339();
    for i in ["i1", "i2"] {
        let path = format!("/v1/instances/{i}/ready");
        let body = json!({"order_id": boot_key, "at": at(6)});
        assert_eq!(
            callback(&pool, &secret, &path, body, wall).await,
            StatusCode::OK
        );
    }
    let decided = now + chrono::Duration::minutes(10);
    record_decision(
        &pool,
        fleet_id,
        decided,
        &FleetState::default(),
        &orders_of(vec![Order::Stop(2)]),
    )
    .await
    .unwrap();
    drain(&d, &pool, decided).await;
    let key_of = |kind: &'static str| {
        let pool = pool.clone();
        async move {
            orders(&pool, fleet_id)
                .await
                .unwrap()
                .into_iter()
                .find(|o| o.kind.as_str() == kind)
                .unwrap()
                .idempotency_key
        }
    };
    let stop_key = key_of("stop").await;
    let state = || prewarm_store::state::fleet_state(&pool, fleet_id, decided, 1_800);
    // Delivered, not yet reported: both count as stopping (standby), neither as ready.
    let s = state().await.unwrap();
    assert_eq!((s.gpus_ready, s.standby, s.booting.len()), (0, 2, 1));

    // Bad callbacks: no cause, a cause of the wrong kind, an instance never reported ready.
    let stopped = |i: &str| format!("/v1/instances/{i}/stopped");
    let cases = [
        (
            stopped("i1"),
            json!({"order_id": boot_key, "at": at(11)}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            stopped("i1"),
            json!({"order_id": boot_key, "at": at(11), "caused_by": boot_key}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            stopped("nobody"),
            json!({"order_id": boot_key, "at": at(11), "caused_by": stop_key}),
            StatusCode::NOT_FOUND,
        ),
        (
            stopped("i1"),
            json!({"order_id": boot_key, "at": at(5), "caused_by": stop_key}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ];
    for (path, body, status) in cases {
        assert_eq!(
            callback(&pool, &secret, &path, body.clone(), wall).await,
            status,
            "{path} {body}"
        );
    }
    let transitions: i64 = sqlx::query_scalar("SELECT count(*) FROM instance_transitions")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(transitions, 0, "refused callbacks change nothing");

    // i1 stops, reported twice (two message ids): counted once.
    for _ in 0..2 {
        let body = json!({"order_id": boot_key, "at": at(11), "caused_by": stop_key});
        assert_eq!(
            callback(&pool, &secret, &stopped("i1"), body, wall).await,
            StatusCode::OK
        );
    }
    // i2 is resumed by a later order, and the news of its resume arrives before that of its stop.
    let resumed_at = now + chrono::Duration::minutes(12);
    record_decision(
        &pool,
        fleet_id,
        resumed_at,
        &FleetState::default(),
        &orders_of(vec![Order::Resume(1)]),
    )
    .await
    .unwrap();
    drain(&d, &pool, resumed_at).await;
    let resume_key = key_of("resume").await;
    let body = json!({"order_id": boot_key, "at": at(14), "caused_by": resume_key});
    assert_eq!(
        callback(&pool, &secret, "/v1/instances/i2/resumed", body, wall).await,
        StatusCode::OK
    );
    let body = json!({"order_id": boot_key, "at": at(11), "caused_by": stop_key});
    assert_eq!(
        callback(&pool, &secret, &stopped("i2"), body, wall).await,
        StatusCode::OK
    );
    let s = prewarm_store::state::fleet_state(&pool, fleet_id, resumed_at, 1_800)
        .await
        .unwrap();
    // 3 GPUs: i1 in standby, i2 serving again (its late `stopped` does not stop it), the third
    // still booting.
    assert_eq!(
        (s.gpus_ready, s.standby, s.resuming.len(), s.booting.len()),
        (1, 1, 0, 1)
    );
    let state: String = sqlx::query_scalar("SELECT state FROM instances WHERE instance_id = 'i2'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(state, "ready");
    // The resume taught a resume time: 2 minutes from its order.
    let stats = prewarm_store::instances::resume_stats(&pool, fleet_id, now)
        .await
        .unwrap();
    assert_eq!((stats.count, stats.p50_secs), (1, Some(120.0)));
    // News of a terminated instance changes nothing.
    let body = json!({"order_id": boot_key, "at": at(15)});
    assert_eq!(
        callback(&pool, &secret, "/v1/instances/i1/terminated", body, wall).await,
        StatusCode::OK
    );
    let body = json!({"order_id": boot_key, "at": at(16), "caused_by": resume_key});
    assert_eq!(
        callback(&pool, &secret, "/v1/instances/i1/resumed", body, wall).await,
        StatusCode::OK
    );
    let state: String = sqlx::query_scalar("SELECT state FROM instances WHERE instance_id = 'i1'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(state, "terminated");
}
