//! Secrets Manager over the real wire, against moto: values, JSON keys, errors that never show a
//! value, ARNs with paged ListSecrets, and how the SDK configuration takes the region and the
//! endpoint from the standard AWS environment.

use std::collections::BTreeMap;
use std::error::Error;
use std::process::Command;

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_secretsmanager::config::{Credentials, SharedCredentialsProvider};
use aws_sdk_secretsmanager::primitives::Blob;
use reconcile::providers::aws::secret::{RequestCounts, SecretError, Secrets};
use reconcile::providers::aws::{sdk_config, sdk_config_with};
use reconcile::spec::config::AwsSettings;
use reconcile::spec::variable::SecretSource;

use crate::support::moto::{Moto, REGION};

/// Secret material; no fragment of it may appear in any error text.
const PASSWORD: &str = "pw-Zq8xK2mLr7";
const TOKEN: &str = "tok-Hv3nW9pBt4";
const LEAKS: [&str; 6] = ["Zq8xK2", "mLr7", "Hv3nW9", "pBt4", "pw-", "tok-"];

fn source(secret: &str, key: Option<&str>) -> SecretSource {
    SecretSource {
        secret: secret.into(),
        key: key.map(Into::into),
    }
}

fn settings(region: &str) -> AwsSettings {
    AwsSettings {
        region: region.into(),
        account_id: None,
    }
}

/// Creates secrets with string values, one request at a time (moto_server answers concurrent
/// CreateSecret requests with sporadic 500s); returns name → ARN.
async fn seed(config: &SdkConfig, secrets: &[(&str, &str)]) -> BTreeMap<String, String> {
    let client = aws_sdk_secretsmanager::Client::new(config);
    let mut arns = BTreeMap::new();
    for (name, value) in secrets {
        let out = client
            .create_secret()
            .name(*name)
            .secret_string(*value)
            .send()
            .await
            .unwrap_or_else(|e| panic!("create {name}: {e:?}"));
        arns.insert(name.to_string(), out.arn().unwrap().to_owned());
    }
    arns
}

/// Display and Debug of an error and of its whole source chain.
fn all_text(err: &SecretError) -> String {
    let mut out = format!("{err}\n{err:?}");
    let mut source = err.source();
    while let Some(e) = source {
        out.push_str(&format!("\n{e}\n{e:?}"));
        source = e.source();
    }
    out
}

fn assert_no_leak(err: &SecretError) {
    let text = all_text(err);
    for fragment in LEAKS {
        assert!(
            !text.contains(fragment),
            "error text leaks `{fragment}`: {text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_values_and_json_keys_with_one_request_per_secret() {
    let moto = Moto::start();
    let config = moto.sdk_config().await;
    let db = format!(r#"{{"username": "app", "password": "{PASSWORD}", "port": 5432}}"#);
    seed(
        &config,
        &[("cloud-design/db", &db), ("cloud-design/token", TOKEN)],
    )
    .await;

    let secrets = Secrets::new(&config);
    let sources = [
        source("cloud-design/token", None),
        source("cloud-design/db", Some("password")),
        source("cloud-design/db", Some("port")),
        source("cloud-design/db", None),
    ];
    let values = secrets.values(&sources).await;
    let got: BTreeMap<_, _> = values
        .iter()
        .map(|(s, v)| (s.clone(), v.as_ref().unwrap().expose().to_owned()))
        .collect();
    assert_eq!(got[&sources[0]], TOKEN);
    assert_eq!(got[&sources[1]], PASSWORD);
    assert_eq!(got[&sources[2]], "5432");
    assert_eq!(got[&sources[3]], db);
    assert_eq!(got.len(), 4);
    assert_eq!(
        secrets.requests(),
        RequestCounts {
            get_secret_value: 2,
            list_secrets: 0
        }
    );
    assert!(secrets.values(&[]).await.is_empty());
    assert_eq!(secrets.requests().get_secret_value, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_secrets_are_read_concurrently_once_each() {
    let moto = Moto::start();
    let config = moto.sdk_config().await;
    let names: Vec<String> = (0..40).map(|i| format!("svc/s{i:02}")).collect();
    let values: Vec<String> = (0..40)
        .map(|i| format!(r#"{{"password": "v{i}", "port": {i}}}"#))
        .collect();
    let seeds: Vec<(&str, &str)> = names
        .iter()
        .zip(&values)
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    seed(&config, &seeds).await;

    let sources: Vec<SecretSource> = names
        .iter()
        .flat_map(|n| [source(n, Some("password")), source(n, Some("port"))])
        .collect();
    let secrets = Secrets::new(&config);
    let read = secrets.values(&sources).await;
    assert_eq!(read.len(), 80);
    for (i, name) in names.iter().enumerate() {
        let get = |key| read[&source(name, Some(key))].as_ref().unwrap().expose();
        assert_eq!(get("password"), format!("v{i}"));
        assert_eq!(get("port"), i.to_string());
    }
    assert_eq!(secrets.requests().get_secret_value, 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_say_what_to_do_and_never_show_a_value() {
    let moto = Moto::start();
    let config = moto.sdk_config().await;
    let db = format!(r#"{{"password": "{PASSWORD}", "enabled": true}}"#);
    seed(
        &config,
        &[("cloud-design/db", &db), ("cloud-design/token", TOKEN)],
    )
    .await;
    aws_sdk_secretsmanager::Client::new(&config)
        .create_secret()
        .name("cloud-design/cert")
        .secret_binary(Blob::new(TOKEN.as_bytes()))
        .send()
        .await
        .unwrap();

    let secrets = Secrets::new(&config);
    let values = secrets
        .values(&[
            source("cloud-design/nope", None),
            source("cloud-design/nope", Some("password")),
            source("cloud-design/db", Some("user")),
            source("cloud-design/token", Some("password")),
            source("cloud-design/db", Some("enabled")),
            source("cloud-design/cert", None),
        ])
        .await;
    let messages: Vec<String> = values
        .values()
        .map(|v| {
            let err = v.as_ref().unwrap_err();
            assert_no_leak(err);
            err.to_string()
        })
        .collect();
    assert_eq!(
        messages,
        [
            "secret `cloud-design/cert` holds a binary value (SecretBinary): reconcile reads text \
             secrets only; store the value as a string",
            "key `enabled` of secret `cloud-design/db` holds a JSON boolean, not a string or a \
             number: store the value as a string",
            "secret `cloud-design/db` has no key `user`: add `user` to the secret's JSON object \
             or fix `key`",
            "secret `cloud-design/nope` does not exist in Secrets Manager: create it or fix the name",
            "secret `cloud-design/nope` does not exist in Secrets Manager: create it or fix the name",
            "secret `cloud-design/token` is not a JSON object, so it has no key `password`: store \
             a JSON object in it, or leave out `key` to use the whole value",
        ]
    );
    let kinds: Vec<&str> = values
        .values()
        .map(|v| match v.as_ref().unwrap_err() {
            SecretError::NotFound { .. } => "NotFound",
            SecretError::MissingKey { .. } => "MissingKey",
            SecretError::NotJson { .. } => "NotJson",
            SecretError::NotText { .. } => "NotText",
            SecretError::Binary { .. } => "Binary",
            SecretError::Api { .. } => "Api",
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "Binary",
            "NotText",
            "MissingKey",
            "NotFound",
            "NotFound",
            "NotJson"
        ]
    );
    assert_eq!(secrets.requests().get_secret_value, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_endpoint_is_an_api_error_per_name() {
    // A port nothing listens on (bound, then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(format!("http://127.0.0.1:{port}"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
        .retry_config(RetryConfig::disabled())
        .load()
        .await;
    let secrets = Secrets::new(&config);

    let values = secrets
        .values(&[source("a/db", Some("password")), source("a/db", None)])
        .await;
    for result in values.values() {
        let err = result.as_ref().unwrap_err();
        let SecretError::Api {
            name, operation, ..
        } = err
        else {
            panic!("expected Api, got {err:?}");
        };
        assert_eq!((name.as_str(), *operation), ("a/db", "GetSecretValue"));
        assert!(
            err.to_string().contains("check the AWS credentials"),
            "{err}"
        );
        assert!(err.source().is_some());
    }
    assert_eq!(secrets.requests().get_secret_value, 1);

    let arns = secrets.arns(&["a/db".into(), "b/db".into()]).await;
    assert_eq!(arns.len(), 2);
    for result in arns.values() {
        assert!(
            matches!(
                result,
                Err(SecretError::Api {
                    operation: "ListSecrets",
                    ..
                })
            ),
            "{result:?}"
        );
    }
    assert_eq!(secrets.requests().list_secrets, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arns_of_230_secrets_take_three_list_pages() {
    let moto = Moto::start();
    let config = moto.sdk_config().await;
    let names: Vec<String> = (0..230).map(|i| format!("app/s{i:03}")).collect();
    let mut seeds: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "x")).collect();
    seeds.push(("other/unrelated", "x"));
    let created = seed(&config, &seeds).await;

    let secrets = Secrets::new(&config);
    let mut wanted = names.clone();
    wanted.push("app/missing".into());
    let arns = secrets.arns(&wanted).await;

    assert_eq!(
        secrets.requests(),
        RequestCounts {
            get_secret_value: 0,
            list_secrets: 3
        },
        "moto pages ListSecrets 100 at a time: 230 matching secrets are 3 pages"
    );
    assert_eq!(arns.len(), 231);
    for name in &names {
        assert_eq!(arns[name].as_ref().unwrap(), &created[name], "{name}");
    }
    assert!(matches!(
        &arns["app/missing"],
        Err(SecretError::NotFound { name }) if name == "app/missing"
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arns_match_names_exactly_and_filter_ten_prefixes_per_request() {
    let moto = Moto::start();
    let config = moto.sdk_config().await;
    let top: Vec<String> = (0..12).map(|i| format!("svc{i:02}")).collect();
    let mut seeds: Vec<(&str, &str)> = top.iter().map(|n| (n.as_str(), "x")).collect();
    seeds.extend([("db", "x"), ("db-old", "x"), ("team/db", "x")]);
    let created = seed(&config, &seeds).await;

    // A prefix match is not a match: `d` and `team/d` exist only as prefixes.
    let secrets = Secrets::new(&config);
    let arns = secrets
        .arns(&["db".into(), "d".into(), "team/d".into(), "team/db".into()])
        .await;
    assert_eq!(arns["db"].as_ref().unwrap(), &created["db"]);
    assert_eq!(arns["team/db"].as_ref().unwrap(), &created["team/db"]);
    assert!(matches!(arns["d"], Err(SecretError::NotFound { .. })));
    assert!(matches!(arns["team/d"], Err(SecretError::NotFound { .. })));
    assert_eq!(secrets.requests().list_secrets, 1);

    // 12 names without a shared first segment: 12 prefixes, 10 per filter, so 2 requests.
    let secrets = Secrets::new(&config);
    let arns = secrets.arns(&top).await;
    assert_eq!(arns.len(), 12);
    for name in &top {
        assert_eq!(arns[name].as_ref().unwrap(), &created[name]);
    }
    assert_eq!(secrets.requests().list_secrets, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn region_from_the_environment_overrides_settings() {
    let moto = Moto::start();
    let seeded = moto.sdk_config().await;
    seed(&seeded, &[("cloud-design/token", TOKEN)]).await;
    let yaml = settings("eu-west-3");

    let env = |vars: &'static [(&'static str, &'static str)]| {
        move |name: &str| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    };
    let region = |config: &SdkConfig| config.region().map(|r| r.as_ref().to_owned());
    let from_env = sdk_config_with(Some(&yaml), &env(&[("AWS_REGION", "us-east-1")])).await;
    assert_eq!(region(&from_env).as_deref(), Some("us-east-1"));
    let default_region =
        sdk_config_with(Some(&yaml), &env(&[("AWS_DEFAULT_REGION", "us-west-2")])).await;
    assert_eq!(region(&default_region).as_deref(), Some("us-west-2"));
    let both = sdk_config_with(
        Some(&yaml),
        &env(&[
            ("AWS_REGION", "us-east-1"),
            ("AWS_DEFAULT_REGION", "us-west-2"),
        ]),
    )
    .await;
    assert_eq!(region(&both).as_deref(), Some("us-east-1"));
    let from_yaml = sdk_config_with(Some(&yaml), &env(&[])).await;
    assert_eq!(region(&from_yaml).as_deref(), Some("eu-west-3"));

    // The region is the one used on the wire: moto keeps secrets per region.
    let against_moto = |config: &SdkConfig| {
        config
            .to_builder()
            .endpoint_url(moto.endpoint())
            .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
                "testing", "testing", None, None, "test",
            )))
            .retry_config(RetryConfig::disabled())
            .build()
    };
    let token = [source("cloud-design/token", None)];
    let read = Secrets::new(&against_moto(&from_env)).values(&token).await;
    assert_eq!(read[&token[0]].as_ref().unwrap().expose(), TOKEN);
    let read = Secrets::new(&against_moto(&from_yaml)).values(&token).await;
    assert!(matches!(read[&token[0]], Err(SecretError::NotFound { .. })));
}

/// `sdk_config` over the real process environment, which only a child process may have
/// changed: the test binary runs [`standard_environment_child`] with moto's `AWS_*` variables
/// and `reconcile.yaml` settings naming another region.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_config_reads_endpoint_and_region_from_the_process_environment() {
    let moto = Moto::start();
    seed(&moto.sdk_config().await, &[("cloud-design/token", TOKEN)]).await;
    let mut child = Command::new(std::env::current_exe().unwrap());
    child
        .args([
            "aws_secrets::standard_environment_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("RECONCILE_IT_MOTO_CHILD", "1")
        .env("AWS_CONFIG_FILE", "/nonexistent/reconcile-it/config")
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/reconcile-it/credentials",
        )
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_DEFAULT_REGION")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_ENDPOINT_URL_SECRETS_MANAGER")
        .env_remove("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS");
    for (name, value) in moto.env() {
        child.env(name, value);
    }
    let out = child.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("test result: ok. 1 passed"),
        "child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by sdk_config_reads_endpoint_and_region_from_the_process_environment"]
async fn standard_environment_child() {
    if std::env::var_os("RECONCILE_IT_MOTO_CHILD").is_none() {
        return;
    }
    let config = sdk_config(Some(&settings("eu-west-3"))).await;
    assert_eq!(config.region().map(|r| r.as_ref()), Some(REGION));
    let secrets = Secrets::new(&config);
    let token = [source("cloud-design/token", None)];
    let read = secrets.values(&token).await;
    assert_eq!(read[&token[0]].as_ref().unwrap().expose(), TOKEN);
    let arns = secrets.arns(&["cloud-design/token".into()]).await;
    assert!(
        arns["cloud-design/token"].as_ref().unwrap().starts_with(
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:cloud-design/token-"
        )
    );
}
