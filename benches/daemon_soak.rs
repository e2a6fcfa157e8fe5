//! Soak benchmark: `reconcile daemon` runs 1,000 cycles against the GitLab emulator with
//! injected faults (5xx, connection resets, writes answered 500 after they happened) and a
//! drift injected every 50 cycles. Prints the daemon's RSS at the start and the end, wall time,
//! API requests per cycle against the floor of a no-change cycle, and what the daemon counted.
//! Nothing is asserted on time; the run fails if the daemon dies or does not exit 0 on SIGTERM.
//!
//! `cargo bench --bench daemon_soak` (`SOAK_CYCLES=200` for a shorter run).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gitlab_emulator::{Config, Emulator, Faults};

const TOKEN: &str = "soak-admin-token";

const SPEC: &str = r#"users:
  - {username: dev1, name: Developer One, email: dev1@example.com}
  - {username: dev2, name: Developer Two, email: dev2@example.com}
projects:
  - namespace: root
    path: app
    default_branch: main
    members:
      items:
        - {user: dev1, access: developer}
        - {user: dev2, access: reporter}
    protected_branches:
      items:
        - {name: main, push: maintainer, merge: developer, allow_force_push: false}
    variables:
      items:
        - {key: REGION, value: us-east-1, protected: true}
        - {key: DEPLOY_ENV, value: staging, environment_scope: staging}
"#;

/// Requests of a no-change cycle: preflight (`GET /version`, `/user`,
/// `/personal_access_tokens/self`), the users (2), and 4 per project.
const FLOOR_PER_CYCLE: u64 = 9;

fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn main() {
    let cycles: u64 = std::env::var("SOAK_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let emu = rt
        .block_on(Emulator::start(Config {
            admin_tokens: vec![TOKEN.into()],
            ..Config::default()
        }))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("reconcile.yaml"),
        "gitlab: {url: http://gitlab.invalid, drift: correct}\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("gitlab.yaml"), SPEC).unwrap();
    let reconcile = |args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_reconcile"));
        cmd.args(args)
            .arg("--dir")
            .arg(dir.path())
            .env("GITLAB_URL", emu.url())
            .env("GITLAB_TOKEN", TOKEN)
            .env("RECONCILE_RETRY_MIN_MS", "1")
            .env("NO_COLOR", "1");
        cmd
    };
    let out = reconcile(&["apply", "--auto-approve"]).output().unwrap();
    assert!(out.status.success(), "first apply failed");
    let faults = Faults {
        seed: 7,
        error_rate: 0.03,
        reset_rate: 0.01,
        write_then_500_rate: 0.2,
        ..Faults::default()
    };
    emu.set_faults(faults.clone()).unwrap();
    emu.reset_counters();

    let mut child = reconcile(&[
        "daemon",
        "--interval",
        "2ms",
        "--listen",
        "127.0.0.1:0",
        "--sweep-period",
        "0s",
    ])
    .env("RECONCILE_LOG", "warn")
    .stderr(Stdio::piped())
    .stdout(Stdio::null())
    .spawn()
    .unwrap();
    let pid = child.id();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().expect("daemon prints its address").unwrap();
        if let Some(url) = line.strip_prefix("reconcile daemon: listening on ") {
            break url.to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let http = reqwest::Client::new();
    let get = |path: &str| -> String {
        rt.block_on(async {
            http.get(format!("{url}{path}"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        })
    };
    let finished = || -> u64 {
        serde_json::from_str::<serde_json::Value>(&get("/readyz")).unwrap()["cycles"]
            .as_u64()
            .unwrap_or(0)
    };
    let api = |method: &str, path: &str, body: serde_json::Value| {
        rt.block_on(async {
            reqwest::Client::new()
                .request(
                    method.parse().unwrap(),
                    format!("{}/api/v4/{path}", emu.url()),
                )
                .header("PRIVATE-TOKEN", TOKEN)
                .json(&body)
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        })
    };

    while finished() < 10 {
        std::thread::sleep(Duration::from_millis(20));
    }
    let (rss_start, _) = rss_kib(pid);
    let start = Instant::now();
    let requests_start = emu.counters().total;
    let mut injected = 0;
    let mut next_drift = 60;
    loop {
        let n = finished();
        if n >= cycles + 10 {
            break;
        }
        if n >= next_drift {
            // The injection itself goes through without faults.
            emu.clear_faults();
            let status = api(
                "PATCH",
                "projects/root%2Fapp/protected_branches/main",
                serde_json::json!({"allow_force_push": true}),
            );
            emu.set_faults(faults.clone()).unwrap();
            assert_eq!(status, 200, "drift injection");
            injected += 1;
            next_drift += 50;
        }
        assert!(child.try_wait().unwrap().is_none(), "the daemon died");
        std::thread::sleep(Duration::from_millis(10));
    }
    let wall = start.elapsed();
    let (rss_end, rss_peak) = rss_kib(pid);
    let requests = emu.counters().total - requests_start;
    let metrics = get("/metrics");
    let sample = |prefix: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
            + 0.0
    };
    let corrected = sample("reconcile_drift_corrected_total{");
    let failed = sample("reconcile_cycles_total{outcome=\"failed\"}");
    let total_cycles = sample("reconcile_cycles_total{");
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "daemon exit after SIGTERM: {status}");

    println!(
        "daemon soak: {cycles} cycles (after 10 warm-up), interval 2 ms, faults 3% 5xx + 1% resets + 20% write-then-500"
    );
    println!(
        "  wall time {:.1} s ({:.1} ms per cycle)",
        wall.as_secs_f64(),
        wall.as_secs_f64() * 1000.0 / cycles as f64
    );
    println!(
        "  GitLab requests {requests} ({:.2} per cycle; floor of a no-change cycle {FLOOR_PER_CYCLE}, ratio {:.2})",
        requests as f64 / cycles as f64,
        requests as f64 / (cycles * FLOOR_PER_CYCLE) as f64
    );
    println!(
        "  daemon counted {total_cycles} cycles, {failed} failed; {corrected} corrections for {injected} injected drifts"
    );
    println!(
        "  RSS start {:.1} MiB, end {:.1} MiB (peak {:.1} MiB), growth {:+.1} MiB",
        rss_start as f64 / 1024.0,
        rss_end as f64 / 1024.0,
        rss_peak as f64 / 1024.0,
        (rss_end as f64 - rss_start as f64) / 1024.0
    );
    println!("  SIGTERM: exit {status}");
    rt.block_on(emu.shutdown()).unwrap();
}
