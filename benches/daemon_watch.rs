//! Benchmark: what `reconcile daemon` reads between sweeps on a generated fleet (1,000 projects
//! by default), and how long each kind of drift stays before it is corrected.
//!
//! The daemon runs with `--interval 2s --sweep-period 120s` and GitLab's system hook. Prints the
//! requests of a no-change cycle (amortised over at least a sweep period's worth of cycles)
//! against a full plan's, and for each drift kind the time from the change to its correction
//! (project settings: the inventory; members: the hook; users: the user inventory; variables
//! and protected branches: the sweep). Nothing is asserted on time; every drift must be
//! corrected within two sweep periods.
//!
//! `cargo bench --bench daemon_watch` (`FLEET_PROJECTS=3000`, `WATCH_SWEEP_SECS=120`).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gitlab_emulator::{Config, Emulator};
use serde_json::{Value, json};

#[path = "fleet/mod.rs"]
mod fleet;

const TOKEN: &str = "watch-admin-token";
const INTERVAL_SECS: u64 = 2;

fn main() {
    let projects: usize = std::env::var("FLEET_PROJECTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let sweep: u64 = std::env::var("WATCH_SWEEP_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(120);
    let users = 300;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let emu = rt
        .block_on(Emulator::start(Config {
            admin_tokens: vec![TOKEN.into()],
            ..Config::default()
        }))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    fleet::fleet(dir.path(), projects, users);
    std::fs::write(
        dir.path().join("reconcile.yaml"),
        "gitlab: {url: http://gitlab.invalid, drift: correct}\n",
    )
    .unwrap();
    let reconcile = |args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_reconcile"));
        cmd.args(args)
            .arg("--dir")
            .arg(dir.path())
            .env("GITLAB_URL", emu.url())
            .env("GITLAB_TOKEN", TOKEN)
            .env("NO_COLOR", "1");
        cmd
    };
    let seeded = Instant::now();
    let out = reconcile(&["apply", "--auto-approve"]).output().unwrap();
    assert!(out.status.success(), "seeding failed");
    eprintln!(
        "seeded {projects} projects and {users} users in {:.1} s",
        seeded.elapsed().as_secs_f64()
    );
    emu.reset_counters();
    let out = reconcile(&["plan"]).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "the seeded fleet has no changes"
    );
    let full_plan = emu.counters().total;

    let interval = format!("{INTERVAL_SECS}s");
    let sweep_arg = format!("{sweep}s");
    let mut child = reconcile(&[
        "daemon",
        "--interval",
        &interval,
        "--sweep-period",
        &sweep_arg,
        "--listen",
        "127.0.0.1:0",
    ])
    .env("RECONCILE_HOOK_TOKEN", "watch-hook-token")
    .env(
        "RECONCILE_LOG",
        std::env::var("RECONCILE_LOG").unwrap_or_else(|_| "warn".into()),
    )
    .stderr(Stdio::piped())
    .stdout(Stdio::null())
    .spawn()
    .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().expect("daemon prints its address").unwrap();
        if let Some(url) = line.strip_prefix("reconcile daemon: listening on ") {
            break url.to_string();
        }
    };
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            if line.contains("inventory") {
                eprintln!("{line}");
            }
        }
    });
    let http = reqwest::Client::new();
    let cycles = || -> u64 {
        rt.block_on(async {
            let body: Value = match http.get(format!("{url}/readyz")).send().await {
                Ok(r) => r.json().await.unwrap_or(Value::Null),
                Err(_) => Value::Null,
            };
            body["cycles"].as_u64().unwrap_or(0)
        })
    };
    let emu_url = emu.url();
    let api = |method: &str, path: &str, body: Option<Value>| -> (u16, Value) {
        rt.block_on(async {
            let mut req = http
                .request(method.parse().unwrap(), format!("{emu_url}/api/v4/{path}"))
                .header("PRIVATE-TOKEN", TOKEN);
            if let Some(b) = body {
                req = req.json(&b);
            }
            let rsp = req.send().await.unwrap();
            let status = rsp.status().as_u16();
            (status, rsp.json().await.unwrap_or(Value::Null))
        })
    };
    let wait_cycles = |n: u64| {
        let target = cycles() + n;
        while cycles() < target {
            std::thread::sleep(Duration::from_millis(100));
        }
    };

    // The first cycle reads everything; then measure whole cycles for at least a sweep period.
    wait_cycles(2);
    let measured = (sweep / INTERVAL_SECS).max(10);
    emu.reset_counters();
    let start = cycles();
    let started = Instant::now();
    wait_cycles(measured);
    let counted = cycles() - start;
    let counters = emu.counters();
    let requests = counters.total;
    let per_cycle = requests as f64 / counted as f64;
    println!(
        "incremental daemon on {projects} projects and {users} users, interval {INTERVAL_SECS} s, sweep period {sweep} s:"
    );
    println!("  full plan           {full_plan} requests");
    println!(
        "  no-change cycles    {counted} in {:.0} s: {requests} requests, {per_cycle:.1} per cycle ({:.2} % of a full plan)",
        started.elapsed().as_secs_f64(),
        per_cycle * 100.0 / full_plan as f64
    );
    let by_route: Vec<String> = counters
        .by_route
        .iter()
        .map(|(route, n)| format!("{route} {:.1}", *n as f64 / counted as f64))
        .collect();
    println!("  per cycle by route  {}", by_route.join(", "));
    let cycle_secs = started.elapsed().as_secs_f64() / counted as f64;
    println!(
        "  floor per cycle     {:.1} (3 preflight + 2 inventory + 4 per project for {projects} projects × {cycle_secs:.1} s per cycle ÷ {sweep} s)",
        5.0 + projects as f64 * cycle_secs / sweep as f64 * 4.0
    );
    println!(
        "  per sweep period    {:.0} requests (a full plan every cycle: {:.0})",
        requests as f64 * sweep as f64 / started.elapsed().as_secs_f64(),
        full_plan as f64 * sweep as f64 / cycle_secs
    );

    // One drift of each kind, at once; then the time until each is corrected.
    let project = format!("root%2Fproject-{}", projects / 2);
    let (_, member) = api(
        "GET",
        &format!("projects/{project}/members?per_page=100"),
        None,
    );
    let member_id = member
        .as_array()
        .and_then(|m| m.iter().find(|m| m["username"] != "root"))
        .and_then(|m| m["id"].as_u64())
        .expect("a member");
    let (_, user) = api("GET", "users?username=user7", None);
    let user_id = user[0]["id"].as_u64().expect("user7");
    // Each group of drifts is made at once, and timed until each is corrected. Groups run one
    // after the other so that one kind's hook does not wake the cycle that finds another.
    type Action<'a> = Box<dyn Fn() + 'a>;
    type Check<'a> = Box<dyn Fn() -> bool + 'a>;
    let put = |path: String, body: Value| {
        let (status, _) = api("PUT", &path, Some(body));
        assert_eq!(status, 200, "PUT {path}");
    };
    let var_project = format!("root%2Fproject-{}", projects / 3);
    let branch_project = format!("root%2Fproject-{}", projects / 4);
    let groups: Vec<Vec<(&str, Action, Check)>> = vec![
        vec![(
            "user (user inventory)",
            Box::new(|| put(format!("users/{user_id}"), json!({"name": "Changed Live"}))),
            Box::new(|| api("GET", &format!("users/{user_id}"), None).1["name"] == "User 7"),
        )],
        vec![(
            "project setting (system hook, inventory)",
            Box::new(|| {
                put(
                    format!("projects/{project}"),
                    json!({"visibility": "internal"}),
                )
            }),
            Box::new(|| {
                api("GET", &format!("projects/{project}"), None).1["visibility"] == "private"
            }),
        )],
        vec![(
            "member (system hook)",
            Box::new(|| {
                put(
                    format!("projects/{project}/members/{member_id}"),
                    json!({"access_level": 40}),
                )
            }),
            Box::new(|| {
                api(
                    "GET",
                    &format!("projects/{project}/members/{member_id}"),
                    None,
                )
                .1["access_level"]
                    == 30
            }),
        )],
        vec![
            (
                "variable (sweep)",
                Box::new(|| {
                    put(
                        format!("projects/{var_project}/variables/VAR_1"),
                        json!({"value": "changed-live"}),
                    )
                }),
                Box::new(|| {
                    api(
                        "GET",
                        &format!("projects/{var_project}/variables/VAR_1"),
                        None,
                    )
                    .1["value"]
                        != "changed-live"
                }),
            ),
            (
                "protected branch (sweep)",
                Box::new(|| {
                    let path = format!("projects/{branch_project}/protected_branches/main");
                    assert_eq!(api("DELETE", &path, None).0, 204, "DELETE {path}");
                }),
                Box::new(|| {
                    api(
                        "GET",
                        &format!("projects/{branch_project}/protected_branches/main"),
                        None,
                    )
                    .0 == 200
                }),
            ),
        ],
    ];
    println!("  time from a live change to its correction (interval {INTERVAL_SECS} s):");
    let mut all_corrected = true;
    for group in &groups {
        for (_, change, _) in group {
            change();
        }
        let changed = Instant::now();
        let mut found = vec![None; group.len()];
        while found.iter().any(Option::is_none)
            && changed.elapsed() < Duration::from_secs(2 * sweep + 30)
        {
            for (i, (_, _, corrected)) in group.iter().enumerate() {
                if found[i].is_none() && corrected() {
                    found[i] = Some(changed.elapsed());
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        for (i, (kind, _, _)) in group.iter().enumerate() {
            match found[i] {
                Some(t) => println!("    {kind:<42} {:.1} s", t.as_secs_f64()),
                None => {
                    all_corrected = false;
                    println!("    {kind:<42} not corrected within 2 sweep periods");
                }
            }
        }
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert!(status.success(), "the daemon exits 0 on SIGTERM");
    assert!(all_corrected, "every drift is corrected");
    drop(groups);
    rt.block_on(emu.shutdown()).unwrap();
}
