//! A GitLab emulator started in-process for one test, and a desired-state directory to run
//! `reconcile` against it.

use std::path::Path;
use std::process::{Command, Output};

use gitlab_emulator::{Config, Emulator, Faults};
use serde_json::Value;

pub const TOKEN: &str = "admin-token-for-tests";

/// The reconcile key shared by every run of a test that plans and applies as different people
/// (CI and the daemon share theirs the same way).
pub const KEY: &str = "reconcile-key-for-tests";

/// A GitLab user with a personal access token and an SSH key registered in their profile.
pub struct Person {
    pub username: String,
    pub id: u64,
    pub token: String,
    /// Private key file (no passphrase); `<key>.pub` beside it.
    pub key: std::path::PathBuf,
    _keys: std::sync::Arc<tempfile::TempDir>,
}

impl Person {
    /// Environment of a run as this person (their token, the shared key).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("GITLAB_TOKEN", self.token.clone()),
            ("RECONCILE_FINGERPRINT_KEY", KEY.to_string()),
        ]
    }

    pub fn public_key(&self) -> std::path::PathBuf {
        self.key.with_extension("pub")
    }
}

/// A new ed25519 key pair made by `ssh-keygen` in `dir` (no passphrase).
pub fn ssh_keygen(dir: &Path, name: &str) -> std::path::PathBuf {
    let key = dir.join(name);
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&key)
        .output()
        .expect("ssh-keygen runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    key
}

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

    /// The emulator's whole state (`GET /-/emulator/state`), e.g. to read a hidden variable's
    /// value, which the API never returns.
    pub fn state(&self) -> Value {
        let url = format!("{}/-/emulator/state", self.url());
        self.rt.block_on(async {
            self.http
                .get(url)
                .send()
                .await
                .expect("emulator answers")
                .json()
                .await
                .expect("JSON state")
        })
    }

    /// A REST call as an admin; returns (status, JSON body or Null).
    pub fn api(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.api_as(TOKEN, method, path, body)
    }

    /// A REST call with `token`; returns (status, JSON body or Null).
    pub fn api_as(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let url = format!("{}/api/v4/{}", self.url(), path.trim_start_matches('/'));
        self.rt.block_on(async {
            let mut req = self
                .http
                .request(method.parse().unwrap(), url)
                .header("PRIVATE-TOKEN", token);
            if let Some(b) = body {
                req = req.json(&b);
            }
            let rsp = req.send().await.expect("emulator answers");
            let status = rsp.status().as_u16();
            let text = rsp.text().await.unwrap_or_default();
            (status, serde_json::from_str(&text).unwrap_or(Value::Null))
        })
    }

    /// Creates a user (an administrator when `admin`) with an `api` token and an SSH key.
    pub fn person(&self, username: &str, admin: bool) -> Person {
        let (status, user) = self.api(
            "POST",
            "users",
            Some(serde_json::json!({
                "username": username,
                "name": username,
                "email": format!("{username}@example.com"),
                "force_random_password": true,
                "admin": admin,
                "skip_confirmation": true,
            })),
        );
        assert_eq!(status, 201, "{user}");
        let id = user["id"].as_u64().unwrap();
        let token = self
            .emu()
            .create_token(serde_json::json!({"user": username, "scopes": ["api"]}));
        let token = token["token"].as_str().unwrap().to_string();
        let keys = std::sync::Arc::new(tempfile::tempdir().unwrap());
        let key = ssh_keygen(keys.path(), username);
        let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
        let (status, body) = self.api(
            "POST",
            &format!("users/{id}/keys"),
            Some(serde_json::json!({"title": "laptop", "key": public.trim()})),
        );
        assert_eq!(status, 201, "{body}");
        Person {
            username: username.into(),
            id,
            token,
            key,
            _keys: keys,
        }
    }

    /// A token of `username` with these scopes.
    pub fn token(&self, username: &str, scopes: &[&str]) -> String {
        let t = self
            .emu()
            .create_token(serde_json::json!({"user": username, "scopes": scopes}));
        t["token"].as_str().unwrap().to_string()
    }

    /// A CI job (control plane): `spec` as the emulator takes it; returns the job with its
    /// `token`.
    pub fn job(&self, spec: Value) -> Value {
        self.emu().create_job(spec)
    }

    pub fn update_job(&self, id: u64, spec: Value) -> Value {
        self.emu().update_job(id, spec)
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
