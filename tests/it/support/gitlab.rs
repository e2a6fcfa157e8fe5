//! A GitLab emulator started in-process for one test, and a desired-state directory to run
//! `reconcile` against it.

use std::path::Path;
use std::process::{Command, Output};

use gitlab_emulator::{Config, Emulator, Faults};
use serde_json::Value;

pub const TOKEN: &str = "admin-token-for-tests";

pub struct Gitlab {
    rt: tokio::runtime::Runtime,
    emu: Option<Emulator>,
    http: reqwest::Client,
}

impl Gitlab {
    pub fn start() -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let emu = rt
            .block_on(Emulator::start(Config {
                admin_tokens: vec![TOKEN.into()],
                ..Config::default()
            }))
            .expect("emulator starts");
        Self {
            rt,
            emu: Some(emu),
            http: reqwest::Client::new(),
        }
    }

    fn emu(&self) -> &Emulator {
        self.emu.as_ref().expect("running")
    }

    pub fn url(&self) -> String {
        self.emu().url()
    }

    /// Requests counted since the last reset, by route template.
    pub fn counters(&self) -> gitlab_emulator::Counters {
        self.emu().counters()
    }

    pub fn reset_counters(&self) {
        self.emu().reset_counters();
    }

    pub fn set_faults(&self, faults: Faults) {
        self.emu().set_faults(faults).expect("valid faults");
    }

    pub fn clear_faults(&self) {
        self.emu().clear_faults();
    }

    /// A REST call as an admin; returns (status, JSON body or Null).
    pub fn api(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}/api/v4/{}", self.url(), path.trim_start_matches('/'));
        self.rt.block_on(async {
            let mut req = self
                .http
                .request(method.parse().unwrap(), url)
                .header("PRIVATE-TOKEN", TOKEN);
            if let Some(b) = body {
                req = req.json(&b);
            }
            let rsp = req.send().await.expect("emulator answers");
            let status = rsp.status().as_u16();
            let text = rsp.text().await.unwrap_or_default();
            (status, serde_json::from_str(&text).unwrap_or(Value::Null))
        })
    }

    /// Runs `reconcile ARGS --dir DIR` against this emulator (no AWS unless `extra_env` says).
    pub fn reconcile(&self, dir: &Path, args: &[&str], extra_env: &[(&str, String)]) -> Output {
        self.command(dir, args, extra_env)
            .output()
            .expect("run reconcile")
    }

    /// The command `reconcile` would run, for starting it in the background.
    pub fn command(&self, dir: &Path, args: &[&str], extra_env: &[(&str, String)]) -> Command {
        let mut cmd = self.base_command(args, extra_env);
        cmd.arg("--dir").arg(dir);
        cmd
    }

    /// `reconcile ARGS` against this emulator, without `--dir`.
    pub fn base_command(&self, args: &[&str], extra_env: &[(&str, String)]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_reconcile"));
        cmd.args(args)
            .env("NO_COLOR", "1")
            .env("GITLAB_URL", self.url())
            .env("GITLAB_TOKEN", TOKEN)
            .env("RECONCILE_RETRY_MIN_MS", "1")
            .env_remove("RECONCILE_FINGERPRINT_KEY")
            .env_remove("AWS_ENDPOINT_URL");
        cmd.env_remove("GITLAB_USER_LOGIN").env("USER", "tester");
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        cmd
    }
}

impl Drop for Gitlab {
    fn drop(&mut self) {
        if let Some(emu) = self.emu.take() {
            let _ = self.rt.block_on(emu.shutdown());
        }
    }
}

/// Writes a desired-state directory from `(relative path, content)` pairs.
pub fn desired_state(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (path, text) in files {
        let p = dir.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    dir
}
