//! Waiting for an ECS rollout: after a CreateService or an UpdateService that changes the
//! deployment, poll DescribeServices until the service is stable (one deployment, running =
//! desired, as the ServicesStable waiter defines it), fail on a timeout with the service's
//! latest events, and report a circuit-breaker rollback as such.
//!
//! The service is read through [`ServiceStatus`] so that tests drive the loop with scripted
//! DescribeServices sequences (moto does not simulate deployments), on a paused tokio clock.

use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;
use tracing::info;

use super::ecs_service::ServiceView;

/// Reads one service's current state.
#[async_trait]
pub trait ServiceStatus: Send + Sync {
    /// `Ok(None)` when the service does not exist (or is INACTIVE).
    async fn describe(&self, cluster: &str, service: &str) -> Result<Option<ServiceView>, String>;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RolloutOptions {
    pub timeout: Duration,
    pub poll: Duration,
}

impl Default for RolloutOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(600),
            poll: Duration::from_secs(15),
        }
    }
}

impl RolloutOptions {
    /// `RECONCILE_ROLLOUT_TIMEOUT_SECS` (default 600) and `RECONCILE_ROLLOUT_POLL_MS`
    /// (default 15000), from an injected environment lookup.
    pub fn from_env(get: &dyn Fn(&str) -> Option<String>) -> Self {
        let mut o = Self::default();
        if let Some(s) = get("RECONCILE_ROLLOUT_TIMEOUT_SECS").and_then(|v| v.parse().ok()) {
            o.timeout = Duration::from_secs(s);
        }
        if let Some(ms) = get("RECONCILE_ROLLOUT_POLL_MS").and_then(|v| v.parse().ok()) {
            o.poll = Duration::from_millis(ms);
        }
        o
    }
}

/// Why a rollout did not finish.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RolloutError {
    #[error("rolled back by the deployment circuit breaker: {reason}{events}")]
    RolledBack { reason: String, events: String },
    #[error("deployment failed: {reason}{events}")]
    Failed { reason: String, events: String },
    #[error(
        "not stable after {waited:?} ({running} of {desired} tasks running, {deployments} deployments){events}"
    )]
    Timeout {
        waited: Duration,
        running: i64,
        desired: i64,
        deployments: usize,
        events: String,
    },
    #[error("the service disappeared during the rollout")]
    Gone,
    #[error("DescribeServices failed: {0}")]
    Read(String),
}

/// The latest events, for failure reports.
fn events(s: &ServiceView) -> String {
    let lines: Vec<String> = s
        .events
        .iter()
        .take(5)
        .map(|e| format!("\n    event: {}", e.message))
        .collect();
    lines.concat()
}

/// Whether `service_td` (an ARN, or `family:revision` as moto stores it) names `expected`.
fn same_revision(service_td: &str, expected: &str) -> bool {
    service_td == expected
        || expected.ends_with(&format!("/{service_td}"))
        || service_td.ends_with(&format!("/{expected}"))
}

/// Polls until the service is stable. `expected_td` is the task definition the update set (a
/// stable service running another one was rolled back).
pub async fn wait_stable(
    status: &dyn ServiceStatus,
    cluster: &str,
    service: &str,
    expected_td: Option<&str>,
    options: RolloutOptions,
) -> Result<(), RolloutError> {
    let start = Instant::now();
    loop {
        let s = status
            .describe(cluster, service)
            .await
            .map_err(RolloutError::Read)?
            .ok_or(RolloutError::Gone)?;
        if let Some(failed) = s
            .deployments
            .iter()
            .find(|d| d.rollout_state.as_deref() == Some("FAILED"))
        {
            let reason = failed
                .rollout_state_reason
                .clone()
                .unwrap_or_else(|| "no reason given".into());
            // With rollback on, ECS starts a deployment of the previous revision.
            let rolling_back = s
                .deployments
                .iter()
                .any(|d| d.status == "PRIMARY" && d.id != failed.id);
            return Err(if rolling_back {
                RolloutError::RolledBack {
                    reason,
                    events: events(&s),
                }
            } else {
                RolloutError::Failed {
                    reason,
                    events: events(&s),
                }
            });
        }
        let stable = s.deployments.len() == 1 && s.running_count == s.desired_count;
        if stable {
            if let (Some(want), Some(have)) = (expected_td, s.task_definition.as_deref())
                && !same_revision(have, want)
            {
                return Err(RolloutError::RolledBack {
                    reason: format!("the service runs {have} again, not {want}"),
                    events: events(&s),
                });
            }
            info!(
                cluster,
                service,
                running = s.running_count,
                "Service is stable"
            );
            return Ok(());
        }
        let waited = start.elapsed();
        if waited >= options.timeout {
            return Err(RolloutError::Timeout {
                waited,
                running: s.running_count,
                desired: s.desired_count,
                deployments: s.deployments.len(),
                events: events(&s),
            });
        }
        info!(
            cluster,
            service,
            running = s.running_count,
            desired = s.desired_count,
            pending = s.pending_count,
            deployments = s.deployments.len(),
            waited_s = waited.as_secs(),
            "Waiting for the rollout"
        );
        tokio::time::sleep(options.poll).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::providers::aws::ecs_service::{DeploymentView, EventView};

    const NEW: &str = "arn:aws:ecs:us-east-1:123456789012:task-definition/web:8";
    const OLD: &str = "arn:aws:ecs:us-east-1:123456789012:task-definition/web:7";

    /// Plays DescribeServices answers in order; the last one repeats.
    struct Script {
        answers: Mutex<Vec<ServiceView>>,
        calls: Mutex<usize>,
    }

    impl Script {
        fn new(answers: Vec<ServiceView>) -> Self {
            Self {
                answers: Mutex::new(answers),
                calls: Mutex::new(0),
            }
        }

        fn calls(&self) -> usize {
            *self.calls.lock().unwrap()
        }
    }

    #[async_trait]
    impl ServiceStatus for Script {
        async fn describe(&self, _: &str, _: &str) -> Result<Option<ServiceView>, String> {
            *self.calls.lock().unwrap() += 1;
            let mut answers = self.answers.lock().unwrap();
            let next = if answers.len() > 1 {
                answers.remove(0)
            } else {
                answers[0].clone()
            };
            Ok(Some(next))
        }
    }

    fn deployment(id: &str, status: &str, td: &str, running: i64, state: &str) -> DeploymentView {
        DeploymentView {
            id: id.into(),
            status: status.into(),
            task_definition: td.into(),
            desired_count: 2,
            running_count: running,
            rollout_state: Some(state.into()),
            rollout_state_reason: None,
            created_at: None,
        }
    }

    fn service(td: &str, running: i64, deployments: Vec<DeploymentView>) -> ServiceView {
        ServiceView {
            service_name: "web".into(),
            status: "ACTIVE".into(),
            desired_count: 2,
            running_count: running,
            task_definition: Some(td.into()),
            deployments,
            events: vec![EventView {
                message: "(service web) has started 1 tasks".into(),
            }],
            ..Default::default()
        }
    }

    fn options() -> RolloutOptions {
        RolloutOptions {
            timeout: Duration::from_secs(60),
            poll: Duration::from_secs(5),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn success_after_two_deployments_become_one() {
        let script = Script::new(vec![
            service(
                NEW,
                2,
                vec![
                    deployment("new", "PRIMARY", NEW, 0, "IN_PROGRESS"),
                    deployment("old", "ACTIVE", OLD, 2, "COMPLETED"),
                ],
            ),
            service(
                NEW,
                3,
                vec![
                    deployment("new", "PRIMARY", NEW, 1, "IN_PROGRESS"),
                    deployment("old", "ACTIVE", OLD, 2, "COMPLETED"),
                ],
            ),
            service(
                NEW,
                2,
                vec![deployment("new", "PRIMARY", NEW, 2, "COMPLETED")],
            ),
        ]);
        let start = Instant::now();
        wait_stable(&script, "c", "web", Some(NEW), options())
            .await
            .unwrap();
        assert_eq!(script.calls(), 3);
        assert_eq!(start.elapsed(), Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn timeout_reports_counts_and_events() {
        let script = Script::new(vec![service(
            NEW,
            1,
            vec![
                deployment("new", "PRIMARY", NEW, 0, "IN_PROGRESS"),
                deployment("old", "ACTIVE", OLD, 1, "COMPLETED"),
            ],
        )]);
        let err = wait_stable(&script, "c", "web", Some(NEW), options())
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                RolloutError::Timeout {
                    running: 1,
                    desired: 2,
                    deployments: 2,
                    ..
                }
            ),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(text.starts_with("not stable after 60s"), "{text}");
        assert!(
            text.contains("event: (service web) has started 1 tasks"),
            "{text}"
        );
        assert_eq!(
            script.calls(),
            13,
            "one read at start and every 5 s for 60 s"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn circuit_breaker_rollback_is_reported() {
        let mut failed = deployment("new", "ACTIVE", NEW, 0, "FAILED");
        failed.rollout_state_reason =
            Some("ECS deployment circuit breaker: tasks failed to start.".into());
        let script = Script::new(vec![
            service(
                NEW,
                2,
                vec![
                    deployment("new", "PRIMARY", NEW, 0, "IN_PROGRESS"),
                    deployment("old", "ACTIVE", OLD, 2, "COMPLETED"),
                ],
            ),
            service(
                OLD,
                2,
                vec![
                    deployment("rollback", "PRIMARY", OLD, 2, "IN_PROGRESS"),
                    failed,
                ],
            ),
        ]);
        let err = wait_stable(&script, "c", "web", Some(NEW), options())
            .await
            .unwrap_err();
        assert!(matches!(err, RolloutError::RolledBack { .. }), "{err:?}");
        assert!(
            err.to_string().starts_with(
                "rolled back by the deployment circuit breaker: ECS deployment circuit breaker: tasks failed to start."
            ),
            "{err}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_completed_rollback_is_seen_by_the_task_definition() {
        let script = Script::new(vec![service(
            OLD,
            2,
            vec![deployment("rollback", "PRIMARY", OLD, 2, "COMPLETED")],
        )]);
        let err = wait_stable(&script, "c", "web", Some(NEW), options())
            .await
            .unwrap_err();
        assert!(matches!(err, RolloutError::RolledBack { .. }), "{err:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn moto_style_family_revision_counts_as_the_same_revision() {
        let script = Script::new(vec![service(
            "web:8",
            2,
            vec![deployment("d", "PRIMARY", OLD, 2, "IN_PROGRESS")],
        )]);
        wait_stable(&script, "c", "web", Some(NEW), options())
            .await
            .unwrap();
    }
}
