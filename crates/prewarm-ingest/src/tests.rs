//! Tests against a real PostgreSQL: each test gets its own freshly migrated database.

use axum::{
    body::Body,
    http::{Request, StatusCode},
};
use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};
use sqlx::PgPool;
use tower::ServiceExt;

use crate::{api, create_fleet, create_token, fleet_by_name, history, FleetSpec};

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
        create_token(pool, Some("chat"), "chat pusher")
            .await
            .unwrap(),
        create_token(pool, Some("code"), "code pusher")
            .await
            .unwrap(),
    )
}

#[sqlx::test(migrator = "crate::MIGRATOR")]
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
    crate::MIGRATOR.run(&pool).await.unwrap();
}

#[sqlx::test(migrator = "crate::MIGRATOR")]
async fn a_good_batch_is_stored_and_reads_back(pool: PgPool) {
    let (chat, _) = setup(&pool).await;
    let (status, body) = call(
        &pool,
        "/v1/fleets/chat/samples",
        Some(&chat),
        batch(0..120).to_string(),
    )
    .await;
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

#[sqlx::test(migrator = "crate::MIGRATOR")]
async fn resending_or_reordering_stores_the_same_history(pool: PgPool) {
    let (chat, _) = setup(&pool).await;
    call(
        &pool,
        "/v1/fleets/chat/samples",
        Some(&chat),
        batch(0..60).to_string(),
    )
    .await;
    let once = stored(&pool, "chat").await;
    // The same batch again, then its halves in reverse order, then a batch repeating a bucket.
    call(
        &pool,
        "/v1/fleets/chat/samples",
        Some(&chat),
        batch(0..60).to_string(),
    )
    .await;
    call(
        &pool,
        "/v1/fleets/chat/samples",
        Some(&chat),
        batch(30..60).to_string(),
    )
    .await;
    call(
        &pool,
        "/v1/fleets/chat/samples",
        Some(&chat),
        batch(0..30).to_string(),
    )
    .await;
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

#[sqlx::test(migrator = "crate::MIGRATOR")]
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

#[sqlx::test(migrator = "crate::MIGRATOR")]
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
    let admin = create_token(&pool, None, "admin").await.unwrap();
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

#[sqlx::test(migrator = "crate::MIGRATOR")]
async fn several_fleets_in_one_batch_are_stored_together_or_not_at_all(pool: PgPool) {
    setup(&pool).await;
    let admin = create_token(&pool, None, "admin").await.unwrap();
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

#[sqlx::test(migrator = "crate::MIGRATOR")]
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

#[sqlx::test(migrator = "crate::MIGRATOR")]
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

#[sqlx::test(migrator = "crate::MIGRATOR")]
async fn a_trace_imports_with_copy_idempotently(pool: PgPool) {
    let fleet = create_fleet(&pool, &FleetSpec::named("elb")).await.unwrap();
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/nab-elb-5m.csv");
    let trace = prewarm_core::read_trace(&path).unwrap();
    let rows = crate::import_trace(&pool, fleet.id, &trace).await.unwrap();
    assert_eq!(rows as usize, trace.len() - trace.missing());
    crate::import_trace(&pool, fleet.id, &trace).await.unwrap();
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

#[sqlx::test(migrator = "crate::MIGRATOR")]
async fn old_raw_samples_are_downsampled_to_hourly_sums(pool: PgPool) {
    let (chat, _) = setup(&pool).await;
    call(
        &pool,
        "/v1/fleets/chat/samples",
        Some(&chat),
        batch(0..150).to_string(),
    )
    .await;
    // Everything before 02:00 becomes two hourly rows; 02:00 to 02:29 stays raw.
    let (written, removed) = crate::downsample(&pool, minute(125)).await.unwrap();
    assert_eq!((written, removed), (2, 120));
    let id = fleet_by_name(&pool, "chat").await.unwrap().id;
    let hourly = history(&pool, id, 3600, minute(0), minute(200))
        .await
        .unwrap();
    let first_hour: f64 = (0..60).map(|i| (i * 7 % 50) as f64).sum();
    assert_eq!(hourly[0], (minute(0), first_hour));
    assert_eq!(stored(&pool, "chat").await.len(), 30);
}
