//! A `reconcile daemon` child process with its HTTP endpoints, and a local webhook receiver.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct Daemon {
    child: Child,
    pub url: String,
    log: Arc<Mutex<String>>,
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
}

impl Daemon {
    /// Starts `cmd` (a `reconcile daemon ... --listen 127.0.0.1:0`) and waits for its address.
    pub fn start(mut cmd: Command) -> Daemon {
        cmd.stderr(Stdio::piped()).stdout(Stdio::null());
        if std::env::var_os("RECONCILE_LOG").is_none() {
            cmd.env("RECONCILE_LOG", "info");
        }
        let mut child = cmd.spawn().expect("daemon starts");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("reconcile daemon: listening on ") {
                    let _ = tx.send(addr.to_string());
                }
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let url = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                panic!("daemon did not listen:\n{}", log.lock().unwrap());
            }
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        Daemon {
            child,
            url,
            log,
            rt,
            http: reqwest::Client::new(),
        }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// `(status, body)` of a request to the daemon.
    pub fn request(&self, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
        self.request_with(method, path, token, None)
    }

    /// `(status, body)` of a request to the daemon with a raw JSON body.
    pub fn request_with(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> (u16, String) {
        self.rt.block_on(async {
            let mut req = self
                .http
                .request(method.parse().unwrap(), format!("{}{path}", self.url));
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            if let Some(b) = body {
                req = req.header("content-type", "application/json").body(b);
            }
            let rsp = req.send().await.expect("daemon answers");
            (rsp.status().as_u16(), rsp.text().await.unwrap())
        })
    }

    /// Status of a GitLab system hook delivery to `/hooks/gitlab` with `X-Gitlab-Token`.
    pub fn hook(&self, event: &str, token: Option<&str>) -> u16 {
        self.rt.block_on(async {
            let mut req = self
                .http
                .post(format!("{}/hooks/gitlab", self.url))
                .header("content-type", "application/json")
                .header("x-gitlab-event", "System Hook")
                .body(event.to_string());
            if let Some(t) = token {
                req = req.header("x-gitlab-token", t);
            }
            req.send().await.expect("daemon answers").status().as_u16()
        })
    }

    pub fn get_json(&self, path: &str) -> (u16, Value) {
        let (status, body) = self.request("GET", path, None);
        (status, serde_json::from_str(&body).unwrap_or(Value::Null))
    }

    /// `/readyz` once `until` holds for it (panics with the log after `timeout`).
    pub fn wait(&self, what: &str, timeout: Duration, until: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            let (_, ready) = self.get_json("/readyz");
            if until(&ready) {
                return ready;
            }
            if start.elapsed() > timeout {
                panic!(
                    "timed out waiting for {what}; /readyz: {ready}\nlog:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Finished cycles.
    pub fn cycles(&self) -> u64 {
        self.get_json("/readyz").1["cycles"].as_u64().unwrap_or(0)
    }

    /// Waits until `n` more cycles have finished.
    pub fn wait_cycles(&self, n: u64) -> Value {
        let target = self.cycles() + n;
        self.wait(
            &format!("{n} more cycle(s)"),
            Duration::from_secs(60),
            |r| r["cycles"].as_u64().unwrap_or(0) >= target,
        )
    }

    /// Prometheus samples of `/metrics` (the text must parse).
    pub fn metrics(&self) -> Vec<prometheus_parse::Sample> {
        let (status, body) = self.request("GET", "/metrics", None);
        assert_eq!(status, 200);
        let lines = body.lines().map(|l| Ok(l.to_string()));
        prometheus_parse::Scrape::parse(lines)
            .expect("/metrics is Prometheus text")
            .samples
    }

    /// Sum of a metric's samples whose labels include `labels`.
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.metrics()
            .iter()
            .filter(|s| s.metric == name)
            .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => 0.0,
            })
            .sum()
    }

    /// Sends SIGTERM and waits for the exit (at most 60 s).
    pub fn terminate(&mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(killed.success());
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Let the reader thread take the last lines.
                std::thread::sleep(Duration::from_millis(100));
                return status;
            }
            if start.elapsed() > Duration::from_secs(60) {
                let _ = self.child.kill();
                panic!("daemon did not exit after SIGTERM:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Slack-compatible webhook receiver on loopback: records each message's `text`; the first
/// `fail_first` deliveries are answered 500.
pub struct Webhook {
    pub url: String,
    messages: Arc<Mutex<Vec<String>>>,
    _rt: tokio::runtime::Runtime,
}

impl Webhook {
    pub fn start(fail_first: usize) -> Webhook {
        use axum::{Json, Router, extract::State, http::StatusCode, routing::post};
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let attempts = Arc::new(Mutex::new(0usize));
        type Shared = (Arc<Mutex<Vec<String>>>, Arc<Mutex<usize>>, usize);
        let app =
            Router::new()
                .route(
                    "/hook/secret-path",
                    post(
                        |State((messages, attempts, fail)): State<Shared>,
                         Json(body): Json<Value>| async move {
                            let mut n = attempts.lock().unwrap();
                            *n += 1;
                            if *n <= fail {
                                return StatusCode::INTERNAL_SERVER_ERROR;
                            }
                            let text = body["text"].as_str().unwrap_or_default().to_string();
                            messages.lock().unwrap().push(text);
                            StatusCode::OK
                        },
                    ),
                )
                .with_state((Arc::clone(&messages), attempts, fail_first));
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        rt.spawn(async move { axum::serve(listener, app).await.unwrap() });
        Webhook {
            url: format!("http://{addr}/hook/secret-path"),
            messages,
            _rt: rt,
        }
    }

    pub fn messages(&self) -> Vec<String> {
        self.messages.lock().unwrap().clone()
    }

    /// Waits until a message containing `needle` arrived; returns it.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> String {
        let start = Instant::now();
        loop {
            if let Some(m) = self.messages().into_iter().find(|m| m.contains(needle)) {
                return m;
            }
            if start.elapsed() > timeout {
                panic!(
                    "no notification with `{needle}`; got: {:#?}",
                    self.messages()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
