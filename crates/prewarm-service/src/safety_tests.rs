//! Regression tests for what an outside probe found (two starts with one replica id, callbacks
//! replayed to another path, callbacks dated far away, idempotency keys shared by installations,
//! tokens without scopes, pins past the limit, secrets in errors, a database that is down), against
//! a real PostgreSQL and fake-cloud over loopback.

use std::{sync::Arc, time::Instant};

use chrono::{Duration, Utc};
use prewarm_planner::{FleetState, Order};
use prewarm_store::{create_fleet, create_token, Actor, FleetSpec, Scope};
use reqwest::StatusCode;
use serde_json::json;
use sqlx::PgPool;

use prewarm_store::ledger;

use crate::{
    clock::{Clock, ManualClock, SharedClock},
    config::{Config, Redacted, Span},
    engine::TickOutcome,
    serve,
    service_tests::{at, config, fleet, ops_token, planned, world},
    webhook::Secret,
};

async fn token(pool: &PgPool, fleet: Option<&str>, scopes: &[Scope]) -> String {
    create_token(pool, fleet, "probe", scopes, &Actor::cli())
        .await
        .unwrap()
        .1
}

async fn decisions_of(pool: &PgPool, fleet_id: i64) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM decisions WHERE fleet_id = $1")
        .bind(fleet_id)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "prewarm_store::MIGRATOR")]
async fn two_starts_with_one_replica_id_plan_each_fleet_once(pool: PgPool) {
    let w = world(&pool, at("2026-06-01T08:00:00Z"), |c| {
        c.service.replica_id = "replica-1".into()
    })
    .await;
    // A second process start with the same configured id, on the same database and provisioner.
    let mut c = config(&w.secret, &w.cloud_url, "replica-1");
    c.http.listen = "127.0.0.1:0".into();
    let clock: SharedClock = Arc::new(w.clock.clone());
    let second = serve::start_with_pool(c, clock, pool.clone(), false)
        .await
        .unwrap();
    let (a, b) = (w.service.clone(), second.service.clone());
    assert_ne!(
        a.holder.token, b.holder.token,
        "each start has its own token"
    );
    let ids = [
        fleet(&pool, "f1", 2).await,
        fleet(&pool, "f2", 2).await,
        fleet(&pool, "f3", 2).await,
    ];
    // Lease rounds until they have shared the fleets out.
    for _ in 0..3 {
        a.lease_round().await.unwrap();
        b.lease_round().await.unwrap();
    }
    let (held_a, held_b) = (a.held(), b.held());
    assert_eq!(held_a.len() + held_b.len(), 3, "{held_a:?} {held_b:?}");
    assert!(held_a.iter().all(|f| !held_b.contains(f)));
    let round = b.lease_round().await.unwrap();
    assert_eq!(round.same_id_elsewhere, 1, "the duplicate id is noticed");

    // Both plan every fleet they think they hold, twice: each fleet gets one decision per
    // tick, and the provisioner one boot order per fleet.
    for _ in 0..2 {
        a.tick_all().await;
        b.tick_all().await;
        w.clock.advance(Duration::minutes(1));
    }
    for id in ids {
        assert_eq!(decisions_of(&pool, id).await, 2, "fleet {id}");
    }
    let applied = w.cloud.seen().applied.clone();
    assert_eq!(applied.len(), 3, "{applied:?}");
    assert!(applied
        .iter()
        .all(|o| o.kind == prewarm_store::OrderKind::Boot && o.count == 2));
    // A start that does not hold a fleet's lease writes nothing for it, even under the same id.
    let foreign = held_a[0];
    assert_eq!(b.tick_fleet(foreign).await.unwrap(), TickOutcome::LeaseLost);
    assert_eq!(decisions_of(&pool, foreign).await, 2);
    second.stop().await;
    w.running.stop().await;
}

/// A signed callback as the provisioner sends it: (message id, timestamp, signature, body).
fn signed(
    secret: &Secret,
    id: &str,
    body: &serde_json::Value,
) -> (String, String, String, Vec<u8>) {
    let bytes = serde_json::to_vec(body).unwrap();
    let ts = Utc::now().timestamp();
    (
        id.to_string(),
        ts.to_string(),
        secret.sign(id, ts, &bytes),
        bytes,
    )
}

async fn post_signed(
    base: &str,
    path: &str,
    (id, ts, sig, body): &(String, String, String, Vec<u8>),
) -> (StatusCode, serde_json::Value) {
    let r = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .header("content-type", "application/json")
        .header("webhook-id", id)
        .header("webhook-timestamp", ts)
        .header("webhook-signature", sig)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(serde_json::Value::Null))
}

async fn instances(pool: &PgPool) -> Vec<(String, String, Option<f64>)> {
    sqlx::query_as("SELECT instance_id, state, boot_secs FROM instances ORDER BY instance_id")
        .fetch_all(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "prewarm_store::MIGRATOR")]
async fn a_callback_cannot_be_replayed_to_another_path_or_instance(pool: PgPool) {
    let w = world(&pool, at("2026-06-01T08:00:00Z"), |_| {}).await;
    let id = fleet(&pool, "chat", 1).await;
    w.service.lease_round().await.unwrap();
    w.service.tick_fleet(id).await.unwrap();
    let order = ledger::orders(&pool, id).await.unwrap()[0]
        .idempotency_key
        .clone();
    assert!(order.starts_with("ord_") && order.len() == 36, "{order}");
    let base = format!("http://{}", w.running.addr);
    let ready = json!({"instance_id": "i-x", "event": "ready", "order_id": order,
                       "at": (w.clock.now() + Duration::minutes(7)).to_rfc3339()});
    w.clock.advance(Duration::minutes(8));
    let message = signed(&w.secret, "cb-i-x-ready", &ready);
    let (status, body) = post_signed(&base, "/v1/instances/i-x/ready", &message).await;
    assert_eq!(
        (status, body["recorded"].clone()),
        (StatusCode::OK, json!(true))
    );

    // The same signed message sent to another event's path, or another instance's.
    for path in ["/v1/instances/i-x/terminated", "/v1/instances/i-y/ready"] {
        let (status, body) = post_signed(&base, path, &message).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{path}: {body}");
        assert!(body["error"].as_str().unwrap().contains("as the path says"));
    }
    // Sent again to its own path: acknowledged as a duplicate, nothing changes.
    let (status, body) = post_signed(&base, "/v1/instances/i-x/ready", &message).await;
    assert_eq!(
        (status, body["duplicate"].clone()),
        (StatusCode::OK, json!(true))
    );
    // The same message id for another message is refused.
    let other = json!({"instance_id": "i-x", "event": "terminated", "order_id": order,
                       "at": w.clock.now().to_rfc3339()});
    let (status, _) = post_signed(
        &base,
        "/v1/instances/i-x/terminated",
        &signed(&w.secret, "cb-i-x-ready", &other),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        instances(&pool).await,
        vec![("i-x".to_string(), "ready".to_string(), Some(420.0))]
    );
    // The fleet still counts its GPU as ready; no replacement is ordered.
    let (d, state, _) = planned(w.service.tick_fleet(id).await.unwrap());
    assert_eq!((state.gpus_ready, d.orders.clone()), (1, vec![]), "{d:?}");
    w.running.stop().await;
}

#[sqlx::test(migrator = "prewarm_store::MIGRATOR")]
async fn callbacks_dated_out_of_bounds_are_refused_and_the_lead_stays_sane(pool: PgPool) {
    let w = world(&pool, at("2026-06-01T08:00:00Z"), |_| {}).await;
    let id = fleet(&pool, "chat", 1).await;
    w.service.lease_round().await.unwrap();
    w.service.tick_fleet(id).await.unwrap();
    let order = ledger::orders(&pool, id).await.unwrap()[0]
        .idempotency_key
        .clone();
    let base = format!("http://{}", w.running.addr);
    let callback = |instance: &str, event: &str, at: chrono::DateTime<Utc>| json!({"instance_id": instance, "event": event, "order_id": order, "at": at.to_rfc3339()});
    for (n, when) in [at("2100-01-01T00:00:00Z"), at("2026-06-01T07:00:00Z")]
        .into_iter()
        .enumerate()
    {
        let body = callback("i-1", "ready", when);
        let (status, answer) = post_signed(
            &base,
            "/v1/instances/i-1/ready",
            &signed(&w.secret, &format!("m-{n}"), &body),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
        assert!(
            answer["error"].as_str().unwrap().contains("`at`"),
            "{answer}"
        );
    }
    assert!(instances(&pool).await.is_empty());
    // Out of order: terminated, then a late ready. The instance stays terminated and teaches
    // no boot time.
    w.clock.advance(Duration::minutes(3));
    let now = w.clock.now();
    post_signed(
        &base,
        "/v1/instances/i-2/terminated",
        &signed(&w.secret, "m-t", &callback("i-2", "terminated", now)),
    )
    .await;
    post_signed(
        &base,
        "/v1/instances/i-2/ready",
        &signed(&w.secret, "m-r", &callback("i-2", "ready", now)),
    )
    .await;
    assert_eq!(
        instances(&pool).await,
        vec![("i-2".to_string(), "terminated".to_string(), None)]
    );
    // However slow the boots on record (rows from before these checks, say), the learned lead
    // stays within bounds and the planner keeps planning.
    for k in 0..6 {
        sqlx::query(
            "INSERT INTO instances (instance_id, fleet_id, order_key, ordered_at, state, ready_at, boot_secs, updated_at)
             VALUES ($1, $2, $3, $4, 'ready', $4, 2306495509, $4)",
        )
        .bind(format!("slow-{k}"))
        .bind(id)
        .bind(&order)
        .bind(w.clock.now())
        .execute(&pool)
        .await
        .unwrap();
    }
    let (_, _, lead) = planned(w.service.tick_fleet(id).await.unwrap());
    assert_eq!(lead, 3_600);
    let stored: Option<i64> = sqlx::query_scalar(
        "SELECT boot_lead_secs FROM decisions WHERE fleet_id = $1 ORDER BY id DESC LIMIT 1",
    )
    .bind(id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(stored, Some(3_600));
    w.running.stop().await;
}

#[sqlx::test(migrator = "prewarm_store::MIGRATOR")]
async fn two_installations_share_one_provisioner_without_colliding_keys(pool: PgPool) {
    // A second database: another installation, or a restored backup, with the same ids.
    let name = format!("prewarm_second_{}", rand::random::<u32>());
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&pool)
        .await
        .unwrap();
    let other = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect_with(pool.connect_options().as_ref().clone().database(&name))
        .await
        .unwrap();
    prewarm_store::MIGRATOR.run(&other).await.unwrap();
    let secret = Secret::generate();
    let cloud = crate::fake_cloud::FakeCloud::new(secret.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/orders", listener.local_addr().unwrap());
    let router = cloud.router();
    tokio::spawn(async move { axum::serve(listener, router).await });
    let dispatcher = crate::dispatcher::Dispatcher {
        client: reqwest::Client::new(),
        url,
        secret,
        timeout: std::time::Duration::from_secs(2),
        batch: 10,
    };
    let boot = prewarm_planner::Decision {
        desired_gpus: 3,
        orders: vec![Order::Boot(3)],
        reason: "test".into(),
        breach: None,
        forecast_p50_rps: None,
        forecast_upper_rps: None,
    };
    for db in [&pool, &other] {
        let fleet_id = create_fleet(db, &FleetSpec::named("chat"))
            .await
            .unwrap()
            .id;
        assert_eq!(fleet_id, 1, "both installations number alike");
        ledger::record_decision(db, fleet_id, Utc::now(), &FleetState::default(), &boot)
            .await
            .unwrap();
        let report = dispatcher.dispatch_due(db, Utc::now()).await.unwrap();
        assert_eq!(report.delivered, 1);
    }
    let applied = cloud.seen().applied.clone();
    assert_eq!(applied.len(), 2, "both orders applied: {applied:?}");
    assert_ne!(applied[0].id, applied[1].id);
    other.close().await;
    sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .execute(&pool)
        .await
        .unwrap();
}

#[sqlx::test(migrator = "prewarm_store::MIGRATOR")]
async fn tokens_need_their_scope_and_pins_respect_the_fleet_limit(pool: PgPool) {
    let w = world(&pool, at("2026-06-01T08:00:00Z"), |_| {}).await;
    let mut spec = FleetSpec::named("chat");
    spec.max_gpus = 40;
    let id = create_fleet(&pool, &spec).await.unwrap().id;
    let pusher = token(&pool, Some("chat"), &[Scope::Push]).await;
    let reader = token(&pool, Some("chat"), &[Scope::Read]).await;
    let ops = ops_token(&pool, Some("chat")).await;
    let admin = token(&pool, None, &[Scope::Admin]).await;
    let base = format!("http://{}", w.running.addr);
    let c = reqwest::Client::new();
    let send =
        |method: reqwest::Method, path: &str, token: &str, body: Option<serde_json::Value>| {
            let mut r = c
                .request(method, format!("{base}{path}"))
                .bearer_auth(token);
            if let Some(b) = body {
                r = r.json(&b);
            }
            r.send()
        };
    use reqwest::Method;
    // The README's data pusher cannot pin, pause or read plans.
    let r = send(
        Method::PUT,
        "/v1/fleets/chat/pin",
        &pusher,
        Some(json!({"gpus": 500})),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.text().await.unwrap().contains("`operate`"));
    // A reader reads but does not operate.
    let r = send(Method::GET, "/v1/fleets/chat/plan", &reader, None)
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = send(Method::POST, "/v1/fleets/chat/pause", &reader, None)
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // An operator cannot pin past the fleet's limit...
    let r = send(
        Method::PUT,
        "/v1/fleets/chat/pin",
        &ops,
        Some(json!({"gpus": 500})),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let text = r.text().await.unwrap();
    assert!(text.contains("0 to 40"), "{text}");
    let r = send(
        Method::PUT,
        "/v1/fleets/chat/pin",
        &ops,
        Some(json!({"gpus": 30})),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // ...unless the fleet's breach policy allows it, and then only as far as it allows. Going
    // past an admin's limit is an admin's decision: an operate token may not raise the share.
    let r = send(
        Method::PUT,
        "/v1/fleets/chat/planner",
        &ops,
        Some(json!({"exceed_max_share": 0.5})),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.text().await.unwrap().contains("admin"));
    let r = send(
        Method::PUT,
        "/v1/fleets/chat/planner",
        &admin,
        Some(json!({"exceed_max_share": 0.5})),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    for (gpus, status) in [(60, StatusCode::OK), (61, StatusCode::UNPROCESSABLE_ENTITY)] {
        let r = send(
            Method::PUT,
            "/v1/fleets/chat/pin",
            &ops,
            Some(json!({"gpus": gpus})),
        )
        .await
        .unwrap();
        assert_eq!(r.status(), status, "pin {gpus}");
    }
    // Events are held to the limit too.
    for event in [
        json!({"starts_local": "2026-12-01T09:00:00", "ends_local": "2026-12-01T10:00:00", "pin_rps": 1e9}),
        json!({"starts_local": "2026-12-01T09:00:00", "ends_local": "2026-12-01T10:00:00", "multiply": 1000.0}),
    ] {
        let r = send(Method::POST, "/v1/fleets/chat/events", &ops, Some(event))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    }
    // A pin stored before the limit was lowered is held at the limit.
    sqlx::query("UPDATE fleets SET pinned_gpus = 500, planner = '{}' WHERE id = $1")
        .bind(id)
        .execute(&pool)
        .await
        .unwrap();
    w.service.lease_round().await.unwrap();
    let (d, _, _) = planned(w.service.tick_fleet(id).await.unwrap());
    assert_eq!(d.desired_gpus, 40);
    assert_eq!(d.orders, vec![Order::Boot(40)]);

    // Every change is in the audit log, with who, and before and after.
    let log: serde_json::Value = send(Method::GET, "/v1/fleets/chat/audit", &reader, None)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entries = log["audit"].as_array().unwrap();
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        vec![
            "fleet.pin",
            "fleet.planner",
            "fleet.pin",
            "token.create",
            "token.create",
            "token.create"
        ]
    );
    assert_eq!(entries[0]["before"]["pinned_gpus"], 30);
    assert_eq!(entries[0]["after"]["pinned_gpus"], 60);
    assert!(
        entries[0]["actor"].as_str().unwrap().contains("(probe)")
            || entries[0]["actor"].as_str().unwrap().contains("(ops)")
    );

    // Fleets and tokens through the API need an admin token.
    let r = send(
        Method::PATCH,
        "/v1/fleets/chat",
        &ops,
        Some(json!({"max_gpus": 50})),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = send(
        Method::PATCH,
        "/v1/fleets/chat",
        &admin,
        Some(json!({"max_gpus": 50})),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = send(
        Method::POST,
        "/v1/tokens",
        &admin,
        Some(json!({"fleet": "chat", "label": "new pusher", "scopes": ["push"]})),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let made: serde_json::Value = r.json().await.unwrap();
    let r = send(Method::GET, "/v1/tokens", &pusher, None)
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let path = format!("/v1/tokens/{}", made["id"]);
    let r = send(Method::DELETE, &path, &admin, None).await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = send(
        Method::POST,
        "/v1/fleets",
        &admin,
        Some(json!({"name": "code", "max_gpus": 8})),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    // A NUL in a fleet's name is a 404, not a 500.
    let r = send(Method::GET, "/v1/fleets/ch%00at/plan", &admin, None)
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    w.running.stop().await;
}

#[sqlx::test(migrator = "prewarm_store::MIGRATOR")]
async fn metrics_can_require_a_token(pool: PgPool) {
    let w = world(&pool, at("2026-06-01T08:00:00Z"), |c| {
        c.http.metrics_token = Redacted("scrape-secret-1234".into())
    })
    .await;
    fleet(&pool, "chat", 1).await;
    let all_reader = token(&pool, None, &[Scope::Read]).await;
    let fleet_reader = token(&pool, Some("chat"), &[Scope::Read]).await;
    let base = format!("http://{}/metrics", w.running.addr);
    let c = reqwest::Client::new();
    assert_eq!(c.get(&base).send().await.unwrap().status(), 401);
    for (t, status) in [
        ("scrape-secret-1234", 200),
        (all_reader.as_str(), 200),
        // A valid token for one fleet is told why, not asked for the metrics token.
        (fleet_reader.as_str(), 403),
        ("scrape-secret-1235", 401),
    ] {
        let r = c.get(&base).bearer_auth(t).send().await.unwrap();
        assert_eq!(r.status(), status, "{t}");
    }
    w.running.stop().await;
}

#[test]
fn secrets_never_reach_an_error_or_the_check_output() {
    let dir = tempfile::tempdir().unwrap();
    let secret = Secret::generate().encoded();
    // A syntax error on the secret's line: the line number, never the line.
    let path = dir.path().join("broken.toml");
    std::fs::write(
        &path,
        format!(
            "[database]\nurl = \"postgres://p:hunter2@db/x\"\n[provisioner]\nsecret = \"{secret}\n"
        ),
    )
    .unwrap();
    let e = Config::load(Some(&path), Vec::new())
        .unwrap_err()
        .to_string();
    assert!(e.contains("line 4"), "{e}");
    assert!(!e.contains(&secret) && !e.contains("hunter2"), "{e}");
    // A secret of the wrong type is not quoted back either.
    std::fs::write(
        &path,
        "[database]\nurl = \"postgres://db/x\"\n[provisioner]\nsecret = [\"hunter2\"]\n",
    )
    .unwrap();
    let e = Config::load(Some(&path), Vec::new())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("provisioner.secret") && !e.contains("hunter2"),
        "{e}"
    );

    // `serve --check` prints TOML that reads back, with every secret hidden.
    let good = dir.path().join("prewarm.toml");
    std::fs::write(
        &good,
        format!(
            "[database]\nurl = \"postgres://prewarm:hunter2@db:5432/prewarm\"\n\
             [http]\nmetrics_token = \"scrape-me-please\"\n\
             [provisioner]\nurl = \"https://ops:cloudpass@cloud.example/orders?key=abc123\"\nsecret = \"{secret}\"\n\
             [[pulls]]\nfleet = \"chat\"\nprometheus = \"http://prom:9090\"\nquery = \"sum(rate(x[1m]))\"\n"
        ),
    )
    .unwrap();
    let c = Config::load(Some(&good), Vec::new()).unwrap();
    let shown = c.to_toml_redacted();
    for hidden in [
        &secret,
        "hunter2",
        "cloudpass",
        "abc123",
        "scrape-me-please",
    ] {
        assert!(!shown.contains(hidden), "{hidden} in\n{shown}");
    }
    assert!(shown.contains("<redacted>"), "{shown}");
    let back: Config = toml::from_str(&shown).unwrap();
    assert_eq!(back.planner, c.planner);
    assert_eq!(back.pulls, c.pulls);
    assert_eq!(back.service.replica_id, c.service.replica_id);

    // Settings a probe found accepted.
    let e = Config::load(
        Some(&good),
        vec![("PREWARM_PLANNER__MIN_BOOTS_FOR_LEAD".into(), "-1".into())],
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("min_boots_for_lead"), "{e}");
    // The default replica id is new at every start.
    let a = Config::load(Some(&good), Vec::new())
        .unwrap()
        .service
        .replica_id;
    assert_ne!(a, c.service.replica_id);
}

#[sqlx::test(migrator = "prewarm_store::MIGRATOR")]
async fn while_the_database_is_down_the_service_says_so_within_a_second_and_waits(pool: PgPool) {
    let database: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&pool)
        .await
        .unwrap();
    let free_port = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (http_port, db_port) = (free_port(), free_port());
    let secret = Secret::generate();
    let mut c = config(&secret, "http://127.0.0.1:9/orders", "waiting");
    c.http.listen = format!("127.0.0.1:{http_port}");
    c.database.url = Redacted(format!(
        "postgres://postgres@127.0.0.1:{db_port}/{database}"
    ));
    c.service.lease_ttl = Span(5);
    let clock: SharedClock = Arc::new(ManualClock::new(Utc::now()));
    let starting = tokio::spawn(serve::start(c, clock, false));
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{http_port}");
    // The API comes up while the database is down, and says so fast.
    let mut answered = None;
    for _ in 0..100 {
        let t = Instant::now();
        if let Ok(r) = client.get(format!("{base}/readyz")).send().await {
            answered = Some((r.status(), t.elapsed()));
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (status, took) = answered.expect("the API serves while the database is down");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(took < std::time::Duration::from_secs(1), "{took:?}");
    let t = Instant::now();
    let r = client
        .post(format!("{base}/v1/fleets/chat/samples"))
        .bearer_auth("pw_x")
        .json(&json!({"samples": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        t.elapsed() < std::time::Duration::from_secs(1),
        "{:?}",
        t.elapsed()
    );
    assert!(!starting.is_finished(), "start waits for the database");

    // The database comes back (a proxy to it starts listening): the service finishes starting.
    let proxy = tokio::net::TcpListener::bind(("127.0.0.1", db_port))
        .await
        .unwrap();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = proxy.accept().await {
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect("127.0.0.1:5432").await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    let running = tokio::time::timeout(std::time::Duration::from_secs(40), starting)
        .await
        .expect("started within the backoff")
        .unwrap()
        .unwrap();
    let r = client.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    running.stop().await;
}

#[sqlx::test(migrator = "prewarm_store::MIGRATOR")]
async fn an_old_history_says_so_and_a_refit_can_be_asked_for(pool: PgPool) {
    let now = at("2026-06-05T12:00:00Z");
    let w = world(&pool, now, |_| {}).await;
    let created = create_fleet(&pool, &FleetSpec::named("chat"))
        .await
        .unwrap();
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/nab-elb-5m.csv");
    let mut trace = prewarm_core::read_trace(&fixture).unwrap();
    prewarm_store::import_trace(&pool, &created, &trace, Utc::now())
        .await
        .unwrap();
    let ops = ops_token(&pool, Some("chat")).await;
    let base = format!("http://{}", w.running.addr);
    let c = reqwest::Client::new();
    let refit = || {
        c.post(format!("{base}/v1/fleets/chat/refit"))
            .bearer_auth(&ops)
            .send()
    };
    let report: serde_json::Value = refit().await.unwrap().json().await.unwrap();
    let skipped = report["refit"]["skipped"].as_str().unwrap().to_string();
    assert!(
        skipped.contains("newest sample is from 2014") && skipped.contains("--shift-to-now"),
        "{skipped}"
    );
    w.service.lease_round().await.unwrap();
    let (d, _, _) = planned(w.service.tick_fleet(created.id).await.unwrap());
    assert!(
        d.reason
            .contains("last refit: no forecast: the newest sample"),
        "{}",
        d.reason
    );
    let r = c
        .get(format!("{base}/v1/fleets/chat/forecast"))
        .bearer_auth(&ops)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(r.text().await.unwrap().contains("shift-to-now"));

    // The same trace moved to end now: a refit at once gives a calibrated band.
    let end = trace.timestamp(trace.len());
    trace.start += now - end;
    prewarm_store::import_trace(&pool, &created, &trace, Utc::now())
        .await
        .unwrap();
    let report: serde_json::Value = refit().await.unwrap().json().await.unwrap();
    assert_eq!(report["refit"]["calibrated"], true, "{report}");
    // No scheduler renews leases in this test, and a debug refit under load can outlast one.
    w.service.lease_round().await.unwrap();
    let (d, _, _) = planned(w.service.tick_fleet(created.id).await.unwrap());
    assert!(!d.reason.contains("no forecast"), "{}", d.reason);
    assert!(d.forecast_upper_rps.is_some(), "{d:?}");
    w.running.stop().await;
}

/// Boots `n` GPUs for a new fleet through the service and fake-cloud, and has them report ready.
async fn fleet_with_ready_gpus(
    w: &crate::service_tests::World,
    pool: &PgPool,
    name: &str,
    n: i32,
) -> i64 {
    let id = fleet(pool, name, n).await;
    w.service.lease_round().await.unwrap();
    w.service.tick_fleet(id).await.unwrap();
    w.clock.advance(Duration::minutes(8));
    w.cloud.process().await;
    let (_, state, _) = planned(w.service.tick_fleet(id).await.unwrap());
    assert_eq!(state.gpus_ready, n as u32, "{state:?}");
    id
}

#[sqlx::test(migrator = "prewarm_store::MIGRATOR")]
async fn a_fleet_with_gpus_is_not_deleted_under_them_but_drained_first(pool: PgPool) {
    let w = world(&pool, at("2026-06-01T08:00:00Z"), |_| {}).await;
    let id = fleet_with_ready_gpus(&w, &pool, "chat", 3).await;
    let admin = token(&pool, None, &[Scope::Admin, Scope::Read]).await;
    let base = format!("http://{}", w.running.addr);
    let c = reqwest::Client::new();

    // Deleting it as it is: refused, saying what it holds and how to drain it; nothing changes.
    let r = c
        .delete(format!("{base}/v1/fleets/chat"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let text = r.text().await.unwrap();
    assert!(
        text.contains("3 GPUs running (3 ready") && text.contains("?drain=true"),
        "{text}"
    );
    let e = prewarm_store::delete_fleet(
        &pool,
        "chat",
        &Actor::cli(),
        prewarm_store::fleets::Deletion::IfEmpty,
        w.clock.now(),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, prewarm_store::StoreError::Conflict(_)), "{e}");
    assert!(prewarm_store::fleets::find_fleet(&pool, "chat")
        .await
        .unwrap()
        .is_some());
    assert_eq!(w.cloud.counts("chat").ready, 3);

    // Drained: accepted, the next tick terminates every GPU (whatever min_gpus says)...
    let r = c
        .delete(format!("{base}/v1/fleets/chat?drain=true"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["held"]["ready"], 3, "{body}");
    let (d, _, _) = planned(w.service.tick_fleet(id).await.unwrap());
    assert_eq!(
        (d.desired_gpus, d.orders.clone()),
        (0, vec![Order::Terminate(3)]),
        "{d:?}"
    );
    assert!(
        d.reason.starts_with("draining before deletion"),
        "{}",
        d.reason
    );
    // ...and the fleet stays until the provisioner confirms: its GPUs are ordered off, but
    // fake-cloud has not called back yet.
    assert_eq!(
        w.cloud.counts("chat").ready,
        0,
        "fake-cloud applied the terminate"
    );
    let waiting = w.service.tick_fleet(id).await.unwrap();
    assert!(
        matches!(waiting, TickOutcome::Planned { .. }),
        "{waiting:?}"
    );
    assert!(prewarm_store::fleets::find_fleet(&pool, "chat")
        .await
        .unwrap()
        .is_some());
    // The callbacks arrive: the next tick deletes it, audited as the drain's end.
    w.clock.advance(Duration::minutes(1));
    w.cloud.process().await;
    let up: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM instances WHERE fleet_id = $1 AND state IN ('ready', 'standby')",
    )
    .bind(id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(up, 0);
    let outcome = w.service.tick_fleet(id).await.unwrap();
    assert!(
        matches!(outcome, TickOutcome::Drained { .. }),
        "{outcome:?}"
    );
    assert!(prewarm_store::fleets::find_fleet(&pool, "chat")
        .await
        .unwrap()
        .is_none());
    let log = prewarm_store::audit::list(&pool, None, 10).await.unwrap();
    assert_eq!(log[0].action, "fleet.delete");
    assert!(log[0].actor.contains("draining"), "{}", log[0].actor);
    assert_eq!(log[1].action, "fleet.drain");
    // Every instance fake-cloud booted is terminated: nothing runs on.
    let seen = w.cloud.seen();
    assert!(seen.instances.iter().filter(|i| i.fleet == "chat").count() == 3);
    assert_eq!(w.cloud.counts("chat"), Default::default());

    // A fleet with nothing running is deleted at once, drain or not.
    fleet(&pool, "idle", 0).await;
    let r = c
        .delete(format!("{base}/v1/fleets/idle?drain=true"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    w.running.stop().await;
}

#[sqlx::test(migrator = "prewarm_store::MIGRATOR")]
async fn a_provisioner_url_with_credentials_never_reaches_a_stored_or_returned_error(pool: PgPool) {
    // Nothing listens on the provisioner's address, which carries a password and a query token.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://u:pw-SECRET-1@127.0.0.1:{port}/orders?token=SECRET-2");
    let w = world(&pool, at("2026-06-01T08:00:00Z"), |c| {
        c.provisioner.url = url.clone()
    })
    .await;
    let id = fleet(&pool, "chat", 2).await;
    w.service.lease_round().await.unwrap();
    w.service.tick_fleet(id).await.unwrap();
    let stored = ledger::orders(&pool, id).await.unwrap();
    let error = stored[0].last_error.clone().expect("the delivery failed");
    assert!(error.contains("cannot reach the provisioner"), "{error}");
    let reader = token(&pool, Some("chat"), &[Scope::Read]).await;
    let base = format!("http://{}", w.running.addr);
    let c = reqwest::Client::new();
    let mut shown = vec![error];
    for path in ["/v1/fleets/chat/plan", "/v1/fleets/chat/dashboard?hours=6"] {
        let r = c
            .get(format!("{base}{path}"))
            .bearer_auth(&reader)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        shown.push(r.text().await.unwrap());
    }
    for text in &shown {
        assert!(!text.contains("SECRET") && !text.contains("pw-"), "{text}");
    }
    // An error stored before this fix is scrubbed by the migration's rule too.
    let old = format!("error sending request for url ({url})");
    let scrubbed = prewarm_core::scrub_urls(&old);
    assert!(!scrubbed.contains("SECRET"), "{scrubbed}");
    w.running.stop().await;
}

#[sqlx::test(migrator = "prewarm_store::MIGRATOR")]
async fn a_nul_in_any_text_field_is_refused_by_name_never_answered_as_an_outage(pool: PgPool) {
    let w = world(&pool, at("2026-06-01T08:00:00Z"), |_| {}).await;
    let id = fleet(&pool, "chat", 1).await;
    w.service.lease_round().await.unwrap();
    w.service.tick_fleet(id).await.unwrap();
    let order = ledger::orders(&pool, id).await.unwrap()[0]
        .idempotency_key
        .clone();
    let admin = token(&pool, None, &[Scope::Admin, Scope::Operate, Scope::Read]).await;
    let base = format!("http://{}", w.running.addr);
    let c = reqwest::Client::new();
    let nul = "a\u{0}b";
    for (method, path, body, field) in [
        (
            reqwest::Method::POST,
            "/v1/fleets/chat/events",
            json!({"label": nul, "starts_local": "2026-12-01T09:00:00", "ends_local": "2026-12-01T10:00:00", "multiply": 2.0}),
            "label",
        ),
        (
            reqwest::Method::POST,
            "/v1/tokens",
            json!({"fleet": "chat", "label": nul, "scopes": ["push"]}),
            "label",
        ),
        (
            reqwest::Method::POST,
            "/v1/tokens",
            json!({"label": "x", "scopes": ["push", nul]}),
            "scopes[1]",
        ),
        (
            reqwest::Method::POST,
            "/v1/fleets",
            json!({"name": "new", "gpu_type": nul}),
            "gpu_type",
        ),
        (
            reqwest::Method::PATCH,
            "/v1/fleets/chat",
            json!({"gpu_type": nul}),
            "gpu_type",
        ),
    ] {
        let r = c
            .request(method, format!("{base}{path}"))
            .bearer_auth(&admin)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{path}: {text}");
        assert!(
            text.contains(&format!("`{field}`")) && text.contains("NUL"),
            "{text}"
        );
    }
    // Callbacks: the instance in the path, and each text field of the body.
    w.clock.advance(Duration::minutes(8));
    let now = w.clock.now().to_rfc3339();
    let cases = [
        (
            "/v1/instances/i%00x/ready",
            json!({"instance_id": "i\u{0}x", "event": "ready", "order_id": order, "at": now}),
            "instance id",
        ),
        (
            "/v1/instances/i-1/ready",
            json!({"instance_id": "i-1", "event": "ready", "order_id": nul, "at": now}),
            "`order_id`",
        ),
        (
            "/v1/instances/i-1/terminated",
            json!({"instance_id": "i-1", "event": "terminated", "order_id": order, "at": now, "terminated_by": nul}),
            "`terminated_by`",
        ),
        (
            "/v1/instances/i-1/stopped",
            json!({"instance_id": "i-1", "event": "stopped", "order_id": order, "at": now, "caused_by": nul}),
            "`caused_by`",
        ),
    ];
    for (n, (path, body, named)) in cases.into_iter().enumerate() {
        let (status, answer) =
            post_signed(&base, path, &signed(&w.secret, &format!("nul-{n}"), &body)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{path}: {answer}");
        assert!(
            answer["error"].as_str().unwrap().contains(named),
            "{answer}"
        );
    }
    // A value the database refuses that no check caught is a 422 too, never a 503.
    let refused = sqlx::query("SELECT $1::text")
        .bind(nul)
        .execute(&pool)
        .await
        .unwrap_err();
    assert!(!prewarm_store::is_unavailable(&refused));
    assert!(
        prewarm_store::refused_value(&refused).is_some(),
        "{refused}"
    );
    let r = crate::api::db_error(refused);
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    w.running.stop().await;
}

#[sqlx::test(migrator = "prewarm_store::MIGRATOR")]
async fn a_pin_past_max_gpus_is_a_recorded_breach(pool: PgPool) {
    let w = world(&pool, at("2026-06-01T08:00:00Z"), |_| {}).await;
    let mut spec = FleetSpec::named("chat");
    spec.max_gpus = 40;
    spec.planner = Some(prewarm_planner::Settings {
        exceed_max_share: Some(0.5),
        ..Default::default()
    });
    let id = create_fleet(&pool, &spec).await.unwrap().id;
    sqlx::query("UPDATE fleets SET pinned_gpus = 55 WHERE id = $1")
        .bind(id)
        .execute(&pool)
        .await
        .unwrap();
    w.service.lease_round().await.unwrap();
    let (d, _, _) = planned(w.service.tick_fleet(id).await.unwrap());
    assert_eq!(d.desired_gpus, 55);
    let breach = d.breach.clone().expect("a pin past max_gpus is a breach");
    assert_eq!((breach.wanted, breach.limit, breach.granted), (55, 40, 55));
    assert!(d.reason.contains("LIMIT"), "{}", d.reason);
    let stored: String = sqlx::query_scalar(
        "SELECT reason FROM decisions WHERE fleet_id = $1 ORDER BY id DESC LIMIT 1",
    )
    .bind(id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(stored.contains("LIMIT"), "{stored}");
    // The dry run shows the breach it would send.
    let reader = token(&pool, Some("chat"), &[Scope::Read]).await;
    let dry: serde_json::Value = reqwest::Client::new()
        .get(format!(
            "http://{}/v1/fleets/chat/plan?dry_run=true",
            w.running.addr
        ))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(dry["decision"]["breach"]["wanted"], 55, "{dry}");
    w.running.stop().await;
}

#[sqlx::test(migrator = "prewarm_store::MIGRATOR")]
async fn a_reused_webhook_id_with_another_body_is_a_conflict(pool: PgPool) {
    let w = world(&pool, at("2026-06-01T08:00:00Z"), |_| {}).await;
    let id = fleet(&pool, "chat", 1).await;
    w.service.lease_round().await.unwrap();
    w.service.tick_fleet(id).await.unwrap();
    let order = ledger::orders(&pool, id).await.unwrap()[0]
        .idempotency_key
        .clone();
    let base = format!("http://{}", w.running.addr);
    w.clock.advance(Duration::minutes(8));
    let at1 = (w.clock.now() - Duration::minutes(2)).to_rfc3339();
    let at2 = (w.clock.now() - Duration::minutes(1)).to_rfc3339();
    let first = json!({"instance_id": "i-1", "event": "ready", "order_id": order, "at": at1});
    let (status, _) = post_signed(
        &base,
        "/v1/instances/i-1/ready",
        &signed(&w.secret, "m-1", &first),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // The same message again, fields in another order: a duplicate.
    let again = json!({"at": at1, "order_id": order, "event": "ready", "instance_id": "i-1"});
    let (status, body) = post_signed(
        &base,
        "/v1/instances/i-1/ready",
        &signed(&w.secret, "m-1", &again),
    )
    .await;
    assert_eq!(
        (status, body["duplicate"].clone()),
        (StatusCode::OK, json!(true))
    );
    // The same id, instance and event with another time: a conflict, and nothing changes.
    let other = json!({"instance_id": "i-1", "event": "ready", "order_id": order, "at": at2});
    let (status, body) = post_signed(
        &base,
        "/v1/instances/i-1/ready",
        &signed(&w.secret, "m-1", &other),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let boot: Option<f64> =
        sqlx::query_scalar("SELECT boot_secs FROM instances WHERE instance_id = 'i-1'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(boot, Some(360.0));
    w.running.stop().await;
}

#[sqlx::test(migrator = "prewarm_store::MIGRATOR")]
async fn a_tick_past_its_deadline_says_so_plans_the_passed_over_first_and_gives_fleets_up(
    pool: PgPool,
) {
    // One plan at a time, and a deadline of a second: a fleet whose plan is held up (here by the
    // provisioner hanging on its boot order for the delivery's 2 s timeout) makes the tick miss
    // its deadline.
    let w = world(&pool, at("2026-06-01T08:00:00Z"), |c| {
        c.service.concurrency = 1;
        c.service.tick_deadline = Span(1);
    })
    .await;
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(fleet(&pool, &format!("f{n}"), 1).await);
    }
    let a = w.service.clone();
    a.lease_round().await.unwrap();
    assert_eq!(a.held().len(), 5);
    let hold_up = || {
        w.cloud.inject(crate::fake_cloud::Control {
            hang_next: 1,
            hang_secs: Some(3),
            ..Default::default()
        })
    };
    // First tick: none planned yet, so in id order; the first is held up past the deadline, and
    // the other four are not planned in time.
    hold_up();
    let r = a.tick_all().await;
    assert_eq!((r.planned, r.failed, r.late), (1, 0, 4), "{r:?}");
    let metrics = reqwest::get(format!("http://{}/metrics", w.running.addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("prewarm_fleets_not_planned_in_time_total 4"),
        "{metrics}"
    );
    assert!(metrics.contains("prewarm_fleets_late 4"), "{metrics}");
    let capacity = a.capacity().expect("a limit was seen");
    assert!(capacity >= 1, "{capacity}");

    // Second tick: the four passed over come first (by id among them), so holding up the first
    // plan (the second fleet's) leaves the first fleet, planned last time, late this time.
    w.clock.advance(Duration::minutes(1));
    hold_up();
    let r = a.tick_all().await;
    assert_eq!((r.planned, r.late), (1, 4), "{r:?}");
    assert_eq!(decisions_of(&pool, ids[0]).await, 1);
    assert_eq!(decisions_of(&pool, ids[1]).await, 1);

    // Another replica with no limit seen: the lease rounds hand it what this one cannot plan
    // in time, and every fleet is still held by one of them.
    let cb = config(&w.secret, &w.cloud_url, "replica-b");
    let b = crate::engine::Service::new(pool.clone(), cb, w.service.clock.clone()).unwrap();
    for _ in 0..3 {
        a.lease_round().await.unwrap();
        b.lease_round().await.unwrap();
    }
    let (held_a, held_b) = (a.held(), b.held());
    assert_eq!(
        held_a.len() as i64,
        capacity.min(3),
        "{held_a:?} {held_b:?}"
    );
    assert_eq!(held_a.len() + held_b.len(), 5, "{held_a:?} {held_b:?}");
    // Quick ticks again: the limit is lifted.
    w.clock.advance(Duration::minutes(1));
    let r = a.tick_all().await;
    assert_eq!(r.late, 0, "{r:?}");
    assert_eq!(a.capacity(), None);
    w.running.stop().await;
}
