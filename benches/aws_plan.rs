//! Benchmark: the AWS part of `reconcile plan` for 100 ECS services across two environments
//! against moto (a real `moto_server` on 127.0.0.1). Prints wall time and the AWS request
//! count per operation against the minimum computed from the batch limits. Nothing is
//! asserted on time.
//!
//! `cargo bench --bench aws_plan` (`BENCH_SERVICES=200` for another fleet size; needs
//! `.venv/bin/moto_server` from `scripts/bootstrap`, or `MOTO_SERVER`).

use std::fmt::Write as _;
use std::time::Instant;

use aws_sdk_ecs::types::{
    Compatibility, DeploymentCircuitBreaker, DeploymentConfiguration, LaunchType, NetworkMode,
};
use reconcile::address::Address;
use reconcile::providers::Provider;
use reconcile::providers::aws::rollout::RolloutOptions;
use reconcile::providers::aws::{Aws, task_definition as td};

/// The repository root (`moto.rs` finds `.venv/bin/moto_server` from it).
fn root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[path = "../tests/it/support/moto.rs"]
#[allow(dead_code)]
mod moto;

const REPOSITORIES: usize = 20;
const SECRETS: usize = 10;
const ENVS: [&str; 2] = ["staging", "production"];

fn fleet(dir: &std::path::Path, services: usize) {
    std::fs::write(
        dir.join("reconcile.yaml"),
        "gitlab: {url: http://gitlab.invalid}\naws: {region: us-east-1, account_id: \"123456789012\"}\nenvironments:\n  staging: {}\n  production: {promote_from: staging}\n",
    )
    .unwrap();
    let mut s = String::from("secrets:\n");
    for j in 0..SECRETS {
        writeln!(s, "  - name: bench/secret-{j}").unwrap();
    }
    std::fs::write(dir.join("secrets.yaml"), s).unwrap();
    for env in ENVS {
        let mut y = String::from("services:\n");
        for i in 0..services / ENVS.len() {
            writeln!(
                y,
                "  - name: svc-{i}\n    environment: {env}\n    cluster: bench-{env}\n    launch_type: EC2\n    desired_count: 1\n    deployment: {{circuit_breaker: {{enable: true, rollback: true}}}}\n    task_definition:\n      family: svc-{i}-{env}\n      requires_compatibilities: [EC2]\n      containers:\n        - name: app\n          image: {{repository: app-{}, tag: \"1.0.0\"}}\n          memory: 256\n          port_mappings: [{{container_port: 8080}}]\n          environment: {{ENV: {env}, INDEX: \"{i}\"}}\n          secrets:\n            DB_PASSWORD: {{secret: bench/secret-{}, key: password}}",
                i % REPOSITORIES,
                i % SECRETS
            )
            .unwrap();
        }
        std::fs::write(dir.join(format!("{env}.yaml")), y).unwrap();
    }
}

fn main() {
    let services: usize = std::env::var("BENCH_SERVICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let moto = moto::Moto::start();
    let config = rt.block_on(moto.sdk_config());
    let dir = tempfile::tempdir().unwrap();
    fleet(dir.path(), services);
    let (state, graph) = reconcile::pipeline::load(dir.path())
        .unwrap_or_else(|_| panic!("the bench fleet is a valid desired state"));

    // Seed moto: secrets, repositories and images, clusters.
    let seed_start = Instant::now();
    rt.block_on(async {
        let sm = aws_sdk_secretsmanager::Client::new(&config);
        for j in 0..SECRETS {
            sm.create_secret()
                .name(format!("bench/secret-{j}"))
                .secret_string(r#"{"password": "bench"}"#)
                .send()
                .await
                .unwrap();
        }
        let ecr = aws_sdk_ecr::Client::new(&config);
        for r in 0..REPOSITORIES {
            ecr.create_repository()
                .repository_name(format!("app-{r}"))
                .send()
                .await
                .unwrap();
            let manifest = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 1, "digest": format!("sha256:{:064x}", r)},
                "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 1, "digest": format!("sha256:{:064x}", r + 1000)}],
            });
            ecr.put_image()
                .repository_name(format!("app-{r}"))
                .image_tag("1.0.0")
                .image_manifest(manifest.to_string())
                .send()
                .await
                .unwrap();
        }
        let ecs = aws_sdk_ecs::Client::new(&config);
        for env in ENVS {
            ecs.create_cluster()
                .cluster_name(format!("bench-{env}"))
                .send()
                .await
                .unwrap();
        }
    });

    // Seed the services as reconcile would create them (registered straight through the SDK,
    // without the client-side rate limit), so that the measured plan has no changes.
    let seeder = Aws::new(
        &config,
        Some("123456789012".into()),
        RolloutOptions::default(),
    );
    let desired = rt
        .block_on(seeder.desired(&state, None))
        .unwrap_or_else(|_| panic!("the bench fleet's secrets and images exist"));
    rt.block_on(async {
        let ecs = aws_sdk_ecs::Client::new(&config);
        for d in &desired {
            let Address::Service { env, service } = &d.address else {
                continue;
            };
            let task = desired
                .iter()
                .find(|t| {
                    t.address
                        == Address::TaskDefinition {
                            env: env.clone(),
                            service: service.clone(),
                        }
                })
                .unwrap();
            let t = td::from_fields(&task.fields).unwrap();
            let registered = ecs
                .register_task_definition()
                .family(&t.family)
                .network_mode(NetworkMode::Bridge)
                .requires_compatibilities(Compatibility::Ec2)
                .set_container_definitions(Some(td::container_definitions(&t).unwrap()))
                .send()
                .await
                .unwrap();
            let arn = registered
                .task_definition()
                .and_then(|t| t.task_definition_arn())
                .unwrap()
                .to_string();
            ecs.create_service()
                .cluster(format!("bench-{env}"))
                .service_name(service)
                .task_definition(&arn)
                .desired_count(1)
                .launch_type(LaunchType::Ec2)
                .send()
                .await
                .unwrap();
            // moto drops the deployment configuration on create.
            ecs.update_service()
                .cluster(format!("bench-{env}"))
                .service(service)
                .deployment_configuration(
                    DeploymentConfiguration::builder()
                        .minimum_healthy_percent(100)
                        .maximum_percent(200)
                        .deployment_circuit_breaker(
                            DeploymentCircuitBreaker::builder()
                                .enable(true)
                                .rollback(true)
                                .build(),
                        )
                        .build(),
                )
                .send()
                .await
                .unwrap();
        }
    });
    println!(
        "seeded {services} services in {} environments ({REPOSITORIES} repositories, {SECRETS} secrets) in {:.1} s",
        ENVS.len(),
        seed_start.elapsed().as_secs_f64()
    );

    // Measure: a fresh provider (cold caches), desired state + observe + plan.
    let start = Instant::now();
    let aws = Aws::new(
        &config,
        Some("123456789012".into()),
        RolloutOptions::default(),
    );
    let desired = rt
        .block_on(aws.desired(&state, None))
        .unwrap_or_else(|_| panic!("desired"));
    let live = rt.block_on(aws.observe(&desired.iter().collect::<Vec<_>>()));
    let plan = reconcile::plan::compute(
        "bench",
        &desired,
        &live,
        &graph,
        &Default::default(),
        &|a| aws.replace_note(a),
    );
    let wall = start.elapsed();
    let counts = aws.request_counts();
    let per_env = services / ENVS.len();
    let minimum_describe = ENVS.len() * per_env.div_ceil(10);
    let minimum = minimum_describe + services + REPOSITORIES + SECRETS.div_ceil(100);
    println!(
        "plan of {services} services ({} steps, {} blocked) against moto:",
        plan.steps.len(),
        plan.blocked.len()
    );
    println!("  wall time  {:.2} s", wall.as_secs_f64());
    println!("  requests   {counts}");
    println!(
        "  minimum    {minimum} ({minimum_describe} DescribeServices: ceil(n/10) per cluster; \
         {services} DescribeTaskDefinition: one per distinct revision; {REPOSITORIES} \
         BatchGetImage: one per repository; {} ListSecrets: pages of 100)",
        SECRETS.div_ceil(100)
    );
    println!("  ratio      {:.2}", counts.total() as f64 / minimum as f64);
}
