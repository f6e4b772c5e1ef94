//! Every query on the service's hot path (tick state, ledger, dispatcher, leases, operator
//! changes) run against the real schema: a query the migrations no longer fit fails here, in the
//! store's own tests, rather than in a running service.

use std::collections::HashMap;

use chrono::{Duration, Utc};
use prewarm_planner::{Decision, FleetState, Order};
use sqlx::PgPool;

use crate::{
    fleets::{self, Changed, OperatorChange},
    kinds::{DecisionMode, OrderKind, OrderState},
    leases::{self, Holder},
    ledger::{self, ClaimScope, Meta},
    state, Actor, FleetEvent, FleetSpec,
};

fn boot(n: u32) -> Decision {
    Decision {
        desired_gpus: n,
        orders: vec![Order::Boot(n)],
        reason: "test".into(),
        breach: None,
        forecast_p50_rps: None,
        forecast_upper_rps: None,
    }
}

/// What replica-a writes an acting decision with, under `me`'s lease.
fn acting_for(me: &Holder) -> Meta<'static> {
    Meta {
        replica: "replica-a",
        resume_lead_secs: None,
        mode: DecisionMode::Act,
        boot_lead_secs: Some(600),
        forecast_id: None,
        fence: Some(me.token),
        write_orders: true,
    }
}

#[sqlx::test(migrator = "crate::MIGRATOR")]
async fn the_hot_path_reads_and_writes_the_schema_as_it_is(pool: PgPool) {
    let mut spec = FleetSpec::named("chat");
    spec.time_zone = "America/New_York".into();
    let fleet = crate::create_fleet(&pool, &spec).await.unwrap();
    assert_eq!(fleet.tz(), chrono_tz::America::New_York);
    let found = fleets::find_fleet(&pool, "chat").await.unwrap().unwrap();
    assert_eq!(found, fleet);
    assert_eq!(
        fleets::fleet_by_id(&pool, fleet.id).await.unwrap(),
        Some(fleet.clone())
    );
    assert!(fleets::find_fleet(&pool, "nul\0").await.unwrap().is_none());

    // Leases: one holder takes the only fleet, and the decision is written under its fence.
    let me = Holder::new("replica-a");
    let round = leases::round(&pool, &me, 10, None).await.unwrap();
    assert_eq!(round.held, vec![fleet.id]);
    assert_eq!(
        leases::holder(&pool, fleet.id).await.unwrap().as_deref(),
        Some("replica-a")
    );
    let now = Utc::now();
    let meta = acting_for(&me);
    let id = ledger::record(
        &pool,
        fleet.id,
        now,
        &FleetState::default(),
        &boot(2),
        &meta,
    )
    .await
    .unwrap();
    assert!(id.is_some(), "written under the lease");
    let stranger = Meta {
        fence: Some(uuid::Uuid::new_v4()),
        ..meta
    };
    assert_eq!(
        ledger::record(
            &pool,
            fleet.id,
            now,
            &FleetState::default(),
            &boot(9),
            &stranger
        )
        .await
        .unwrap(),
        None,
        "a token without the lease writes nothing"
    );
    let orders = ledger::orders(&pool, fleet.id).await.unwrap();
    assert_eq!(orders.len(), 1);
    assert_eq!(
        (orders[0].kind, orders[0].count, orders[0].state),
        (OrderKind::Boot, 2, OrderState::Pending)
    );
    let decisions = ledger::decisions(&pool, fleet.id, 10).await.unwrap();
    assert_eq!(decisions[0].mode, DecisionMode::Act);

    // An order never attempted is not counted yet (a newer plan may cancel it).
    let s = state::fleet_state(&pool, fleet.id, now, 1_800)
        .await
        .unwrap();
    assert_eq!(s.provisioned(), 0);

    // The dispatcher claims it once, fails, is held back, then delivers.
    let scope = ClaimScope {
        fleet_id: Some(fleet.id),
        holder: Some(&me.token),
    };
    let (claimed, expired) = ledger::claim_due(&pool, now, 10, Duration::seconds(11), scope)
        .await
        .unwrap();
    assert_eq!((claimed.len(), expired), (1, 0));
    assert_eq!(
        (claimed[0].fleet.as_str(), claimed[0].kind),
        ("chat", OrderKind::Boot)
    );
    // Once attempted it may have reached the provisioner: the tick's state counts it.
    let s = state::fleet_state(&pool, fleet.id, now, 1_800)
        .await
        .unwrap();
    assert_eq!(s.booting.len(), 2);
    let (again, _) = ledger::claim_due(&pool, now, 10, Duration::seconds(11), scope)
        .await
        .unwrap();
    assert!(again.is_empty(), "held while its delivery is under way");
    ledger::mark_failed(&pool, claimed[0].id, now + Duration::seconds(2), "503")
        .await
        .unwrap();
    let later = now + Duration::seconds(3);
    let (retry, _) = ledger::claim_due(&pool, later, 10, Duration::seconds(11), scope)
        .await
        .unwrap();
    assert_eq!((retry.len(), retry[0].attempts), (1, 1));
    ledger::mark_delivered(&pool, retry[0].id, later)
        .await
        .unwrap();
    let totals = ledger::totals(&pool).await.unwrap();
    assert_eq!(
        (totals.decisions, totals.delivered, totals.pending),
        (1, 1, 0)
    );

    // Operator changes, each audited.
    let actor = Actor::cli();
    for change in [
        OperatorChange::Pause(true),
        OperatorChange::Pin {
            gpus: 3,
            until: Some(now + Duration::hours(1)),
        },
        OperatorChange::Unpin,
        OperatorChange::Planner(prewarm_planner::Settings {
            hold_secs: Some(120),
            ..Default::default()
        }),
    ] {
        assert!(matches!(
            fleets::change(&pool, &fleet, &actor, &change)
                .await
                .unwrap(),
            Changed::Done { .. }
        ));
    }
    let event = FleetEvent {
        id: 0,
        label: "launch".into(),
        starts_local: "2026-12-24T00:00:00".parse().unwrap(),
        ends_local: "2026-12-25T00:00:00".parse().unwrap(),
        multiply: Some(2.0),
        pin_rps: None,
    };
    let Changed::Done {
        event_id: Some(event_id),
    } = fleets::change(&pool, &fleet, &actor, &OperatorChange::AddEvent(event))
        .await
        .unwrap()
    else {
        panic!("the event was not added")
    };
    assert_eq!(fleets::events(&pool, fleet.id).await.unwrap().len(), 1);
    let removed = OperatorChange::RemoveEvent(event_id);
    assert!(matches!(
        fleets::change(&pool, &fleet, &actor, &removed)
            .await
            .unwrap(),
        Changed::Done { .. }
    ));
    assert_eq!(
        fleets::change(&pool, &fleet, &actor, &removed)
            .await
            .unwrap(),
        Changed::NothingMatched
    );
    let fleet = fleets::fleet_by_id(&pool, fleet.id).await.unwrap().unwrap();
    assert!(fleet.paused);
    assert_eq!(fleet.planner_settings().hold_secs, Some(120));
    let log = crate::audit::list(&pool, Some(fleet.id), 20).await.unwrap();
    assert_eq!(log.len(), 6, "four changes and an event added and removed");
    fleets::set_refit_note(&pool, fleet.id, now, Some("forecast 1"))
        .await
        .unwrap();
    leases::release_all(&pool, &me).await.unwrap();
}

#[sqlx::test(migrator = "crate::MIGRATOR")]
async fn a_time_zone_the_build_does_not_know_is_an_error_when_read(pool: PgPool) {
    let fleet = crate::create_fleet(&pool, &FleetSpec::named("chat"))
        .await
        .unwrap();
    sqlx::query("UPDATE fleets SET time_zone = 'Mars/Olympus' WHERE id = $1")
        .bind(fleet.id)
        .execute(&pool)
        .await
        .unwrap();
    let e = fleets::fleet_by_id(&pool, fleet.id).await.unwrap_err();
    assert!(e.to_string().contains("Mars/Olympus"), "{e}");
}

/// A tick's load on 2 GPUs of a request a second each, 30 s timeout, $3 a GPU-hour.
fn tick_load(demand_rps: f64, paid_gpus: f64) -> crate::dashboard::TickLoad {
    crate::dashboard::TickLoad {
        demand_rps,
        requests_rps: demand_rps,
        gpus_ready: 2,
        capacity: prewarm_planner::Capacity::requests(1.0),
        timeout_secs: 30,
        paid_gpus,
        price_usd_per_gpu_hour: 3.0,
    }
}

#[test]
fn the_queue_estimate_carries_a_backlog_and_loses_what_would_wait_past_the_timeout() {
    use crate::dashboard::queue_step;
    let load = |demand_rps: f64| tick_load(demand_rps, 2.0);
    // Under capacity: nothing queues.
    assert_eq!(queue_step(0.0, 60.0, &load(1.5)), (0.0, 0.0));
    // 3 rps on 2: 60 requests queue, 2 GPUs clear 60 in 30 s, so none is lost yet.
    assert_eq!(queue_step(0.0, 60.0, &load(3.0)), (60.0, 0.0));
    // Another minute: 120 queued, 60 of them would wait past 30 s.
    assert_eq!(queue_step(60.0, 60.0, &load(3.0)), (60.0, 60.0));
    // The backlog drains when demand falls.
    assert_eq!(queue_step(60.0, 60.0, &load(0.5)), (0.0, 0.0));
}

#[sqlx::test(migrator = "crate::MIGRATOR")]
async fn each_tick_adds_its_interval_to_the_hourly_tally_split_at_the_hour(pool: PgPool) {
    use crate::dashboard;
    let fleet = crate::create_fleet(&pool, &FleetSpec::named("chat"))
        .await
        .unwrap();
    let at = |s: &str| s.parse::<chrono::DateTime<Utc>>().unwrap();
    let load = tick_load(3.0, 4.0);
    // The first tick only starts the count; the second adds 10:58 to 11:01, split at 11:00.
    let first = dashboard::tally_tick(&pool, fleet.id, at("2026-03-02T10:58:00Z"), &load, None)
        .await
        .unwrap();
    let second = dashboard::tally_tick(&pool, fleet.id, at("2026-03-02T11:01:00Z"), &load, first)
        .await
        .unwrap();
    assert_eq!(second.unwrap().backlog, 60.0);
    // The same instant again adds nothing (a second replica's late tick), and neither does a
    // replica that remembers a state the database has moved past: it counts from the stored one.
    for known in [None, first] {
        let again =
            dashboard::tally_tick(&pool, fleet.id, at("2026-03-02T11:01:00Z"), &load, known)
                .await
                .unwrap();
        assert_eq!(again, second);
    }
    let hours = dashboard::hours_since(
        &pool,
        fleet.id,
        at("2026-03-02T10:00:00Z"),
        at("2026-03-02T12:00:00Z"),
    )
    .await
    .unwrap();
    assert_eq!(hours.len(), 2, "{hours:?}");
    let (h10, h11) = (hours[0], hours[1]);
    assert_eq!(h10.0, at("2026-03-02T10:00:00Z"));
    assert_eq!((h10.1, h11.1), (360.0, 180.0), "3 rps for 2 and 1 minutes");
    // 120 s at 1 rps over capacity: 120 queued, 60 over the timeout's worth; then 60 more
    // queue and 60 more are lost.
    assert_eq!((h10.2, h11.2), (60.0, 60.0));
    // 4 GPUs at $3 an hour: $0.40 for 2 minutes, $0.20 for 1.
    assert!(
        (h10.3 - 0.4).abs() < 1e-9 && (h11.3 - 0.2).abs() < 1e-9,
        "{hours:?}"
    );
    // A tick after an hour's silence counts at most five minutes.
    dashboard::tally_tick(&pool, fleet.id, at("2026-03-02T12:01:00Z"), &load, second)
        .await
        .unwrap();
    let row = dashboard::fleets(&pool, Some(fleet.id), at("2026-03-02T12:01:00Z"))
        .await
        .unwrap();
    assert_eq!(row[0].requests_24h, 360.0 + 180.0 + 900.0);
    assert!(row[0].timed_out_24h > 120.0);
    assert_eq!(row[0].requests_7d, row[0].requests_24h);
    // Today (UTC fleet): every hour since midnight.
    assert!(
        (row[0].cost_today_usd - (0.6 + 1.0)).abs() < 1e-9,
        "{row:?}"
    );
    assert_eq!(
        dashboard::prune_hours(&pool, fleet.id, at("2026-03-02T11:00:00Z"))
            .await
            .unwrap(),
        1
    );
}

/// Many fleets' decisions written in one statement are what each fleet's own statement would
/// write: under a held lease, its decision and orders (in the plan's order, on its own decision)
/// and its superseded orders cancelled; without the lease, nothing; a fleet decided twice, in
/// order.
#[sqlx::test(migrator = "crate::MIGRATOR")]
async fn a_batch_of_decisions_is_written_as_each_fleet_s_own_would_be(pool: PgPool) {
    let mut fleets = Vec::new();
    for name in ["a", "b", "c", "d"] {
        fleets.push(
            crate::create_fleet(&pool, &FleetSpec::named(name))
                .await
                .unwrap()
                .id,
        );
    }
    let me = Holder::new("replica-a");
    let round = leases::round(&pool, &me, 10, None).await.unwrap();
    assert_eq!(round.held.len(), 4);
    let now = Utc::now();
    let meta = acting_for(&me);
    // Earlier plans' orders, never sent: a newer plan supersedes them.
    for fleet in &fleets[..2] {
        ledger::record(&pool, *fleet, now, &FleetState::default(), &boot(1), &meta)
            .await
            .unwrap()
            .unwrap();
    }
    let two = Decision {
        orders: vec![Order::Terminate(1), Order::Boot(5)],
        ..boot(5)
    };
    let (b2, b3, b9, b4) = (boot(2), boot(3), boot(9), boot(4));
    let state = FleetState::default();
    let recorded_only = Meta {
        write_orders: false,
        ..meta
    };
    let unfenced = Meta {
        fence: None,
        ..meta
    };
    let stranger = Meta {
        fence: Some(uuid::Uuid::new_v4()),
        ..meta
    };
    let batch: Vec<ledger::ToRecord> = [
        (0, &b2, meta),
        (1, &b3, recorded_only),
        (2, &two, unfenced),
        (3, &b9, stranger),
        (0, &b4, meta),
    ]
    .into_iter()
    .map(|(k, decision, meta)| ledger::ToRecord {
        fleet_id: fleets[k],
        now,
        state: &state,
        decision,
        meta,
    })
    .collect();
    let ids = ledger::record_many(&pool, &batch).await.unwrap();
    assert_eq!(
        ids.iter().map(Option::is_some).collect::<Vec<_>>(),
        [true, true, true, false, true]
    );
    let pending = |fleet: i64| {
        let pool = pool.clone();
        async move {
            sqlx::query_as::<_, (i64, String, i32)>(
                "SELECT decision_id, kind, count FROM orders
                 WHERE fleet_id = $1 AND state = 'pending' ORDER BY id",
            )
            .bind(fleet)
            .fetch_all(&pool)
            .await
            .unwrap()
        }
    };
    // a: its first batch decision's boot superseded by its second's.
    assert_eq!(
        pending(fleets[0]).await,
        [(ids[4].unwrap(), "boot".into(), 4)]
    );
    // b: recorded only, its earlier order superseded all the same.
    assert_eq!(pending(fleets[1]).await, []);
    // c: both orders, in the plan's order, on its decision.
    assert_eq!(
        pending(fleets[2]).await,
        [
            (ids[2].unwrap(), "terminate".into(), 1),
            (ids[2].unwrap(), "boot".into(), 5)
        ]
    );
    // d: nothing without its lease.
    assert!(pending(fleets[3]).await.is_empty());
    assert!(ledger::decisions(&pool, fleets[3], 10)
        .await
        .unwrap()
        .is_empty());
    let a = ledger::decisions(&pool, fleets[0], 10).await.unwrap();
    assert_eq!(a.len(), 3, "the earlier plan and two in the batch");
    assert_eq!(ledger::record_many(&pool, &[]).await.unwrap(), []);
}

/// Many fleets' ticks written in one statement add what each fleet's own statement would: a
/// fleet counted from the state this process remembers, one whose stored state moved on (counted
/// from the stored one), a fleet's first tick, and a fleet ticked twice in one batch.
#[sqlx::test(migrator = "crate::MIGRATOR")]
async fn a_batch_of_ticks_tallies_as_each_fleet_s_own_would(pool: PgPool) {
    use crate::dashboard::{self, TallyTick};
    let at = |s: &str| s.parse::<chrono::DateTime<Utc>>().unwrap();
    let load = |demand_rps: f64| tick_load(demand_rps, 4.0);
    let mut ids = Vec::new();
    for name in [
        "alone-a", "alone-b", "alone-c", "batch-a", "batch-b", "batch-c",
    ] {
        ids.push(
            crate::create_fleet(&pool, &FleetSpec::named(name))
                .await
                .unwrap()
                .id,
        );
    }
    let (alone, batch) = ids.split_at(3);
    // Each fleet's ticks: a started count (remembered, then forgotten, then none at all), and
    // the ticks to add.
    let t0 = at("2026-03-02T10:58:00Z");
    let t1 = at("2026-03-02T11:01:00Z");
    let t2 = at("2026-03-02T11:03:00Z");
    let mut remembered = Vec::new();
    for fleets in [alone, batch] {
        let mut known = Vec::new();
        for (k, id) in fleets[..2].iter().enumerate() {
            known.push(
                dashboard::tally_tick(&pool, *id, t0, &load(1.0 + k as f64), None)
                    .await
                    .unwrap(),
            );
        }
        remembered.push(known);
    }
    // Alone: the first fleet from what is remembered, the second from a state the database has
    // moved past (counted from the stored one), the third's first tick; then the first again.
    let stale = Some(dashboard::QueueState {
        at: at("2026-03-02T10:50:00Z"),
        backlog: 7.0,
    });
    let ticks = |fleets: &[i64], known: &[Option<dashboard::QueueState>]| {
        vec![
            TallyTick {
                fleet_id: fleets[0],
                now: t1,
                load: load(3.0),
                known: known[0],
            },
            TallyTick {
                fleet_id: fleets[1],
                now: t1,
                load: load(4.0),
                known: stale,
            },
            TallyTick {
                fleet_id: fleets[2],
                now: t1,
                load: load(5.0),
                known: None,
            },
            TallyTick {
                fleet_id: fleets[0],
                now: t2,
                load: load(2.5),
                known: None,
            },
        ]
    };
    let mut one_by_one = HashMap::new();
    for t in ticks(alone, &remembered[0]) {
        let known = one_by_one.get(&t.fleet_id).copied().unwrap_or(t.known);
        let after = dashboard::tally_tick(&pool, t.fleet_id, t.now, &t.load, known)
            .await
            .unwrap();
        one_by_one.insert(t.fleet_id, after);
    }
    let together = dashboard::tally_ticks(&pool, &ticks(batch, &remembered[1]))
        .await
        .unwrap();
    assert_eq!(together.len(), 3);
    let from = at("2026-03-02T10:00:00Z");
    let to = at("2026-03-02T12:00:00Z");
    for (a, b) in alone.iter().zip(batch) {
        assert_eq!(together[b], one_by_one[a], "fleet {b} against {a}");
        let (ha, hb) = (
            dashboard::hours_since(&pool, *a, from, to).await.unwrap(),
            dashboard::hours_since(&pool, *b, from, to).await.unwrap(),
        );
        assert_eq!(ha, hb, "fleet {b} against {a}");
    }
    // Something was counted: the first fleet's two ticks, 10:58 to 11:03 at 3 then 2.5 rps.
    let hours = dashboard::hours_since(&pool, batch[0], from, to)
        .await
        .unwrap();
    assert_eq!(
        hours.iter().map(|h| h.1).sum::<f64>(),
        3.0 * 180.0 + 2.5 * 120.0
    );
    // An empty batch writes nothing.
    assert!(dashboard::tally_ticks(&pool, &[]).await.unwrap().is_empty());
}

#[test]
fn fleets_are_shared_by_the_replicas_capacities() {
    use leases::fair_share;
    // No limits seen: the even share, rounded up.
    assert_eq!(fair_share(10_000, None, &[None]), 5_000);
    assert_eq!(fair_share(7, None, &[None, None]), 3);
    assert_eq!(fair_share(0, None, &[]), 0);
    // A replica that can plan 3,000 in time holds 3,000; the other takes the rest.
    assert_eq!(fair_share(10_000, Some(3_000), &[None]), 3_000);
    assert_eq!(fair_share(10_000, None, &[Some(3_000)]), 7_000);
    // Capacities above the even share leave it even.
    assert_eq!(fair_share(10_000, Some(8_000), &[Some(9_000)]), 5_000);
    // Both limited, and together short: in proportion, and every fleet still held.
    let a = fair_share(10_000, Some(2_000), &[Some(6_000)]);
    let b = fair_share(10_000, Some(6_000), &[Some(2_000)]);
    assert_eq!((a, b), (2_500, 7_500));
    // A lone replica holds every fleet whatever its capacity: planned late, not orphaned.
    assert_eq!(fair_share(10_000, Some(4_000), &[]), 10_000);
    // Water-filling: 3 replicas, one limited to 100; the others split the rest.
    assert_eq!(fair_share(1_000, None, &[Some(100), None]), 450);
    assert_eq!(fair_share(1_000, Some(100), &[None, None]), 100);
}

/// A database migrated before calibrations had a table of their own: each calibrated live
/// forecast's calibration moves to a row of `calibrations` that the forecast refers to, and a
/// refit reads it back as before.
#[sqlx::test(migrations = false)]
async fn calibrations_stored_in_forecasts_move_to_their_own_table(pool: PgPool) {
    let all = &crate::MIGRATOR.migrations;
    let at = all
        .iter()
        .position(|m| m.description == "calibrations")
        .expect("the calibrations migration");
    let before = sqlx::migrate::Migrator {
        migrations: std::borrow::Cow::Owned(all[..at].to_vec()),
        ignore_missing: false,
        locking: true,
        no_tx: false,
    };
    before.run(&pool).await.unwrap();
    let fleet = crate::create_fleet(&pool, &FleetSpec::named("chat"))
        .await
        .unwrap();
    let calibrated_at = Utc::now() - Duration::minutes(20);
    let calibration = serde_json::json!({"tz": "UTC", "groups": [null]});
    for (kind, calibration) in [("backtest", None), ("live", Some(&calibration))] {
        sqlx::query(
            "INSERT INTO forecasts (fleet_id, made_at, origin, step_secs, kind, model, p50_rps,
                                    quantile, error_floor_rps, calibration, calibrated_at, sized_for)
             VALUES ($1, now(), now(), 300, $2, 'm', '{1.0}', 0.001, 0.1, $3, $4, 'key')",
        )
        .bind(fleet.id)
        .bind(kind)
        .bind(calibration)
        .bind(calibration.map(|_| calibrated_at))
        .execute(&pool)
        .await
        .unwrap();
    }
    crate::MIGRATOR.run(&pool).await.unwrap();
    let moved: Vec<(i64, chrono::DateTime<Utc>, serde_json::Value)> =
        sqlx::query_as("SELECT fleet_id, made_at, calibration FROM calibrations")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(moved.len(), 1);
    assert_eq!(moved[0].0, fleet.id);
    assert_eq!(
        moved[0].1.timestamp_micros(),
        calibrated_at.timestamp_micros()
    );
    assert_eq!(moved[0].2, calibration);
    let kept = crate::forecasts::last_live(&pool, fleet.id)
        .await
        .unwrap()
        .calibration
        .expect("the live forecast's calibration");
    assert_eq!(kept.calibration, calibration);
    assert_eq!(kept.sized_for, "key");
    let uncalibrated: i64 =
        sqlx::query_scalar("SELECT count(*) FROM forecasts WHERE calibration_id IS NULL")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(uncalibrated, 1, "the backtest refers to none");
}
