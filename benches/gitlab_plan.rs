//! Benchmark: no-change `reconcile plan`s of growing fleets against the GitLab emulator, at 0 ms
//! (CPU: must grow linearly with the fleet) and with 20 ms of injected latency per request
//! (wall time against the floor: the minimal request count × 20 ms ÷ concurrency). Prints CPU
//! of reconcile's own threads, wall, requests and the ratio to the floor. Nothing is asserted
//! on time; the request count must be the minimum.
//!
//! `cargo bench --bench gitlab_plan` (`FLEET_PROJECTS=1000,3000,10000` by default;
//! `FLEET_RATE_LIMIT_RPM=600` also plans the largest fleet against a rate-limited emulator, and
//! applies `FLEET_RATE_LIMIT_CHANGES` (default 1,002) variable changes under that limit: wall
//! against the rate floor, and the share of 429s).

use std::time::Instant;

use gitlab_emulator::{Config, Emulator, Faults};
use reconcile::pipeline::{self, Settings};

#[path = "fleet/mod.rs"]
mod fleet;
use fleet::{fleet, fleet_with_values};

const TOKEN: &str = "bench-admin-token";
const LATENCY_MS: u64 = 20;

/// CPU seconds (user + system) of this process's main thread and of its threads whose name
/// starts with `prefix`.
fn cpu_of_threads(prefix: &str) -> f64 {
    let main = std::process::id().to_string();
    let ticks = 100.0; // USER_HZ on Linux
    let mut total = 0u64;
    for task in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if !comm.starts_with(prefix) && task.file_name().to_str() != Some(main.as_str()) {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // Fields after the parenthesised name: state is field 3, utime 14, stime 15.
        let after = stat.rsplit_once(") ").map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after.split_whitespace().collect();
        if fields.len() > 12 {
            total +=
                fields[11].parse::<u64>().unwrap_or(0) + fields[12].parse::<u64>().unwrap_or(0);
        }
    }
    total as f64 / ticks
}

/// Waits for the start of the next minute: Rack::Attack's windows are aligned on the epoch, so
/// a rate-limited run starts with a whole window and its floor is requests ÷ rate.
fn at_next_window() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let into = now.as_secs_f64() % 60.0;
    std::thread::sleep(std::time::Duration::from_secs_f64(60.0 - into + 0.05));
}

struct Measured {
    wall: f64,
    cpu: f64,
    requests: u64,
}

/// One no-change plan on the main thread and the `reconcile` runtime (the emulator runs on its
/// own runtime, `emulator`), measured.
fn measure(
    rt: &tokio::runtime::Runtime,
    dir: &std::path::Path,
    settings: &Settings,
    emu: &Emulator,
) -> Measured {
    emu.reset_counters();
    let cpu0 = cpu_of_threads("reconcile");
    let start = Instant::now();
    let planned = rt
        .block_on(pipeline::plan(dir, settings))
        .map(|p| p.plan)
        .unwrap_or_else(|_| panic!("fleet plans"));
    let wall = start.elapsed().as_secs_f64();
    let cpu = cpu_of_threads("reconcile") - cpu0;
    assert!(planned.is_empty(), "the seeded fleet has no changes");
    Measured {
        wall,
        cpu,
        requests: emu.counters().total,
    }
}

/// Applies the fleet (no latency, no gate).
fn seed(rt: &tokio::runtime::Runtime, dir: &std::path::Path, settings: &Settings) -> usize {
    let planned = rt
        .block_on(pipeline::plan(dir, settings))
        .unwrap_or_else(|_| panic!("fleet plans"));
    let steps = planned.plan.steps.len();
    // Seeding is an ungated --auto-approve: through verify like every apply.
    let gates = reconcile::approve::Gates::new(&planned.state.config, &planned.trusted);
    let revision = pipeline::revision(&planned.state);
    let inputs = reconcile::verify::Inputs {
        state: &planned.state,
        revision: &revision,
        trusted: &planned.trusted,
        gates: &gates,
        key: None,
        allow_deletes: true,
        now: std::time::SystemTime::now(),
    };
    let io = reconcile::verify::Io {
        providers: &planned.providers,
        desired: &planned.desired,
        aws: None,
        directory: None,
    };
    let approved = rt
        .block_on(reconcile::verify::verify(
            reconcile::verify::Source::Fresh {
                plan: planned.plan.clone(),
                author: reconcile::approve::VerifiedAuthor::Unknown("benchmark".into()),
            },
            &inputs,
            &io,
        ))
        .unwrap_or_else(|e| panic!("the fleet is ungated: {e}"));
    let report = rt.block_on(reconcile::apply::run(
        &approved,
        &planned.providers,
        &planned.desired,
        &planned.graph,
        None,
        None,
        &|_, _| {},
    ));
    assert_eq!(report.failed() + report.skipped(), 0, "seeding failed");
    steps
}

fn main() {
    let sizes: Vec<usize> = std::env::var("FLEET_PROJECTS")
        .unwrap_or_else(|_| "1000,3000,10000".into())
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .collect();
    let users: usize = 300;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("reconcile")
        .build()
        .unwrap();
    let emu_rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("emulator")
        .build()
        .unwrap();
    let emu = emu_rt
        .block_on(Emulator::start(Config {
            admin_tokens: vec![TOKEN.into()],
            ..Config::default()
        }))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = emu.url();
    let settings = Settings::from_env(|k| match k {
        "GITLAB_URL" => Some(url.clone()),
        "GITLAB_TOKEN" => Some(TOKEN.into()),
        _ => None,
    });
    let concurrency = settings.client.concurrency;
    let user_pages = (users + 1).div_ceil(100) as u64;

    println!(
        "no-change plans: N projects (6 variables, 2 protected branches, 4 members each) and {users} users, {concurrency} in flight; CPU is the reconcile runtime's threads only"
    );
    println!(
        "{:>8} {:>9} {:>9} {:>13} {:>9} {:>9} {:>9} {:>7} {:>9} {:>7}",
        "projects",
        "requests",
        "cpu 0ms",
        "cpu/project",
        "wall 0ms",
        "wall 20ms",
        "floor",
        "ratio",
        "reads",
        "ratio"
    );
    println!(
        "(reads: the observation alone at 20 ms, after loading and preflight, against its floor)"
    );
    let mut last = None;
    let mut rows = Vec::new();
    for &projects in &sizes {
        fleet(dir.path(), projects, users);
        emu.clear_faults();
        let seed_start = Instant::now();
        let steps = seed(&rt, dir.path(), &settings);
        eprintln!(
            "seeded {projects} projects: {steps} steps in {:.1} s",
            seed_start.elapsed().as_secs_f64()
        );
        let fast = measure(&rt, dir.path(), &settings, &emu);
        emu.set_faults(Faults {
            latency_ms: LATENCY_MS,
            ..Faults::default()
        })
        .unwrap();
        let slow = measure(&rt, dir.path(), &settings, &emu);
        // The reads alone (after loading and preflight), against their own floor.
        let prepared = rt
            .block_on(pipeline::prepare(dir.path(), &settings))
            .unwrap_or_else(|_| panic!("fleet prepares"));
        let started = Instant::now();
        let live = rt.block_on(prepared.providers.observe(&prepared.desired));
        let observe = started.elapsed().as_secs_f64();
        assert!(!live.objects.is_empty());
        emu.clear_faults();
        let floor_requests = 4 * projects as u64 + user_pages + 3;
        assert_eq!(
            slow.requests, floor_requests,
            "no request beyond the minimum"
        );
        let floor = floor_requests as f64 * LATENCY_MS as f64 / 1000.0 / concurrency as f64;
        let read_floor =
            (floor_requests - 3) as f64 * LATENCY_MS as f64 / 1000.0 / concurrency as f64;
        println!(
            "{projects:>8} {:>9} {:>8.2}s {:>11.2}ms {:>8.2}s {:>8.2}s {:>8.2}s {:>7.2} {:>8.2}s {:>7.2}",
            slow.requests,
            fast.cpu,
            fast.cpu * 1000.0 / projects as f64,
            fast.wall,
            slow.wall,
            floor,
            slow.wall / floor,
            observe,
            observe / read_floor
        );
        rows.push((projects, fast.cpu / projects as f64));
        last = Some(projects);
    }
    if let (Some((small, per_small)), Some((large, per_large))) = (rows.first(), rows.last())
        && small != large
    {
        println!(
            "CPU per project at {large} ÷ at {small}: {:.2} (flat is 1.00)",
            per_large / per_small
        );
    }
    let projects = last.expect("at least one size");
    let floor_requests = 4 * projects as u64 + user_pages + 3;

    // Under a rate limit (`FLEET_RATE_LIMIT_RPM`): the largest fleet on a throttled emulator
    // (Rack::Attack's fixed windows of a minute), from the start of a window.
    if let Some(rpm) = std::env::var("FLEET_RATE_LIMIT_RPM")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
    {
        let state = emu.dump_state();
        let throttled = emu_rt
            .block_on(Emulator::start(Config {
                admin_tokens: vec![TOKEN.into()],
                rate_limit: Some(gitlab_emulator::RateLimit {
                    requests_per_minute: rpm,
                    headers: true,
                    ..gitlab_emulator::RateLimit::default()
                }),
                ..Config::default()
            }))
            .unwrap();
        throttled.load_state(state).unwrap();
        let url = throttled.url();
        let settings = Settings::from_env(|k| match k {
            "GITLAB_URL" => Some(url.clone()),
            "GITLAB_TOKEN" => Some(TOKEN.into()),
            _ => None,
        });
        at_next_window();
        let m = measure(&rt, dir.path(), &settings, &throttled);
        let counters = throttled.counters();
        let answered = counters.total - counters.rate_limited;
        let floor = answered as f64 * 60.0 / f64::from(rpm);
        println!(
            "no-change plan of {projects} projects, rate limit {rpm} requests/min per user (fixed windows, started at a window's start):"
        );
        println!("  wall time      {:.2} s (CPU {:.2} s)", m.wall, m.cpu);
        println!(
            "  requests       {answered} answered (minimum {floor_requests}), {} refused with 429 ({:.2} %)",
            counters.rate_limited,
            counters.rate_limited as f64 * 100.0 / counters.total.max(1) as f64
        );
        println!("  floor          {floor:.2} s (answered requests at {rpm}/min)");
        if floor > 0.0 {
            println!("  ratio to floor {:.2}", m.wall / floor);
        }
        emu_rt.block_on(throttled.shutdown()).unwrap();

        // Applying variable changes under the same limit (Rack::Attack's fixed window).
        let changes: usize = std::env::var("FLEET_RATE_LIMIT_CHANGES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1002);
        let small = changes.div_ceil(6);
        let small_dir = tempfile::tempdir().unwrap();
        let seeding = emu_rt
            .block_on(Emulator::start(Config {
                admin_tokens: vec![TOKEN.into()],
                ..Config::default()
            }))
            .unwrap();
        fleet(small_dir.path(), small, 50);
        let url = seeding.url();
        let settings = Settings::from_env(|k| match k {
            "GITLAB_URL" => Some(url.clone()),
            "GITLAB_TOKEN" => Some(TOKEN.into()),
            _ => None,
        });
        seed(&rt, small_dir.path(), &settings);
        let state = seeding.dump_state();
        emu_rt.block_on(seeding.shutdown()).unwrap();
        let throttled = emu_rt
            .block_on(Emulator::start(Config {
                admin_tokens: vec![TOKEN.into()],
                rate_limit: Some(gitlab_emulator::RateLimit {
                    requests_per_minute: rpm,
                    headers: true,
                    ..gitlab_emulator::RateLimit::default()
                }),
                ..Config::default()
            }))
            .unwrap();
        throttled.load_state(state).unwrap();
        fleet_with_values(small_dir.path(), small, 50, "-changed");
        let url = throttled.url();
        let settings = Settings::from_env(|k| match k {
            "GITLAB_URL" => Some(url.clone()),
            "GITLAB_TOKEN" => Some(TOKEN.into()),
            _ => None,
        });
        throttled.reset_counters();
        at_next_window();
        let cpu0 = cpu_of_threads("reconcile");
        let start = Instant::now();
        let steps = seed(&rt, small_dir.path(), &settings);
        let wall = start.elapsed().as_secs_f64();
        let cpu = cpu_of_threads("reconcile") - cpu0;
        let counters = throttled.counters();
        let floor =
            counters.total.saturating_sub(counters.rate_limited) as f64 * 60.0 / f64::from(rpm);
        println!(
            "apply of {steps} variable changes ({small} projects), rate limit {rpm} requests/min per user (fixed windows):"
        );
        println!("  wall time      {wall:.1} s (CPU {cpu:.2} s)");
        println!(
            "  requests       {} ({} refused with 429: {:.2} %)",
            counters.total,
            counters.rate_limited,
            counters.rate_limited as f64 * 100.0 / counters.total.max(1) as f64
        );
        println!("  rate floor     {floor:.1} s (answered requests at {rpm}/min)");
        println!("  ratio to floor {:.3}", wall / floor);
        emu_rt.block_on(throttled.shutdown()).unwrap();
    }
    emu_rt.block_on(emu.shutdown()).unwrap();
}
