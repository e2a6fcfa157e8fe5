//! A real `moto_server` (PyPI `moto[server]`) per test, on 127.0.0.1 and an ephemeral port.
//!
//! The binary is `<repo>/.venv/bin/moto_server` (installed by `scripts/bootstrap`), or the path in
//! `MOTO_SERVER`. It is started with `-p 0`; the port is read from werkzeug's
//! ` * Running on http://127.0.0.1:PORT` line on stderr, and stderr is drained for the server's
//! whole life (it logs every request; a full pipe would stall it). The last lines are kept for
//! panic messages. The process is killed when the [`Moto`] is dropped.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_secretsmanager::config::Credentials;

pub const REGION: &str = "us-east-1";
const STARTUP: Duration = Duration::from_secs(60);
const LOG_LINES: usize = 50;

pub struct Moto {
    child: Child,
    port: u16,
    log: Arc<Mutex<VecDeque<String>>>,
}

impl Moto {
    /// Starts a fresh server and waits until it answers HTTP.
    pub fn start() -> Moto {
        let binary = binary();
        let mut child = Command::new(&binary)
            .args(["-H", "127.0.0.1", "-p", "0"])
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let (port_tx, port_rx) = mpsc::channel();
        let lines = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(port) = listening_port(&line) {
                    let _ = port_tx.send(port);
                }
                let mut lines = lines.lock().unwrap();
                if lines.len() == LOG_LINES {
                    lines.pop_front();
                }
                lines.push_back(line);
            }
        });
        let port = port_rx.recv_timeout(STARTUP);
        let mut moto = Moto {
            child,
            port: port.unwrap_or(0),
            log,
        };
        if port.is_err() {
            let status = moto.child.try_wait().ok().flatten();
            panic!(
                "moto_server did not report its port within {STARTUP:?} (exit: {status:?}); log:\n{}",
                moto.log()
            );
        }
        moto.wait_until_answering();
        moto
    }

    /// `http://127.0.0.1:PORT`
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The standard AWS environment that points the `reconcile` binary at this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_REGION", REGION.to_owned()),
            ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
        ]
    }

    /// An SDK configuration for seeding and inspecting this server from tests: explicit
    /// endpoint, region and static credentials, and no retries (moto answers unimplemented
    /// operations with 500, which the SDK would otherwise retry).
    pub async fn sdk_config(&self) -> SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .endpoint_url(self.endpoint())
            .credentials_provider(Credentials::new("testing", "testing", None, None, "moto"))
            .retry_config(RetryConfig::disabled())
            .load()
            .await
    }

    /// The last lines moto_server wrote to stderr.
    pub fn log(&self) -> String {
        let lines = self.log.lock().unwrap();
        lines.iter().map(|l| format!("{l}\n")).collect()
    }

    fn wait_until_answering(&mut self) {
        let deadline = Instant::now() + STARTUP;
        loop {
            if answers(self.port) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("moto_server exited ({status}); log:\n{}", self.log());
            }
            if Instant::now() > deadline {
                panic!(
                    "moto_server on port {} did not answer within {STARTUP:?}; log:\n{}",
                    self.port,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn binary() -> PathBuf {
    let path = std::env::var_os("MOTO_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| super::root().join(".venv/bin/moto_server"));
    if !path.is_file() {
        panic!(
            "moto_server not found: run scripts/bootstrap (looked for {})",
            path.display()
        );
    }
    path
}

/// The port in werkzeug's ` * Running on http://127.0.0.1:PORT` line.
fn listening_port(line: &str) -> Option<u16> {
    let rest = &line[line.find("Running on http://")? + "Running on http://".len()..];
    let digits: String = rest
        .rsplit(':')
        .next()?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok().filter(|&port| port != 0)
}

/// Whether an HTTP request to `/moto-api/` gets a response.
fn answers(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = "GET /moto-api/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 5];
    stream.read_exact(&mut head).is_ok() && &head == b"HTTP/"
}
