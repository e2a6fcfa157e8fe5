//! The running emulator: shared application state, the accept loop (hyper
//! HTTP/1 connections serving the axum router, so a handler can ask for the
//! connection to be dropped), graceful shutdown and the public [`Emulator`]
//! handle.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tower::ServiceExt;

use crate::config::{Config, TokenSpec, parse_admin_tokens, parse_user_tokens};
use crate::counters::{CounterStore, Counters};
use crate::error::EmulatorError;
use crate::faults::{FaultEngine, Faults};
use crate::ratelimit::RateLimiter;
use crate::state::State;

/// Everything the handlers share.
pub(crate) struct App {
    pub config: Config,
    pub admin_specs: Vec<TokenSpec>,
    pub user_specs: Vec<TokenSpec>,
    pub base_url: String,
    pub state: Mutex<State>,
    pub counters: CounterStore,
    pub faults: FaultEngine,
    pub limiter: RateLimiter,
    /// System hook deliveries.
    pub hooks: crate::hooks::Dispatcher,
}

impl App {
    /// A fresh state with the configured tokens.
    pub fn fresh_state(&self) -> State {
        State::fresh(&self.admin_specs, &self.user_specs)
    }

    /// Replaces the state with `state`, re-applying the configured tokens.
    pub fn replace_state(&self, mut state: State) {
        state.apply_tokens(&self.admin_specs, &self.user_specs);
        *self.state.lock() = state;
    }

    /// Writes the state file, if one is configured.
    pub fn dump_to_file(&self) -> Result<Option<std::path::PathBuf>, EmulatorError> {
        let Some(path) = &self.config.state_file else {
            return Ok(None);
        };
        let snapshot = self.state.lock().clone();
        snapshot.save(path)?;
        Ok(Some(path.clone()))
    }
}

/// Marker placed in a response's extensions to make the connection drop
/// without sending it (injected connection reset).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ResetConnection;

#[derive(Debug, thiserror::Error)]
#[error("connection reset injected by the emulator")]
struct InjectedReset;

/// A running emulator. Dropping it without [`Emulator::shutdown`] stops the
/// listener but does not write the state file.
pub struct Emulator {
    app: Arc<App>,
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl Emulator {
    /// Binds `config.listen`, loads `config.state_file` when it exists, and
    /// serves until [`Emulator::shutdown`].
    pub async fn start(config: Config) -> Result<Emulator, EmulatorError> {
        let admin_specs = parse_admin_tokens(&config.admin_tokens);
        let user_specs = parse_user_tokens(&config.user_tokens);
        check_tokens(&admin_specs, &user_specs)?;
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| EmulatorError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let addr = listener
            .local_addr()
            .map_err(|source| EmulatorError::Bind {
                addr: config.listen,
                source,
            })?;
        let state = match &config.state_file {
            Some(path) if path.exists() => {
                let mut s = State::load(path)?;
                s.apply_tokens(&admin_specs, &user_specs);
                tracing::info!(path = %path.display(), users = s.users.len(), projects = s.projects.len(), "Loaded state file");
                s
            }
            _ => State::fresh(&admin_specs, &user_specs),
        };
        let app = Arc::new(App {
            base_url: format!("http://{addr}"),
            admin_specs,
            user_specs,
            state: Mutex::new(state),
            counters: CounterStore::default(),
            faults: FaultEngine::default(),
            limiter: RateLimiter::default(),
            hooks: crate::hooks::Dispatcher::new(),
            config,
        });
        app.hooks.set_instance(&app.base_url);
        let router = crate::api::router(app.clone()).merge(crate::control::router(app.clone()));
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(accept_loop(listener, router, stop_rx));
        tracing::info!(%addr, "GitLab emulator listening");
        Ok(Emulator {
            app,
            addr,
            stop,
            task: Some(task),
        })
    }

    /// Base URL without the `/api/v4` suffix, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        self.app.base_url.clone()
    }

    /// The bound socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Snapshot of the request counters.
    pub fn counters(&self) -> Counters {
        self.app.counters.snapshot()
    }

    /// Zeroes the request counters.
    pub fn reset_counters(&self) {
        self.app.counters.reset();
    }

    /// Replaces the fault settings and restarts the decision sequence from `faults.seed`.
    pub fn set_faults(&self, faults: Faults) -> Result<(), EmulatorError> {
        faults
            .validate()
            .map_err(|reason| EmulatorError::Config { reason })?;
        self.app.faults.set(faults);
        Ok(())
    }

    /// Turns fault injection off.
    pub fn clear_faults(&self) {
        self.app.faults.set(Faults::default());
    }

    /// Restores the fresh instance (root user and configured tokens only).
    pub fn reset_state(&self) {
        let fresh = self.app.fresh_state();
        *self.app.state.lock() = fresh;
        self.app.limiter.reset();
    }

    /// The whole state as JSON (the state-file format).
    pub fn dump_state(&self) -> serde_json::Value {
        serde_json::to_value(&*self.app.state.lock()).unwrap_or(serde_json::Value::Null)
    }

    /// Replaces the state with `state` (the state-file format); configured tokens stay valid.
    pub fn load_state(&self, state: serde_json::Value) -> Result<(), EmulatorError> {
        let parsed =
            State::from_json_value(state).map_err(|source| EmulatorError::StateFormat {
                path: "<in-memory>".into(),
                source,
            })?;
        self.app.replace_state(parsed);
        Ok(())
    }

    /// Creates a personal access token (the `POST /-/emulator/tokens` body:
    /// `{"user": "alice", "scopes": ["read_api"], "token": "optional-secret",
    /// "expires_at": "2030-01-01", "name": …, "description": …, "revoked": false}`)
    /// and returns GitLab's `PersonalAccessTokenWithToken` entity (with `token`).
    ///
    /// # Panics
    /// On an invalid request (unknown user or scope, duplicate secret); see
    /// [`Emulator::try_create_token`].
    pub fn create_token(&self, spec: serde_json::Value) -> serde_json::Value {
        self.try_create_token(spec)
            .unwrap_or_else(|e| panic!("create_token: {e}"))
    }

    /// [`Emulator::create_token`] without panicking.
    pub fn try_create_token(
        &self,
        spec: serde_json::Value,
    ) -> Result<serde_json::Value, EmulatorError> {
        crate::seed::create_token(&self.app, &spec).map_err(fixture_error)
    }

    /// Creates a CI job (the `POST /-/emulator/jobs` body: `{"project": 1 or
    /// "group/proj", "user": "alice", "name": …, "stage": …, "status":
    /// "running", "ref": …, "pipeline_id": …, "trace": …}`) and returns GitLab's
    /// job entity plus `"token"` (its `CI_JOB_TOKEN`).
    ///
    /// # Panics
    /// On an invalid request; see [`Emulator::try_create_job`].
    pub fn create_job(&self, spec: serde_json::Value) -> serde_json::Value {
        self.try_create_job(spec)
            .unwrap_or_else(|e| panic!("create_job: {e}"))
    }

    /// [`Emulator::create_job`] without panicking.
    pub fn try_create_job(
        &self,
        spec: serde_json::Value,
    ) -> Result<serde_json::Value, EmulatorError> {
        crate::seed::create_job(&self.app, &spec).map_err(fixture_error)
    }

    /// Updates job `id` (`{"status": "success", "trace": "appended text",
    /// "failure_reason": …}`) and returns the job entity plus `"token"`.
    ///
    /// # Panics
    /// On an unknown job or invalid status; see [`Emulator::try_update_job`].
    pub fn update_job(&self, id: u64, spec: serde_json::Value) -> serde_json::Value {
        self.try_update_job(id, spec)
            .unwrap_or_else(|e| panic!("update_job: {e}"))
    }

    /// [`Emulator::update_job`] without panicking.
    pub fn try_update_job(
        &self,
        id: u64,
        spec: serde_json::Value,
    ) -> Result<serde_json::Value, EmulatorError> {
        crate::seed::update_job(&self.app, id, &spec).map_err(fixture_error)
    }

    /// Stops accepting, lets in-flight requests finish (up to 5 s), and writes
    /// the state file when one is configured.
    pub async fn shutdown(mut self) -> Result<(), EmulatorError> {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        if let Some(path) = self.app.dump_to_file()? {
            tracing::info!(path = %path.display(), "Wrote state file");
        }
        Ok(())
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

fn fixture_error(e: crate::seed::SeedError) -> EmulatorError {
    EmulatorError::Fixture {
        status: e.status.as_u16(),
        reason: e.message,
    }
}

fn check_tokens(admins: &[TokenSpec], users: &[TokenSpec]) -> Result<(), EmulatorError> {
    let mut seen = std::collections::HashSet::new();
    for token in admins.iter().chain(users).map(|s| &s.token) {
        if token.is_empty() {
            return Err(EmulatorError::Config {
                reason: "empty token".into(),
            });
        }
        if !seen.insert(token) {
            return Err(EmulatorError::Config {
                reason: format!("token {token:?} given twice"),
            });
        }
    }
    Ok(())
}

async fn accept_loop(listener: TcpListener, router: Router, mut stop: watch::Receiver<bool>) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(error) => {
                        tracing::warn!(%error, "Accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let router = router.clone();
                let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                    let router = router.clone();
                    async move {
                        let resp = match router.oneshot(req.map(Body::new)).await {
                            Ok(resp) => resp,
                            Err(never) => match never {},
                        };
                        if resp.extensions().get::<ResetConnection>().is_some() {
                            return Err(InjectedReset);
                        }
                        Ok::<_, InjectedReset>(resp)
                    }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service);
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(error) = conn.await {
                        tracing::debug!(%peer, %error, "Connection ended with an error");
                    }
                });
            }
            _ = stop.changed() => break,
        }
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(Duration::from_secs(5)) => {
            tracing::warn!("Connections still open after 5 s; closing anyway");
        }
    }
}
