//! `prewarm demo`: the real service path on a simulated clock.
//!
//! A scratch database, the service (push API, planner ticks, refits, dispatcher, callbacks) and
//! fake-cloud (booting after random delays and calling back) all run here, over loopback HTTP, on
//! one [`ManualClock`]. A trace's history is imported, then its last day is replayed minute by
//! minute: each completed bucket is pushed through the push API, the scheduler's jobs that fire in
//! that minute run, fake-cloud boots and reports instances, and the requests are served by the
//! GPUs fake-cloud has ready. The table is the one `simulate` prints, with the service's row
//! beside the simulator's policies on the same minutes.

use std::{path::PathBuf, sync::Arc, time::Instant};

use anyhow::{ensure, Context};
use chrono::{DateTime, Duration, Utc};
use clap::Args;
use prewarm_core::{format_duration, Trace};
use prewarm_service::{
    clock::{Clock, ManualClock, SharedClock},
    config::{Config, Mode, PlannerDefaults, Redacted, Span},
    fake_cloud::{Behaviour, FakeCloud},
    serve,
    webhook::Secret,
};
use prewarm_sim::{simulate_from, Accounting};

use crate::{
    args::SpanOrZero,
    replay::{Knobs, Replay, ReplayArgs},
};

/// The service's default planner settings, which the simulator's policies run with too.
fn service_knobs() -> Knobs {
    let d = PlannerDefaults::default();
    Knobs {
        slo: d.max_timeout_share,
        quantile: d.quantile,
        utilization: d.target_utilization,
        hold_secs: d.hold.0,
        miss_load: d.miss_load,
        standby_max: None,
    }
}

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Trace in the project's format; without it, the bundled NAB ELB fixture.
    pub trace: Option<PathBuf>,
    /// How much of the trace's end is replayed through the service (the rest is history).
    #[arg(long, default_value = "1d")]
    pub replay: Span,
    /// GPUs the trace's peak minute needs at full load.
    #[arg(long, default_value_t = 20)]
    pub peak_gpus: u32,
    /// Shortest and longest boot at fake-cloud (drawn uniformly, seeded).
    #[arg(long, default_value = "6m")]
    pub boot_min: Span,
    #[arg(long, default_value = "10m")]
    pub boot_max: Span,
    /// A request that waited longer than this is lost.
    #[arg(long, default_value = "2m")]
    pub timeout: Span,
    /// Price of one GPU-hour in US dollars (default: the profile's, or 3.0).
    #[arg(long)]
    pub price: Option<f64>,
    /// Prompt tokens one GPU prefills per second (with --decode-tps): a token trace's fleet
    /// plans in tokens with these rates.
    #[arg(long, requires = "decode_tps", conflicts_with = "gpu_profile")]
    pub prefill_tps: Option<f64>,
    /// Output tokens one GPU decodes per second (with --prefill-tps).
    #[arg(long, requires = "prefill_tps", conflicts_with = "gpu_profile")]
    pub decode_tps: Option<f64>,
    /// A GPU profile (a profiles file, FILE:NAME, or a bundled profile's name) for a token
    /// trace's fleet.
    #[arg(long)]
    pub gpu_profile: Option<String>,
    /// The fleet's IANA time zone.
    #[arg(long, default_value = "UTC", env = "PREWARM_TZ")]
    pub tz: String,
    /// Server holding the scratch database (a database `prewarm_demo_...` is made and dropped).
    #[arg(long, env = "PREWARM_DATABASE__URL")]
    pub database_url: String,
    /// Keep the scratch database afterwards (its name is printed).
    #[arg(long)]
    pub keep: bool,
    /// After the replay, keep the service answering, its clock stopped at the replay's end: the
    /// dashboard at its address shows the replayed day (a read and operate token is printed).
    /// Ctrl-C or SIGTERM stops it.
    #[arg(long)]
    pub stay: bool,
    /// Port the service listens on, on 127.0.0.1 (default: a free one).
    #[arg(long)]
    pub port: Option<u16>,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

pub(crate) fn run(args: &DemoArgs) -> anyhow::Result<()> {
    let replay_secs = args.replay.0;
    let (trace, _) = crate::output::load_trace(args.trace.as_deref())?;
    let span = trace.requests.len() as i64 * trace.step_secs;
    ensure!(
        span - replay_secs >= 3 * 86_400,
        "the trace holds {:.1} days; --replay {} leaves less than 3 days of history to forecast from",
        span as f64 / 86_400.0,
        args.replay
    );
    // Start the service 20 minutes before the scored part, so the first boots have landed.
    let lead_in = 1_200;
    let warmup = span - replay_secs;
    let replay = Replay::load(&ReplayArgs {
        trace: args.trace.clone(),
        gpu_rps: None,
        prefill_tps: args.prefill_tps,
        decode_tps: args.decode_tps,
        gpu_profile: args.gpu_profile.clone(),
        peak_gpus: args.peak_gpus,
        boot: args.boot_min,
        boot_max: Some(args.boot_max),
        seed: 1,
        timeout: args.timeout,
        price: args.price,
        tz: Some(args.tz.clone()),
        warmup: Some(SpanOrZero(warmup)),
        refit: Span(900),
        hpa_target: prewarm_sim::policies::Hpa::DEFAULT_TARGET,
        hpa_scale_in: Span(prewarm_sim::policies::Hpa::DEFAULT_SCALE_IN_SECS),
    })?;
    let boot = (args.boot_min.0, args.boot_max.0);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(crate::database::scratch_database(
        &args.database_url,
        "prewarm_demo",
        args.keep,
        |name, url| async move {
            println!("scratch database {name}");
            drive(args, &replay, &trace, boot, lead_in, &url).await
        },
    ))
}

async fn drive(
    args: &DemoArgs,
    replay: &Replay,
    trace: &Trace,
    boot: (i64, i64),
    lead_in: i64,
    url: &str,
) -> anyhow::Result<()> {
    let step = replay.step_secs;
    let scored_from = replay.warmup_steps();
    let first = scored_from.saturating_sub((lead_in / step) as usize);
    let t0 = replay.trace.start + Duration::seconds(step * first as i64);
    let clock = ManualClock::new(t0);
    let shared: SharedClock = Arc::new(clock.clone());
    let secret = Secret::generate();
    let service_port = match args.port {
        Some(p) => p,
        None => free_port()?,
    };
    let cloud = FakeCloud::with(
        secret.clone(),
        shared.clone(),
        Behaviour {
            boot_secs: boot,
            callback_url: Some(format!("http://127.0.0.1:{service_port}")),
            seed: 1,
            ..Behaviour::default()
        },
    );
    let cloud_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let cloud_addr = cloud_listener.local_addr()?;
    let router = cloud.router();
    tokio::spawn(async move {
        let _ = axum::serve(cloud_listener, router).await;
    });

    let mut config = Config::default();
    config.database.url = Redacted(url.to_string());
    config.http.listen = format!("127.0.0.1:{service_port}");
    config.provisioner.url = format!("http://{cloud_addr}/orders");
    config.provisioner.secret = Redacted(secret.encoded());
    config.service.mode = Mode::Act;
    config.service.replica_id = "demo".into();
    // Leases are on the wall clock: renewing every ten simulated minutes keeps them alive.
    config.schedule.leases = "0 */10 * * * *".into();
    config.schedule.dispatch = "30 * * * * *".into();
    config.planner.boot_lead = Span(boot.1);
    // The simulator plans with the longest boot as its lead; so does the service here (learning
    // the lead from callbacks is tested elsewhere), so that both decide on the same inputs.
    config.planner.min_boots_for_lead = 1_000;
    config.validate().map_err(anyhow::Error::msg)?;
    let jobs = serve::parsed_jobs(&config).map_err(anyhow::Error::msg)?;
    let running = serve::start(config, shared.clone(), false).await?;
    let service = running.service.clone();
    let pool = service.pool.clone();

    let mut spec = prewarm_store::FleetSpec::named("demo");
    spec.time_zone = args.tz.clone();
    match replay.capacity {
        prewarm_planner::Capacity::Requests { gpu_rps } => spec.gpu_rps = gpu_rps,
        prewarm_planner::Capacity::Tokens(rates) => {
            // A token fleet plans with a stored profile: the replay's rates, under its name.
            let profile = prewarm_planner::GpuProfile {
                name: replay
                    .profile
                    .as_ref()
                    .map_or("demo".into(), |p| p.name.clone()),
                prefill_tps: rates.prefill_tps,
                decode_tps: rates.decode_tps,
                price_usd_per_gpu_hour: Some(replay.sim.price_usd_per_gpu_hour),
                gpu_type: String::new(),
                model: String::new(),
                source: replay.capacity_note.chars().take(400).collect(),
            };
            prewarm_store::profiles::upsert(
                &pool,
                std::slice::from_ref(&profile),
                &prewarm_store::Actor::cli(),
            )
            .await?;
            spec.gpu_profile = Some(profile.name);
        }
    }
    spec.price_usd_per_gpu_hour = replay.sim.price_usd_per_gpu_hour;
    spec.max_gpus = prewarm_planner::settings::limits::MAX_GPUS as i32;
    let fleet = prewarm_store::create_fleet(&pool, &spec).await?;
    let (_, token) = prewarm_store::create_token(
        &pool,
        Some("demo"),
        "demo",
        &[prewarm_store::Scope::Push],
        &prewarm_store::Actor::cli(),
    )
    .await?;

    // History: every trace bucket that ends before the service starts.
    let buckets_before = ((t0 - trace.start).num_seconds() / trace.step_secs) as usize;
    let mut history = trace.clone();
    history.requests.truncate(buckets_before);
    history.lines.truncate(buckets_before);
    // Token columns go with the history (a token fleet forecasts its work from them).
    history
        .extra
        .retain(|(name, _)| name == "tokens_in" || name == "tokens_out");
    for (_, column) in &mut history.extra {
        column.truncate(buckets_before);
    }
    prewarm_store::import_trace(&pool, &fleet, &history, chrono::Utc::now()).await?;
    let days = |secs: i64| format!("{:.1} days", secs as f64 / 86_400.0);
    println!(
        "imported {} of history; replaying {} from {} through the service (a GPU does {}, boots {} to {})",
        days(buckets_before as i64 * trace.step_secs),
        days(replay.requests.len() as i64 * step - (t0 - replay.trace.start).num_seconds()),
        t0,
        replay.capacity.describe(),
        format_duration(boot.0),
        format_duration(boot.1),
    );
    println!(
        "scored from {} (the first 20 minutes let the first boots land)",
        t0 + Duration::seconds(lead_in)
    );
    service.lease_round().await?;
    let started = Instant::now();
    let refit = service.refit_fleet(fleet.id).await?;
    println!(
        "first refit: calibrated {} ({} backtest fits bootstrapped the band), {:.0} ms",
        refit.calibrated,
        refit.bootstrapped,
        started.elapsed().as_secs_f64() * 1e3
    );

    let client = reqwest::Client::new();
    let push_url = format!("http://127.0.0.1:{service_port}/v1/fleets/demo/samples");
    let mut accounting = Accounting::new(step, &replay.sim);
    let mut applied_before = 0usize;
    let bar = indicatif::ProgressBar::new((replay.requests.len() - first) as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} simulated minutes ({eta})")
            .expect("template"),
    );
    // From where the imported history ends: the minutes of a bucket cut by the start are pushed.
    let mut next_step = buckets_before * (trace.step_secs / step).max(1) as usize;
    let mut prev: DateTime<Utc> = t0 - Duration::seconds(step);
    for i in first..replay.requests.len() {
        let now = replay.trace.start + Duration::seconds(step * i as i64);
        clock.set(now);
        cloud.process().await;
        // Push the minute that has just ended, as a fleet pushing 1-minute samples does (the
        // replay's minutes: a trace's coarser buckets spread evenly, as the simulator sees them).
        while next_step < i {
            let v = replay.requests[next_step];
            if v.is_finite() {
                let mut sample = serde_json::json!({
                    "timestamp": replay.trace.start + Duration::seconds(step * next_step as i64),
                    "requests": v,
                    "bucket_secs": step,
                });
                if let Some((tin, tout)) = &replay.tokens {
                    sample["tokens_in"] = serde_json::json!(tin[next_step]);
                    sample["tokens_out"] = serde_json::json!(tout[next_step]);
                }
                let body = serde_json::json!({ "samples": [sample] });
                let r = client
                    .post(&push_url)
                    .bearer_auth(&token)
                    .json(&body)
                    .send()
                    .await
                    .context("push API")?;
                ensure!(r.status().is_success(), "push API answered {}", r.status());
            }
            next_step += 1;
        }
        serve::run_due(&service, &jobs, prev, now).await;
        prev = now;
        let counts = cloud.counts("demo");
        let applied: Vec<_> = cloud.seen().applied.clone();
        let booted: u32 = applied[applied_before..]
            .iter()
            .filter(|o| o.kind == prewarm_store::OrderKind::Boot)
            .map(|o| o.count)
            .sum();
        applied_before = applied.len();
        accounting.step(
            i,
            replay.work[i],
            replay.requests[i],
            counts.ready,
            counts.ready + counts.booting,
            booted,
            false,
        );
        bar.inc(1);
    }
    bar.finish_and_clear();
    let wall = started.elapsed().as_secs_f64();
    let service_row = accounting.summary("service");

    // The simulator's policies on the same trace and the same scored minutes. Its predictive
    // policy starts where the service did, with no GPUs and the same history (bootstrapping its
    // calibration as the service's first refit does), and refits when the service does.
    let mut rows = vec![service_row];
    let start_secs = (t0 - replay.trace.start).num_seconds();
    for name in ["predictive", "reactive", "clairvoyant"] {
        let mut policy: Box<dyn prewarm_sim::Policy + Send> = match name {
            "predictive" => {
                let mut p = replay.predictive(&service_knobs(), None);
                p.forecast.min_history_secs = start_secs;
                p.initial = 0;
                Box::new(p)
            }
            "reactive" => Box::new(prewarm_sim::policies::Reactive {
                cfg: replay.planner(&service_knobs()),
                step_secs: step,
                initial: 1,
            }),
            _ => Box::new(prewarm_sim::policies::Clairvoyant {
                future: replay.work.clone(),
                step_secs: step,
                capacity: replay.capacity,
                boot_secs: replay.sim.boot.max_secs(),
            }),
        };
        let from = if name == "predictive" { first } else { 0 };
        let (_, s) = simulate_from(
            from,
            replay.trace.start,
            step,
            replay.traffic(),
            policy.as_mut(),
            &replay.sim,
        );
        rows.push(s);
    }
    let slo = service_knobs().slo;
    let rows = crate::simulate::with_ratio(rows, replay.scored_days(), slo);
    print!(
        "{}",
        crate::simulate::table(&rows, replay.lower_bound_gpu_hours(), slo)
    );
    let row = |name: &str| rows.iter().find(|r| r.sim.policy == name).map(|r| &r.sim);
    if let (Some(service), Some(simulator)) = (row("service"), row("predictive")) {
        println!(
            "service against the simulator's predictive row on the same minutes: {:.3} x its GPU-hours ({:.1} against {:.1}), timed out {:.3}% against {:.3}%",
            if simulator.gpu_hours > 0.0 { service.gpu_hours / simulator.gpu_hours } else { f64::NAN },
            service.gpu_hours,
            simulator.gpu_hours,
            100.0 * service.timed_out_share,
            100.0 * simulator.timed_out_share,
        );
    }
    let boots =
        prewarm_service::callbacks::boot_stats(&pool, fleet.id, t0 - Duration::days(1)).await?;
    let totals = prewarm_store::ledger::totals(&pool).await?;
    let (decisions, delivered, pending) = (totals.decisions, totals.delivered, totals.pending);
    let cloud_state = cloud.seen();
    println!(
        "service: {decisions} decisions, {delivered} orders delivered ({pending} pending), {} deliveries received by fake-cloud, {} callbacks; boots p50 {:.0} s, p95 {:.0} s over {}; {:.1} s wall for {} simulated minutes",
        cloud_state.deliveries,
        cloud_state.callbacks_sent,
        boots.p50_secs.unwrap_or(0.0),
        boots.p95_secs.unwrap_or(0.0),
        boots.count,
        wall,
        replay.requests.len() - first,
    );
    if args.stay {
        let (_, token) = prewarm_store::create_token(
            &pool,
            None,
            "demo dashboard",
            &[prewarm_store::Scope::Read, prewarm_store::Scope::Operate],
            &prewarm_store::Actor::cli(),
        )
        .await?;
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("cannot watch for SIGTERM")?;
        println!(
            "dashboard: http://{}/ (paste this token once: {token}); the clock stays at {}; Ctrl-C or SIGTERM stops",
            running.addr,
            clock.now()
        );
        // Either signal ends the demo the same way: the service stops and the database is
        // dropped (unless --keep).
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    running.stop().await;
    pool.close().await;
    Ok(())
}
