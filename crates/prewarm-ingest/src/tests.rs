//! Tests against a real PostgreSQL: each test gets its own freshly migrated database.

use axum::{
    body::Body,
    http::{Request, StatusCode},
};
use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};
use sqlx::PgPool;
use tower::ServiceExt;

use prewarm_store::{create_fleet, create_token, fleet_by_name, history, Actor, FleetSpec, Scope};

use crate::api;

/// A token with `scopes` for one fleet, or for every fleet.
async fn token_with(pool: &PgPool, fleet: Option<&str>, scopes: &[Scope]) -> String {
    create_token(pool, fleet, "test", scopes, &Actor::cli())
        .await
        .unwrap()
        .1
}

async fn call(
    pool: &PgPool,
    uri: &str,
    token: Option<&str>,
    body: impl Into<Body>,
) -> (StatusCode, Value) {
    let mut request = Request::post(uri).header("content-type", "application/json");
    if let Some(t) = token {
        request = request.header("authorization", format!("Bearer {t}"));
    }
    let response = api::router(pool.clone())
        .oneshot(request.body(body.into()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// Pushes minutes `range` of the test batch to fleet `chat`.
async fn push(pool: &PgPool, token: &str, range: std::ops::Range<i64>) -> (StatusCode, Value) {
    call(
        pool,
        "/v1/fleets/chat/samples",
        Some(token),
        batch(range).to_string(),
    )
    .await
}

fn minute(i: i64) -> DateTime<Utc> {
    "2026-11-20T00:00:00Z".parse::<DateTime<Utc>>().unwrap() + Duration::minutes(i)
}

fn batch(range: std::ops::Range<i64>) -> Value {
    json!({ "samples": range.map(|i| json!({
        "timestamp": minute(i).to_rfc3339(), "requests": (i * 7 % 50) as f64, "tokens_in": 10.0 * i as f64
    })).collect::<Vec<_>>() })
}

async fn stored(pool: &PgPool, fleet: &str) -> Vec<(DateTime<Utc>, f64)> {
    let id = fleet_by_name(pool, fleet).await.unwrap().id;
    history(pool, id, 60, minute(-100_000), minute(100_000))
        .await
        .unwrap()
}

async fn count(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM samples")
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn setup(pool: &PgPool) -> (String, String) {
    create_fleet(pool, &FleetSpec::named("chat")).await.unwrap();
    create_fleet(pool, &FleetSpec::named("code")).await.unwrap();
    (
        token_with(pool, Some("chat"), &[Scope::Push]).await,
        token_with(pool, Some("code"), &[Scope::Push]).await,
    )
}

#[sqlx::test(migrator = "prewarm_store::MIGRATOR")]
async fn migrations_build_the_schema_from_an_empty_database(pool: PgPool) {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(
        tables.contains(&"fleets".to_string()) && tables.contains(&"samples".to_string()),
        "{tables:?}"
    );
    // Running them again is a no-op.
    prewarm_store::MIGRATOR.run(&pool).await.unwrap();
}

#[sqlx::test(migrator = "prewarm_store::MIGRATOR")]
async fn a_good_batch_is_stored_and_reads_back(pool: PgPool) {
    let (chat, _) = setup(&pool).await;
    let (status, body) = push(&pool, &chat, 0..120).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["stored"], 120);
    let rows = stored(&pool, "chat").await;
    assert_eq!(rows.len(), 120);
    assert_eq!(rows[7], (minute(7), 49.0));
    // Token counts are kept.
    let tokens: Option<f64> =
        sqlx::query_scalar("SELECT tokens_in FROM samples WHERE bucket_start = $1")
            .bind(minute(3))
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(tokens, Some(30.0));
}

#[sqlx::test(migrator = "prewarm_store::MIGRATOR")]
async fn resending_or_reordering_stores_the_same_history(pool: PgPool) {
    let (chat, _) = setup(&pool).await;
    push(&pool, &chat, 0..60).await;
    let once = stored(&pool, "chat").await;
    // The same batch again, then its halves in reverse order, then a batch repeating a bucket.
    push(&pool, &chat, 0..60).await;
    push(&pool, &chat, 30..60).await;
    push(&pool, &chat, 0..30).await;
    let mut repeated = batch(10..12);
    repeated["samples"]
        .as_array_mut()
        .unwrap()
        .push(json!({"timestamp": minute(10).to_rfc3339(), "requests": 0.0}));
    repeated["samples"]
        .as_array_mut()
        .unwrap()
        .push(json!({"timestamp": minute(10).to_rfc3339(), "requests": 70.0}));
    let (status, _) = call(
        &pool,
        "/v1/fleets/chat/samples",
        Some(&chat),
        repeated.to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let mut expected = once.clone();
    expected[10].1 = 70.0; // the last word on a bucket wins
    assert_eq!(stored(&pool, "chat").await, expected);
    assert_eq!(count(&pool).await, 60);
}

#[sqlx::test(migrator = "prewarm_store::MIGRATOR")]
async fn a_bad_batch_names_every_bad_item_and_stores_nothing(pool: PgPool) {
    let (chat, _) = setup(&pool).await;
    let mut body = batch(0..5);
    let items = body["samples"].as_array_mut().unwrap();
    items[1]["requests"] = json!(-3.0);
    items[3]["timestamp"] = json!((Utc::now() + Duration::hours(2)).to_rfc3339());
    items[4]["bucket_secs"] = json!(0);
    let (status, answer) = call(
        &pool,
        "/v1/fleets/chat/samples",
        Some(&chat),
        body.to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    let bad: Vec<(u64, String)> = answer["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["index"].as_u64().unwrap(),
                i["field"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        bad,
        vec![
            (1, "requests".into()),
            (3, "timestamp".into()),
            (4, "bucket_secs".into())
        ]
    );
    assert!(answer["items"][1]["message"]
        .as_str()
        .unwrap()
        .contains("in the future"));
    assert_eq!(count(&pool).await, 0);

    // Unparseable timestamps and unknown fields are rejected whole, too.
    let (status, answer) = call(
        &pool,
        "/v1/fleets/chat/samples",
        Some(&chat),
        r#"{"samples":[{"timestamp":"yesterday","requests":1}]}"#,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(answer["error"]
        .as_str()
        .unwrap()
        .contains("not a valid batch"));
    let (status, _) = call(
        &pool,
        "/v1/fleets/chat/samples",
        Some(&chat),
        r#"{"samples":[{"timestamp":"2026-11-20T00:00:00Z","requests":1,"priority":"high"}]}"#,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(count(&pool).await, 0);
}

#[sqlx::test(migrator = "prewarm_store::MIGRATOR")]
async fn tokens_are_checked_and_scoped_to_their_fleet(pool: PgPool) {
    let (chat, code) = setup(&pool).await;
    let body = batch(0..3).to_string();
    let (status, answer) = call(&pool, "/v1/fleets/chat/samples", None, body.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(answer["error"]
        .as_str()
        .unwrap()
        .contains("Authorization: Bearer"));
    let (status, _) = call(
        &pool,
        "/v1/fleets/chat/samples",
        Some("pw_not_a_token"),
        body.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, answer) = call(&pool, "/v1/fleets/chat/samples", Some(&code), body.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert_eq!(count(&pool).await, 0);
    // Tokens are stored only as hashes.
    let raw: i64 = sqlx::query_scalar("SELECT count(*) FROM api_tokens WHERE encode(token_sha256, 'escape') LIKE '%' || $1 || '%'")
        .bind(&chat[3..20])
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(raw, 0);
    // A token for every fleet writes both.
    let admin = token_with(&pool, None, &[Scope::Push]).await;
    for fleet in ["chat", "code"] {
        let (status, _) = call(
            &pool,
            &format!("/v1/fleets/{fleet}/samples"),
            Some(&admin),
            body.clone(),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
    }
    let (status, _) = call(&pool, "/v1/fleets/chat/samples", Some(&chat), body).await;
    assert_eq!(status, StatusCode::OK);
}

#[sqlx::test(migrator = "prewarm_store::MIGRATOR")]
async fn several_fleets_in_one_batch_are_stored_together_or_not_at_all(pool: PgPool) {
    setup(&pool).await;
    let admin = token_with(&pool, None, &[Scope::Push]).await;
    let good = json!({"fleets": {"chat": batch(0..10)["samples"], "code": batch(0..5)["samples"]}});
    let (status, answer) = call(&pool, "/v1/samples", Some(&admin), good.to_string()).await;
    assert_eq!(
        (status, answer["stored"].as_u64()),
        (StatusCode::OK, Some(15))
    );
    let mut bad =
        json!({"fleets": {"chat": batch(20..30)["samples"], "code": batch(20..25)["samples"]}});
    bad["fleets"]["code"][2]["requests"] = json!(-1);
    let (status, answer) = call(&pool, "/v1/samples", Some(&admin), bad.to_string()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(answer["items"][0]["fleet"], "code");
    assert_eq!(
        count(&pool).await,
        15,
        "the good fleet's part was not stored either"
    );
}

#[sqlx::test(migrator = "prewarm_store::MIGRATOR")]
async fn hostile_input_is_rejected_or_stored_safely(pool: PgPool) {
    let (chat, _) = setup(&pool).await;
    // Oversized body.
    let huge = format!(
        r#"{{"samples":[{}]}}"#,
        vec![r#"{"timestamp":"2026-11-20T00:00:00Z","requests":1}"#; 120_000].join(",")
    );
    let (status, answer) = call(&pool, "/v1/fleets/chat/samples", Some(&chat), huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
    // Too many samples in a batch that fits the body limit.
    let many = batch(0..10_001).to_string();
    let (status, _) = call(&pool, "/v1/fleets/chat/samples", Some(&chat), many).await;
    assert!(
        status == StatusCode::UNPROCESSABLE_ENTITY || status == StatusCode::PAYLOAD_TOO_LARGE,
        "{status}"
    );
    // Deeply nested JSON.
    let deep = format!(
        r#"{{"samples":{}1{}}}"#,
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let (status, _) = call(&pool, "/v1/fleets/chat/samples", Some(&chat), deep).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // SQL in a fleet name is a name like any other: no such fleet, and nothing executed.
    let (status, _) = call(
        &pool,
        "/v1/fleets/chat';%20DROP%20TABLE%20samples;--/samples",
        Some(&chat),
        batch(0..1).to_string(),
    )
    .await;
    assert!(
        status == StatusCode::NOT_FOUND || status == StatusCode::FORBIDDEN,
        "{status}"
    );
    let e = create_fleet(&pool, &FleetSpec::named("x'); DROP TABLE fleets;--"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("letters, digits"), "{e}");
    assert_eq!(count(&pool).await, 0);
    assert!(fleet_by_name(&pool, "chat").await.is_ok());
}

#[sqlx::test(migrator = "prewarm_store::MIGRATOR")]
async fn a_closed_database_answers_503_so_the_client_retries(pool: PgPool) {
    let (chat, _) = setup(&pool).await;
    let router_pool = pool.clone();
    router_pool.close().await;
    let (status, answer) = call(
        &router_pool,
        "/v1/fleets/chat/samples",
        Some(&chat),
        batch(0..3).to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("retry"));
}

#[sqlx::test(migrator = "prewarm_store::MIGRATOR")]
async fn a_trace_imports_with_copy_idempotently(pool: PgPool) {
    let fleet = create_fleet(&pool, &FleetSpec::named("elb")).await.unwrap();
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/nab-elb-5m.csv");
    let trace = prewarm_core::read_trace(&path).unwrap();
    let rows = prewarm_store::import_trace(&pool, &fleet, &trace, Utc::now())
        .await
        .unwrap();
    assert_eq!(rows as usize, trace.len() - trace.missing());
    prewarm_store::import_trace(&pool, &fleet, &trace, Utc::now())
        .await
        .unwrap();
    assert_eq!(count(&pool).await as usize, trace.len() - trace.missing());
    let back = history(
        &pool,
        fleet.id,
        300,
        trace.start,
        trace.timestamp(trace.len()),
    )
    .await
    .unwrap();
    assert_eq!(back[0], (trace.start, trace.requests[0]));
    let total: f64 = back.iter().map(|(_, r)| r).sum();
    let expected: f64 = trace.requests.iter().filter(|r| !r.is_nan()).sum();
    assert_eq!(total, expected);
}

#[sqlx::test(migrator = "prewarm_store::MIGRATOR")]
async fn scopes_revocation_and_the_bearer_scheme_are_enforced(pool: PgPool) {
    create_fleet(&pool, &FleetSpec::named("chat"))
        .await
        .unwrap();
    let body = batch(0..3).to_string();
    // A token that may only read cannot push.
    let reader = token_with(&pool, Some("chat"), &[Scope::Read]).await;
    let (status, answer) = call(
        &pool,
        "/v1/fleets/chat/samples",
        Some(&reader),
        body.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("`push`"),
        "{answer}"
    );
    // The scheme is case-insensitive.
    let pusher = token_with(&pool, Some("chat"), &[Scope::Push]).await;
    let response = api::router(pool.clone())
        .oneshot(
            Request::post("/v1/fleets/chat/samples")
                .header("content-type", "application/json")
                .header("authorization", format!("bearer {pusher}"))
                .body(Body::from(body.clone()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // A revoked token is refused at once, and the revocation is audited.
    let tokens = prewarm_store::list_tokens(&pool, None).await.unwrap();
    let id = tokens
        .iter()
        .find(|t| t.scopes == vec![Scope::Push])
        .unwrap()
        .id;
    assert!(prewarm_store::revoke_token(&pool, id, &Actor::cli())
        .await
        .unwrap());
    assert!(!prewarm_store::revoke_token(&pool, id, &Actor::cli())
        .await
        .unwrap());
    let (status, answer) = call(&pool, "/v1/fleets/chat/samples", Some(&pusher), body).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    let log = prewarm_store::audit::list(&pool, None, 10).await.unwrap();
    let actions: Vec<&str> = log.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        vec!["token.revoke", "token.create", "token.create"]
    );
    assert!(prewarm_store::list_tokens(&pool, None).await.unwrap()[1]
        .revoked_at
        .is_some());
    // Scopes parse from what a user types, and unknown ones say what exists.
    assert_eq!(
        Scope::parse_list("read, push,read").unwrap(),
        vec![Scope::Push, Scope::Read]
    );
    assert!(Scope::parse_list("pin")
        .unwrap_err()
        .contains("push, read, operate and admin"));
}

#[sqlx::test(migrator = "prewarm_store::MIGRATOR")]
async fn hostile_names_and_implausible_values_are_refused_with_a_reason(pool: PgPool) {
    let (chat, _) = setup(&pool).await;
    // A NUL byte in a fleet name names no fleet: 404, not a database error.
    let (status, answer) = call(
        &pool,
        "/v1/fleets/ch%00at/samples",
        Some(&chat),
        batch(0..1).to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    // A rate no fleet could serve is refused, and the answer says why.
    let mut body = batch(0..3);
    body["samples"][1]["requests"] = json!(1e308);
    body["samples"][2]["timestamp"] = json!("0001-01-01T00:00:00Z");
    let (status, answer) = call(
        &pool,
        "/v1/fleets/chat/samples",
        Some(&chat),
        body.to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    let messages: Vec<&str> = answer["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["message"].as_str().unwrap())
        .collect();
    assert!(messages[0].contains("max_gpus serve"), "{messages:?}");
    assert!(messages[1].contains("before 1970"), "{messages:?}");
    assert!(
        answer["error"].as_str().unwrap().contains("item 1"),
        "{answer}"
    );
    assert_eq!(count(&pool).await, 0);
}

#[sqlx::test(migrator = "prewarm_store::MIGRATOR")]
async fn an_import_meets_the_push_rules_and_names_the_line(pool: PgPool) {
    let fleet = create_fleet(&pool, &FleetSpec::named("elb")).await.unwrap();
    let path = std::path::Path::new("t.csv");
    // Rows dated 2100 are refused, as a push would refuse them.
    let future = prewarm_core::parse_trace(
        "timestamp,requests\n2100-01-01T00:00:00Z,5\n2100-01-01T00:05:00Z,6\n".as_bytes(),
        path,
    )
    .unwrap();
    let e = prewarm_store::import_trace(&pool, &fleet, &future, Utc::now())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("line 2 (2100-01-01T00:00:00Z)") && e.contains("in the future"),
        "{e}"
    );
    // Two rows two days apart: a sample cannot be two days wide, and the message says where.
    let wide = prewarm_core::parse_trace(
        "timestamp,requests\n2026-01-01T00:00:00Z,5\n2026-01-03T00:00:00Z,6\n".as_bytes(),
        path,
    )
    .unwrap();
    let e = prewarm_store::import_trace(&pool, &fleet, &wide, Utc::now())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("172800 s apart") && e.contains("line 2"), "{e}");
    // A 5-minute trace with a two-day hole: refused too, naming the rows on both sides.
    let mut text = String::from("timestamp,requests\n");
    let start = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    for k in 0..12 {
        text.push_str(&format!(
            "{},5\n",
            (start + chrono::Duration::minutes(5 * k)).to_rfc3339()
        ));
    }
    let resumed = start + chrono::Duration::days(2) + chrono::Duration::hours(1);
    for k in 0..12 {
        text.push_str(&format!(
            "{},5\n",
            (resumed + chrono::Duration::minutes(5 * k)).to_rfc3339()
        ));
    }
    let holed = prewarm_core::parse_trace(text.as_bytes(), path).unwrap();
    let e = prewarm_store::import_trace(&pool, &fleet, &holed, Utc::now())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("line 14") && e.contains("line 13") && e.contains("more than 1d apart"),
        "{e}"
    );
    assert_eq!(count(&pool).await, 0);
}

#[sqlx::test(migrator = "prewarm_store::MIGRATOR")]
async fn fleets_are_listed_updated_and_deleted_with_their_samples(pool: PgPool) {
    let (chat, _) = setup(&pool).await;
    push(&pool, &chat, 0..10).await;
    let names: Vec<String> = prewarm_store::list_fleets(&pool)
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.name)
        .collect();
    assert_eq!(names, vec!["chat", "code"]);
    let update = prewarm_store::FleetUpdate {
        max_gpus: Some(40),
        budget_usd_per_hour: Some(Some(90.0)),
        gpus_per_replica: Some(4),
        ..Default::default()
    };
    let (before, after) = prewarm_store::update_fleet(&pool, "chat", &update, &Actor::cli())
        .await
        .unwrap();
    assert_eq!((before.max_gpus, after.max_gpus), (100, 40));
    assert_eq!((before.gpus_per_replica, after.gpus_per_replica), (1, 4));
    let e = prewarm_store::update_fleet(
        &pool,
        "chat",
        &prewarm_store::FleetUpdate {
            gpus_per_replica: Some(0),
            ..Default::default()
        },
        &Actor::cli(),
    )
    .await
    .unwrap_err();
    assert!(
        e.to_string().contains("gpus_per_replica must be 1 to 64"),
        "{e}"
    );
    assert_eq!(after.budget_usd_per_hour, Some(90.0));
    // A change that breaks the rules is refused whole.
    let bad = prewarm_store::FleetUpdate {
        min_gpus: Some(50),
        ..Default::default()
    };
    let e = prewarm_store::update_fleet(&pool, "chat", &bad, &Actor::cli())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("max_gpus"), "{e}");
    assert_eq!(fleet_by_name(&pool, "chat").await.unwrap().min_gpus, 1);
    let deleted = prewarm_store::delete_fleet(
        &pool,
        "chat",
        &Actor::cli(),
        prewarm_store::fleets::Deletion::IfEmpty,
        chrono::Utc::now(),
    )
    .await
    .unwrap();
    assert_eq!(
        deleted,
        prewarm_store::fleets::Deleted::Deleted {
            samples_removed: 10
        }
    );
    assert_eq!(count(&pool).await, 0);
    assert!(fleet_by_name(&pool, "chat").await.is_err());
    let log = prewarm_store::audit::list(&pool, None, 10).await.unwrap();
    assert_eq!(log[0].action, "fleet.delete");
    assert_eq!(log[1].action, "fleet.update");
    assert_eq!(log[1].before.as_ref().unwrap()["max_gpus"], 100);
    assert_eq!(log[1].after.as_ref().unwrap()["max_gpus"], 40);
}

#[sqlx::test(migrator = "prewarm_store::MIGRATOR")]
async fn old_raw_samples_are_downsampled_to_hourly_sums(pool: PgPool) {
    let (chat, _) = setup(&pool).await;
    push(&pool, &chat, 0..150).await;
    // Everything before 02:00 becomes two hourly rows; 02:00 to 02:29 stays raw.
    let (written, removed) = prewarm_store::downsample(&pool, minute(125)).await.unwrap();
    assert_eq!((written, removed), (2, 120));
    let id = fleet_by_name(&pool, "chat").await.unwrap().id;
    let hourly = history(&pool, id, 3600, minute(0), minute(200))
        .await
        .unwrap();
    let first_hour: f64 = (0..60).map(|i| (i * 7 % 50) as f64).sum();
    assert_eq!(hourly[0], (minute(0), first_hour));
    assert_eq!(stored(&pool, "chat").await.len(), 30);
}

/// A real Prometheus on loopback, its storage loaded with `promtool` before it starts.
struct Prometheus {
    child: std::process::Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tool(name: &str) -> std::path::PathBuf {
    let path = std::path::Path::new("/usr/bin").join(name);
    assert!(
        path.exists(),
        "{name} is missing: these tests need Debian's prometheus package (apt-get install prometheus); .ci/run installs it"
    );
    path
}

async fn start_prometheus(openmetrics: &str) -> Prometheus {
    let dir = tempfile::tempdir().unwrap();
    let om = dir.path().join("history.om");
    std::fs::write(&om, openmetrics).unwrap();
    let data = dir.path().join("data");
    let status = std::process::Command::new(tool("promtool"))
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&om)
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "promtool: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    let config = dir.path().join("prometheus.yml");
    std::fs::write(&config, "global:\n  scrape_interval: 1h\n").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = std::process::Command::new(tool("prometheus"))
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", data.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--storage.tsdb.retention.time=100y")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let prom = Prometheus {
        child,
        url,
        _dir: dir,
    };
    let client = reqwest::Client::new();
    for _ in 0..100 {
        if let Ok(r) = client.get(format!("{}/-/ready", prom.url)).send().await {
            if r.status().is_success() {
                return prom;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    panic!("Prometheus did not become ready");
}

/// Two days of a request counter on two instances, one point a minute, ending three hours ago;
/// each instance serves `1 + hour % 5` requests per second during each hour.
fn counter_history(end: i64) -> (String, i64) {
    let start = end - 2 * 86_400;
    let mut text = String::from("# TYPE http_requests counter\n");
    for instance in ["a", "b"] {
        let mut total = 0.0;
        for t in (start..end).step_by(60) {
            text.push_str(&format!(
                "http_requests_total{{instance=\"{instance}\"}} {total} {t}\n"
            ));
            total += (1 + (t / 3600) % 5) as f64 * 60.0;
        }
    }
    text.push_str("# EOF\n");
    (text, start)
}

#[sqlx::test(migrator = "prewarm_store::MIGRATOR")]
async fn weeks_of_history_are_pulled_from_a_real_prometheus(pool: PgPool) {
    use crate::prometheus::{pull, PromSource, PullError, Retry};
    let end = (Utc::now().timestamp() - 3 * 3600) / 3600 * 3600;
    let (om, start) = counter_history(end);
    let prom = start_prometheus(&om).await;
    let fleet = create_fleet(&pool, &FleetSpec::named("vllm"))
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let source = PromSource {
        base_url: prom.url.clone(),
        query: "sum(rate(http_requests_total[5m]))".into(),
        step_secs: 60,
        tokens_in_query: None,
        tokens_out_query: None,
    };
    let from = DateTime::from_timestamp(start, 0).unwrap();
    let to = DateTime::from_timestamp(end, 0).unwrap();
    let report = pull(
        &pool,
        &client,
        fleet.id,
        &source,
        from,
        to,
        Retry::default(),
    )
    .await
    .unwrap();
    // 2,880 steps; the first few minutes have no 5-minute rate yet.
    assert!(report.samples_stored >= 2_870, "{report:?}");
    assert!(report.missing_steps <= 10, "{report:?}");
    let rows = history(&pool, fleet.id, 60, from, to).await.unwrap();
    // In the middle of each hour both instances serve 1 + hour % 5 per second, 60 s a bucket.
    for (t, requests) in rows.iter().filter(|(t, _)| t.timestamp() % 3600 == 1800) {
        let expected = 2.0 * (1 + (t.timestamp() / 3600) % 5) as f64 * 60.0;
        assert!(
            (requests - expected).abs() < 1e-6 * expected,
            "{t}: {requests} vs {expected}"
        );
    }
    // Pulling again (a rerun after an interruption) replaces, never duplicates.
    pull(
        &pool,
        &client,
        fleet.id,
        &source,
        from,
        to,
        Retry::default(),
    )
    .await
    .unwrap();
    assert_eq!(history(&pool, fleet.id, 60, from, to).await.unwrap(), rows);

    // A scheduled pull reads only what is new since the latest stored bucket.
    let next = crate::prometheus::pull_new(
        &pool,
        &client,
        fleet.id,
        &source,
        to,
        Duration::days(28),
        Retry::default(),
    )
    .await
    .unwrap();
    assert!(
        next.samples_stored <= 1 && next.requests_sent == 1,
        "{next:?}"
    );

    // A query Prometheus rejects fails at once with its message, and stores nothing more.
    let bad = PromSource {
        query: "sum(rate(http_requests_total[5m])".into(),
        ..source.clone()
    };
    let e = pull(&pool, &client, fleet.id, &bad, from, to, Retry::default())
        .await
        .unwrap_err();
    assert!(matches!(e, PullError::Rejected { .. }), "{e}");
    assert!(e.to_string().contains("bad_data"), "{e}");

    // A range with no data is reported as missing, not stored as zeros (from 10 minutes after the
    // end, past the rate's 5-minute look-back).
    let after = to + Duration::minutes(10);
    let later = pull(
        &pool,
        &client,
        fleet.id,
        &source,
        after,
        after + Duration::hours(1),
        Retry::default(),
    )
    .await
    .unwrap();
    assert_eq!(later.samples_stored, 0);
    assert!(later.missing_steps >= 55, "{later:?}");

    // Prometheus down: retried with backoff, then a clear error; what was stored stays.
    drop(prom);
    let quick = Retry {
        attempts: 3,
        first_delay: std::time::Duration::from_millis(20),
    };
    let e = pull(&pool, &client, fleet.id, &source, from, to, quick)
        .await
        .unwrap_err();
    assert!(
        matches!(e, PullError::Unreachable { attempts: 3, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("rerun to continue"), "{e}");
    assert_eq!(history(&pool, fleet.id, 60, from, to).await.unwrap(), rows);
}

#[sqlx::test(migrator = "prewarm_store::MIGRATOR")]
async fn a_database_outage_mid_push_gives_503_and_retries_store_each_sample_once(pool: PgPool) {
    let (chat, _) = setup(&pool).await;
    let database: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&pool)
        .await
        .unwrap();
    let admin = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&std::env::var("DATABASE_URL").unwrap())
        .await
        .unwrap();
    // 40 batches of 30 minutes each, pushed one after another by a client that retries on 503.
    let pusher = {
        let (pool, chat) = (pool.clone(), chat.clone());
        tokio::spawn(async move {
            let mut unavailable = 0;
            for b in 0..40 {
                let body = batch(b * 30..(b + 1) * 30).to_string();
                let mut attempts = 0;
                loop {
                    attempts += 1;
                    assert!(attempts < 200, "batch {b} never stored");
                    let (status, answer) =
                        call(&pool, "/v1/fleets/chat/samples", Some(&chat), body.clone()).await;
                    match status {
                        StatusCode::OK => break,
                        StatusCode::SERVICE_UNAVAILABLE => {
                            unavailable += 1;
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        }
                        other => panic!("batch {b}: {other} {answer}"),
                    }
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            unavailable
        })
    };
    // Mid-way, the database goes away: every connection is cut and new ones are refused for a
    // second, as during a restart.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    sqlx::query(&format!(
        "ALTER DATABASE \"{database}\" ALLOW_CONNECTIONS false"
    ))
    .execute(&admin)
    .await
    .unwrap();
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
        .bind(&database)
        .execute(&admin)
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    sqlx::query(&format!(
        "ALTER DATABASE \"{database}\" ALLOW_CONNECTIONS true"
    ))
    .execute(&admin)
    .await
    .unwrap();

    let unavailable = pusher.await.unwrap();
    assert!(unavailable > 0, "the outage was not seen by the client");
    let rows = stored(&pool, "chat").await;
    assert_eq!(rows.len(), 1200, "each sample stored exactly once");
    for (i, (t, requests)) in rows.iter().enumerate() {
        assert_eq!(
            (*t, *requests),
            (minute(i as i64), (i as i64 * 7 % 50) as f64)
        );
    }
}

/// Serves `fixtures/vllm-metrics.prom` as a vLLM server's `/metrics`: every counter, histogram
/// bucket, count and sum multiplied by the seconds since the server started (the fixture's value
/// is the series' increase per second); gauges as written. Returns its address.
async fn serve_vllm_fixture() -> std::net::SocketAddr {
    let fixture = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/vllm-metrics.prom"),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let page = move || {
        let secs = started.elapsed().as_secs_f64();
        fixture
            .lines()
            .map(|line| {
                let grows = ["_total{", "_bucket{", "_count{", "_sum{"]
                    .iter()
                    .any(|s| line.contains(s));
                match line.rsplit_once(' ') {
                    Some((series, value)) if grows && !line.starts_with('#') => {
                        format!("{series} {}", value.parse::<f64>().unwrap() * secs)
                    }
                    _ => line.to_string(),
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
            + "\n"
    };
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let body = page();
            async move { ([("content-type", "text/plain; version=0.0.4")], body) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// A real Prometheus on loopback scraping `target` every second, with empty storage.
async fn start_scraping_prometheus(target: std::net::SocketAddr) -> Prometheus {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: vllm\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = std::process::Command::new(tool("prometheus"))
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let prom = Prometheus {
        child,
        url: format!("http://127.0.0.1:{port}"),
        _dir: dir,
    };
    let client = reqwest::Client::new();
    for _ in 0..100 {
        if let Ok(r) = client.get(format!("{}/-/ready", prom.url)).send().await {
            if r.status().is_success() {
                return prom;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    panic!("Prometheus did not become ready");
}

#[sqlx::test(migrator = "prewarm_store::MIGRATOR")]
async fn a_vllm_fleet_s_requests_and_tokens_are_pulled_from_prometheus_scraping_it(pool: PgPool) {
    use crate::prometheus::{pull, vllm_queries, PromSource, PullError, Retry};
    let target = serve_vllm_fixture().await;
    let prom = start_scraping_prometheus(target).await;
    // Scraping starts a few seconds after Prometheus is ready: wait for eight scrapes.
    let client = reqwest::Client::new();
    let mut scrapes = 0.0;
    for _ in 0..60 {
        let answer: Value = client
            .get(format!("{}/api/v1/query", prom.url))
            .query(&[(
                "query",
                "count_over_time(vllm:request_success_total{finished_reason=\"stop\"}[1m])",
            )])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        scrapes = answer["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        if scrapes >= 8.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    assert!(
        scrapes >= 8.0,
        "Prometheus scraped the fixture {scrapes} times"
    );
    let mut profile = prewarm_planner::GpuProfile {
        name: "llama-8b-h100".into(),
        prefill_tps: 8_000.0,
        decode_tps: 1_200.0,
        price_usd_per_gpu_hour: Some(3.0),
        gpu_type: "H100".into(),
        model: String::new(),
        source: String::new(),
    };
    prewarm_store::profiles::upsert(&pool, &[profile.clone()], &Actor::cli())
        .await
        .unwrap();
    let mut spec = FleetSpec::named("llm");
    spec.gpu_profile = Some(profile.name.clone());
    let fleet = create_fleet(&pool, &spec).await.unwrap();
    let (requests, tokens_in, tokens_out) = vllm_queries("4s", "");
    let source = PromSource {
        base_url: prom.url.clone(),
        query: requests,
        step_secs: 1,
        tokens_in_query: Some(tokens_in),
        tokens_out_query: Some(tokens_out),
    };
    // The last whole seconds the scrapes cover (rates over 4 s need two scrapes in the window).
    let to = Utc::now() - Duration::seconds(2);
    let from = to - Duration::seconds(4);
    let report = pull(
        &pool,
        &client,
        fleet.id,
        &source,
        from,
        to,
        Retry::default(),
    )
    .await
    .unwrap();
    assert!(report.samples_stored >= 3, "{report:?}");
    let capacity = fleet_by_name(&pool, "llm").await.unwrap().capacity();
    let buckets = prewarm_store::samples::raw_buckets(&pool, fleet.id, &capacity, from, to)
        .await
        .unwrap();
    assert!(buckets.len() >= 3, "{buckets:?}");
    for b in &buckets {
        // 10 requests a second (8 stop + 2 length + 0 abort), 640 prompt and 96 output tokens
        // each: the ratios hold exactly; the rate is Prometheus' (its extrapolation over a few
        // scrapes puts it near, not at, 10).
        assert!(b.requests > 3.0 && b.requests < 15.0, "{b:?}");
        assert!((b.tokens_in / b.requests - 640.0).abs() < 1e-6, "{b:?}");
        assert!((b.tokens_out / b.requests - 96.0).abs() < 1e-6, "{b:?}");
        // The fleet plans on their work: 6,400 / 8,000 + 960 / 1,200 = 1.6 GPU-seconds a second.
        let expected = b.tokens_in / 8_000.0 + b.tokens_out / 1_200.0;
        assert!((b.work - expected).abs() < 1e-9, "{b:?}");
        assert!((b.work / b.requests - 0.16).abs() < 1e-6, "{b:?}");
    }
    // A token query that names nothing stores the requests without tokens (counted, not zero).
    let empty = PromSource {
        tokens_in_query: Some("sum(rate(vllm:no_such_metric[4s]))".into()),
        ..source.clone()
    };
    pull(&pool, &client, fleet.id, &empty, from, to, Retry::default())
        .await
        .unwrap();
    let buckets = prewarm_store::samples::raw_buckets(&pool, fleet.id, &capacity, from, to)
        .await
        .unwrap();
    assert!(
        buckets
            .iter()
            .all(|b| b.tokens_in.is_nan() && b.work.is_nan()),
        "{buckets:?}"
    );
    // Half the token queries is refused before anything is asked.
    let half = PromSource {
        tokens_out_query: None,
        ..source
    };
    let e = pull(&pool, &client, fleet.id, &half, from, to, Retry::default())
        .await
        .unwrap_err();
    assert!(
        matches!(e, PullError::Rejected { .. }) && e.to_string().contains("both"),
        "{e}"
    );
    profile.decode_tps = 0.0;
    assert!(
        prewarm_store::profiles::upsert(&pool, &[profile], &Actor::cli())
            .await
            .is_err()
    );
}

/// Serves `fixtures/kube-state-metrics.prom`, with the `vllm-llama-70b` Deployment's desired and
/// ready replicas taken from `counts` at each scrape (as text, so a test can serve `NaN` or a
/// negative count). Returns its address.
async fn serve_kube_state_metrics(
    counts: std::sync::Arc<std::sync::Mutex<(String, String)>>,
) -> std::net::SocketAddr {
    let fixture = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fixtures/kube-state-metrics.prom"),
    )
    .unwrap();
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let (desired, ready) = counts.lock().unwrap().clone();
            let body = fixture
                .lines()
                .map(|line| match line.rsplit_once(' ') {
                    Some((series, _)) if series.contains("deployment=\"vllm-llama-70b\"") => {
                        if series.starts_with("kube_deployment_spec_replicas") {
                            format!("{series} {desired}")
                        } else {
                            format!("{series} {ready}")
                        }
                    }
                    _ => line.to_string(),
                })
                .collect::<Vec<_>>()
                .join("\n")
                + "\n";
            async move { ([("content-type", "text/plain; version=0.0.4")], body) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// Waits until Prometheus answers `query` with `want`.
async fn until_prometheus_says(url: &str, query: &str, want: &str) {
    let client = reqwest::Client::new();
    let mut last = Value::Null;
    for _ in 0..80 {
        last = client
            .get(format!("{url}/api/v1/query"))
            .query(&[("query", query)])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if last["data"]["result"][0]["value"][1].as_str() == Some(want) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    panic!("Prometheus never said {want} for {query}: {last}");
}

#[sqlx::test(migrator = "prewarm_store::MIGRATOR")]
async fn a_fleet_s_real_replicas_are_observed_through_prometheus_and_teach_its_boot_time(
    pool: PgPool,
) {
    use crate::prometheus::{observe, ReplicaQueries, Retry};
    let counts = std::sync::Arc::new(std::sync::Mutex::new(("3".to_string(), "2".to_string())));
    let target = serve_kube_state_metrics(counts.clone()).await;
    let prom = start_scraping_prometheus(target).await;
    let mut spec = FleetSpec::named("llama-70b");
    spec.gpus_per_replica = 4;
    let fleet = create_fleet(&pool, &spec).await.unwrap();
    let sel = r#"{namespace="llm",deployment="vllm-llama-70b"}"#;
    let queries = ReplicaQueries {
        base_url: prom.url.clone(),
        ready_query: format!("sum(kube_deployment_status_replicas_ready{sel})"),
        desired_query: format!("sum(kube_deployment_spec_replicas{sel})"),
    };
    let ready_now = format!("kube_deployment_status_replicas_ready{sel}");
    let client = reqwest::Client::new();
    let retry = Retry {
        attempts: 2,
        first_delay: std::time::Duration::from_millis(50),
    };
    until_prometheus_says(&prom.url, &ready_now, "2").await;
    let t0 = Utc::now();
    let o = observe(&pool, &client, fleet.id, &queries, t0, retry)
        .await
        .unwrap();
    assert_eq!((o.ready_replicas, o.desired_replicas), (2, 3));
    // The third replica becomes ready: its boot is timed from the first observation that wanted it.
    *counts.lock().unwrap() = ("3".into(), "3".into());
    until_prometheus_says(&prom.url, &ready_now, "3").await;
    let t1 = Utc::now().max(t0 + Duration::seconds(1));
    let o = observe(&pool, &client, fleet.id, &queries, t1, retry)
        .await
        .unwrap();
    assert_eq!((o.ready_replicas, o.desired_replicas), (3, 3));
    let history = prewarm_store::observed::history(&pool, fleet.id, t0, t1)
        .await
        .unwrap();
    assert_eq!(history.len(), 2);
    // The first observation is where the history starts: the third replica's start is not known,
    // so nothing is learned yet; the state is 12 GPUs ready.
    let state = prewarm_store::observed::state_from(&history, 4);
    assert_eq!((state.gpus_ready, state.booting.len()), (12, 0));
    // Scaled to 5: two replicas boot, 8 GPUs, since this observation.
    *counts.lock().unwrap() = ("5".into(), "3".into());
    until_prometheus_says(
        &prom.url,
        &format!("kube_deployment_spec_replicas{sel}"),
        "5",
    )
    .await;
    let t2 = Utc::now().max(t1 + Duration::seconds(1));
    observe(&pool, &client, fleet.id, &queries, t2, retry)
        .await
        .unwrap();
    *counts.lock().unwrap() = ("5".into(), "4".into());
    until_prometheus_says(&prom.url, &ready_now, "4").await;
    let t3 = Utc::now().max(t2 + Duration::seconds(1));
    observe(&pool, &client, fleet.id, &queries, t3, retry)
        .await
        .unwrap();
    let history = prewarm_store::observed::history(&pool, fleet.id, t0, t3)
        .await
        .unwrap();
    let state = prewarm_store::observed::state_from(&history, 4);
    assert_eq!(state.gpus_ready, 16);
    assert_eq!(state.booting.len(), 4);
    let stats = prewarm_store::instances::boot_stats(&pool, fleet.id, t0 - Duration::hours(1))
        .await
        .unwrap();
    assert_eq!(stats.count, 1, "{stats:?}");
    let learned = stats.p50_secs.unwrap();
    let expected = (t3 - t2).num_milliseconds() as f64 / 1e3;
    assert!((learned - expected).abs() < 1e-3, "{learned} vs {expected}");

    // What cannot be an observation is refused, saying what, and nothing is stored.
    let stored = |pool: PgPool| async move {
        prewarm_store::observed::history(&pool, fleet.id, t0, Utc::now() + Duration::hours(1))
            .await
            .unwrap()
            .len()
    };
    let before = stored(pool.clone()).await;
    let nothing = ReplicaQueries {
        ready_query: r#"sum(kube_deployment_status_replicas_ready{deployment="no-such"})"#.into(),
        ..queries.clone()
    };
    let e = observe(&pool, &client, fleet.id, &nothing, Utc::now(), retry)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("returned no series"), "{e}");
    for (served, says) in [("NaN", "not a number"), ("-1", "negative")] {
        *counts.lock().unwrap() = ("5".into(), served.into());
        until_prometheus_says(&prom.url, &ready_now, served).await;
        let e = observe(&pool, &client, fleet.id, &queries, Utc::now(), retry)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains(says), "{served}: {e}");
    }
    // An observation older than the latest stored one is refused too.
    *counts.lock().unwrap() = ("5".into(), "4".into());
    until_prometheus_says(&prom.url, &ready_now, "4").await;
    let e = observe(&pool, &client, fleet.id, &queries, t1, retry)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("not after the latest one stored"), "{e}");
    assert_eq!(stored(pool.clone()).await, before);
}
