//! Delivery tests against a real PostgreSQL and a real HTTP provisioner (fake-cloud on loopback).

use std::time::Duration;

use chrono::{DateTime, Utc};
use prewarm_ingest::{create_fleet, FleetSpec};
use prewarm_planner::{Decision, FleetState, Order};
use sqlx::PgPool;

use crate::{
    dispatcher::Dispatcher,
    fake_cloud::{Control, FakeCloud},
    ledger::{orders, record_decision, ORDER_TTL_SECS},
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

#[sqlx::test(migrator = "prewarm_ingest::MIGRATOR")]
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
    });
    let d = dispatcher(&url, &secret);
    drain(&d, &pool, now).await;
    let state = cloud.state.lock().unwrap();
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

#[sqlx::test(migrator = "prewarm_ingest::MIGRATOR")]
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
    // on restart the order is pending again and goes out again with the same webhook-id.
    sqlx::query("UPDATE orders SET state = 'pending', delivered_at = NULL")
        .execute(&pool)
        .await
        .unwrap();
    d.dispatch_due(&pool, now).await.unwrap();
    let state = cloud.state.lock().unwrap();
    assert_eq!(state.deliveries, 2);
    assert_eq!(state.applied.len(), 1, "applied once in effect");
}

#[sqlx::test(migrator = "prewarm_ingest::MIGRATOR")]
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
    let applied = cloud.state.lock().unwrap().applied.clone();
    assert_eq!(applied.len(), 1);
    assert_eq!(
        applied[0].count, 2,
        "the superseded order was not delivered late"
    );
    let stored = orders(&pool, fleet_id).await.unwrap();
    assert_eq!(stored[0].state, "cancelled");

    // An order the provisioner never acknowledges expires instead of arriving late.
    record_decision(&pool, fleet_id, now, &FleetState::default(), &boot(4))
        .await
        .unwrap();
    cloud.inject(Control {
        fail_next: 1_000,
        hang_next: 0,
    });
    d.dispatch_due(&pool, now).await.unwrap();
    let report = d
        .dispatch_due(&pool, now + chrono::Duration::seconds(ORDER_TTL_SECS + 1))
        .await
        .unwrap();
    assert_eq!(report.expired, 1);
    assert_eq!(cloud.state.lock().unwrap().applied.len(), 1);
}

#[sqlx::test(migrator = "prewarm_ingest::MIGRATOR")]
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
    let state = cloud.state.lock().unwrap();
    assert_eq!((state.refused, state.applied.len()), (1, 0));
    drop(state);
    let stored = orders(&pool, fleet_id).await.unwrap();
    assert!(
        stored[0].last_error.as_deref().unwrap().contains("401"),
        "{:?}",
        stored[0]
    );
    assert_eq!(stored[0].state, "pending", "retried later, not lost");
}

#[sqlx::test(migrator = "prewarm_ingest::MIGRATOR")]
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
    let state = cloud.state.lock().unwrap();
    assert_eq!(
        (state.deliveries, state.applied.len()),
        (20, 20),
        "no order sent twice"
    );
}
