//! End-to-end tests of the `prewarm` command line, run as a user would run it.

use std::{path::Path, process::Command};

fn prewarm(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_prewarm"))
        .args(args)
        .output()
        .expect("the prewarm binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn backtest_runs_on_the_bundled_fixture_and_writes_its_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report");
    let (ok, stdout, stderr) = prewarm(&[
        "backtest",
        "--models",
        "mstl,snaive-day,naive",
        "--origins",
        "4",
        "--calibration-origins",
        "4",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("nab-elb-5m.csv (bundled)"), "{stdout}");
    assert!(stdout.contains("4040 buckets of 5m"), "{stdout}");
    for model in ["mstl ", "snaive-day ", "naive "] {
        let row = stdout
            .lines()
            .find(|l| l.starts_with(model))
            .unwrap_or_else(|| panic!("no {model} row in {stdout}"));
        assert!(row.contains(" 4 "), "4 origins scored: {row}");
    }
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["origins"], 4);
    assert_eq!(summary["models"].as_array().unwrap().len(), 3);
    let mase = summary["models"][0]["mase"].as_f64().unwrap();
    assert!(mase > 0.0 && mase < 3.0, "mase {mase}");
    let forecasts = std::fs::read_to_string(out.join("forecasts.csv")).unwrap();
    // Header plus 3 models x 4 origins x 12 steps.
    assert_eq!(forecasts.lines().count(), 1 + 3 * 4 * 12);
    assert!(forecasts.starts_with("origin,model,fitted,timestamp,step,actual,p50,upper"));
    let svg = std::fs::read_to_string(out.join("plot.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("upper band"));
    // report.html draws demand against the median and the band in a real browser, offline.
    if let Some(dom) = browser_dom(&out.join("report.html")) {
        assert_eq!(dom.matches(r#"class="series""#).count(), 3, "{dom}");
        assert!(dom.contains("<td>mstl</td>"), "{dom}");
        assert!(
            dom.contains(r#"class="warmup""#),
            "history before the first forecast"
        );
        // The median and the band start where the first forecast does, not as a zero line
        // over the history before it (the actual demand starts at the left edge, x = 55).
        let starts: Vec<f64> = dom
            .split(r#"d="M"#)
            .skip(1)
            .map(|p| p.split(',').next().unwrap().parse().unwrap())
            .collect();
        assert_eq!(starts.len(), 3, "{dom}");
        assert!(starts[0] > 60.0 && starts[1] > 60.0, "{starts:?}");
        assert!((starts[2] - 55.0).abs() < 1.0, "{starts:?}");
        // The settings as text, not JSON.
        let settings = settings_table(&dom);
        assert!(
            settings.contains("<td>horizon</td>") && !settings.contains('{'),
            "{settings}"
        );
    }
    // 4 origins are too few days to check the demand distribution's calibration, and it says so.
    assert!(stdout.contains("too few scored days"), "{stdout}");
}

#[test]
fn backtest_reports_the_demand_distributions_calibration_per_phase() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report");
    for trace in ["nab-elb-5m.csv", "servegen-m-small-10m.csv"] {
        let path = format!("{}/../../fixtures/{trace}", env!("CARGO_MANIFEST_DIR"));
        let (ok, stdout, stderr) = prewarm(&[
            "backtest",
            &path,
            "--models",
            "mstl",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(ok, "{stderr}");
        assert!(
            stdout.contains("calibration of the demand distribution (mstl"),
            "{stdout}"
        );
        let summary: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap())
                .unwrap();
        let c = &summary["calibration"];
        assert!(c["minutes"].as_u64().unwrap() >= 2_000, "{c:#}");
        // Checked on days the calibration never saw, each quantile covers within a few points of
        // its nominal share, overall and in every ten minutes of the hour.
        for level in c["levels"].as_array().unwrap() {
            let nominal = level["level"].as_f64().unwrap();
            let covered = level["covered"].as_f64().unwrap();
            assert!((covered - nominal).abs() <= 0.08, "{trace}: {level}");
        }
        for (_, n, covered) in c["by_minute"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| (g[0].as_u64().unwrap(), g[1].as_u64().unwrap(), g[2].clone()))
        {
            assert!(n >= 300);
            // p90 (the third level reported) in each ten minutes of the hour.
            let p90 = covered[2].as_f64().unwrap();
            assert!((p90 - 0.9).abs() <= 0.06, "{trace}: {covered}");
        }
        assert_eq!(c["by_hour"].as_array().unwrap().len(), 24);
    }
    // The calibration notebook runs on what the last backtest wrote.
    run_notebooks(
        &["calibration.ipynb"],
        &[("PREWARM_BACKTEST_DIR", out.to_str().unwrap())],
    );
}

#[test]
fn import_converts_each_public_format() {
    let dir = tempfile::tempdir().unwrap();
    // NAB: naive UTC timestamps, one bucket missing (00:10).
    let nab = write(
        dir.path(),
        "nab.csv",
        "timestamp,value\n2014-04-10 00:00:00,94.0\n2014-04-10 00:05:00,56.0\n2014-04-10 00:15:00,3.0\n",
    );
    let out = dir.path().join("nab-out.csv");
    let (ok, _, stderr) = prewarm(&[
        "trace",
        "import",
        "--format",
        "nab",
        &nab,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "timestamp,requests\n2014-04-10T00:00:00Z,94\n2014-04-10T00:05:00Z,56\n2014-04-10T00:10:00Z,\n2014-04-10T00:15:00Z,3\n"
    );

    // ServeGen: two clients, rates summed and turned into counts per 10-minute window.
    let sg = dir.path().join("sg");
    std::fs::create_dir(&sg).unwrap();
    write(
        &sg,
        "chunk-0-trace.csv",
        "0,0.5,1,Gamma,1,1\n600,1.0,1,Gamma,1,1\n",
    );
    write(
        &sg,
        "chunk-1-trace.csv",
        "0,0,0,,0,0\n600,0.25,1,Exponential,1,1\n",
    );
    let out = dir.path().join("sg-out.csv");
    let (ok, _, stderr) = prewarm(&[
        "trace",
        "import",
        "--format",
        "servegen",
        sg.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--start",
        "2025-01-06T00:00:00Z",
    ]);
    assert!(ok, "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "timestamp,requests\n2025-01-06T00:00:00Z,300\n2025-01-06T00:10:00Z,750\n"
    );

    // ServeGen with token distributions: a client's tokens are its requests times the mean
    // lengths of its 6-hour window; a client without a distributions file is left out, and said.
    write(
        &sg,
        "chunk-0-dataset.json",
        r#"{"0": {"input_tokens": "{100: 0.5, 300: 0.5}", "output_tokens": "{20: 1.0}"}, "21600": {"input_tokens": "{}", "output_tokens": "{}"}}"#,
    );
    let out = dir.path().join("sg-tokens.csv");
    let (ok, _, stderr) = prewarm(&[
        "trace",
        "import",
        "--format",
        "servegen",
        sg.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("chunk-1-trace.csv") && stderr.contains("left out"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "timestamp,requests,tokens_in,tokens_out\n2025-01-06T00:00:00Z,300,60000,6000\n2025-01-06T00:10:00Z,600,120000,12000\n"
    );
    // --no-tokens: every client's requests, as before.
    let (ok, _, stderr) = prewarm(&[
        "trace",
        "import",
        "--format",
        "servegen",
        "--no-tokens",
        sg.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    assert!(std::fs::read_to_string(&out)
        .unwrap()
        .starts_with("timestamp,requests\n2025-01-06T00:00:00Z,300\n"));
    // A distributions file that is not one: the file and the window named.
    write(
        &sg,
        "chunk-1-dataset.json",
        r#"{"0": {"input_tokens": "{ten: 1}", "output_tokens": "{1: 1}"}}"#,
    );
    let (ok, _, stderr) = prewarm(&[
        "trace",
        "import",
        "--format",
        "servegen",
        sg.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(
        stderr.contains("chunk-1-dataset.json") && stderr.contains("window 0"),
        "{stderr}"
    );

    // Azure: requests counted and tokens summed per 10 s; an empty bucket is a real zero.
    let az = write(
        dir.path(),
        "az.csv",
        "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,374,44\n2023-11-16 18:15:49.1,100,10\n2023-11-16 18:16:11.0,5,1\n",
    );
    let out = dir.path().join("az-out.csv");
    let (ok, _, stderr) = prewarm(&[
        "trace",
        "import",
        "--format",
        "azure",
        &az,
        "--bucket",
        "10s",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "timestamp,requests,tokens_in,tokens_out\n2023-11-16T18:15:40Z,2,474,54\n2023-11-16T18:15:50Z,0,0,0\n2023-11-16T18:16:00Z,0,0,0\n2023-11-16T18:16:10Z,1,5,1\n"
    );
}

#[test]
fn bad_input_gets_a_clear_error_and_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write(
        dir.path(),
        "bad.csv",
        "timestamp,requests\n2026-01-01T00:00:00Z,5\n2026-01-01T00:05:00Z,-3\n",
    );
    let out = dir.path().join("report");
    let (ok, _, stderr) = prewarm(&["backtest", &bad, "--out", out.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        stderr.contains("bad.csv: line 3") && stderr.contains("negative"),
        "{stderr}"
    );
    assert!(!out.exists(), "nothing is written for a bad trace");

    let (ok, _, stderr) = prewarm(&["backtest", "--tz", "Mars/Olympus_Mons"]);
    assert!(!ok && stderr.contains("IANA time zone"), "{stderr}");
    let (ok, _, stderr) = prewarm(&["backtest", "--models", "mstl,prophet"]);
    assert!(
        !ok && stderr.contains("unknown model `prophet`"),
        "{stderr}"
    );
    let (ok, _, stderr) = prewarm(&["backtest", "--horizon", "7m"]);
    assert!(!ok && stderr.contains("not a whole number"), "{stderr}");

    let short = write(
        dir.path(),
        "short.csv",
        "timestamp,requests\n2026-01-01T00:00:00Z,5\n2026-01-01T00:05:00Z,3\n2026-01-01T00:10:00Z,3\n",
    );
    let (ok, _, stderr) = prewarm(&[
        "backtest",
        &short,
        "--models",
        "mstl",
        "--horizon",
        "5m",
        "--every",
        "5m",
        "--origins",
        "1",
    ]);
    assert!(
        !ok && stderr.contains("needs at least 12 points"),
        "{stderr}"
    );

    let (ok, _, stderr) = prewarm(&[
        "trace",
        "import",
        "--format",
        "nab",
        &bad,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!ok && stderr.contains("no column `value`"), "{stderr}");
}

#[test]
fn simulate_compares_every_policy_and_writes_decisions() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sim");
    let (ok, stdout, stderr) = prewarm(&["simulate", "--standby", "--out", out.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    let row = |policy: &str| -> Vec<String> {
        stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(policy) || l.starts_with(policy))
            .unwrap_or_else(|| panic!("no {policy} row in {stdout}"))
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    let gpu_hours = |policy: &str| row(policy)[1].parse::<f64>().unwrap();
    // Nothing real beats the clairvoyant, and it needs more than the boot-free lower bound.
    for policy in ["predictive", "reactive", "static"] {
        assert!(gpu_hours(policy) > gpu_hours("clairvoyant"), "{stdout}");
    }
    let lower_bound = row("lower bound")[2].parse::<f64>().unwrap();
    assert!(gpu_hours("clairvoyant") > lower_bound, "{stdout}");
    assert_eq!(row("clairvoyant")[4], "0.000%");
    assert_eq!(
        row("static")[4],
        "0.000%",
        "a fleet sized for the peak loses nothing"
    );
    // The planner is cheaper than the seed's reactive strategy on the same trace.
    assert!(gpu_hours("predictive") < gpu_hours("reactive"), "{stdout}");
    // The HPA rule a user runs today, at its usual 70% target, cannot boot in time for NAB's
    // rises; tuned knowing the trace it meets the SLO, at a price.
    assert_eq!(row("hpa")[5], "MISSED", "{stdout}");
    assert_eq!(row("tuned-hpa")[5], "met", "{stdout}");
    assert!(stdout.contains("tuned-hpa: target "), "{stdout}");
    // The hindsight schedule keeps within its target (0.1% by default, a little more in the
    // replay, where the queue carries over between hours); on this bursty trace it stays above
    // the clairvoyant.
    assert!(
        gpu_hours("hindsight") > gpu_hours("clairvoyant"),
        "{stdout}"
    );
    let hindsight_lost: f64 = row("hindsight")[4].trim_end_matches('%').parse().unwrap();
    assert!(hindsight_lost <= 0.15, "{stdout}");
    // With a standby tier (resume 2 minutes, 1% of the price, 5% of resumes failing) the same
    // planner costs less, standby hours included.
    let cost = |policy: &str| row(policy)[3].parse::<f64>().unwrap();
    assert!(
        row("predictive+standby")[2].parse::<f64>().unwrap() > 0.0,
        "{stdout}"
    );
    assert!(cost("predictive+standby") < cost("predictive"), "{stdout}");

    let decisions = std::fs::read_to_string(out.join("predictive/decisions.csv")).unwrap();
    let mut lines = decisions.lines();
    assert_eq!(
        lines.next().unwrap(),
        "timestamp,gpus_ready,gpus_booting,gpus_billed,boot_orders,terminate_orders,gpus_standby,gpus_resuming,stop_orders,resume_orders,demand_requests,demand_work,served_requests,timed_out_requests,forecast_p50_rps,forecast_upper_rps,reason"
    );
    let tiered = std::fs::read_to_string(out.join("predictive+standby/decisions.csv")).unwrap();
    assert!(tiered.contains("standby tier: resume"), "a resume says so");
    assert_eq!(
        lines.count(),
        4040 * 5,
        "one row per minute of the 5-minute trace"
    );
    assert!(
        decisions.contains("pre-warm: p"),
        "a pre-warm names the quantile of demand it planned on"
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["policies"].as_array().unwrap().len(), 8);
    assert_eq!(summary["policies"][5]["cost_vs_clairvoyant"], 1.0);
    let tiered = &summary["policies"][7];
    assert_eq!(tiered["policy"], "predictive+standby");
    let (hours, standby_hours, cost) = (
        tiered["gpu_hours"].as_f64().unwrap(),
        tiered["standby_gpu_hours"].as_f64().unwrap(),
        tiered["cost_usd"].as_f64().unwrap(),
    );
    assert!(
        (cost - 3.0 * (hours + 0.01 * standby_hours)).abs() < 1e-6,
        "the cost adds standby at its price: {tiered}"
    );
    assert_eq!(summary["standby"]["price_share"], 0.01);
    assert!(std::fs::read_to_string(out.join("report.html"))
        .unwrap()
        .contains("predictive+standby"));
    assert!(std::fs::read_to_string(out.join("plot.svg"))
        .unwrap()
        .contains("clairvoyant"));
    // The savings notebook runs on what simulate wrote.
    run_notebooks(
        &["savings.ipynb"],
        &[("PREWARM_SIMULATE_DIR", out.to_str().unwrap())],
    );
}

#[test]
fn a_token_trace_is_planned_in_tokens_and_profiles_are_compared_and_derived() {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    // Five days of the ServeGen token fixture.
    let full =
        std::fs::read_to_string(root.join("fixtures/servegen-m-small-tokens-10m.csv")).unwrap();
    let five_days: String = full
        .lines()
        .take(1 + 5 * 144)
        .map(|l| format!("{l}\n"))
        .collect();
    let trace = write(dir.path(), "tokens.csv", &five_days);
    let profiles = write(
        dir.path(),
        "profiles.toml",
        "[[profile]]\nname = \"small\"\nprefill_tps = 9000\ndecode_tps = 700\nprice_usd_per_gpu_hour = 0.7\n\n[[profile]]\nname = \"large\"\nprefill_tps = 40000\ndecode_tps = 5000\nprice_usd_per_gpu_hour = 4.0\n",
    );
    let (ok, stdout, stderr) = prewarm(&[
        "simulate",
        &trace,
        "--gpu-profile",
        &profiles,
        "--policies",
        "predictive,clairvoyant",
    ]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("tokens: ") && stdout.contains("per request"),
        "{stdout}"
    );
    assert!(stdout.contains("profile `small`"), "{stdout}");
    // The same planner counting requests is replayed beside it, judged on the work.
    assert!(stdout.contains("\nrequests-sized "), "{stdout}");
    assert!(stdout.contains("GPU profiles, each planned"), "{stdout}");
    for name in ["small ", "large "] {
        assert!(
            stdout.lines().any(|l| l.starts_with(name)),
            "{name}: {stdout}"
        );
    }
    assert!(stdout.contains("cheapest within the SLO"), "{stdout}");

    // A profile from two vLLM benchmark runs of different mixes gives back their rates.
    let out = dir.path().join("derived.toml");
    let (ok, stdout, stderr) = prewarm(&[
        "profile",
        "from-vllm",
        root.join("fixtures/vllm-bench-long.json").to_str().unwrap(),
        root.join("fixtures/vllm-bench-short.json")
            .to_str()
            .unwrap(),
        "--name",
        "example-8b",
        "--price",
        "2.5",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("prefill_tps = 9000.0") && stdout.contains("decode_tps = 1800.0"),
        "{stdout}"
    );
    let (ok, stdout, stderr) = prewarm(&["profile", "list", "--file", out.to_str().unwrap()]);
    assert!(ok && stdout.contains("example-8b"), "{stdout}{stderr}");

    // Bad input: each says what is wrong.
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "simulate".into(),
                trace.clone(),
                "--prefill-tps".into(),
                "0".into(),
                "--decode-tps".into(),
                "5".into(),
            ],
            "prefill-tps must be",
        ),
        (
            vec!["simulate".into(), "--gpu-profile".into(), profiles.clone()],
            "no tokens_in and tokens_out columns",
        ),
        (
            vec![
                "profile".into(),
                "from-vllm".into(),
                write(
                    dir.path(),
                    "half.json",
                    r#"{"duration": 12.0, "completed": 10}"#,
                ),
                "--name".into(),
                "x".into(),
            ],
            "`total_input_tokens`, `total_output_tokens`, `mean_ttft_ms`, `mean_tpot_ms`",
        ),
        (
            vec![
                "simulate".into(),
                trace.clone(),
                "--gpu-profile".into(),
                write(
                    dir.path(),
                    "bad.toml",
                    "[[profile]]\nname = \"neg\"\nprefill_tps = 1000\ndecode_tps = -1\n",
                ),
            ],
            "profile `neg`: decode_tps must be",
        ),
        (
            vec![
                "simulate".into(),
                trace.clone(),
                "--gpu-profile".into(),
                "no-such-profile".into(),
            ],
            "neither a profiles file nor a bundled profile",
        ),
    ];
    for (args, says) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, _, stderr) = prewarm(&args);
        assert!(!ok, "{args:?}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

/// Headless Chromium, which `.ci/run` installs; outside CI a machine without it skips the browser
/// half of a test (and says so).
fn chromium() -> Option<&'static str> {
    let path = "/usr/bin/chromium";
    if std::path::Path::new(path).exists() {
        Some(path)
    } else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have Debian's chromium (.ci/run installs it)"
        );
        eprintln!("no {path}: the report is not opened in a browser here");
        None
    }
}

/// The page at `path` as headless Chromium leaves it once its scripts ran (no network: the file
/// only), or `None` where there is no Chromium (never in CI).
fn browser_dom(path: &Path) -> Option<String> {
    let browser = chromium()?;
    let dump = Command::new(browser)
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--dump-dom",
        ])
        .arg(format!("file://{}", path.display()))
        .output()
        .unwrap();
    assert!(
        dump.status.success(),
        "chromium failed on {}",
        path.display()
    );
    Some(String::from_utf8_lossy(&dump.stdout).into_owned())
}

/// Runs notebooks from `notebooks/` top to bottom with `env` (their inputs), as CI does: a cell
/// that fails fails the test. The executed copies go to `target/notebooks/`. Where the notebooks'
/// Python requirements are not installed they are not run (never in CI: `.ci/run` installs them).
/// Whether the notebooks' Python requirements are installed.
fn notebooks_ready() -> bool {
    Command::new("python3")
        .args([
            "-c",
            "import nbclient, nbformat, ipykernel, polars, matplotlib, psycopg",
        ])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn run_notebooks(names: &[&str], env: &[(&str, &str)]) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    if !notebooks_ready() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have the notebooks' requirements (.ci/run installs notebooks/requirements.txt)"
        );
        eprintln!("the notebooks' requirements are not installed: {names:?} not run here");
        return;
    }
    let out = Command::new("python3")
        .arg(root.join("notebooks/run.py"))
        .arg(root.join("target/notebooks"))
        .args(names.iter().map(|n| root.join("notebooks").join(n)))
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_simulate_report_opens_offline_in_a_browser_draws_its_charts_and_shows_names_as_text() {
    // Three days of 5-minute traffic with a daily rush, at a path whose name has markup in it.
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("fleet <b>bold & 'q'.csv");
    let mut csv = String::from("timestamp,requests\n");
    for i in 0..3 * 288 {
        let t = chrono::DateTime::parse_from_rfc3339("2026-03-02T00:00:00Z").unwrap()
            + chrono::Duration::minutes(5 * i);
        let hour = (i % 288) as f64 / 12.0;
        let rate = 300.0 + 900.0 * (-(hour - 14.0).powi(2) / 8.0).exp();
        csv.push_str(&format!("{},{rate:.0}\n", t.to_rfc3339()));
    }
    std::fs::write(&trace, csv).unwrap();
    let out = dir.path().join("out");
    let (ok, stdout, stderr) = prewarm(&[
        "simulate",
        trace.to_str().unwrap(),
        "--policies",
        "reactive,clairvoyant",
        "--tz",
        "America/New_York",
        "--warmup",
        "1d",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{stdout}\n{stderr}");
    let page = std::fs::read_to_string(out.join("report.html")).unwrap();
    // Self-contained: nothing is fetched (the SVG namespace is a name, not a request).
    for outside in [
        "<link",
        " src=",
        "url(",
        "fetch(",
        "XMLHttpRequest",
        "https://",
    ] {
        assert!(
            !page.contains(outside),
            "the report refers outside: {outside}"
        );
    }
    assert!(page.contains("&lt;b&gt;bold &amp;"), "the title is escaped");
    let Some(dom) = browser_dom(&out.join("report.html")) else {
        return;
    };
    // The charts were drawn by the page's script: demand and two policies in the capacity chart,
    // two policies in the timed-out chart, and the warm-up shaded in both.
    assert_eq!(dom.matches(r#"class="series""#).count(), 5, "{dom}");
    assert_eq!(dom.matches(r#"class="warmup""#).count(), 2);
    assert!(dom.contains("<td>clairvoyant</td>"), "the table is filled");
    // The question the page answers: the SLO, met or not, and the saving against the reactive
    // rules; the settings as text, not raw JSON.
    assert!(
        dom.contains("<th>SLO</th>") && dom.contains("<th>saved against reactive</th>"),
        "{dom}"
    );
    assert!(dom.contains("<td>met</td>") || dom.contains("<td>MISSED</td>"));
    let settings = settings_table(&dom);
    assert!(
        settings.contains("requests wait longer than") && !settings.contains('{'),
        "{settings}"
    );
    // Dates on the fleet's wall clock: the trace starts at midnight UTC, 19:00 in New York.
    assert!(dom.contains("2026-03-01 19:00"), "local dates on the axis");
    // Markup in a name is text: no <b> element was made of it.
    // Markup in a name is text: outside the page's scripts (whose data holds the name as JSON)
    // no <b> element was made of it, and the heading shows it escaped.
    let mut rendered = String::new();
    let mut rest = dom.as_str();
    while let Some(open) = rest.find("<script") {
        rendered.push_str(&rest[..open]);
        rest = rest[open..]
            .find("</script>")
            .map_or("", |close| &rest[open + close + 9..]);
    }
    rendered.push_str(rest);
    assert!(!rendered.contains("<b>"), "{rendered}");
    assert!(
        rendered.contains(r#"fleet &lt;b&gt;bold &amp; 'q'.csv</h1>"#),
        "{rendered}"
    );
}

#[test]
fn tune_walks_forward_choosing_on_earlier_days_and_reporting_later_ones() {
    let dir = tempfile::tempdir().unwrap();
    let curve = dir.path().join("curve.csv");
    let (ok, stdout, stderr) = prewarm(&[
        "tune",
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fixtures/servegen-m-small-10m.csv"
        ),
        "--quantiles",
        "auto,0.99",
        "--utilizations",
        "1.0",
        "--miss-loads",
        "none",
        "--standby-maxes",
        "off,all",
        "--slo",
        "0.01",
        "--walk-forward",
        "9d",
        "--out",
        curve.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("walk-forward: choose on"), "{stdout}");
    assert!(
        stdout.contains("cheapest within the SLO (1.000% timed out) on the days chosen on: "),
        "{stdout}"
    );
    assert!(
        stdout.contains("on the later days it was never chosen on: "),
        "{stdout}"
    );
    let csv = std::fs::read_to_string(&curve).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "quantile,hold,utilization,miss_load,standby_max,gpu_hours,timed_out_share,boots_per_day,vs_clairvoyant,later_gpu_hours,later_timed_out_share,later_boots_per_day,later_vs_clairvoyant"
    );
    let rows: Vec<Vec<String>> = lines
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect();
    assert_eq!(rows.len(), 4, "2 quantiles x standby off and on");
    assert_eq!(rows[0][0], "auto", "the SLO-planned default comes first");
    assert_eq!(
        rows.iter().map(|r| r[4].as_str()).collect::<Vec<_>>(),
        ["off", "all", "off", "all"]
    );
    for row in &rows {
        let later: f64 = row[9].parse().unwrap();
        let earlier: f64 = row[5].parse().unwrap();
        assert!(later > 0.0 && earlier > 0.0, "{row:?}");
    }
    // The SLO-planned setting with standby is cheaper than without, standby at its price.
    let hours = |r: &Vec<String>| r[5].parse::<f64>().unwrap();
    assert!(hours(&rows[1]) < hours(&rows[0]), "{rows:?}");

    // A split that leaves nothing to choose on, or nothing to report on, is refused.
    let (ok, _, stderr) = prewarm(&["tune", "--walk-forward", "1d"]);
    assert!(
        !ok && stderr.contains("choosing needs at least a scored day"),
        "{stderr}"
    );
    let (ok, _, stderr) = prewarm(&["tune", "--walk-forward", "30d"]);
    assert!(
        !ok && stderr.contains("leave at least a day to report on"),
        "{stderr}"
    );
    let (ok, _, stderr) = prewarm(&["tune", "--quantiles", "auto,high"]);
    assert!(
        !ok && stderr.contains("--quantiles: `high` is neither `auto` nor a number"),
        "{stderr}"
    );
}

#[test]
fn simulate_rejects_bad_settings_with_a_clear_error() {
    let (ok, _, stderr) = prewarm(&["simulate", "--gpu-rps=0"]);
    assert!(
        !ok && stderr.contains("--gpu-rps must be a positive number"),
        "{stderr}"
    );
    let (ok, _, stderr) = prewarm(&["simulate", "--policies", "predictive,magic"]);
    assert!(
        !ok && stderr.contains("invalid value 'magic' for '--policies")
            && stderr.contains("predictive, reactive, static, clairvoyant, hindsight"),
        "{stderr}"
    );
    let (ok, _, stderr) = prewarm(&["simulate", "--miss-load", "1.5"]);
    assert!(
        !ok && stderr.contains("--miss-load: 1.5 must be above 0 and at most 1"),
        "{stderr}"
    );
    let (ok, _, stderr) = prewarm(&["simulate", "--boot", "10m", "--boot-max", "5m"]);
    assert!(
        !ok && stderr.contains("--boot-max must not be shorter"),
        "{stderr}"
    );
    for slo in ["0", "0.5", "-0.1"] {
        let (ok, _, stderr) = prewarm(&["simulate", &format!("--slo={slo}")]);
        assert!(
            !ok && stderr.contains("must be above 0 and below 0.5"),
            "--slo {slo}: {stderr}"
        );
    }
    for (timeout, says) in [
        ("0s", "`0s` must be a positive duration"),
        ("2h", "queue timeout must be 1 to 3600 seconds"),
    ] {
        let (ok, _, stderr) = prewarm(&["simulate", "--timeout", timeout]);
        assert!(
            !ok && stderr.contains("--timeout") && stderr.contains(says),
            "--timeout {timeout}: {stderr}"
        );
    }
    let (ok, _, stderr) = prewarm(&["simulate", "--warmup", "30d"]);
    assert!(
        !ok && stderr.contains("nothing would be scored"),
        "{stderr}"
    );
}

/// `prewarm` with DATABASE_URL pointing at the test's own database.
fn prewarm_db(url: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_prewarm"))
        .args(args)
        // The test's own database, whatever the caller's environment names.
        .env("PREWARM_DATABASE__URL", url)
        .output()
        .expect("the prewarm binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn url_of(opts: &sqlx::postgres::PgConnectOptions) -> String {
    let base = std::env::var("DATABASE_URL").unwrap();
    let (server, _) = base.rsplit_once('/').unwrap();
    format!("{server}/{}", opts.get_database().unwrap())
}

#[sqlx::test(migrations = false)]
async fn fleets_tokens_and_idempotent_imports_from_the_command_line(
    pool_opts: sqlx::postgres::PgPoolOptions,
    opts: sqlx::postgres::PgConnectOptions,
) {
    let url = url_of(&opts);
    let pool = pool_opts.connect_with(opts).await.unwrap();
    let run = |args: &[&str]| prewarm_db(&url, args);
    let (ok, stdout, stderr) = run(&["migrate"]);
    assert!(ok && stdout.contains("up to date"), "{stderr}");
    let (ok, _, stderr) = run(&[
        "fleet",
        "create",
        "elb",
        "--tz",
        "America/New_York",
        "--gpu-rps",
        "0.1",
    ]);
    assert!(ok, "{stderr}");
    let (ok, _, stderr) = run(&["fleet", "create", "elb"]);
    assert!(!ok && stderr.contains("exists already"), "{stderr}");
    let (ok, token, stderr) = run(&["token", "create", "--fleet", "elb"]);
    assert!(ok && token.trim().starts_with("pw_") && stderr.contains("cannot be shown again"));

    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/nab-elb-5m.csv");
    for _ in 0..2 {
        let (ok, stdout, stderr) = run(&["import", "--fleet", "elb", fixture]);
        assert!(
            ok && stdout.contains("imported 4032 samples"),
            "{stdout} {stderr}"
        );
    }
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM samples")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, 4032, "importing twice stores each bucket once");

    // Parquet with the same columns imports the same way.
    let dir = tempfile::tempdir().unwrap();
    let parquet = dir.path().join("t.parquet");
    let mut df = polars::prelude::df!(
        "timestamp" => ["2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z", "2026-01-01T00:02:00Z"],
        "requests" => [5.0, 7.0, 9.0]
    )
    .unwrap();
    polars::prelude::ParquetWriter::new(std::fs::File::create(&parquet).unwrap())
        .finish(&mut df)
        .unwrap();
    let (ok, stdout, stderr) = run(&["import", "--fleet", "elb", parquet.to_str().unwrap()]);
    assert!(
        ok && stdout.contains("imported 3 samples"),
        "{stdout} {stderr}"
    );

    // Bad input: nothing is written.
    let bad = write(
        dir.path(),
        "bad.csv",
        "timestamp,requests\n2026-02-01T00:00:00Z,1\n2026-02-01T00:01:00Z,x\n",
    );
    let (ok, _, stderr) = run(&["import", "--fleet", "elb", &bad]);
    assert!(!ok && stderr.contains("bad.csv: line 3"), "{stderr}");
    let (ok, _, stderr) = run(&["import", "--fleet", "nosuch", fixture]);
    assert!(
        !ok && stderr.contains("no fleet named `nosuch`"),
        "{stderr}"
    );
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM samples")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, 4035);
}

/// Waits until `check` holds, for at most `secs`.
async fn eventually(secs: u64, what: &str, mut check: impl AsyncFnMut() -> bool) {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !check().await {
        assert!(
            std::time::Instant::now() < until,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[sqlx::test(migrations = false)]
async fn a_service_killed_between_commit_and_delivery_delivers_once_after_restart(
    pool_opts: sqlx::postgres::PgPoolOptions,
    opts: sqlx::postgres::PgConnectOptions,
) {
    use prewarm_service::{
        fake_cloud::{Control, FakeCloud},
        webhook::Secret,
    };
    let url = url_of(&opts);
    let pool = pool_opts.connect_with(opts).await.unwrap();
    prewarm_store::MIGRATOR.run(&pool).await.unwrap();
    let mut spec = prewarm_store::FleetSpec::named("chat");
    spec.min_gpus = 2;
    prewarm_store::create_fleet(&pool, &spec).await.unwrap();

    // The provisioner holds the first delivery for 8 s: the service dies while it waits.
    let secret = Secret::generate();
    let cloud = FakeCloud::new(secret.clone());
    cloud.inject(Control {
        hang_next: 1,
        hang_secs: Some(8),
        ..Default::default()
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let cloud_url = format!("http://{}/orders", listener.local_addr().unwrap());
    let router = cloud.router();
    tokio::spawn(async move { axum::serve(listener, router).await });

    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "prewarm.toml",
        &format!(
            "[database]\nurl = \"{url}\"\n[http]\nlisten = \"127.0.0.1:0\"\n\
             [provisioner]\nurl = \"{cloud_url}\"\nsecret = \"{}\"\ntimeout = \"3s\"\n\
             [service]\nlease_ttl = \"3s\"\n\
             [schedule]\ntick = \"*/2 * * * * *\"\ndispatch = \"* * * * * *\"\nleases = \"* * * * * *\"\n",
            secret.encoded()
        ),
    );
    // `--check` shows the configuration without its secrets.
    let (ok, shown, stderr) = prewarm(&["serve", "--config", &config, "--check"]);
    assert!(ok, "{stderr}");
    assert!(
        shown.contains("<redacted>") && !shown.contains(&secret.encoded()),
        "{shown}"
    );

    let serve = || {
        Command::new(env!("CARGO_BIN_EXE_prewarm"))
            .args(["serve", "--config", &config])
            .env("PREWARM_LOG", "warn")
            .stderr(std::process::Stdio::null())
            .spawn()
            .map(Running)
            .expect("prewarm serve starts")
    };
    let mut first = serve();
    eventually(60, "the first delivery", async || {
        cloud.seen().deliveries >= 1
    })
    .await;
    first.kill().unwrap(); // SIGKILL: no clean-up of any kind
    first.wait().unwrap();
    let (state, attempts): (String, i32) = sqlx::query_as("SELECT state, attempts FROM orders")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        (state.as_str(), attempts),
        ("pending", 1),
        "committed, in doubt"
    );

    let mut second = serve();
    eventually(60, "the redelivery", async || {
        sqlx::query_scalar::<_, String>("SELECT state FROM orders ORDER BY id LIMIT 1")
            .fetch_one(&pool)
            .await
            .unwrap()
            == "delivered"
    })
    .await;
    // Let the held delivery finish too, and two more ticks run.
    let decisions_at_redelivery: i64 = sqlx::query_scalar("SELECT count(*) FROM decisions")
        .fetch_one(&pool)
        .await
        .unwrap();
    eventually(60, "two more ticks and no delivery in flight", async || {
        let decisions: i64 = sqlx::query_scalar("SELECT count(*) FROM decisions")
            .fetch_one(&pool)
            .await
            .unwrap();
        let pending: i64 =
            sqlx::query_scalar("SELECT count(*) FROM orders WHERE state = 'pending'")
                .fetch_one(&pool)
                .await
                .unwrap();
        decisions >= decisions_at_redelivery + 2 && pending == 0
    })
    .await;
    let applied = cloud.seen().applied.clone();
    assert_eq!(applied.len(), 1, "{applied:?}");
    assert_eq!((applied[0].kind.as_str(), applied[0].count), ("boot", 2));
    let orders: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        orders, 1,
        "the restarted planner counted the order in doubt"
    );
    let decisions: i64 = sqlx::query_scalar("SELECT count(*) FROM decisions")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(decisions >= 2, "the restarted service kept planning");
    second.kill().unwrap();
    second.wait().unwrap();
}

#[sqlx::test(migrations = false)]
async fn demo_replays_the_fixture_through_the_service(
    pool_opts: sqlx::postgres::PgPoolOptions,
    opts: sqlx::postgres::PgConnectOptions,
) {
    let url = url_of(&opts);
    // --stay: after the replay the service keeps answering, with its database, until SIGTERM.
    // Its log goes to a file: a pipe nobody reads would fill and stop it.
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut demo = Command::new(env!("CARGO_BIN_EXE_prewarm"))
        .args(["demo", "--replay", "3h", "--stay"])
        .env("DATABASE_URL", &url)
        .stdout(std::process::Stdio::piped())
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(demo.stdout.take().unwrap()));
    let mut stdout = String::new();
    let dashboard = loop {
        let Some(line) = lines.next() else {
            demo.wait().unwrap();
            panic!(
                "the demo ended without serving:\n{stdout}\n{}",
                std::fs::read_to_string(log.path()).unwrap()
            );
        };
        let line = line.unwrap();
        stdout.push_str(&line);
        stdout.push('\n');
        if line.starts_with("dashboard: ") {
            break line;
        }
    };
    let kept = stdout
        .lines()
        .find_map(|l| l.strip_prefix("scratch database "))
        .unwrap_or_else(|| panic!("no database name in\n{stdout}"))
        .trim()
        .to_string();
    // The dashboard's read answers with the replayed day: the tally counted its ticks.
    let address = dashboard
        .split_whitespace()
        .nth(1)
        .unwrap()
        .trim_end_matches('/');
    let token = dashboard
        .split("token once: ")
        .nth(1)
        .and_then(|t| t.split(')').next())
        .unwrap();
    let answer: serde_json::Value = reqwest::Client::new()
        .get(format!("{address}/v1/dashboard"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let fleet = &answer["fleets"][0];
    assert_eq!(fleet["name"], "demo", "{answer:#}");
    assert!(fleet["requests_24h"].as_f64().unwrap() > 0.0, "{fleet:#}");
    assert!(fleet["cost_today_usd"].as_f64().unwrap() > 0.0, "{fleet:#}");
    assert!(fleet["desired_gpus"].as_i64().unwrap() > 0, "{fleet:#}");
    // The decisions notebook reads what the service recorded.
    let (server, _) = url.rsplit_once('/').unwrap();
    run_notebooks(
        &["decisions.ipynb"],
        &[("PREWARM_DATABASE__URL", &format!("{server}/{kept}"))],
    );
    // SIGTERM ends it cleanly, and its scratch database goes with it.
    let term = Command::new("kill")
        .args(["-TERM", &demo.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    assert!(demo.wait().unwrap().success());
    let pool = pool_opts.connect_with(opts).await.unwrap();
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname = $1")
        .bind(&kept)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(left, 0, "the demo's database {kept} was dropped");
    for row in [
        "service ",
        "predictive ",
        "reactive ",
        "clairvoyant ",
        "lower bound",
    ] {
        assert!(
            stdout.lines().any(|l| l.starts_with(row)),
            "no {row} row in\n{stdout}"
        );
    }
    assert!(stdout.contains("first refit: calibrated true"), "{stdout}");
    assert!(stdout.contains("orders delivered (0 pending)"), "{stdout}");
    // The service and the simulator run the same decide() on the same minutes: their GPU-hours
    // agree closely (boots differ only by fake-cloud's drawn boot times against the simulator's).
    let line = stdout
        .lines()
        .find(|l| l.starts_with("service against the simulator's predictive row"))
        .unwrap_or_else(|| panic!("no comparison in\n{stdout}"));
    let ratio: f64 = line
        .split(": ")
        .nth(1)
        .and_then(|r| r.split(" x ").next())
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!((ratio - 1.0).abs() <= 0.05, "{line}");
}

#[sqlx::test(migrations = false)]
async fn fleets_and_tokens_are_administered_from_the_command_line(
    pool_opts: sqlx::postgres::PgPoolOptions,
    opts: sqlx::postgres::PgConnectOptions,
) {
    let url = url_of(&opts);
    let pool = pool_opts.connect_with(opts).await.unwrap();
    let run = |args: &[&str]| prewarm_db(&url, args);
    let (ok, _, stderr) = run(&["fleet", "create", "chat", "--max-gpus", "40"]);
    assert!(ok, "{stderr}");
    let (ok, stdout, _) = run(&["fleet", "list"]);
    assert!(
        ok && stdout
            .lines()
            .any(|l| l.starts_with("chat ") && l.contains(" 40 ")),
        "{stdout}"
    );
    let (ok, stdout, stderr) = run(&[
        "fleet",
        "update",
        "chat",
        "--max-gpus",
        "60",
        "--budget",
        "100",
    ]);
    assert!(
        ok && stdout.contains("\"max_gpus\":60"),
        "{stdout} {stderr}"
    );
    let (ok, _, stderr) = run(&["fleet", "update", "chat", "--min-gpus", "99"]);
    assert!(!ok && stderr.contains("max_gpus"), "{stderr}");
    // Every `fleet create` flag on `fleet update`, the SLO on both; a bad one changes nothing.
    let (ok, _, stderr) = run(&[
        "fleet",
        "update",
        "chat",
        "--slo",
        "0.002",
        "--queue-timeout",
        "90s",
        "--standby-max",
        "5",
        "--gpus-per-replica",
        "4",
    ]);
    assert!(ok, "{stderr}");
    let (planner, per_replica): (serde_json::Value, i32) =
        sqlx::query_as("SELECT planner, gpus_per_replica FROM fleets WHERE name = 'chat'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(planner["max_timeout_share"], 0.002, "{planner}");
    assert_eq!(planner["queue_timeout_secs"], 90);
    assert_eq!(planner["standby_max_gpus"], 5);
    assert_eq!(per_replica, 4);
    let (ok, _, stderr) = run(&[
        "fleet",
        "update",
        "chat",
        "--slo",
        "0.9",
        "--max-gpus",
        "50",
    ]);
    assert!(
        !ok && stderr.contains("--slo must be above 0 and below 0.5"),
        "{stderr}"
    );
    let max: i32 = sqlx::query_scalar("SELECT max_gpus FROM fleets WHERE name = 'chat'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(max, 60);
    // `fleet list`'s columns line up whatever the widths of the names.
    let (ok, _, stderr) = run(&[
        "fleet",
        "create",
        "llama-3.3-70b-instruct-us-east",
        "--tz",
        "America/Argentina/Buenos_Aires",
        "--slo",
        "0.0005",
    ]);
    assert!(ok, "{stderr}");
    let (ok, stdout, _) = run(&["fleet", "list"]);
    assert!(ok, "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    let end_of = |line: &str, word: &str| line.find(word).map(|i| i + word.len());
    let max_end = end_of(lines[0], "max").unwrap();
    for line in &lines[1..] {
        // The `max` column is right-aligned under its header.
        assert_eq!(
            line.char_indices()
                .nth(max_end - 1)
                .map(|(_, c)| c.is_ascii_digit()),
            Some(true),
            "{stdout}"
        );
    }
    let (ok, _, stderr) = run(&["fleet", "delete", "llama-3.3-70b-instruct-us-east", "--yes"]);
    assert!(ok, "{stderr}");

    // Tokens: scopes, listing without secrets, revocation.
    let (ok, token, stderr) = run(&[
        "token",
        "create",
        "--fleet",
        "chat",
        "--label",
        "ops",
        "--scope",
        "read,operate",
    ]);
    assert!(ok && token.trim().starts_with("pw_"), "{stderr}");
    assert!(stderr.contains("read, operate"), "{stderr}");
    let (ok, _, stderr) = run(&["token", "create", "--scope", "pin"]);
    assert!(
        !ok && stderr.contains("push, read, operate and admin"),
        "{stderr}"
    );
    let (ok, stdout, _) = run(&["token", "list"]);
    assert!(
        ok && stdout.contains("read,operate") && !stdout.contains(token.trim()),
        "{stdout}"
    );
    let (ok, stdout, _) = run(&["token", "revoke", "1"]);
    assert!(ok && stdout.contains("revoked token 1"), "{stdout}");
    let (ok, _, stderr) = run(&["token", "revoke", "1"]);
    assert!(!ok && stderr.contains("revoked already"), "{stderr}");

    // Deleting needs --yes, and takes the fleet's samples with it.
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/nab-elb-5m.csv");
    let (ok, _, stderr) = run(&["import", "--fleet", "chat", fixture]);
    assert!(ok, "{stderr}");
    let (ok, _, stderr) = run(&["fleet", "delete", "chat"]);
    assert!(!ok && stderr.contains("--yes"), "{stderr}");
    let (ok, stdout, stderr) = run(&["fleet", "delete", "chat", "--yes"]);
    assert!(ok && stdout.contains("4032 samples"), "{stdout} {stderr}");
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM samples")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(left, 0);
    let actions: Vec<String> = sqlx::query_scalar("SELECT action FROM audit_log ORDER BY id")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(
        actions,
        vec![
            "fleet.create",
            "fleet.update",
            "fleet.update",
            "fleet.planner",
            "fleet.create",
            "fleet.delete",
            "token.create",
            "token.revoke",
            "fleet.delete"
        ]
    );
}

#[sqlx::test(migrations = false)]
async fn an_import_meets_the_push_rules_and_its_errors_name_file_line_and_reason(
    pool_opts: sqlx::postgres::PgPoolOptions,
    opts: sqlx::postgres::PgConnectOptions,
) {
    let url = url_of(&opts);
    let pool = pool_opts.connect_with(opts).await.unwrap();
    let run = |args: &[&str]| prewarm_db(&url, args);
    assert!(run(&["fleet", "create", "chat"]).0);
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "gap.csv",
            "timestamp,requests\n2026-01-01T00:00:00Z,5\n2026-01-03T00:00:00Z,6\n".to_string(),
            vec!["gap.csv", "172800 s apart", "line 2"],
        ),
        (
            "future.csv",
            "timestamp,requests\n2100-01-01T00:00:00Z,5\n2100-01-01T00:05:00Z,6\n".to_string(),
            vec![
                "future.csv",
                "line 2 (2100-01-01T00:00:00Z)",
                "in the future",
            ],
        ),
        (
            "nan.csv",
            "timestamp,requests\n2026-01-01T00:00:00Z,NaN\n2026-01-01T00:05:00Z,6\n".to_string(),
            vec!["nan.csv: line 2", "leave the field empty"],
        ),
        (
            "huge.csv",
            format!(
                "timestamp,requests\n2026-01-01T00:00:00Z,{}\n2026-01-01T00:05:00Z,6\n",
                "7".repeat(50 * 1024 * 1024) + "x"
            ),
            vec!["huge.csv: line 2", "bytes in all"],
        ),
    ];
    for (name, text, expected) in cases {
        let path = write(dir.path(), name, &text);
        let (ok, _, stderr) = run(&["import", "--fleet", "chat", &path]);
        assert!(!ok, "{name} was imported");
        assert!(
            stderr.len() < 2_000,
            "{name}: {} bytes of error",
            stderr.len()
        );
        for e in expected {
            assert!(stderr.contains(e), "{name}: `{e}` not in {stderr}");
        }
    }
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM samples")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, 0, "nothing was written");
}

#[test]
fn provisioner_check_passes_against_fake_cloud_and_fails_against_a_broken_endpoint() {
    let (cloud_port, callback_port) = (free_port(), free_port());
    let secret = prewarm_service::webhook::Secret::generate().encoded();
    let mut cloud = Command::new(env!("CARGO_BIN_EXE_prewarm"))
        .args([
            "fake-cloud",
            "--listen",
            &format!("127.0.0.1:{cloud_port}"),
            "--secret",
            &secret,
            "--callback",
            &format!("http://127.0.0.1:{callback_port}"),
            "--boot-min",
            "1s",
            "--boot-max",
            "2s",
            "--stop",
            "1s",
            "--resume-min",
            "1s",
            "--resume-max",
            "2s",
        ])
        .stderr(std::process::Stdio::null())
        .spawn()
        .map(Running)
        .unwrap();
    let hook = format!("http://127.0.0.1:{cloud_port}/orders");
    for _ in 0..50 {
        if std::net::TcpStream::connect(("127.0.0.1", cloud_port)).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let (ok, stdout, stderr) = prewarm(&[
        "provisioner-check",
        &hook,
        "--secret",
        &secret,
        "--callback-listen",
        &format!("127.0.0.1:{callback_port}"),
        "--wait",
        "30s",
        "--standby",
    ]);
    cloud.kill().unwrap();
    cloud.wait().unwrap();
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stdout.contains("21 of 21 checks passed"), "{stdout}");
    assert!(stdout.contains("repeated order applied once"), "{stdout}");
    assert!(
        stdout.contains("pass  stop reported, naming its order")
            && stdout.contains("pass  resume reported, naming its order"),
        "{stdout}"
    );

    // An endpoint that accepts anything (no signature check) fails, and says why.
    let broken_port = free_port();
    let broken = std::thread::spawn(move || {
        let listener = std::net::TcpListener::bind(("127.0.0.1", broken_port)).unwrap();
        listener.set_nonblocking(false).unwrap();
        for stream in listener.incoming().take(9) {
            let mut stream = stream.unwrap();
            let mut buf = [0u8; 65536];
            let _ = std::io::Read::read(&mut stream, &mut buf);
            let _ = std::io::Write::write_all(
                &mut stream,
                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
            );
        }
    });
    let (ok, stdout, _) = prewarm(&[
        "provisioner-check",
        &format!("http://127.0.0.1:{broken_port}/orders"),
        "--secret",
        &secret,
    ]);
    assert!(!ok, "{stdout}");
    assert!(
        stdout.contains("FAIL  unsigned order refused")
            && stdout.contains("answered 200; expected 401"),
        "{stdout}"
    );
    broken.join().unwrap();
}

/// A `prewarm serve` process configured by environment variables.
fn serve_process(
    url: &str,
    listen: &str,
    cloud: &str,
    secret: &str,
    replica: Option<&str>,
) -> Running {
    let mut c = Command::new(env!("CARGO_BIN_EXE_prewarm"));
    c.arg("serve")
        .env("PREWARM_DATABASE__URL", url)
        .env("PREWARM_HTTP__LISTEN", listen)
        .env("PREWARM_PROVISIONER__URL", cloud)
        .env("PREWARM_PROVISIONER__SECRET", secret)
        .env("PREWARM_SERVICE__LEASE_TTL", "3s")
        .env("PREWARM_SCHEDULE__TICK", "*/2 * * * * *")
        .env("PREWARM_SCHEDULE__LEASES", "* * * * * *")
        .env("PREWARM_SCHEDULE__DISPATCH", "* * * * * *")
        .env("PREWARM_LOG", "warn")
        .stderr(std::process::Stdio::null());
    if let Some(r) = replica {
        c.env("PREWARM_SERVICE__REPLICA_ID", r);
    }
    Running(c.spawn().expect("prewarm serve starts"))
}

/// A port free on loopback now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed when the test that started it ends, even by a failed assertion, so
/// no server outlives its test (and holds the test runner's output open).
struct Running(std::process::Child);

impl std::ops::Deref for Running {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Running {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[sqlx::test(migrations = false)]
async fn two_serve_processes_with_one_replica_id_plan_each_fleet_once(
    pool_opts: sqlx::postgres::PgPoolOptions,
    opts: sqlx::postgres::PgConnectOptions,
) {
    use prewarm_service::{fake_cloud::FakeCloud, webhook::Secret};
    let url = url_of(&opts);
    let pool = pool_opts.connect_with(opts).await.unwrap();
    prewarm_store::MIGRATOR.run(&pool).await.unwrap();
    for name in ["f1", "f2", "f3", "f4"] {
        let mut spec = prewarm_store::FleetSpec::named(name);
        spec.min_gpus = 2;
        prewarm_store::create_fleet(&pool, &spec).await.unwrap();
    }
    let secret = Secret::generate();
    let cloud = FakeCloud::new(secret.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let cloud_url = format!("http://{}/orders", listener.local_addr().unwrap());
    let router = cloud.router();
    tokio::spawn(async move { axum::serve(listener, router).await });
    let mut a = serve_process(
        &url,
        "127.0.0.1:0",
        &cloud_url,
        &secret.encoded(),
        Some("replica-1"),
    );
    let mut b = serve_process(
        &url,
        "127.0.0.1:0",
        &cloud_url,
        &secret.encoded(),
        Some("replica-1"),
    );
    // Until every fleet has been planned at least three times and its boot delivered: several
    // ticks of both, with the leases shared out.
    eventually(
        60,
        "three ticks of every fleet and four deliveries",
        async || {
            let fewest: Option<i64> = sqlx::query_scalar(
                "SELECT min(n) FROM (SELECT count(*) AS n FROM decisions GROUP BY fleet_id) d
             HAVING count(*) = 4",
            )
            .fetch_optional(&pool)
            .await
            .unwrap()
            .flatten();
            fewest.is_some_and(|n| n >= 3) && cloud.seen().applied.len() >= 4
        },
    )
    .await;
    a.kill().unwrap();
    b.kill().unwrap();
    a.wait().unwrap();
    b.wait().unwrap();
    let doubled: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT fleet_id, decided_at FROM decisions
           GROUP BY fleet_id, decided_at HAVING count(*) > 1) d",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(doubled, 0, "no fleet planned twice in one tick");
    let planned: i64 = sqlx::query_scalar("SELECT count(DISTINCT fleet_id) FROM decisions")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(planned, 4);
    let applied = cloud.seen().applied.clone();
    assert_eq!(applied.len(), 4, "one boot order per fleet: {applied:?}");
    let mut fleets: Vec<String> = applied.iter().map(|o| o.fleet.clone()).collect();
    fleets.sort();
    assert_eq!(fleets, vec!["f1", "f2", "f3", "f4"]);
    let holders: Vec<(String, i64)> =
        sqlx::query_as("SELECT replica_id, count(*) FROM replicas GROUP BY replica_id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        holders,
        vec![("replica-1".to_string(), 2)],
        "two starts, one name"
    );
}

#[sqlx::test(migrations = false)]
async fn the_walkthrough_ends_with_a_pre_warm_decision(
    _pool_opts: sqlx::postgres::PgPoolOptions,
    opts: sqlx::postgres::PgConnectOptions,
) {
    // README, "Try it on one machine", step by step.
    let url = url_of(&opts);
    let run = |args: &[&str]| prewarm_db(&url, args);
    let (cloud_port, http_port) = (free_port(), free_port());
    let secret = prewarm_service::webhook::Secret::generate().encoded();
    let mut cloud = Command::new(env!("CARGO_BIN_EXE_prewarm"))
        .args([
            "fake-cloud",
            "--listen",
            &format!("127.0.0.1:{cloud_port}"),
            "--secret",
            &secret,
            "--callback",
            &format!("http://127.0.0.1:{http_port}"),
        ])
        .stderr(std::process::Stdio::null())
        .spawn()
        .map(Running)
        .unwrap();
    // A daily rush 11 minutes after the history's end: one boot lead (10 minutes) and the first
    // tick's minute ahead.
    let dir = tempfile::tempdir().unwrap();
    let rush = dir.path().join("rush.csv");
    let (ok, _, stderr) = run(&[
        "trace",
        "synth",
        "--shape",
        "daily",
        "--days",
        "14",
        "--tz",
        "UTC",
        "--end",
        "now",
        "--rush-in",
        "11m",
        "--peak-per-minute",
        "300",
        "--out",
        rush.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    let (ok, _, stderr) = run(&[
        "fleet",
        "create",
        "chat",
        "--tz",
        "UTC",
        "--gpu-rps",
        "1",
        "--min-gpus",
        "1",
        "--max-gpus",
        "40",
    ]);
    assert!(ok, "{stderr}");
    let (ok, stdout, stderr) = run(&["import", "--fleet", "chat", rush.to_str().unwrap()]);
    assert!(ok, "{stdout} {stderr}");
    let (ok, stdout, stderr) = run(&["refit", "--fleet", "chat"]);
    assert!(
        ok && stdout.contains("band calibrated"),
        "{stdout} {stderr}"
    );
    let (ok, token, stderr) = run(&[
        "token",
        "create",
        "--fleet",
        "chat",
        "--scope",
        "read,operate",
    ]);
    assert!(ok, "{stderr}");
    let mut serve = serve_process(
        &url,
        &format!("127.0.0.1:{http_port}"),
        &format!("http://127.0.0.1:{cloud_port}/orders"),
        &secret,
        None,
    );
    let client = reqwest::Client::new();
    let plan_url = format!("http://127.0.0.1:{http_port}/v1/fleets/chat/plan");
    let mut plan = serde_json::Value::Null;
    // The first decision that pre-warms several GPUs. The forecast's 5-minute buckets soften the
    // rush's first minutes, so a tick that looks a boot lead ahead at the very start of the rush
    // may pre-warm fewer; the next looks a minute further in.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(180);
    loop {
        if let Ok(r) = client.get(&plan_url).bearer_auth(token.trim()).send().await {
            plan = r.json().await.unwrap_or_default();
            let d = &plan["latest_decision"];
            if d["reason"]
                .as_str()
                .is_some_and(|r| r.starts_with("pre-warm"))
                && d["desired_gpus"].as_i64().is_some_and(|n| n >= 3)
            {
                break;
            }
        }
        assert!(
            std::time::Instant::now() < until,
            "no pre-warm of several GPUs within 180 s; the plan: {plan:#}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // What fake-cloud received: the decision's boot order (delivered just after it is recorded).
    let booted_at_cloud = async || -> (i64, serde_json::Value) {
        let received: serde_json::Value = client
            .get(format!("http://127.0.0.1:{cloud_port}/orders"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let booted = received
            .as_array()
            .unwrap()
            .iter()
            .filter(|o| o["kind"] == "boot")
            .map(|o| o["count"].as_i64().unwrap())
            .sum();
        (booted, received)
    };
    let desired = plan["latest_decision"]["desired_gpus"].as_i64().unwrap();
    let mut received = booted_at_cloud().await;
    let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while received.0 < desired && std::time::Instant::now() < until {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        received = booted_at_cloud().await;
    }
    serve.kill().unwrap();
    serve.wait().unwrap();
    cloud.kill().unwrap();
    cloud.wait().unwrap();
    // The decision pre-warms several of the rush's GPUs (5.9 requests a second at its peak
    // minute, a GPU serving 1: 6; the first minutes of the rush may need fewer) a boot lead
    // before it, for a fleet that needs 1 the rest of the day.
    let decision = &plan["latest_decision"];
    assert!(
        decision["forecast_upper_rps"].as_f64().is_some(),
        "{plan:#}"
    );
    assert!((3..=8).contains(&desired), "{plan:#}");
    assert_eq!(received.0, desired, "{:#} {plan:#}", received.1);
}

/// A report page's settings table, as the browser rendered it.
fn settings_table(dom: &str) -> &str {
    dom.split(r#"id="settings""#)
        .nth(1)
        .and_then(|t| t.split("</table>").next())
        .expect("the page has a settings table")
}

/// Subcommands listed in a `--help` page's "Commands:" section.
fn subcommands(help: &str) -> Vec<String> {
    help.split("Commands:")
        .nth(1)
        .map(|rest| {
            rest.lines()
                .skip(1)
                .take_while(|l| l.starts_with("  "))
                .filter_map(|l| l.split_whitespace().next())
                .filter(|c| *c != "help")
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn every_environment_variable_is_named_alike_in_every_command_and_every_argument_described() {
    // Walk every command and subcommand's --help.
    let mut pending: Vec<Vec<String>> = vec![vec![]];
    let mut env_of_flag: std::collections::BTreeMap<String, (String, String)> = Default::default();
    let mut pages = 0;
    while let Some(path) = pending.pop() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let (ok, help, stderr) = prewarm(&args);
        assert!(ok, "{args:?}: {stderr}");
        pages += 1;
        for sub in subcommands(&help) {
            let mut next = path.clone();
            next.push(sub);
            pending.push(next);
        }
        let command = path.join(" ");
        // Options and arguments: a line starting with `-` or `<` under Options/Arguments, with
        // its description on the same line or the next.
        let lines: Vec<&str> = help.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let t = line.trim_start();
            let is_item = line.starts_with("  ") && (t.starts_with('-') || t.starts_with('<'));
            if !is_item {
                continue;
            }
            let item = t.split("  ").next().unwrap_or(t).trim();
            let described = t.len() > item.len()
                || lines
                    .get(i + 1)
                    .is_some_and(|n| n.starts_with("          ") && !n.trim().is_empty());
            assert!(
                described,
                "`prewarm {command}`: `{item}` has no description"
            );
            if let Some(env) = t.split("[env: ").nth(1) {
                let name = env.split(['=', ']']).next().unwrap().to_string();
                assert!(
                    name.starts_with("PREWARM_"),
                    "`prewarm {command}` reads {name}: every variable is PREWARM_..."
                );
                let flag = item
                    .split([' ', '='])
                    .find(|w| w.starts_with("--"))
                    .unwrap_or(item);
                if let Some((other, seen_in)) = env_of_flag.get(flag) {
                    assert_eq!(
                        &name, other,
                        "{flag} reads {name} in `prewarm {command}` but {other} in `prewarm {seen_in}`"
                    );
                } else {
                    env_of_flag.insert(flag.to_string(), (name, command.clone()));
                }
            }
        }
    }
    assert!(pages > 30, "{pages} help pages");
    // The database URL and the provisioner's secret read as `serve` reads them.
    assert_eq!(env_of_flag["--database-url"].0, "PREWARM_DATABASE__URL");
    assert_eq!(env_of_flag["--secret"].0, "PREWARM_PROVISIONER__SECRET");
    assert_eq!(env_of_flag["--tz"].0, "PREWARM_TZ");
}

#[test]
fn an_old_environment_name_is_still_read_with_a_warning() {
    let out = Command::new(env!("CARGO_BIN_EXE_prewarm"))
        .args(["provisioner-check", "http://127.0.0.1:9/orders"])
        .env_remove("PREWARM_PROVISIONER__SECRET")
        .env("PREWARM_WEBHOOK_SECRET", "not-a-secret")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("PREWARM_WEBHOOK_SECRET is deprecated: set PREWARM_PROVISIONER__SECRET"),
        "{stderr}"
    );
    // And it was read: the secret it gave is the one refused.
    assert!(
        !out.status.success() && stderr.contains("whsec_"),
        "{stderr}"
    );
}

#[sqlx::test(migrations = false)]
async fn the_decisions_notebook_runs_on_an_empty_database_and_on_a_fleet_with_nothing_yet(
    pool_opts: sqlx::postgres::PgPoolOptions,
    opts: sqlx::postgres::PgConnectOptions,
) {
    let url = url_of(&opts);
    let pool = pool_opts.connect_with(opts).await.unwrap();
    prewarm_store::MIGRATOR.run(&pool).await.unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    if !notebooks_ready() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have the notebooks' requirements"
        );
        return;
    }
    let run = |fleet: Option<&str>| {
        let out_dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new("python3");
        cmd.arg(root.join("notebooks/run.py"))
            .arg(out_dir.path())
            .arg(root.join("notebooks/decisions.ipynb"))
            .env("PREWARM_DATABASE__URL", &url)
            .env_remove("PREWARM_FLEET");
        if let Some(f) = fleet {
            cmd.env("PREWARM_FLEET", f);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::read_to_string(out_dir.path().join("decisions.ipynb")).unwrap()
    };
    // No fleet at all: it says so.
    let executed = run(None);
    assert!(executed.contains("no fleet in this database"), "{executed}");
    // A fleet with no decision, order, sample or tally yet.
    prewarm_store::create_fleet(&pool, &prewarm_store::FleetSpec::named("quiet"))
        .await
        .unwrap();
    let executed = run(Some("quiet"));
    assert!(executed.contains("no decision yet"), "{executed}");
    assert!(executed.contains("no hourly tally yet"), "{executed}");
}

#[test]
fn simulate_says_why_predictive_is_the_reactive_row_on_an_hour_of_history() {
    // An hour of Azure LLM requests: never the day a forecast needs, so the predictive row is
    // the reactive one, and the table says why instead of leaving it to the reader.
    let trace = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/azure-conv-1m.csv"
    );
    let (ok, stdout, stderr) = prewarm(&["simulate", trace, "--policies", "predictive,reactive"]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains(
            "predictive: planned every scored step on the reactive rules: a forecast needs 1d of history"
        ),
        "{stdout}"
    );
}
