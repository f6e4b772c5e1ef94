//! The service path end to end against a real PostgreSQL and fake-cloud over loopback, on a
//! manual clock: ticks, callbacks, learned boot lead, operator controls and API, leases across
//! replicas, state rebuilt from the ledger, refits, configuration and DST-safe jobs.

use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use prewarm_core::Trace;
use prewarm_planner::{FleetState, Order};
use prewarm_store::{create_fleet, create_token, FleetSpec};
use sqlx::PgPool;

use crate::{
    clock::{Clock, ManualClock, SharedClock},
    config::{Config, Mode, Redacted, Span},
    engine::{Service, TickOutcome},
    fake_cloud::{Behaviour, Control, FakeCloud},
    jobs::{claim_slot, daily_slot, parse_local_time, Pattern},
    serve::{self, Running},
    webhook::Secret,
};

pub(crate) fn config(secret: &Secret, cloud_url: &str, replica: &str) -> Config {
    let mut c = Config::default();
    c.database.url = Redacted("postgres://127.0.0.1/unused".into());
    c.http.listen = "127.0.0.1:0".into();
    c.provisioner.url = cloud_url.to_string();
    c.provisioner.secret = Redacted(secret.encoded());
    c.provisioner.timeout = Span(2);
    c.service.replica_id = replica.into();
    c.planner.min_boots_for_lead = 2;
    c.validate().unwrap();
    c
}

pub(crate) struct World {
    pub clock: ManualClock,
    pub cloud: FakeCloud,
    pub running: Running,
    pub service: Arc<Service>,
    pub secret: Secret,
    pub cloud_url: String,
}

/// fake-cloud (boots of 5 to 7 minutes, calling back) and a service, both on one manual clock.
pub(crate) async fn world(
    pool: &PgPool,
    start: DateTime<Utc>,
    tweak: impl FnOnce(&mut Config),
) -> World {
    let clock = ManualClock::new(start);
    let shared: SharedClock = Arc::new(clock.clone());
    let secret = Secret::generate();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cloud = FakeCloud::with(
        secret.clone(),
        shared.clone(),
        Behaviour {
            boot_secs: (300, 420),
            callback_url: Some(format!("http://127.0.0.1:{port}")),
            seed: 7,
            ..Behaviour::default()
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let cloud_url = format!("http://{}/orders", listener.local_addr().unwrap());
    let router = cloud.router();
    tokio::spawn(async move { axum::serve(listener, router).await });
    let mut c = config(&secret, &cloud_url, "replica-a");
    c.http.listen = format!("127.0.0.1:{port}");
    tweak(&mut c);
    let running = serve::start_with_pool(c, shared, pool.clone(), false)
        .await
        .unwrap();
    let service = running.service.clone();
    World {
        clock,
        cloud,
        running,
        service,
        secret,
        cloud_url,
    }
}

pub(crate) fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

pub(crate) async fn fleet(pool: &PgPool, name: &str, min: i32) -> i64 {
    let mut spec = FleetSpec::named(name);
    spec.min_gpus = min;
    spec.gpu_rps = 1.0;
    create_fleet(pool, &spec).await.unwrap().id
}

/// A token that may read and operate one fleet (or every fleet).
pub(crate) async fn ops_token(pool: &PgPool, fleet: Option<&str>) -> String {
    use prewarm_store::Scope;
    create_token(
        pool,
        fleet,
        "ops",
        &[Scope::Read, Scope::Operate],
        &prewarm_store::Actor::cli(),
    )
    .await
    .unwrap()
    .1
}

/// The JSON a GET of `path` on the service at `addr` answers with `token`.
pub(crate) async fn get(addr: &std::net::SocketAddr, path: &str, token: &str) -> serde_json::Value {
    reqwest::Client::new()
        .get(format!("http://{addr}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

pub(crate) fn planned(outcome: TickOutcome) -> (prewarm_planner::Decision, FleetState, i64) {
    match outcome {
        TickOutcome::Planned {
            decision,
            state,
            boot_lead_secs,
            ..
        } => (decision, state, boot_lead_secs),
        TickOutcome::LeaseLost => panic!("the lease was lost"),
        TickOutcome::FleetGone => panic!("the fleet is gone"),
        TickOutcome::Drained { .. } => panic!("the fleet was drained and deleted"),
    }
}

#[sqlx::test(migrator = "prewarm_store::MIGRATOR")]
async fn a_fleet_deleted_under_a_job_is_gone_not_a_lost_lease_and_is_counted_so(pool: PgPool) {
    let w = world(&pool, at("2026-06-01T08:00:00Z"), |_| {}).await;
    let id = fleet(&pool, "chat", 2).await;
    w.service.lease_round().await.unwrap();
    prewarm_store::delete_fleet(
        &pool,
        "chat",
        &prewarm_store::Actor::cli(),
        prewarm_store::fleets::Deletion::IfEmpty,
        w.clock.now(),
    )
    .await
    .unwrap();
    assert_eq!(
        w.service.tick_fleet(id).await.unwrap(),
        TickOutcome::FleetGone
    );
    let e = w.service.refit_fleet(id).await.unwrap_err();
    assert!(
        matches!(e, crate::error::ServiceError::FleetGone(f) if f == id),
        "{e:?}"
    );
    // The error policy counts it by job and kind.
    w.service.report(crate::error::Job::Refit, Some(id), &e);
    let metrics = w.service.metrics.render();
    assert!(
        metrics.contains(r#"prewarm_job_errors_total{task="refit",kind="fleet_gone"} 1"#),
        "{metrics}"
    );
}

#[sqlx::test(migrator = "prewarm_store::MIGRATOR")]
async fn the_service_boots_learns_boot_times_and_obeys_operators(pool: PgPool) {
    let w = world(&pool, at("2026-06-01T08:00:00Z"), |_| {}).await;
    let id = fleet(&pool, "chat", 2).await;
    w.service.lease_round().await.unwrap();
    assert_eq!(w.service.held(), vec![id]);

    // No history: the reactive rules keep the minimum, ordered at once and delivered signed.
    let (d, state, lead) = planned(w.service.tick_fleet(id).await.unwrap());
    assert_eq!(d.orders, vec![Order::Boot(2)]);
    assert_eq!(state.provisioned(), 0);
    assert_eq!(lead, 600, "no boots known yet: the configured lead");
    assert!(d.reason.contains("no forecast yet"), "{}", d.reason);
    assert_eq!(w.cloud.seen().applied.len(), 1);

    // A tick while they boot orders nothing more: booting GPUs count.
    w.clock.advance(Duration::minutes(1));
    let (d, state, _) = planned(w.service.tick_fleet(id).await.unwrap());
    assert!(d.orders.is_empty(), "{:?}", d.orders);
    assert_eq!((state.gpus_ready, state.booting.len()), (0, 2));

    // They become ready; fake-cloud calls back; prewarm learns the boot times.
    w.clock.advance(Duration::minutes(7));
    assert_eq!(w.cloud.process().await, 2);
    let (d, state, lead) = planned(w.service.tick_fleet(id).await.unwrap());
    assert!(d.orders.is_empty());
    assert_eq!((state.gpus_ready, state.booting.len()), (2, 0));
    let stats = crate::callbacks::boot_stats(&pool, id, w.clock.now() - Duration::days(1))
        .await
        .unwrap();
    assert_eq!(stats.count, 2);
    let p95 = stats.p95_secs.unwrap();
    assert!((300.0..=420.0).contains(&p95), "{p95}");
    assert_eq!(
        lead,
        ((p95 / 60.0).ceil() as i64) * 60,
        "the lead follows the boot p95"
    );

    // Pin: the operator's size wins, with the reason saying so.
    sqlx::query("UPDATE fleets SET pinned_gpus = 5 WHERE id = $1")
        .bind(id)
        .execute(&pool)
        .await
        .unwrap();
    w.clock.advance(Duration::minutes(1));
    let (d, _, _) = planned(w.service.tick_fleet(id).await.unwrap());
    assert_eq!(d.orders, vec![Order::Boot(3)]);
    assert!(d.reason.starts_with("pinned to 5"), "{}", d.reason);

    // Pause: decisions are still recorded, with what the plan would have done, and nothing is
    // ordered.
    sqlx::query("UPDATE fleets SET pinned_gpus = NULL, paused = true WHERE id = $1")
        .bind(id)
        .execute(&pool)
        .await
        .unwrap();
    w.clock.advance(Duration::minutes(1));
    let (d, _, _) = planned(w.service.tick_fleet(id).await.unwrap());
    assert!(d.orders.is_empty());
    assert!(
        d.reason.starts_with("paused by an operator"),
        "{}",
        d.reason
    );
    let modes: Vec<String> =
        sqlx::query_scalar("SELECT mode FROM decisions WHERE fleet_id = $1 ORDER BY id")
            .bind(id)
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(modes, ["act", "act", "act", "pinned", "paused"]);
    w.running.stop().await;
}

#[sqlx::test(migrator = "prewarm_store::MIGRATOR")]
async fn failed_boots_are_replaced_and_duplicate_callbacks_change_nothing(pool: PgPool) {
    let w = world(&pool, at("2026-06-01T08:00:00Z"), |_| {}).await;
    let id = fleet(&pool, "chat", 3).await;
    w.service.lease_round().await.unwrap();
    w.cloud.inject(Control {
        fail_boots_next: 1,
        duplicate_next: 1,
        ..Default::default()
    });
    let (d, _, _) = planned(w.service.tick_fleet(id).await.unwrap());
    assert_eq!(d.orders, vec![Order::Boot(3)]);
    w.clock.advance(Duration::minutes(8));
    w.cloud.process().await;
    let (d, state, _) = planned(w.service.tick_fleet(id).await.unwrap());
    assert_eq!(state.gpus_ready, 2, "one boot failed");
    assert_eq!(d.orders, vec![Order::Boot(1)], "the failed GPU is replaced");
    let instances: i64 = sqlx::query_scalar("SELECT count(*) FROM instances")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(instances, 3, "callbacks sent twice recorded once");
    w.running.stop().await;
}

#[sqlx::test(migrator = "prewarm_store::MIGRATOR")]
async fn forecast_only_mode_records_decisions_and_orders_nothing(pool: PgPool) {
    let w = world(&pool, at("2026-06-01T08:00:00Z"), |c| {
        c.service.mode = Mode::ForecastOnly
    })
    .await;
    let id = fleet(&pool, "chat", 2).await;
    w.service.lease_round().await.unwrap();
    let (d, _, _) = planned(w.service.tick_fleet(id).await.unwrap());
    assert!(d.reason.starts_with("forecast-only"), "{}", d.reason);
    let orders: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(orders, 0);
    assert!(w.cloud.seen().applied.is_empty());
    w.running.stop().await;
}

#[sqlx::test(migrator = "prewarm_store::MIGRATOR")]
async fn operator_api_explains_and_controls_a_fleet(pool: PgPool) {
    let w = world(&pool, at("2026-06-01T08:00:00Z"), |_| {}).await;
    let id = fleet(&pool, "chat", 2).await;
    fleet(&pool, "other", 1).await;
    let token = ops_token(&pool, Some("chat")).await;
    let other = ops_token(&pool, Some("other")).await;
    w.service.lease_round().await.unwrap();
    w.service.tick_fleet(id).await.unwrap();
    let base = format!("http://{}", w.running.addr);
    let c = reqwest::Client::new();
    let get = |path: &str, token: &str| c.get(format!("{base}{path}")).bearer_auth(token).send();

    assert_eq!(
        c.get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        c.get(format!("{base}/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let metrics = c
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "prewarm_desired_gpus{fleet=\"chat\"} 2",
        "prewarm_orders_delivered_total 1",
        "prewarm_webhook_latency_seconds_count 1",
        "prewarm_ticks_total 1",
    ] {
        assert!(metrics.contains(name), "{name} missing from\n{metrics}");
    }

    let plan: serde_json::Value = get("/v1/fleets/chat/plan", &token)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(plan["latest_decision"]["desired_gpus"], 2);
    assert_eq!(plan["lease_holder"], "replica-a");
    let decisions: serde_json::Value = get("/v1/fleets/chat/decisions?limit=5", &token)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(decisions["decisions"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("reactive"));
    let boot: serde_json::Value = get("/v1/fleets/chat/boot-stats", &token)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(boot["boot_lead_secs"], 600);
    let forecast = get("/v1/fleets/chat/forecast", &token).await.unwrap();
    assert_eq!(
        forecast.status(),
        404,
        "no history, no forecast, and it says why"
    );

    assert_eq!(
        c.get(format!("{base}/v1/fleets/chat/plan"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        get("/v1/fleets/chat/plan", &other).await.unwrap().status(),
        403
    );
    assert_eq!(
        get("/v1/fleets/nope/plan", &token).await.unwrap().status(),
        404
    );

    let r = c
        .post(format!("{base}/v1/fleets/chat/pause"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let paused: bool = sqlx::query_scalar("SELECT paused FROM fleets WHERE id = $1")
        .bind(id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(paused);
    c.post(format!("{base}/v1/fleets/chat/resume"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let r = c
        .put(format!("{base}/v1/fleets/chat/pin"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"gpus": -1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let r = c
        .put(format!("{base}/v1/fleets/chat/pin"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"gpus": 4, "until": "2026-06-01T12:00:00Z"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .post(format!("{base}/v1/fleets/chat/events"))
        .bearer_auth(&token)
        .json(
            &serde_json::json!({"label": "launch", "starts_local": "2026-06-02T09:00:00",
            "ends_local": "2026-06-02T12:00:00", "multiply": 3.0}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = c
        .post(format!("{base}/v1/fleets/chat/events"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"starts_local": "2026-06-02T09:00:00",
            "ends_local": "2026-06-02T08:00:00", "multiply": 3.0}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        422,
        "an event that ends before it starts is refused"
    );
    let r = c
        .post(format!("{base}/v1/fleets/chat/events"))
        .bearer_auth(&token)
        .body("{not json")
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let put = |path: &str, body: serde_json::Value| {
        c.put(format!("{base}{path}"))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    let r = put(
        "/v1/fleets/chat/planner",
        serde_json::json!({"quantile": 1.5}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 422);
    let r = put(
        "/v1/fleets/chat/planner",
        serde_json::json!({"quantlie": 0.9}),
    )
    .await
    .unwrap();
    assert_eq!(
        r.status(),
        400,
        "a misspelt setting is refused, not ignored"
    );
    let r = put(
        "/v1/fleets/chat/planner",
        serde_json::json!({"miss_load": 1.5}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 422, "a load above 100% is refused");
    // The SLO: a share in (0, 0.5) and a queue timeout of a second to an hour.
    for (body, says) in [
        (
            serde_json::json!({"max_timeout_share": 0.5}),
            "max_timeout_share must be above 0 and below 0.5",
        ),
        (
            serde_json::json!({"max_timeout_share": 0.0}),
            "max_timeout_share must be above 0 and below 0.5",
        ),
        (
            serde_json::json!({"queue_timeout_secs": 0}),
            "queue_timeout_secs must be 1 to 3600",
        ),
        (
            serde_json::json!({"queue_timeout_secs": 7200}),
            "queue_timeout_secs must be 1 to 3600",
        ),
    ] {
        let r = put("/v1/fleets/chat/planner", body.clone()).await.unwrap();
        assert_eq!(r.status(), 422, "{body}");
        let text = r.text().await.unwrap();
        assert!(text.contains(says), "{body}: {text}");
    }
    // Going past max_gpus is an admin's decision: this operate token may not raise the share.
    let body =
        serde_json::json!({"target_utilization": 0.7, "miss_load": 0.8, "exceed_max_share": 0.2});
    let r = put("/v1/fleets/chat/planner", body.clone()).await.unwrap();
    assert_eq!(r.status(), 403);
    let admin = create_token(
        &pool,
        Some("chat"),
        "admin",
        &[prewarm_store::Scope::Admin],
        &prewarm_store::Actor::cli(),
    )
    .await
    .unwrap()
    .1;
    let r = c
        .put(format!("{base}/v1/fleets/chat/planner"))
        .bearer_auth(&admin)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let plan: serde_json::Value = get("/v1/fleets/chat/plan", &token)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(plan["planner"]["target_utilization"], 0.7);
    assert_eq!(plan["planner"]["reactive"]["miss_load"], 0.8);
    assert_eq!(plan["planner"]["over_max"]["Exceed"], 0.2);
    assert_eq!(
        get("/v1/fleets/other/plan", &token).await.unwrap().status(),
        403,
        "a fleet's token cannot read another fleet"
    );
    let events: serde_json::Value = get("/v1/fleets/chat/events", &token)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(events["events"].as_array().unwrap().len(), 1);
    w.running.stop().await;
}

#[sqlx::test(migrator = "prewarm_store::MIGRATOR")]
async fn two_replicas_never_plan_the_same_fleet_and_a_dead_ones_fleets_move(pool: PgPool) {
    let w = world(&pool, at("2026-06-01T08:00:00Z"), |c| {
        c.service.lease_ttl = Span(3)
    })
    .await;
    let mut ids = Vec::new();
    for n in 0..6 {
        ids.push(fleet(&pool, &format!("f{n}"), 1).await);
    }
    let mut cb = config(&w.secret, &w.cloud_url, "replica-b");
    cb.service.lease_ttl = Span(3);
    let b = Service::new(pool.clone(), cb, w.service.clock.clone()).unwrap();
    let a = w.service.clone();
    for round in 0..6 {
        let (ra, rb) = tokio::join!(a.lease_round(), b.lease_round());
        let (ra, rb) = (ra.unwrap(), rb.unwrap());
        assert!(
            ra.held.iter().all(|f| !rb.held.contains(f)),
            "round {round}: {ra:?} {rb:?}"
        );
        tokio::join!(a.tick_all(), b.tick_all());
        w.clock.advance(Duration::minutes(1));
    }
    // Every minute, every fleet was planned at most once, and once both replicas are known each
    // holds half.
    let doubled: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT fleet_id, decided_at FROM decisions GROUP BY 1, 2 HAVING count(*) > 1) d",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(doubled, 0);
    assert_eq!((a.held().len(), b.held().len()), (3, 3));

    // b dies (stops renewing). Within the lease time plus one round, a holds everything, and a
    // late tick from b on a fleet it lost writes nothing.
    let lost = b.held()[0];
    let died = std::time::Instant::now();
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        a.lease_round().await.unwrap();
        if a.held().len() == 6 {
            break;
        }
        assert!(
            died.elapsed().as_secs() < 30,
            "takeover took more than 30 s"
        );
    }
    let took = died.elapsed().as_secs_f64();
    assert!(took < 30.0, "{took}");
    assert_eq!(b.tick_fleet(lost).await.unwrap(), TickOutcome::LeaseLost);
    w.running.stop().await;
}

#[sqlx::test(migrator = "prewarm_store::MIGRATOR")]
async fn state_is_rebuilt_from_the_ledger_and_callbacks(pool: PgPool) {
    let id = fleet(&pool, "chat", 0).await;
    let now = at("2026-06-01T12:00:00Z");
    sqlx::query("INSERT INTO decisions (id, fleet_id, decided_at, desired_gpus, gpus_ready, gpus_booting, reason) VALUES (1, $1, $2, 0, 0, 0, 'test')")
        .bind(id).bind(now).execute(&pool).await.unwrap();
    let order = |key: &str, kind: &str, count: i32, state: &str, attempts: i32, mins_ago: i64| {
        sqlx::query("INSERT INTO orders (idempotency_key, fleet_id, decision_id, kind, count, state, attempts, next_attempt_at, expires_at, created_at)
                     VALUES ($1, $2, 1, $3, $4, $5, $6, $7, $7, $7)")
            .bind(key.to_string()).bind(id).bind(kind.to_string()).bind(count).bind(state.to_string()).bind(attempts)
            .bind(now - Duration::minutes(mins_ago))
    };
    order("b1", "boot", 4, "delivered", 1, 20)
        .execute(&pool)
        .await
        .unwrap();
    order("b2", "boot", 2, "pending", 1, 1)
        .execute(&pool)
        .await
        .unwrap(); // in doubt: counts
    order("b3", "boot", 5, "pending", 0, 1)
        .execute(&pool)
        .await
        .unwrap(); // never sent: does not
    order("b4", "boot", 3, "delivered", 1, 120)
        .execute(&pool)
        .await
        .unwrap(); // never reported: lost
    order("t1", "terminate", 1, "delivered", 1, 5)
        .execute(&pool)
        .await
        .unwrap();
    let instance = |iid: &str, state: &str, by: Option<&str>| {
        sqlx::query("INSERT INTO instances (instance_id, fleet_id, order_key, ordered_at, state, ready_at, boot_secs, updated_at, terminated_by)
                     VALUES ($1, $2, 'b1', $3, $4, $3, 300, $3, $5)")
            .bind(iid.to_string()).bind(id).bind(now - Duration::minutes(15)).bind(state.to_string()).bind(by.map(str::to_string))
    };
    instance("i1", "ready", None).execute(&pool).await.unwrap();
    instance("i2", "ready", None).execute(&pool).await.unwrap();
    instance("i3", "terminated", Some("t1"))
        .execute(&pool)
        .await
        .unwrap();
    instance("i4", "terminated", None)
        .execute(&pool)
        .await
        .unwrap(); // preempted
    let s = prewarm_store::state::fleet_state(&pool, id, now, 1_800)
        .await
        .unwrap();
    // boots 4 + 2 (in doubt) = 6, minus 1 terminated by order, minus 1 lost = 4 provisioned;
    // 2 ready, 2 booting (the in-doubt order's units).
    assert_eq!(s.gpus_ready, 2);
    assert_eq!(s.booting, vec![now - Duration::minutes(1); 2]);
}

/// Days of 5-minute history with a rush from 09:00 to 17:00 New York time.
pub(crate) fn rush_trace(start: DateTime<Utc>, days: i64) -> Trace {
    let tz: Tz = "America/New_York".parse().unwrap();
    let n = (days * 288) as usize;
    let requests = (0..n)
        .map(|i| {
            let t = (start + Duration::minutes(5 * i as i64)).with_timezone(&tz);
            let h = chrono::Timelike::hour(&t);
            let base = if (9..17).contains(&h) { 20.0 } else { 2.0 };
            (base + ((i * 7919) % 13) as f64 / 13.0) * 300.0
        })
        .collect();
    Trace::new(start, 300, requests)
}

/// A fleet in New York (a GPU serving 1 request a second) with [`rush_trace`]'s history from
/// 2026-06-01 04:00 UTC until `now`.
async fn rush_fleet(pool: &PgPool, name: &str, now: DateTime<Utc>) -> prewarm_store::Fleet {
    let start = at("2026-06-01T04:00:00Z");
    let mut spec = FleetSpec::named(name);
    spec.time_zone = "America/New_York".into();
    spec.gpu_rps = 1.0;
    let created = create_fleet(pool, &spec).await.unwrap();
    let trace = rush_trace(start, (now - start).num_days() + 1);
    let upto = ((now - start).num_minutes() / 5) as usize;
    let history = Trace::new(start, 300, trace.requests[..upto].to_vec());
    prewarm_store::import_trace(pool, &created, &history, Utc::now())
        .await
        .unwrap();
    created
}

#[sqlx::test(migrator = "prewarm_store::MIGRATOR")]
async fn a_refit_calibrates_its_band_and_the_plan_pre_warms_before_the_rush(pool: PgPool) {
    // 09:00 in New York is 13:00 UTC in June; the plan at 12:50 must order for the rush.
    let now = at("2026-06-05T12:45:00Z");
    let w = world(&pool, now, |_| {}).await;
    let created = rush_fleet(&pool, "chat", now).await;
    let id = created.id;
    w.service.lease_round().await.unwrap();
    let report = w.service.refit_fleet(id).await.unwrap();
    assert!(report.calibrated, "{report:?}");
    assert!(report.bootstrapped >= 12, "{report:?}");
    w.clock.set(at("2026-06-05T12:50:00Z"));
    // A dry run answers what the tick will decide, and records and sends nothing.
    let token = ops_token(&pool, Some("chat")).await;
    let dry = get(&w.running.addr, "/v1/fleets/chat/plan?dry_run=true", &token).await;
    assert_eq!(dry["dry_run"], true, "{dry:#}");
    assert_eq!(dry["recorded"], false, "{dry:#}");
    assert_eq!(dry["would_send_orders"], true, "{dry:#}");
    let counts = || async {
        sqlx::query_as::<_, (i64, i64)>(
            "SELECT (SELECT count(*) FROM decisions), (SELECT count(*) FROM orders)",
        )
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    assert_eq!(counts().await, (0, 0), "a dry run records nothing");
    let (d, _, _) = planned(w.service.tick_fleet(id).await.unwrap());
    assert!(d.reason.starts_with("pre-warm"), "{}", d.reason);
    assert_eq!(dry["decision"]["reason"], d.reason.as_str());
    assert_eq!(dry["decision"]["desired_gpus"], d.desired_gpus);
    assert_eq!(counts().await.0, 1);
    // A rush of 20.5 requests a second on average (at most 20.9 in a bucket): the first decision
    // boots most of it, and the next two, still a boot lead ahead of the rush's second and third
    // minutes, order what the SLO sizer left to them.
    let booted = |d: &prewarm_planner::Decision| -> u32 {
        d.orders
            .iter()
            .map(|o| match o {
                Order::Boot(n) => *n,
                _ => 0,
            })
            .sum()
    };
    let first = booted(&d);
    assert!(
        first >= 17,
        "{first} GPUs first for a rush of 20 rps: {}",
        d.reason
    );
    let mut total = first;
    for minute in ["2026-06-05T12:51:00Z", "2026-06-05T12:52:00Z"] {
        w.clock.set(at(minute));
        let (next, _, _) = planned(w.service.tick_fleet(id).await.unwrap());
        total += booted(&next);
    }
    assert!(
        total >= 20,
        "{total} GPUs by 12:52 for a rush of 20 rps: {}",
        d.reason
    );
    // A second refit uses the stored forecasts' errors and does not bootstrap again.
    w.clock.set(at("2026-06-05T13:00:00Z"));
    let again = w.service.refit_fleet(id).await.unwrap();
    assert_eq!(again.bootstrapped, 0);
    assert!(again.calibrated);
    // In its first week of history every refit searches the trend's candidates.
    let (spec, chosen_at) = live_trend(&pool).await;
    assert!(spec.is_some(), "the live fit records its trend's candidate");
    assert_eq!(chosen_at, Some(at("2026-06-05T13:00:00Z")));
    w.running.stop().await;
}

#[sqlx::test(migrator = "prewarm_store::MIGRATOR")]
async fn refits_within_the_hour_keep_the_calibration_and_a_change_of_settings_recalibrates(
    pool: PgPool,
) {
    let now = at("2026-06-05T10:00:00Z");
    let w = world(&pool, now, |_| {}).await;
    let id = rush_fleet(&pool, "chat", now).await.id;
    w.service.lease_round().await.unwrap();
    let first = w.service.refit_fleet(id).await.unwrap();
    assert_eq!(first.calibrated_at, Some(now), "{first:?}");
    assert!(first.sizing.is_some(), "{first:?}");
    let stored = || async {
        sqlx::query_as::<
            _,
            (
                Vec<f64>,
                i64,
                serde_json::Value,
                serde_json::Value,
                Option<DateTime<Utc>>,
            ),
        >(
            "SELECT f.p50_rps, c.id, c.calibration, f.levels, f.calibrated_at
             FROM forecasts f JOIN calibrations c ON c.id = f.calibration_id
             WHERE f.kind = 'live' ORDER BY f.made_at DESC, f.id DESC LIMIT 1",
        )
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    // Calibrations stored, and live forecasts referring to one.
    let counts = || async {
        sqlx::query_as::<_, (i64, i64)>(
            "SELECT (SELECT count(*) FROM calibrations),
                    (SELECT count(*) FROM forecasts WHERE kind = 'live' AND calibration_id IS NOT NULL)",
        )
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    let (median, calibration_id, calibration, levels, _) = stored().await;
    // 15 minutes on: a new median on the same calibration and levels, said in the refit note.
    let later = now + Duration::minutes(15);
    w.clock.set(later);
    let kept = w.service.refit_fleet(id).await.unwrap();
    assert_eq!(kept.calibrated_at, Some(now), "{kept:?}");
    assert!(kept.calibrated && kept.sizing.is_none(), "{kept:?}");
    assert_eq!(kept.errors_used, first.errors_used);
    let (median_kept, id_kept, calibration_kept, levels_kept, at_kept) = stored().await;
    assert_ne!(median_kept, median, "the median is fitted again");
    assert_eq!(
        (calibration_kept, levels_kept),
        (calibration.clone(), levels.clone())
    );
    assert_eq!(at_kept, Some(now));
    // The kept calibration is the stored one, referred to, not written again.
    assert_eq!(id_kept, calibration_id);
    assert_eq!(counts().await, (1, 2));
    let note: Option<String> = sqlx::query_scalar("SELECT refit_note FROM fleets WHERE id = $1")
        .bind(id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(
        note.as_deref()
            .is_some_and(|n| n.contains("calibration and levels of 10:00 UTC")),
        "{note:?}"
    );
    // A change the sizer reads (the fleet's limit) recalibrates at the next refit.
    let update = prewarm_store::fleets::FleetUpdate {
        max_gpus: Some(40),
        ..Default::default()
    };
    let actor = prewarm_store::Actor {
        token_id: None,
        name: "cli".into(),
    };
    prewarm_store::fleets::update_fleet(&pool, "chat", &update, &actor)
        .await
        .unwrap();
    let changed = later + Duration::minutes(15);
    w.clock.set(changed);
    let again = w.service.refit_fleet(id).await.unwrap();
    assert_eq!(again.calibrated_at, Some(changed), "{again:?}");
    assert!(again.sizing.is_some(), "{again:?}");
    // And an hour after a calibration, the next refit makes a new one.
    let hour_on = changed + Duration::minutes(60);
    w.clock.set(hour_on);
    let hourly = w.service.refit_fleet(id).await.unwrap();
    assert_eq!(hourly.calibrated_at, Some(hour_on), "{hourly:?}");
    assert_eq!(counts().await, (3, 4));
    // Calibrations older than the forecasts a plan may read (two hours, each made within the
    // hour of its calibration) are pruned; the fleet plans on the newest.
    let hours_on = hour_on + Duration::hours(3);
    w.clock.set(hours_on);
    let latest = w.service.refit_fleet(id).await.unwrap();
    assert_eq!(latest.calibrated_at, Some(hours_on), "{latest:?}");
    // Those of 10:00 and 10:30 (11:30's is referred to by a forecast a plan may still read).
    assert_eq!(counts().await, (2, 2));
    let planned =
        crate::forecasts::latest(&pool, id, hours_on, crate::forecasts::LIVE_MAX_AGE_SECS)
            .await
            .unwrap();
    assert_eq!(planned.map(|f| f.id), latest.forecast_id);
    w.running.stop().await;
}

/// The trend's candidate of the newest live forecast, and when a search chose it.
async fn live_trend(pool: &PgPool) -> (Option<serde_json::Value>, Option<DateTime<Utc>>) {
    sqlx::query_as(
        "SELECT trend_spec, trend_chosen_at FROM forecasts WHERE kind = 'live'
         ORDER BY made_at DESC, id DESC LIMIT 1",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrator = "prewarm_store::MIGRATOR")]
async fn with_a_week_of_history_refits_reuse_the_trend_candidate_for_six_hours(pool: PgPool) {
    // Eight days of history from 2026-06-01.
    let now = at("2026-06-09T12:45:00Z");
    let w = world(&pool, now, |_| {}).await;
    let created = rush_fleet(&pool, "chat", now).await;
    w.service.lease_round().await.unwrap();
    w.service.refit_fleet(created.id).await.unwrap();
    let (spec, chosen_at) = live_trend(&pool).await;
    let spec = spec.expect("the live fit records its trend's candidate");
    assert!(spec["trend"].is_string(), "{spec}");
    assert_eq!(chosen_at, Some(now), "the first refit's search chose it");
    // Within six hours the refits fit that candidate alone; then one searches again.
    w.clock.set(at("2026-06-09T18:44:00Z"));
    w.service.refit_fleet(created.id).await.unwrap();
    assert_eq!(live_trend(&pool).await, (Some(spec), Some(now)));
    w.clock.set(at("2026-06-09T18:46:00Z"));
    w.service.refit_fleet(created.id).await.unwrap();
    assert_eq!(live_trend(&pool).await.1, Some(at("2026-06-09T18:46:00Z")));
    w.running.stop().await;
}

#[sqlx::test(migrator = "prewarm_store::MIGRATOR")]
async fn dst_days_run_every_job_once(pool: PgPool) {
    let tz: Tz = "America/New_York".parse().unwrap();
    let at_time = parse_local_time("02:30").unwrap();
    let tick = Pattern::parse("0 * * * * *").unwrap();
    let refit = Pattern::parse("30 */15 * * * *").unwrap();
    for (day, local_hours) in [("2026-03-08", 23), ("2026-11-01", 25), ("2026-06-10", 24)] {
        let date: NaiveDate = day.parse().unwrap();
        let from = tz
            .from_local_datetime(&date.and_hms_opt(0, 0, 0).unwrap())
            .earliest()
            .unwrap()
            .with_timezone(&Utc);
        let to = tz
            .from_local_datetime(&date.succ_opt().unwrap().and_hms_opt(0, 0, 0).unwrap())
            .earliest()
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!((to - from).num_hours(), local_hours);
        // Interval jobs: walking the day a minute at a time, each firing comes exactly once.
        let mut ticks = Vec::new();
        let mut refits = Vec::new();
        let mut daily_runs = Vec::new();
        let mut t = from;
        while t < to {
            let next = t + Duration::minutes(1);
            ticks.extend(tick.fires_in(t, next));
            refits.extend(refit.fires_in(t, next));
            if let Some(slot) = daily_slot(tz, at_time, next) {
                if claim_slot(&pool, "retention", "chat", &slot.to_string(), next, "a")
                    .await
                    .unwrap()
                {
                    daily_runs.push(next.with_timezone(&tz));
                }
            }
            t = next;
        }
        assert_eq!(ticks.len() as i64, local_hours * 60, "{day}");
        assert_eq!(refits.len() as i64, local_hours * 4, "{day}");
        let mut unique = ticks.clone();
        unique.dedup();
        assert_eq!(unique.len(), ticks.len());
        assert_eq!(daily_runs.len(), 1, "{day}: {daily_runs:?}");
        let ran = daily_runs[0].naive_local();
        assert_eq!(ran.date(), date);
        if day == "2026-03-08" {
            // 02:30 does not exist that day: the job runs when the clock jumps past it.
            assert_eq!(
                ran.time(),
                chrono::NaiveTime::from_hms_opt(3, 0, 0).unwrap()
            );
        } else {
            assert_eq!(
                ran.time(),
                chrono::NaiveTime::from_hms_opt(2, 30, 0).unwrap()
            );
        }
    }
    // A second replica checking the same slot does not run it again.
    assert!(
        !claim_slot(&pool, "retention", "chat", "2026-11-01", Utc::now(), "b")
            .await
            .unwrap()
    );
}

#[test]
fn configuration_comes_from_a_file_and_the_environment_and_hides_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("prewarm.toml");
    let secret = Secret::generate().encoded();
    std::fs::write(
        &path,
        format!(
            "[database]\nurl = \"postgres://prewarm:hunter2@db:5432/prewarm\"\n\
             [provisioner]\nurl = \"http://cloud:9900/orders\"\nsecret = \"{secret}\"\ntimeout = \"5s\"\n\
             [planner]\nquantile = 0.95\nhold = \"10m\"\n[[pulls]]\nfleet = \"chat\"\nprometheus = \"http://prom:9090\"\nquery = \"sum(rate(x[1m]))\"\n"
        ),
    )
    .unwrap();
    let env = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let c = Config::load(
        Some(&path),
        env(&[
            ("PREWARM_SERVICE__MODE", "forecast-only"),
            ("PREWARM_PLANNER__TARGET_UTILIZATION", "0.8"),
            ("PREWARM_PLANNER__MISS_LOAD", "0.7"),
            ("HOME", "/root"),
        ]),
    )
    .unwrap();
    assert_eq!(c.service.mode, Mode::ForecastOnly);
    assert_eq!(c.planner.quantile, Some(0.95));
    assert_eq!(c.planner.target_utilization, 0.8);
    assert_eq!(c.planner.miss_load, Some(0.7));
    assert_eq!(c.planner.hold, Span(600));
    assert_eq!(c.provisioner.timeout, Span(5));
    assert_eq!(c.pulls.len(), 1);
    let shown = format!("{c:?}");
    assert!(
        !shown.contains("hunter2") && !shown.contains(&secret),
        "{shown}"
    );

    let err = |pairs: &[(&str, &str)]| {
        Config::load(Some(&path), env(pairs))
            .unwrap_err()
            .to_string()
    };
    let e = err(&[("PREWARM_PLANNER__QUANTILE", "1.5")]);
    assert!(e.contains("planner.quantile"), "{e}");
    let e = err(&[("PREWARM_SCHEDULE__TICK", "every minute")]);
    assert!(e.contains("schedule.tick"), "{e}");
    let e = err(&[("PREWARM_PROVISIONER__SECRET", "hunter2")]);
    assert!(
        e.contains("provisioner.secret") && !e.contains("hunter2"),
        "{e}"
    );
    let e = err(&[("PREWARM_PLANNER__MAX_TIMEOUT_SHARE", "0.6")]);
    assert!(
        e.contains("planner.max_timeout_share") && e.contains("below 0.5"),
        "{e}"
    );
    let e = err(&[("PREWARM_PLANNER__QUEUE_TIMEOUT", "2h")]);
    assert!(
        e.contains("planner.queue_timeout") && e.contains("1 hour"),
        "{e}"
    );
    let e = err(&[("PREWARM_PLANNER__HOLD", "soon")]);
    assert!(e.contains("hold"), "{e}");
    std::fs::write(dir.path().join("typo.toml"), "[planer]\nquantile = 0.9\n").unwrap();
    let e = Config::load(
        Some(&dir.path().join("typo.toml")),
        env(&[("DATABASE_URL", "postgres://x/y")]),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("planer"), "{e}");
    let e = Config::load(Some(&dir.path().join("missing.toml")), Vec::new())
        .unwrap_err()
        .to_string();
    assert!(e.contains("does not exist"), "{e}");
}

#[sqlx::test(migrator = "prewarm_store::MIGRATOR")]
async fn retention_runs_once_a_day_at_the_fleets_local_time(pool: PgPool) {
    // 03:00 in Berlin is 01:00 UTC in summer.
    let w = world(&pool, at("2026-06-10T00:30:00Z"), |_| {}).await;
    let mut spec = FleetSpec::named("chat");
    spec.time_zone = "Europe/Berlin".into();
    let created = create_fleet(&pool, &spec).await.unwrap();
    // Two hours of 1-minute samples, 40 days old.
    let old = Trace::new(at("2026-05-01T00:00:00Z"), 60, vec![2.0; 120]);
    prewarm_store::import_trace(&pool, &created, &old, Utc::now())
        .await
        .unwrap();
    // Observations of its real replicas, as old and a day old: a replica asked for, then ready
    // six minutes later (a boot learned) in each.
    for (t, ready, desired) in [
        ("2026-05-01T00:00:00Z", 1, 1),
        ("2026-05-01T00:01:00Z", 1, 2),
        ("2026-05-01T00:07:00Z", 2, 2),
        ("2026-06-09T00:00:00Z", 2, 2),
        ("2026-06-09T00:01:00Z", 2, 3),
        ("2026-06-09T00:07:00Z", 3, 3),
    ] {
        let o =
            prewarm_store::observed::Observation::from_values(at(t), ready as f64, desired as f64)
                .unwrap();
        prewarm_store::observed::record(&pool, created.id, &o)
            .await
            .unwrap();
    }
    w.service.lease_round().await.unwrap();
    assert_eq!(
        w.service.daily_all().await.unwrap(),
        0,
        "02:30 in Berlin: not yet"
    );
    w.clock.set(at("2026-06-10T01:05:00Z"));
    assert_eq!(w.service.daily_all().await.unwrap(), 1);
    assert_eq!(
        w.service.daily_all().await.unwrap(),
        0,
        "once per local day"
    );
    let rows: Vec<(i32, f64)> =
        sqlx::query_as("SELECT bucket_secs, requests FROM samples ORDER BY bucket_start")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        rows,
        vec![(3600, 120.0), (3600, 120.0)],
        "folded into hourly sums"
    );
    // Observations and observed boots older than the raw samples' horizon are gone.
    let kept: (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM observations), (SELECT count(*) FROM observed_boots)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(kept, (3, 1));
    w.running.stop().await;
}

#[sqlx::test(migrator = "prewarm_store::MIGRATOR")]
async fn a_fleet_whose_distribution_cannot_be_calibrated_yet_says_so_and_runs_reactive(
    pool: PgPool,
) {
    // Planning may start after 25 hours, but a day of history leaves room for one bootstrap fit
    // only: too few scored minutes to calibrate the distribution.
    let start = at("2026-06-01T04:00:00Z");
    let now = start + Duration::hours(25);
    let w = world(&pool, now, |c| c.planner.min_history = Span(25 * 3_600)).await;
    let mut spec = FleetSpec::named("chat");
    spec.time_zone = "America/New_York".into();
    spec.gpu_rps = 1.0;
    let created = create_fleet(&pool, &spec).await.unwrap();
    let trace = rush_trace(start, 2);
    let history = Trace::new(start, 300, trace.requests[..25 * 12].to_vec());
    prewarm_store::import_trace(&pool, &created, &history, Utc::now())
        .await
        .unwrap();
    w.service.lease_round().await.unwrap();
    let report = w.service.refit_fleet(created.id).await.unwrap();
    assert!(!report.calibrated, "{report:?}");
    w.clock.set(now + Duration::minutes(1));
    let (d, _, _) = planned(w.service.tick_fleet(created.id).await.unwrap());
    assert!(
        d.reason.starts_with("no forecast yet, reactive"),
        "{}",
        d.reason
    );
    assert!(
        d.reason.contains("distribution not calibrated yet"),
        "{}",
        d.reason
    );
    assert!(d.forecast_upper_rps.is_none(), "{d:?}");
    w.running.stop().await;
}

/// The metric names a PromQL expression or a rule file mentions (`prewarm_...`).
fn metric_names(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("prewarm_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        names.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

#[sqlx::test(migrator = "prewarm_store::MIGRATOR")]
async fn the_grafana_dashboard_and_the_alert_rules_name_only_metrics_the_service_exports(
    pool: PgPool,
) {
    let w = world(&pool, at("2026-06-01T08:00:00Z"), |_| {}).await;
    let id = fleet(&pool, "chat", 2).await;
    w.service.lease_round().await.unwrap();
    w.service.tick_fleet(id).await.unwrap();
    let exposition = w.service.metrics.render();
    // Every family the service registers, with the sample names Prometheus stores for it.
    let mut exported = std::collections::BTreeSet::new();
    for line in exposition.lines() {
        let mut words = line.split_whitespace();
        if let (Some("#"), Some("TYPE"), Some(name), Some(kind)) =
            (words.next(), words.next(), words.next(), words.next())
        {
            match kind {
                "counter" => {
                    exported.insert(format!("{name}_total"));
                }
                "histogram" => {
                    for suffix in ["_bucket", "_sum", "_count"] {
                        exported.insert(format!("{name}{suffix}"));
                    }
                }
                _ => {
                    exported.insert(name.to_string());
                }
            }
        }
    }
    assert!(exported.contains("prewarm_desired_gpus"), "{exposition}");

    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("deploy/grafana/prewarm-dashboard.json")).unwrap(),
    )
    .expect("the dashboard is JSON");
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        if panel["type"] == "row" {
            continue;
        }
        let targets = panel["targets"].as_array().expect("a panel has targets");
        assert!(!targets.is_empty(), "{}", panel["title"]);
        exprs.extend(
            targets
                .iter()
                .map(|t| t["expr"].as_str().unwrap().to_string()),
        );
    }
    let rules = std::fs::read_to_string(root.join("deploy/prometheus/prewarm-alerts.yml")).unwrap();
    let mut named: Vec<String> = exprs.iter().flat_map(|e| metric_names(e)).collect();
    named.extend(metric_names(&rules));
    named.sort();
    named.dedup();
    assert!(named.len() >= 15, "{named:?}");
    let unknown: Vec<_> = named.iter().filter(|n| !exported.contains(*n)).collect();
    assert!(
        unknown.is_empty(),
        "named but not exported: {unknown:?}; exported: {exported:?}"
    );
}

#[sqlx::test(migrator = "prewarm_store::MIGRATOR")]
async fn the_standby_tier_stops_resumes_and_boots_cold_when_a_resume_fails(pool: PgPool) {
    use serde_json::json;
    let w = world(&pool, at("2026-06-01T08:00:00Z"), |_| {}).await;
    let id = fleet(&pool, "chat", 4).await;
    let ops = ops_token(&pool, Some("chat")).await;
    let base = format!("http://{}", w.running.addr);
    let c = reqwest::Client::new();
    let put = |body: serde_json::Value| {
        c.put(format!("{base}/v1/fleets/chat/planner"))
            .bearer_auth(&ops)
            .json(&body)
            .send()
    };
    // A standby limit above the fleet's max_gpus (100), a negative price: refused, said why.
    let r = put(json!({"standby_max_gpus": 500})).await.unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text().await.unwrap().contains("standby_max_gpus"));
    let r = put(json!({"standby_max_gpus": 4, "standby_price_share": -0.5}))
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::UNPROCESSABLE_ENTITY);
    let r = put(json!({"standby_max_gpus": 4, "resume_secs": 120}))
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::OK);

    w.service.lease_round().await.unwrap();
    let (d, _, _) = planned(w.service.tick_fleet(id).await.unwrap());
    assert_eq!(d.orders, vec![Order::Boot(4)]);
    w.clock.advance(Duration::minutes(8));
    assert_eq!(w.cloud.process().await, 4);

    // Pinned to 2: the 2 GPUs let go are stopped into standby (callbacks sent twice count once).
    let pin = |n: i32| {
        sqlx::query("UPDATE fleets SET pinned_gpus = $2 WHERE id = $1")
            .bind(id)
            .bind(n)
            .execute(&pool)
    };
    pin(2).await.unwrap();
    w.cloud.inject(Control {
        duplicate_next: 1,
        ..Default::default()
    });
    let (d, _, _) = planned(w.service.tick_fleet(id).await.unwrap());
    assert_eq!(d.orders, vec![Order::Stop(2)], "{}", d.reason);
    let (_, state, _) = planned(w.service.tick_fleet(id).await.unwrap());
    assert_eq!(
        (state.gpus_ready, state.standby),
        (2, 2),
        "stopping GPUs serve no more"
    );
    w.clock.advance(Duration::minutes(1));
    assert_eq!(w.cloud.process().await, 2);
    let (d, state, _) = planned(w.service.tick_fleet(id).await.unwrap());
    assert!(d.orders.is_empty(), "{:?}", d.orders);
    assert_eq!((state.gpus_ready, state.standby), (2, 2));
    let counts = w.cloud.counts("chat");
    assert_eq!((counts.ready, counts.standby), (2, 2));

    // Pinned to 4: both are resumed; one resume fails (no capacity) and is booted cold at the
    // next tick.
    pin(4).await.unwrap();
    w.cloud.inject(Control {
        fail_resumes_next: 1,
        ..Default::default()
    });
    w.clock.advance(Duration::minutes(1));
    let (d, _, _) = planned(w.service.tick_fleet(id).await.unwrap());
    assert_eq!(d.orders, vec![Order::Resume(2)], "{}", d.reason);
    let (_, state, _) = planned(w.service.tick_fleet(id).await.unwrap());
    assert_eq!((state.resuming.len(), state.standby), (2, 0));
    w.clock.advance(Duration::minutes(4));
    assert_eq!(w.cloud.process().await, 2);
    let (d, state, _) = planned(w.service.tick_fleet(id).await.unwrap());
    assert_eq!(
        (state.gpus_ready, state.standby, state.resuming.len()),
        (3, 0, 0)
    );
    assert_eq!(d.orders, vec![Order::Boot(1)], "{}", d.reason);

    // The state the tick read is the one a restart rebuilds; metrics and the plan show the tier.
    let rebuilt = prewarm_store::state::fleet_state(&pool, id, w.clock.now(), 1_800)
        .await
        .unwrap();
    assert_eq!((rebuilt.gpus_ready, rebuilt.standby), (3, 0));
    let metrics = w.service.metrics.render();
    assert!(
        metrics.contains(r#"prewarm_resume_lead_seconds{fleet="chat"} 120"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"prewarm_standby_gpus{fleet="chat"} 0"#));
    let plan: serde_json::Value = c
        .get(format!("{base}/v1/fleets/chat/plan"))
        .bearer_auth(&ops)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(plan["planner"]["standby"]["max_gpus"], 4, "{plan}");
    assert_eq!(plan["resume_lead_secs"], 120, "{plan}");
    let stopped: i64 =
        sqlx::query_scalar("SELECT count(*) FROM instance_transitions WHERE event = 'stopped'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(stopped, 2);
    w.running.stop().await;
}

#[sqlx::test(migrator = "prewarm_store::MIGRATOR")]
async fn a_token_fleet_plans_and_counts_its_gpu_work_not_its_request_count(pool: PgPool) {
    let now = at("2026-06-01T08:00:00Z");
    let w = world(&pool, now, |_| {}).await;
    let profile = prewarm_planner::GpuProfile {
        name: "h100-8b".into(),
        prefill_tps: 10_000.0,
        decode_tps: 1_000.0,
        price_usd_per_gpu_hour: Some(3.0),
        gpu_type: "H100".into(),
        model: String::new(),
        source: String::new(),
    };
    prewarm_store::profiles::upsert(&pool, &[profile], &prewarm_store::Actor::cli())
        .await
        .unwrap();
    let mut spec = FleetSpec::named("llm");
    spec.min_gpus = 0;
    spec.gpu_profile = Some("h100-8b".into());
    let fleet = create_fleet(&pool, &spec).await.unwrap();
    // Six long requests a minute: 0.1 requests/s, but 50,000 prompt and 5,000 output tokens
    // each (5 + 5 GPU-seconds): one GPU kept busy. Counted as requests at a GPU's default
    // 1 request/s, one GPU would look a tenth loaded.
    let samples: Vec<prewarm_store::Sample> = (1..=40)
        .map(|k| prewarm_store::Sample {
            timestamp: now - Duration::minutes(k),
            requests: 6.0,
            bucket_secs: 60,
            tokens_in: Some(300_000.0),
            tokens_out: Some(30_000.0),
        })
        .collect();
    prewarm_store::samples::store_samples(&pool, &[(fleet.id, &samples)])
        .await
        .unwrap();
    w.service.lease_round().await.unwrap();
    let gathered = w.service.gather(fleet.id, now).await.unwrap().unwrap();
    assert!(gathered.cfg.capacity.is_tokens());
    assert!(
        (gathered.rps.last().unwrap() - 1.0).abs() < 1e-9,
        "{:?}",
        gathered.rps
    );
    assert!((gathered.requests_rps.last().unwrap() - 0.1).abs() < 1e-9);
    // With no forecast the reactive rules run, on the work: 100% of a GPU is over 60%, so
    // 2 GPUs (a request count would have booted one).
    let (d, _, _) = planned(w.service.tick_fleet(fleet.id).await.unwrap());
    assert_eq!(d.desired_gpus, 2, "{d:?}");
    // The tally counts requests (0.1 a second), while its queue serves work.
    w.clock.advance(Duration::minutes(2));
    w.service.tick_fleet(fleet.id).await.unwrap();
    let requests: f64 = sqlx::query_scalar(
        "SELECT coalesce(sum(requests), 0) FROM fleet_hours WHERE fleet_id = $1",
    )
    .bind(fleet.id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!((requests - 12.0).abs() < 1e-6, "{requests}");
    // The API says which unit its rates are in.
    let token = ops_token(&pool, Some("llm")).await;
    let plan: serde_json::Value = reqwest::Client::new()
        .get(format!("http://{}/v1/fleets/llm/plan", w.running.addr))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(plan["demand_unit"], "GPU-s/s", "{plan}");
    assert_eq!(plan["planner"]["capacity"]["unit"], "tokens", "{plan}");
    // A profile a fleet uses cannot be deleted; a fleet may not name one that is not stored.
    let e = prewarm_store::profiles::delete(&pool, "h100-8b", &prewarm_store::Actor::cli())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("llm"), "{e}");
    let mut other = FleetSpec::named("other");
    other.gpu_profile = Some("nope".into());
    let e = create_fleet(&pool, &other).await.unwrap_err();
    assert!(e.to_string().contains("no GPU profile named `nope`"), "{e}");
    w.running.stop().await;
}

#[sqlx::test(migrator = "prewarm_store::MIGRATOR")]
async fn refits_come_due_per_fleet_and_the_longest_waiting_go_first(pool: PgPool) {
    let w = world(&pool, at("2026-06-01T08:00:30Z"), |_| {}).await;
    let ids = [
        fleet(&pool, "a", 1).await,
        fleet(&pool, "b", 1).await,
        fleet(&pool, "c", 1).await,
    ];
    let s = w.service.clone();
    s.lease_round().await.unwrap();
    let refitted = || async {
        prewarm_store::fleets::refit_times(&pool, &ids)
            .await
            .unwrap()
            .into_iter()
            .map(|(_, at)| at.map(|t| t.format("%H:%M").to_string()))
            .collect::<Vec<_>>()
    };
    // Never refitted: all due (a fleet without history is refitted too; its note says why).
    assert_eq!(s.refit_all().await, (3, 0));
    assert_eq!(refitted().await, vec![Some("08:00".to_string()); 3]);
    // Five minutes on, none is due; one is refitted by hand (an operator's refit).
    w.clock.set(at("2026-06-01T08:05:30Z"));
    assert_eq!(s.refit_all().await, (0, 0));
    s.refit_fleet(ids[0]).await.unwrap();
    // Fifteen minutes after their refit the other two are due; the first comes due 5 minutes
    // later: refits are spread by each fleet's own last refit.
    w.clock.set(at("2026-06-01T08:15:30Z"));
    assert_eq!(s.refit_all().await, (2, 0));
    assert_eq!(
        refitted().await,
        vec![
            Some("08:05".to_string()),
            Some("08:15".to_string()),
            Some("08:15".to_string())
        ]
    );
    w.clock.set(at("2026-06-01T08:20:30Z"));
    assert_eq!(s.refit_all().await, (1, 0));
    let metrics = s.metrics.render();
    assert!(metrics.contains("prewarm_refits_due 0"), "{metrics}");
    w.running.stop().await;
}

#[sqlx::test(migrator = "prewarm_store::MIGRATOR")]
async fn a_tick_reads_many_fleets_in_bulk_exactly_as_it_reads_each_alone(pool: PgPool) {
    // Fleets of different makings: one with history, a refitted forecast, a calendar event,
    // GPUs booted and ready; one with standby settings and history but no forecast; one with
    // nothing; and an id that is no fleet.
    let now = at("2026-06-05T12:45:00Z");
    let w = world(&pool, now, |_| {}).await;
    let chat = rush_fleet(&pool, "chat", now).await;
    let standby = rush_fleet(&pool, "standby", now).await;
    let empty = fleet(&pool, "empty", 2).await;
    w.service.lease_round().await.unwrap();
    let actor = prewarm_store::Actor::cli();
    prewarm_store::fleets::change(
        &pool,
        &standby,
        &actor,
        &prewarm_store::fleets::OperatorChange::Planner(prewarm_planner::Settings {
            standby_max_gpus: Some(4),
            ..Default::default()
        }),
    )
    .await
    .unwrap();
    prewarm_store::fleets::change(
        &pool,
        &chat,
        &actor,
        &prewarm_store::fleets::OperatorChange::AddEvent(prewarm_store::fleets::FleetEvent {
            id: 0,
            label: "launch".into(),
            starts_local: "2026-06-05T09:00:00".parse().unwrap(),
            ends_local: "2026-06-05T12:00:00".parse().unwrap(),
            multiply: Some(2.0),
            pin_rps: None,
        }),
    )
    .await
    .unwrap();
    w.service.refit_fleet(chat.id).await.unwrap();
    w.service.tick_fleet(chat.id).await.unwrap();
    w.service.tick_fleet(standby.id).await.unwrap();
    w.clock.advance(Duration::minutes(9));
    w.cloud.process().await;
    let ids = [chat.id, standby.id, empty, 1_000_000];
    let now = w.clock.now();
    let mut bulk = w.service.gather_many(&ids, now).await.unwrap();
    assert!(!bulk.contains_key(&1_000_000), "no fleet, no entry");
    for id in &ids[..3] {
        let one = w.service.gather(*id, now).await.unwrap().unwrap();
        let many = bulk.remove(id).unwrap().unwrap();
        assert_eq!(many.decide(), one.decide(), "fleet {id}");
        assert_eq!(many.state, one.state, "fleet {id}");
        assert_eq!(
            (many.step_secs, &many.rps, &many.requests_rps),
            (one.step_secs, &one.rps, &one.requests_rps),
            "fleet {id}"
        );
        assert_eq!(many.cfg.boot_lead_secs, one.cfg.boot_lead_secs);
        assert_eq!(
            many.cfg.standby.map(|s| s.resume_secs),
            one.cfg.standby.map(|s| s.resume_secs)
        );
        assert_eq!(many.cfg.overrides.len(), one.cfg.overrides.len());
        assert_eq!(
            many.live.as_ref().map(|l| l.id),
            one.live.as_ref().map(|l| l.id)
        );
        assert_eq!(many.mode, one.mode);
    }
    // What each holds, so the comparison compared something.
    let chat_now = w.service.gather(chat.id, now).await.unwrap().unwrap();
    assert!(chat_now.live.is_some() && chat_now.cfg.overrides.len() == 1);
    assert!(chat_now.state.gpus_ready + chat_now.state.booting.len() as u32 > 0);
    let standby_now = w.service.gather(standby.id, now).await.unwrap().unwrap();
    assert!(standby_now.cfg.standby.is_some() && !standby_now.rps.is_empty());
    w.running.stop().await;
}
