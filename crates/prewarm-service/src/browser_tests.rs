//! The dashboard in a real browser: Debian's headless Chromium driven over WebDriver (Debian's
//! chromedriver, spoken to with plain HTTP), against the service on a scratch database with
//! history, decisions, orders and boot callbacks made by real ticks. Screenshots are saved under
//! `target/dashboard/` for review; the first-paint times are written there too (and printed).

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration as StdDuration, Instant},
};

use base64::Engine as _;
use chrono::{DateTime, Duration, Utc};
use prewarm_core::Trace;
use prewarm_store::{create_fleet, FleetSpec};
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::service_tests::{at, get, ops_token, rush_trace, world};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
/// The key WebDriver names an element by.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// One headless Chromium session through chromedriver.
struct Browser {
    http: reqwest::Client,
    base: String,
    driver: Child,
    /// The session's own browser profile, removed with it.
    profile: tempfile::TempDir,
}

impl Browser {
    /// A session, or `None` where chromedriver is not installed (never in CI: `.ci/run`
    /// installs it).
    async fn start() -> Option<Self> {
        if !std::path::Path::new(CHROMEDRIVER).exists() || !std::path::Path::new(CHROMIUM).exists()
        {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must have Debian's chromium and chromium-driver (.ci/run installs them)"
            );
            eprintln!("no {CHROMEDRIVER}: the dashboard is not opened in a browser here");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + StdDuration::from_secs(20);
        loop {
            let ready = http.get(format!("{base}/status")).send().await;
            if let Ok(r) = ready {
                let v: Value = r.json().await.unwrap_or_default();
                if v["value"]["ready"] == true {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(StdDuration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let mut b = Self {
            http,
            base,
            driver,
            profile,
        };
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1400,1000",
                    format!("--user-data-dir={}", b.profile.path().display()),
                ],
            },
        }}});
        let session = b.send(reqwest::Method::POST, "/session", Some(caps)).await;
        let id = session["sessionId"]
            .as_str()
            .expect("a session id")
            .to_string();
        b.base = format!("{}/session/{id}", b.base);
        Some(b)
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            req = req.json(&body);
        }
        let r = req.send().await.expect("chromedriver answers");
        let status = r.status();
        let v: Value = r.json().await.expect("chromedriver answers JSON");
        assert!(status.is_success(), "WebDriver {path}: {status} {v:#}");
        v["value"].clone()
    }

    async fn goto(&self, url: &str) {
        self.send(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page.
    async fn eval(&self, script: &str, args: Value) -> Value {
        self.send(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
        .await
    }

    /// Polls `script` until it returns something other than null or false.
    async fn wait(&self, what: &str, script: &str) -> Value {
        let deadline = Instant::now() + StdDuration::from_secs(20);
        loop {
            let v = self.eval(script, json!([])).await;
            if !v.is_null() && v != false {
                return v;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(StdDuration::from_millis(50)).await;
        }
    }

    async fn find(&self, css: &str) -> String {
        let v = self
            .send(
                reqwest::Method::POST,
                "/element",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await;
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_string()
    }

    async fn click(&self, css: &str) {
        let id = self.find(css).await;
        self.send(
            reqwest::Method::POST,
            &format!("/element/{id}/click"),
            Some(json!({})),
        )
        .await;
    }

    async fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css).await;
        self.send(
            reqwest::Method::POST,
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    async fn screenshot(&self, name: &str) -> PathBuf {
        let v = self.send(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("base64"))
            .unwrap();
        let path = out_dir().join(name);
        std::fs::write(&path, png).unwrap();
        path
    }

    async fn close(mut self) {
        let _ = self.http.delete(&self.base).send().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
    }
}

/// `target/dashboard/` at the workspace root.
fn out_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/dashboard");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The text JavaScript's `toFixed(2)` gives, as the page shows money.
fn two(v: f64) -> String {
    format!("{v:.2}")
}

#[sqlx::test(migrator = "prewarm_store::MIGRATOR")]
async fn the_dashboard_shows_what_the_api_returns_and_its_controls_work(pool: PgPool) {
    let Some(browser) = Browser::start().await else {
        return;
    };
    // History to 12:00 UTC (08:00 in New York), a refit, then four hours of real ticks through
    // the morning rush, fake-cloud booting and calling back.
    let start = at("2026-06-01T04:00:00Z");
    let t0 = at("2026-06-05T12:00:00Z");
    let t1 = at("2026-06-05T16:00:00Z");
    let w = world(&pool, t0, |_| {}).await;
    let mut spec = FleetSpec::named("chat-ny");
    spec.time_zone = "America/New_York".into();
    spec.gpu_rps = 1.0;
    spec.min_gpus = 2;
    let chat = create_fleet(&pool, &spec).await.unwrap();
    create_fleet(&pool, &FleetSpec::named("idle"))
        .await
        .unwrap();
    let trace = rush_trace(start, 5);
    let upto = |t: DateTime<Utc>| {
        Trace::new(
            start,
            300,
            trace.requests[..((t - start).num_minutes() / 5) as usize].to_vec(),
        )
    };
    prewarm_store::import_trace(&pool, &chat, &upto(t0), Utc::now())
        .await
        .unwrap();
    w.service.lease_round().await.unwrap();
    assert!(w.service.refit_fleet(chat.id).await.unwrap().calibrated);
    // The rest of the window: a tick reads only buckets that ended by its clock.
    let rest = Trace::new(
        t0,
        300,
        upto(t1).requests[upto(t0).requests.len()..].to_vec(),
    );
    prewarm_store::import_trace(&pool, &chat, &rest, Utc::now())
        .await
        .unwrap();
    let mut now = t0;
    while now <= t1 {
        w.clock.set(now);
        w.cloud.process().await;
        // Refits every half hour, as the scheduler's refit job does (a forecast older than two
        // hours is not planned on).
        if now > t0 && (now - t0).num_minutes() % 30 == 0 {
            w.service.refit_fleet(chat.id).await.unwrap();
        }
        // Leases run on the wall clock: renew them as the scheduler would.
        if (now - t0).num_minutes() % 10 == 0 {
            w.service.lease_round().await.unwrap();
        }
        let planned = w.service.tick_fleet(chat.id).await.unwrap();
        assert!(
            matches!(planned, crate::engine::TickOutcome::Planned { .. }),
            "{planned:?}"
        );
        now += Duration::minutes(1);
    }
    w.clock.set(t1);
    let token = ops_token(&pool, None).await;
    // Markup where an operator or the planner writes text: an event label and a reason.
    let hostile = r#"<script>window.__xss=1</script><img src=x onerror="window.__xss=2">'"&"#;
    let added = reqwest::Client::new()
        .post(format!(
            "http://{}/v1/fleets/chat-ny/events",
            w.running.addr
        ))
        .bearer_auth(&token)
        .json(
            &json!({ "label": hostile, "starts_local": "2026-06-08T09:00:00",
                       "ends_local": "2026-06-08T12:00:00", "multiply": 2.0 }),
        )
        .send()
        .await
        .unwrap();
    assert!(
        added.status().is_success(),
        "{}",
        added.text().await.unwrap()
    );
    sqlx::query(
        "UPDATE decisions SET reason = $1 || reason WHERE id = (SELECT max(id) FROM decisions)",
    )
    .bind(hostile)
    .execute(&pool)
    .await
    .unwrap();

    let addr = w.running.addr;
    let url = format!("http://{addr}/");
    browser.goto(&url).await;
    // Without a token the page says what it needs.
    let needs = browser
        .wait(
            "the token notice",
            "const n = document.getElementById('notice'); return !n.hidden && n.textContent;",
        )
        .await;
    assert!(needs.as_str().unwrap().contains("scope read"), "{needs}");
    browser.type_into("#token", &token).await;
    browser.click("#token-save").await;
    browser
        .wait(
            "the fleet table",
            "return document.querySelectorAll('#fleets tbody tr').length === 2;",
        )
        .await;
    let api = get(&addr, "/v1/dashboard", &token).await;
    let rows = browser
        .eval(
            "return [...document.querySelectorAll('#fleets tbody tr')].map(r => ({
                fleet: r.dataset.fleet,
                mode: r.querySelector('[data-col=mode]').textContent,
                gpus: r.querySelector('[data-col=gpus]').textContent,
                demand: r.querySelector('[data-col=demand]').textContent,
                cost: r.querySelector('[data-col=cost]').textContent,
                lease: r.querySelector('[data-col=lease]').textContent }));",
            json!([]),
        )
        .await;
    let fleets = api["fleets"].as_array().unwrap();
    assert_eq!(rows.as_array().unwrap().len(), fleets.len());
    for (row, f) in rows.as_array().unwrap().iter().zip(fleets) {
        assert_eq!(row["fleet"], f["name"]);
        assert_eq!(row["mode"], f["mode"]);
        let dash = |v: &Value| v.as_i64().map_or("–".to_string(), |n| n.to_string());
        assert_eq!(
            row["gpus"].as_str().unwrap(),
            format!(
                "{} / {} / {}",
                dash(&f["desired_gpus"]),
                dash(&f["gpus_ready"]),
                dash(&f["gpus_booting"])
            )
        );
        assert_eq!(
            row["cost"].as_str().unwrap(),
            format!("${}", two(f["cost_today_usd"].as_f64().unwrap()))
        );
        if let Some(d) = f["demand_rps"].as_f64() {
            assert!(
                row["demand"]
                    .as_str()
                    .unwrap()
                    .trim_start()
                    .starts_with(&two(d)),
                "{row} {f}"
            );
        }
        assert_eq!(row["lease"], f["lease_holder"].as_str().unwrap_or("none"));
    }
    let chat_row = &fleets[0];
    assert_eq!(chat_row["name"], "chat-ny");
    assert!(
        chat_row["desired_gpus"].as_i64().unwrap() >= 20,
        "{chat_row}"
    );
    assert!(
        chat_row["cost_today_usd"].as_f64().unwrap() > 0.0,
        "{chat_row}"
    );
    assert!(chat_row["timed_out_share_24h"].is_number(), "{chat_row}");
    browser.screenshot("fleets.png").await;

    // One fleet: its charts draw the API's points.
    browser.click("[data-fleet=chat-ny] a").await;
    browser
        .wait(
            "the fleet page",
            "return performance.getEntriesByName('prewarm:fleet-drawn').length > 0;",
        )
        .await;
    let page = get(&addr, "/v1/fleets/chat-ny/dashboard?hours=24", &token).await;
    let drawn = browser
        .eval(
            "const segs = (sel) => { const p = document.querySelector(sel); return p ? (p.getAttribute('d').match(/[ML]/g) || []).length : 0; };
             return {
               demand: segs('#chart-demand path.demand'),
               bands: document.querySelectorAll('#chart-demand path.band').length,
               orders: document.querySelectorAll('#chart-orders circle.order').length,
               bins: [...document.querySelectorAll('#chart-boots rect.bin')].map(r => +r.querySelector('title').textContent.split(' ')[0]).reduce((a, b) => a + b, 0),
               coverage: document.querySelectorAll('#chart-coverage rect.coverage').length,
               decisions: document.getElementById('decision-count').textContent,
               events: [...document.querySelectorAll('#events tbody td:first-child')].map(td => td.textContent),
               reasons: [...document.querySelectorAll('#decisions td.reason')].map(td => td.textContent),
               xss: window.__xss === undefined ? null : window.__xss,
               scripts: document.scripts.length,
               mode: document.getElementById('fleet-mode').textContent,
             };",
            json!([]),
        )
        .await;
    let n = |v: &Value| v.as_array().unwrap().len() as u64;
    assert_eq!(
        drawn["demand"].as_u64().unwrap(),
        n(&page["demand"]),
        "{drawn}"
    );
    assert!(drawn["bands"].as_u64().unwrap() >= 1, "{drawn}");
    assert_eq!(
        drawn["orders"].as_u64().unwrap(),
        n(&page["orders"]),
        "{drawn}"
    );
    assert!(n(&page["orders"]) > 0);
    assert_eq!(
        drawn["bins"].as_u64().unwrap(),
        n(&page["boot"]["secs"]),
        "{drawn}"
    );
    assert!(n(&page["boot"]["secs"]) > 0, "fake-cloud called back");
    // The page's boot statistics and lead are those of `/boot-stats`, which the tick uses.
    let stats = get(&addr, "/v1/fleets/chat-ny/boot-stats", &token).await;
    assert_eq!(page["boot"]["p50_secs"], stats["last_7_days"]["p50_secs"]);
    assert_eq!(page["boot"]["p95_secs"], stats["last_7_days"]["p95_secs"]);
    assert_eq!(page["boot"]["lead_in_use_secs"], stats["boot_lead_secs"]);
    assert_eq!(
        drawn["coverage"].as_u64().unwrap(),
        n(&page["coverage"]),
        "{drawn}"
    );
    let made = n(&page["decisions"]);
    assert!(made > 200, "four hours of ticks: {made}");
    let expected = if made > 300 {
        format!("newest 300 of {made} decisions")
    } else {
        format!("{made} decisions")
    };
    assert_eq!(drawn["decisions"].as_str().unwrap(), expected);
    // Markup is shown as text, and no script but the page's own ran.
    assert_eq!(drawn["events"], json!([hostile]), "{drawn}");
    assert!(
        drawn["reasons"][0].as_str().unwrap().starts_with(hostile),
        "{drawn}"
    );
    assert_eq!(drawn["xss"], Value::Null, "{drawn}");
    assert_eq!(drawn["scripts"], 1, "{drawn}");
    assert_eq!(drawn["mode"], "act");
    // The decision filter keeps only those with a boot order.
    browser
        .eval(
            "const s = document.getElementById('decision-filter'); s.value = 'boot'; s.dispatchEvent(new Event('change'));",
            json!([]),
        )
        .await;
    let boots = page["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["orders"].as_array().unwrap().iter().any(|k| k == "boot"))
        .count();
    let shown = browser
        .eval(
            "return document.querySelectorAll('#decisions tbody tr').length;",
            json!([]),
        )
        .await;
    assert_eq!(shown.as_u64().unwrap() as usize, boots.min(300));
    browser.screenshot("fleet.png").await;

    // Pause from the page: the API reports the fleet paused, and so does the page.
    browser.click("#pause").await;
    browser
        .wait(
            "the paused badge",
            "return document.getElementById('fleet-mode').textContent === 'paused';",
        )
        .await;
    let after = get(&addr, "/v1/dashboard", &token).await;
    assert_eq!(after["fleets"][0]["mode"], "paused");
    let paused: bool = sqlx::query_scalar("SELECT paused FROM fleets WHERE name = 'chat-ny'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(paused);
    // Resume, then pin until a wall-clock time in the fleet's zone, then clear the pin.
    browser.click("#resume").await;
    browser
        .wait(
            "act again",
            "return document.getElementById('fleet-mode').textContent === 'act';",
        )
        .await;
    browser.type_into("#pin-gpus", "7").await;
    browser
        .eval(
            "document.getElementById('pin-until').value = '2026-06-05T18:30';",
            json!([]),
        )
        .await;
    browser.click("#pin").await;
    browser
        .wait(
            "the pin",
            "return document.getElementById('fleet-mode').textContent.startsWith('pinned to 7');",
        )
        .await;
    let pin: (Option<i32>, Option<DateTime<Utc>>) =
        sqlx::query_as("SELECT pinned_gpus, pinned_until FROM fleets WHERE name = 'chat-ny'")
            .fetch_one(&pool)
            .await
            .unwrap();
    // 18:30 in New York in June is 22:30 UTC.
    assert_eq!(pin, (Some(7), Some(at("2026-06-05T22:30:00Z"))));
    browser.click("#unpin").await;
    browser
        .wait(
            "the pin cleared",
            "return document.getElementById('fleet-mode').textContent === 'act';",
        )
        .await;
    // Remove the hostile event, add another from the form.
    browser.click("#events button[data-event]").await;
    browser
        .wait(
            "the event removed",
            "return document.querySelectorAll('#events tbody tr').length === 0;",
        )
        .await;
    browser.type_into("#event-label", "launch").await;
    browser
        .eval(
            "document.getElementById('event-start').value = '2026-06-09T09:00';
             document.getElementById('event-end').value = '2026-06-09T11:00';",
            json!([]),
        )
        .await;
    browser.type_into("#event-value", "1.5").await;
    browser.click("#event-add").await;
    browser
        .wait(
            "the event added",
            "return document.querySelectorAll('#events tbody tr').length === 1;",
        )
        .await;
    let events = get(&addr, "/v1/fleets/chat-ny/events", &token).await;
    assert_eq!(events["events"][0]["label"], "launch");
    assert_eq!(events["events"][0]["starts_local"], "2026-06-09T09:00:00");
    assert_eq!(events["events"][0]["multiply"], 1.5);
    // A token refused: the page says so.
    browser.click("#token-forget").await;
    browser.type_into("#token", "not-a-token").await;
    browser.click("#token-save").await;
    let refused = browser
        .wait(
            "the refusal",
            "const n = document.getElementById('notice'); return n.classList.contains('error') && n.textContent;",
        )
        .await;
    assert!(
        refused.as_str().unwrap().contains("refused the token"),
        "{refused}"
    );
    browser.close().await;
    w.running.stop().await;
}

/// Inserts `n` fleets (`fleet-0001`, ...) with a day of 5-minute samples, a week of tally hours,
/// a lease and a latest decision each, varied by the fleet's number `k`; `fleet-0001` also with a
/// day of 1-minute decisions and orders. Every 17th fleet is paused, every 23rd pinned to 4.
async fn seed_many(pool: &PgPool, n: i64, now: DateTime<Utc>) {
    let statements = [
        "INSERT INTO fleets (name, time_zone, min_gpus, max_gpus, paused, pinned_gpus)
         SELECT 'fleet-' || lpad(k::text, 4, '0'), 'Europe/Berlin', 1, 100, k % 17 = 0,
                CASE WHEN k % 23 = 0 THEN 4 END
         FROM generate_series(1, $2::bigint) k",
        // Demand swings around 5 rps; the newest bucket is 5 + 4 sin(k).
        "INSERT INTO samples (fleet_id, bucket_start, bucket_secs, requests)
         SELECT f.id, $1 - make_interval(mins => 5 * i), 300,
                300 * (5 + 4 * sin(i / 20.0 - 0.05 + substr(f.name, 7)::int))
         FROM fleets f, generate_series(1, 288) i",
        "INSERT INTO fleet_hours (fleet_id, hour_start, requests, timed_out, gpu_seconds, cost_usd)
         SELECT f.id, date_trunc('hour', $1) - make_interval(hours => i), 18000,
                ((i + substr(f.name, 7)::int) % 7) * 2 * (substr(f.name, 7)::int % 5), 21600, 18
         FROM fleets f, generate_series(0, 167) i",
        // Leases run on the database's clock, as replicas take them.
        "INSERT INTO fleet_leases (fleet_id, holder, expires_at)
         SELECT id, CASE WHEN substr(name, 7)::int % 2 = 0 THEN 'replica-a' ELSE 'replica-b' END,
                now() + interval '10 minutes'
         FROM fleets WHERE substr(name, 7)::int % 31 <> 0 AND $1::timestamptz IS NOT NULL",
        // Desired 3 + k % 9, ready up to 3 + 7k % 9, the rest booting; the band 5 to 7 + k % 4.
        "INSERT INTO decisions (fleet_id, decided_at, desired_gpus, gpus_ready, gpus_booting,
                                forecast_p50_rps, forecast_upper_rps, reason, replica)
         SELECT f.id, $1 - make_interval(mins => i), d, r, d - r, 5, 7 + k % 4,
                'hold: demand within the band', 'replica-a'
         FROM fleets f,
              LATERAL (SELECT substr(f.name, 7)::int AS k) n,
              LATERAL (SELECT 3 + n.k % 9 AS d, least(3 + n.k % 9, 3 + (7 * n.k) % 9) AS r) g,
              generate_series(0, CASE WHEN f.name = 'fleet-0001' THEN 1439 ELSE 0 END) i",
        "INSERT INTO orders (idempotency_key, fleet_id, decision_id, kind, count, state,
                             next_attempt_at, expires_at, created_at, delivered_at)
         SELECT 'seed-' || d.id, d.fleet_id, d.id, CASE WHEN d.id % 2 = 0 THEN 'boot' ELSE 'terminate' END,
                1 + d.id % 3, 'delivered', d.decided_at, d.decided_at, d.decided_at, d.decided_at
         FROM decisions d JOIN fleets f ON f.id = d.fleet_id
         WHERE f.name = 'fleet-0001' AND extract(minute FROM d.decided_at)::int % 20 = 0
           AND d.decided_at > $1 - interval '1 day' AND $2::bigint > 0",
    ];
    for sql in statements {
        sqlx::query(sql)
            .bind(now)
            .bind(n)
            .execute(pool)
            .await
            .unwrap();
    }
}

#[sqlx::test(migrator = "prewarm_store::MIGRATOR")]
async fn first_paint_of_a_thousand_fleets_and_of_one_fleets_day_is_measured(pool: PgPool) {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let now = at("2026-03-02T12:00:00Z");
    let w = world(&pool, now, |_| {}).await;
    seed_many(&pool, 1_000, now).await;
    let token = ops_token(&pool, None).await;
    let addr = w.running.addr;
    // The token is kept by the page: set it once, then time fresh loads.
    browser.goto(&format!("http://{addr}/")).await;
    browser.type_into("#token", &token).await;
    browser.click("#token-save").await;
    let (mut fleets_ms, mut fleets_api_ms) = (Vec::new(), Vec::new());
    let (mut fleet_ms, mut fleet_api_ms) = (Vec::new(), Vec::new());
    for round in 0..3 {
        browser.goto(&format!("http://{addr}/?r={round}#/")).await;
        let ms = browser
            .wait(
                "1,000 fleets drawn",
                "const m = performance.getEntriesByName('prewarm:fleets-drawn');
                 return m.length > 0 && document.querySelectorAll('#fleets tbody tr').length === 1000 && m[0].startTime;",
            )
            .await;
        fleets_ms.push(ms.as_f64().unwrap());
        let api = browser
            .eval(
                "const r = performance.getEntriesByType('resource').find(e => e.name.endsWith('/v1/dashboard'));
                 return r ? r.responseEnd - r.startTime : null;",
                json!([]),
            )
            .await;
        fleets_api_ms.push(api.as_f64().unwrap());
        browser
            .goto(&format!("http://{addr}/?p={round}#/fleet/fleet-0001"))
            .await;
        let ms = browser
            .wait(
                "one fleet's day drawn",
                "const m = performance.getEntriesByName('prewarm:fleet-drawn');
                 return m.length > 0 && m[0].startTime;",
            )
            .await;
        fleet_ms.push(ms.as_f64().unwrap());
        let api = browser
            .eval(
                "const r = performance.getEntriesByType('resource').find(e => e.name.includes('/dashboard?hours='));
                 return r ? r.responseEnd - r.startTime : null;",
                json!([]),
            )
            .await;
        fleet_api_ms.push(api.as_f64().unwrap());
    }
    let decisions = browser
        .eval(
            "return document.getElementById('decision-count').textContent;",
            json!([]),
        )
        .await;
    assert_eq!(decisions, "newest 300 of 1440 decisions");
    browser.goto(&format!("http://{addr}/#/")).await;
    browser
        .wait(
            "1,000 fleets drawn",
            "return document.querySelectorAll('#fleets tbody tr').length === 1000;",
        )
        .await;
    browser.screenshot("fleets-1000.png").await;
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let rounded = |v: &[f64]| v.iter().map(|x| x.round()).collect::<Vec<_>>();
    let report = format!(
        "dashboard first paint (navigation start to the data drawn), median of 3 loads in headless \
         Chromium, the service built as the tests build it:\n\
         1,000 fleets: {:.0} ms (loads {:?}; the API answered in {:?} ms)\n\
         one fleet, 24 hours (1,440 decisions): {:.0} ms (loads {:?}; the API answered in {:?} ms)\n",
        median(&mut fleets_ms.clone()),
        rounded(&fleets_ms),
        rounded(&fleets_api_ms),
        median(&mut fleet_ms.clone()),
        rounded(&fleet_ms),
        rounded(&fleet_api_ms),
    );
    std::fs::write(out_dir().join("timings.txt"), &report).unwrap();
    println!("{report}");
    browser.close().await;
    w.running.stop().await;
}

#[sqlx::test(migrator = "prewarm_store::MIGRATOR")]
async fn the_dashboard_api_shows_a_token_only_its_fleets_and_the_page_runs_only_its_own_script(
    pool: PgPool,
) {
    let now = at("2026-03-02T12:00:00Z");
    let w = world(&pool, now, |_| {}).await;
    seed_many(&pool, 3, now).await;
    let addr = w.running.addr;
    let http = reqwest::Client::new();
    // The page and its parts need no token and carry no data; they forbid any other script.
    for (path, kind) in [
        ("/", "text/html"),
        ("/dashboard.js", "text/javascript"),
        ("/dashboard.css", "text/css"),
    ] {
        let r = http
            .get(format!("http://{addr}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let h = r.headers();
        assert!(h["content-type"].to_str().unwrap().starts_with(kind));
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self'") && csp.contains("default-src 'none'"));
    }
    // Without a token: 401, saying what is needed.
    let r = http
        .get(format!("http://{addr}/v1/dashboard"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // A fleet's token sees its fleet only, and not another fleet's page.
    let one = ops_token(&pool, Some("fleet-0002")).await;
    let v = get(&addr, "/v1/dashboard", &one).await;
    let names: Vec<&str> = v["fleets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["fleet-0002"]);
    let row = &v["fleets"][0];
    // The seeded tally, 18,000 requests an hour: the hour that started 24 hours ago and the one
    // under way both count.
    assert_eq!(row["requests_24h"], 25.0 * 18_000.0);
    // fleet-0002: desired 5, all ready; 5 + 4 sin(2) = 8.64 rps against a band of 5 to 9.
    assert_eq!(row["desired_gpus"], 5);
    assert_eq!(row["gpus_ready"], 5);
    assert!(
        (row["demand_rps"].as_f64().unwrap() - 8.637).abs() < 0.01,
        "{row}"
    );
    assert_eq!(row["band"], "in band", "{row}");
    assert_eq!(row["lease_holder"], "replica-a");
    let other = http
        .get(format!("http://{addr}/v1/fleets/fleet-0001/dashboard"))
        .bearer_auth(&one)
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 403);
    let all = ops_token(&pool, None).await;
    for bad in ["0", "169", "x"] {
        let r = http
            .get(format!(
                "http://{addr}/v1/fleets/fleet-0001/dashboard?hours={bad}"
            ))
            .bearer_auth(&all)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "hours={bad}");
    }
    let page = get(&addr, "/v1/fleets/fleet-0001/dashboard?hours=6", &all).await;
    assert_eq!(page["decisions"].as_array().unwrap().len(), 6 * 60 + 1);
    assert_eq!(page["demand"].as_array().unwrap().len(), 6 * 12);
    assert_eq!(page["fleet"]["time_zone"], "Europe/Berlin");
    // Seeded demand swings 1 to 9 rps against an 8 rps band: some hours are not fully covered.
    let cover = page["coverage"].as_array().unwrap();
    assert!(!cover.is_empty());
    assert!(cover
        .iter()
        .any(|c| c["covered"].as_u64() < c["buckets"].as_u64()));
    w.running.stop().await;
}
