//! Seeding moto for the ECS scenarios (ECR repositories and images, secrets with
//! deterministic ARNs, clusters), and running `reconcile` on a copy of a desired-state
//! directory with relative paths (so that error locations are stable for goldens).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use aws_sdk_secretsmanager::types::Tag;
use sha2::{Digest, Sha256};

use super::moto::Moto;

/// Suffix of every seeded secret's ARN (moto's `_custom_id_` tag makes it deterministic).
pub const SECRET_SUFFIX: &str = "AbCdEf";

/// Values of the seeded secrets: none may appear in any output.
pub const SECRET_VALUES: &[&str] = &[
    "AKIAEXAMPLEECSSECRET01",
    "ecsSecretValue/02+abcdefghij",
    "inventory-db-password-SECRET03",
    "billing-db-password-SECRET04",
    "rabbitmq-password-SECRET05",
];

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// What the example desired state needs in AWS.
pub struct Seed<'a> {
    pub secrets: &'a [(&'a str, String)],
    /// (repository, tags)
    pub images: &'a [(&'a str, &'a [&'a str])],
    pub clusters: &'a [&'a str],
}

/// The example desired state's secrets, images (plus a newer tag of each), and clusters.
pub fn example_seed(moto: &Moto) {
    let db = |user: &str, password: &str| {
        serde_json::json!({"username": user, "password": password}).to_string()
    };
    let secrets = [
        (
            "cloud-design/gitlab-pipeline-user",
            serde_json::json!({
                "access_key_id": SECRET_VALUES[0],
                "secret_access_key": SECRET_VALUES[1],
            })
            .to_string(),
        ),
        (
            "cloud-design/inventory-db",
            db("inventory", SECRET_VALUES[2]),
        ),
        ("cloud-design/billing-db", db("billing", SECRET_VALUES[3])),
        ("cloud-design/rabbitmq", db("rabbit", SECRET_VALUES[4])),
        (
            "cloud-design/inventory-db-v2",
            db("inventory2", SECRET_VALUES[2]),
        ),
    ];
    seed(
        moto,
        &Seed {
            secrets: &secrets,
            images: &[
                ("api-gateway-app", &["1.3.0", "1.3.1"]),
                ("inventory-app", &["1.4.2", "1.4.3"]),
                ("billing-app", &["2.0.1", "2.0.2"]),
            ],
            clusters: &["cloud-design-cluster-staging", "cloud-design-cluster-prod"],
        },
    );
}

/// A Docker v2 manifest unique to `repo:tag`. moto's digest is the sha256 of the concatenated
/// layer digests (not of the manifest), which is deterministic too.
pub fn manifest(repo: &str, tag: &str) -> String {
    let layer = format!(
        "sha256:{}",
        hex::encode(Sha256::digest(format!("{repo}:{tag}")))
    );
    serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "size": 1000,
            "digest": format!("sha256:{}", hex::encode(Sha256::digest(format!("config {repo}:{tag}")))),
        },
        "layers": [{
            "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
            "size": 2000,
            "digest": layer,
        }],
    })
    .to_string()
}

/// The digest moto gives [`manifest`]`(repo, content)`: the sha256 of its one layer digest.
pub fn digest_of(repo: &str, content: &str) -> String {
    let layer = format!(
        "sha256:{}",
        hex::encode(Sha256::digest(format!("{repo}:{content}")))
    );
    format!("sha256:{}", hex::encode(Sha256::digest(layer)))
}

/// Pushes [`manifest`]`(repo, content)` as `repo:tag` (the tag moves if it names another
/// image); returns its digest.
pub fn push_image(moto: &Moto, repo: &str, tag: &str, content: &str) -> String {
    runtime().block_on(async {
        let ecr = aws_sdk_ecr::Client::new(&moto.sdk_config().await);
        ecr.put_image()
            .repository_name(repo)
            .image_tag(tag)
            .image_manifest(manifest(repo, content))
            .send()
            .await
            .expect("put image")
            .image()
            .and_then(|i| i.image_id())
            .and_then(|i| i.image_digest())
            .expect("a digest")
            .to_string()
    })
}

pub fn seed(moto: &Moto, seed: &Seed<'_>) {
    runtime().block_on(async {
        let config = moto.sdk_config().await;
        let sm = aws_sdk_secretsmanager::Client::new(&config);
        for (name, value) in seed.secrets {
            sm.create_secret()
                .name(*name)
                .secret_string(value)
                .tags(
                    Tag::builder()
                        .key("_custom_id_")
                        .value(SECRET_SUFFIX)
                        .build(),
                )
                .send()
                .await
                .expect("create secret");
        }
        let ecr = aws_sdk_ecr::Client::new(&config);
        for (repo, tags) in seed.images {
            ecr.create_repository()
                .repository_name(*repo)
                .send()
                .await
                .expect("create repository");
            for tag in *tags {
                ecr.put_image()
                    .repository_name(*repo)
                    .image_tag(*tag)
                    .image_manifest(manifest(repo, tag))
                    .send()
                    .await
                    .expect("put image");
            }
        }
        let ecs = aws_sdk_ecs::Client::new(&config);
        for cluster in seed.clusters {
            ecs.create_cluster()
                .cluster_name(*cluster)
                .send()
                .await
                .expect("create cluster");
        }
    });
}

/// A copy of the example `desired-state/` in a temporary directory, with edits.
pub struct Workspace {
    pub tmp: tempfile::TempDir,
}

impl Workspace {
    pub fn example() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        copy_dir(
            &super::root().join("desired-state"),
            &tmp.path().join("desired-state"),
        );
        let ws = Self { tmp };
        // These tests are about ECS, not approvals: no gate, so `apply --auto-approve` runs.
        let config = ws.dir().join("reconcile.yaml");
        let text = std::fs::read_to_string(&config).unwrap();
        let ungated = text
            .replace("required: 1", "required: 0")
            .replace("required: 2", "required: 0");
        std::fs::write(&config, ungated).unwrap();
        ws
    }

    pub fn dir(&self) -> PathBuf {
        self.tmp.path().join("desired-state")
    }

    /// Replaces `from` with `to` in `desired-state/<file>` (exactly `count` times).
    pub fn edit(&self, file: &str, from: &str, to: &str, count: usize) {
        let path = self.dir().join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.matches(from).count(), count, "`{from}` in {file}");
        std::fs::write(&path, text.replace(from, to)).unwrap();
    }

    /// Runs `reconcile ARGS --dir desired-state` from the workspace against the GitLab
    /// emulator at `gitlab_url` and moto.
    pub fn reconcile(&self, args: &[&str], gitlab_url: &str, moto: &Moto) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_reconcile"));
        cmd.args(args)
            .args(["--dir", "desired-state"])
            .current_dir(self.tmp.path())
            .env("NO_COLOR", "1")
            .env("GITLAB_URL", gitlab_url)
            .env("GITLAB_TOKEN", super::gitlab::TOKEN)
            .env("RECONCILE_RETRY_MIN_MS", "1")
            .env("RECONCILE_ROLLOUT_TIMEOUT_SECS", "20")
            .env("RECONCILE_ROLLOUT_POLL_MS", "200")
            .env("RECONCILE_LOG", "reconcile::aws=info")
            .env("USER", "tester")
            .env_remove("GITLAB_USER_LOGIN")
            .env_remove("RECONCILE_FINGERPRINT_KEY")
            .env_remove("AWS_PROFILE");
        for (k, v) in moto.env() {
            cmd.env(k, v);
        }
        cmd.output().expect("run reconcile")
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            if entry.file_name() == ".reconcile" {
                continue;
            }
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The last `AWS requests: ...` line a run logged, as `(operation, count)` pairs.
pub fn aws_requests(stderr: &str) -> Vec<(String, u64)> {
    let line = stderr
        .lines()
        .rev()
        .find_map(|l| l.split_once("AWS requests: ").map(|(_, rest)| rest))
        .unwrap_or_else(|| panic!("no `AWS requests:` line in:\n{stderr}"));
    line.split_whitespace()
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

/// One operation's count from [`aws_requests`].
pub fn count(requests: &[(String, u64)], operation: &str) -> u64 {
    requests
        .iter()
        .find(|(k, _)| k == operation)
        .map(|(_, v)| *v)
        .unwrap_or_else(|| panic!("no {operation} in {requests:?}"))
}

/// ARNs of a family's task definition revisions in moto.
pub fn revisions(moto: &Moto, family: &str) -> Vec<String> {
    runtime().block_on(async {
        let ecs = aws_sdk_ecs::Client::new(&moto.sdk_config().await);
        ecs.list_task_definitions()
            .family_prefix(family)
            .send()
            .await
            .expect("list task definitions")
            .task_definition_arns()
            .to_vec()
    })
}

/// The image of a task definition's first container.
pub fn image_of(moto: &Moto, task_definition: &str) -> String {
    runtime().block_on(async {
        let ecs = aws_sdk_ecs::Client::new(&moto.sdk_config().await);
        ecs.describe_task_definition()
            .task_definition(task_definition)
            .send()
            .await
            .expect("describe task definition")
            .task_definition()
            .and_then(|t| t.container_definitions().first())
            .and_then(|c| c.image())
            .unwrap_or_default()
            .to_string()
    })
}

/// `(taskDefinition, desiredCount)` of a service, or None.
pub fn service(moto: &Moto, cluster: &str, name: &str) -> Option<(String, i32)> {
    runtime().block_on(async {
        let ecs = aws_sdk_ecs::Client::new(&moto.sdk_config().await);
        let rsp = ecs
            .describe_services()
            .cluster(cluster)
            .services(name)
            .send()
            .await
            .expect("describe services");
        rsp.services()
            .iter()
            .find(|s| s.status() == Some("ACTIVE"))
            .map(|s| {
                (
                    s.task_definition().unwrap_or_default().to_string(),
                    s.desired_count(),
                )
            })
    })
}

/// Sets a service's desired count behind reconcile's back (drift).
pub fn set_desired_count(moto: &Moto, cluster: &str, name: &str, count: i32) {
    runtime().block_on(async {
        let ecs = aws_sdk_ecs::Client::new(&moto.sdk_config().await);
        ecs.update_service()
            .cluster(cluster)
            .service(name)
            .desired_count(count)
            .send()
            .await
            .expect("update service");
    });
}
