//! What the container image relies on, tested without a Docker daemon: the Dockerfile passes
//! hadolint, the compose file validates, and the binary starts exactly as the image starts it
//! (its environment, a mounted config, the key as a `_FILE` secret, on 0.0.0.0) and answers
//! the image's health check.

use std::process::Command;

use crate::common::process::{key_toml, ConfigFile, Served, BIN};
use crate::common::*;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn tool_available(name: &str, arg: &str) -> bool {
    tool_present(Command::new(name).arg(arg), name)
}

/// Runs `command` to its end: whether it succeeded, and what it printed (stdout, then stderr).
fn run(command: &mut Command) -> (bool, String) {
    let output = command.output().unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), printed)
}

#[test]
fn the_dockerfile_passes_hadolint() {
    if !tool_available("hadolint", "--version") {
        return;
    }
    let (passed, printed) = run(Command::new("hadolint").arg(format!("{ROOT}/Dockerfile")));
    assert!(passed, "{printed}");
}

#[test]
fn the_compose_file_validates() {
    if !tool_available("docker-compose", "version") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // As is, with the multi-replica profile (two replicas, Redis, nginx), and the replicas
    // over a TLS Redis.
    for (file, profile) in [
        ("docker-compose.yml", &[][..]),
        ("docker-compose.yml", &["--profile", "replicas"][..]),
        ("docker-compose.replicas-tls.yml", &[][..]),
    ] {
        let (valid, printed) = run(Command::new("docker-compose")
            .args(["-f", &format!("{ROOT}/{file}")])
            .args(profile)
            .args(["config", "-q"])
            .current_dir(dir.path()));
        assert!(valid, "{file} {profile:?}: {printed}");
    }
}

/// The TLS replicas' config (docker-compose.replicas-tls.yml) is valid once its CA file is
/// there, reads the URL and its password from a secret, and keeps a journal per replica; the
/// compose file runs Redis TLS-only with a password and gives each replica its own state.
#[test]
fn the_tls_replicas_set_up_shares_limits_through_a_tls_redis() {
    let text =
        std::fs::read_to_string(format!("{ROOT}/config/orgate.replicas-tls.example.toml")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    let certified = rcgen::generate_simple_self_signed(vec!["redis".to_owned()]).unwrap();
    std::fs::write(&ca, certified.cert.pem()).unwrap();
    let text = text.replace("/etc/orgate-redis-tls/ca.pem", ca.to_str().unwrap());
    let (config, mut problems) = orgate::config::parse_toml(&text);
    problems.extend(orgate::config::validate(&config));
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(config.limits.backend, orgate::config::LimitsBackend::Redis);
    assert_eq!(config.limits.redis_url_env, "REDIS_URL");
    assert_eq!(config.limits.state_dir, "/var/lib/orgate");

    assert_mentions(
        "docker-compose.replicas-tls.yml",
        &[
            "ORGATE_CONFIG: /etc/orgate/orgate.replicas-tls.toml",
            "REDIS_URL_FILE: /run/secrets/redis_url",
            "--port 0 --tls-port 6380",
            "--requirepass",
            "redis-tls:/etc/orgate-redis-tls:ro",
            "orgate-a-state:/var/lib/orgate",
            "orgate-b-state:/var/lib/orgate",
            "./config/nginx-lb.conf:/etc/nginx/conf.d/default.conf:ro",
        ],
    );
}

/// The replicas' config (docker-compose.yml's "replicas" profile) is a valid config that
/// shares the limits through the compose file's Redis, and nginx balances over both replicas
/// without buffering streams.
#[test]
fn the_replicas_set_up_shares_limits_through_redis() {
    let text =
        std::fs::read_to_string(format!("{ROOT}/config/orgate.replicas.example.toml")).unwrap();
    let (config, mut problems) = orgate::config::parse_toml(&text);
    problems.extend(orgate::config::validate(&config));
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(config.limits.backend, orgate::config::LimitsBackend::Redis);
    assert_eq!(config.limits.redis_url, "redis://redis:6379");

    assert_mentions(
        "docker-compose.yml",
        &[
            "ORGATE_CONFIG: /etc/orgate/orgate.replicas.toml",
            "orgate-a:",
            "orgate-b:",
            "image: redis:7-alpine",
            "image: nginx:1.27-alpine",
            "./config/nginx-lb.conf:/etc/nginx/conf.d/default.conf:ro",
        ],
    );
    assert_mentions(
        "config/nginx-lb.conf",
        &[
            "server orgate-a:8080",
            "server orgate-b:8080",
            "keepalive ",
            "proxy_http_version 1.1;",
            "proxy_set_header Connection \"\";",
            "proxy_buffering off;",
        ],
    );
}

/// Asserts that the file at `path` (from the crate's root) contains every one of `needles`.
fn assert_mentions(path: &str, needles: &[&str]) {
    let text = std::fs::read_to_string(format!("{ROOT}/{path}")).unwrap();
    for needle in needles {
        assert!(text.contains(needle), "{path} lacks {needle:?}");
    }
}

/// The image's environment, read from the Dockerfile's ENV instruction.
fn image_env() -> Vec<(String, String)> {
    let dockerfile = std::fs::read_to_string(format!("{ROOT}/Dockerfile")).unwrap();
    let env_block: String = dockerfile
        .split("\nENV ")
        .nth(1)
        .expect("an ENV instruction")
        .lines()
        .take_while(|l| !l.is_empty())
        .map(|l| l.trim().trim_end_matches('\\').trim().to_owned())
        .collect::<Vec<_>>()
        .join(" ");
    env_block
        .split_whitespace()
        .filter_map(|pair| {
            pair.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
        })
        .collect()
}

#[test]
fn the_image_is_multi_stage_non_root_and_exposes_8080() {
    let dockerfile = std::fs::read_to_string(format!("{ROOT}/Dockerfile")).unwrap();
    assert_eq!(
        dockerfile.matches("\nFROM ").count() + usize::from(dockerfile.starts_with("FROM ")),
        2,
        "two stages"
    );
    assert!(dockerfile.contains("\nEXPOSE 8080\n"));
    assert!(
        dockerfile.contains("\nUSER 65532:65532\n"),
        "runs as distroless's nonroot user"
    );
    let env = image_env();
    let get = |k: &str| {
        env.iter()
            .find(|(name, _)| name == k)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(get("ORGATE_LISTEN"), Some("0.0.0.0:8080"));
    assert_eq!(get("ORGATE_CONFIG"), Some("/etc/orgate/orgate.toml"));
    assert_eq!(
        get("OPENROUTER_API_KEY_FILE"),
        Some("/run/secrets/openrouter_api_key")
    );
    let compose = std::fs::read_to_string(format!("{ROOT}/docker-compose.yml")).unwrap();
    assert!(
        compose.contains("./config:/etc/orgate:ro"),
        "compose mounts config/ where the image reads it"
    );
    assert!(compose.contains("OPENROUTER_API_KEY_FILE: /run/secrets/openrouter_api_key"));
}

#[tokio::test]
async fn the_binary_starts_as_the_image_starts_it_and_passes_its_health_check() {
    let mock = MockOpenRouter::start().await;
    // The mounted config/ and the Docker secret, at paths of our own.
    let config = ConfigFile::new(&(mock.upstream_toml() + &key_toml("app", ALICE_KEY)));
    let secret = config.upstream_key_file();
    let mut command = tokio::process::Command::new(BIN);
    command.env_clear().arg("serve");
    for (name, value) in image_env() {
        let value = match name.as_str() {
            "ORGATE_CONFIG" => config.path.to_str().unwrap().to_owned(),
            "OPENROUTER_API_KEY_FILE" => secret.to_str().unwrap().to_owned(),
            // Port 0: tests run in parallel. Still every interface, as in the image.
            "ORGATE_LISTEN" => value.replace(":8080", ":0"),
            _ => value,
        };
        command.env(name, value);
    }
    let served = Served::start(&mut command).await;
    assert!(served.addr.starts_with("0.0.0.0:"), "{}", served.addr);
    let (healthy, printed) = run(Command::new(BIN).args(["healthcheck", "--addr", &served.addr]));
    assert!(healthy, "{printed}");
    let port = served.addr.rsplit(':').next().unwrap();
    let request = http()
        .post(format!("http://127.0.0.1:{port}/v1/chat/completions"))
        .bearer_auth(ALICE_KEY)
        .completion();
    assert_eq!(forwarded(&mock, request).await.bearer(), Some(UPSTREAM_KEY));
    served.terminate();
    let (code, _) = served.finish().await;
    assert_eq!(code, Some(0));
    // Nothing listening: the health check fails.
    let closed = served_addr_closed();
    let (healthy, _) = run(Command::new(BIN).args(["healthcheck", "--addr", &closed]));
    assert!(!healthy);
}

fn served_addr_closed() -> String {
    format!("127.0.0.1:{}", unused_port())
}
