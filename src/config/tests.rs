use std::io::Write;

use super::*;

fn problems_of(text: &str) -> Vec<String> {
    let (config, mut problems) = parse_toml(text);
    problems.extend(validate(&config));
    problems.iter().map(ToString::to_string).collect()
}

#[test]
fn an_empty_file_is_the_defaults() {
    let (config, problems) = parse_toml("");
    assert!(problems.is_empty());
    assert_eq!(config.server.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(config.server.max_body, Size::mib(10));
    assert_eq!(config.upstream.base_url, "https://openrouter.ai/api/v1");
    assert_eq!(config.upstream.retries, 2);
    assert_eq!(config.limits.requests_per_minute, 600);
    assert_eq!(config.policy.models.allow, ["*"]);
    assert!(validate(&config).is_empty());
}

#[test]
fn the_documented_example_parses() {
    let text = r#"
[server]
listen = "127.0.0.1:9090"
max_body = "1MiB"
shutdown_grace = "5s"

[upstream]
first_byte_timeout = "30s"
retries = 1
referer = "https://example.org"
title = "Example"

[[auth.keys]]
id = "alice"
hash = "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
policy = "strict"
requests_per_minute = 60
burst = 10
upstream_key_env = "OPENROUTER_API_KEY_TEAM_A"

[limits]
tokens_per_minute = 200000

[policy]
models.allow = ["*"]
models.deny = ["*:free"]
aliases = { "gpt-4o" = "openai/gpt-4o" }
max_tokens = 4096
deny_plugins = ["web"]

[policy.provider]
data_collection = "deny"
zdr = true
ignore = ["ProviderX"]
sort = { by = "throughput", partition = "none" }
max_price = { prompt = 5, completion = 15 }
preferred_max_latency = { p90 = 3 }
preferred_min_throughput = 50

[policy.provider.force]
allow_fallbacks = false

[policies.strict]
models.allow = ["openai/*", "anthropic/*"]
"#;
    let (config, problems) = parse_toml(text);
    assert!(problems.is_empty(), "{problems:?}");
    assert!(validate(&config).is_empty(), "{:?}", validate(&config));
    assert_eq!(config.server.shutdown_grace, Duration::from_secs(5));
    assert_eq!(config.auth.keys[0].burst, Some(10));
    assert_eq!(
        config.policy.provider.data_collection,
        Some(DataCollection::Deny)
    );
    assert_eq!(config.policy.provider.max_price.completion, Some(15.0));
    assert_eq!(
        config.policy.provider.preferred_min_throughput,
        Some(Percentiles::P50(50.0))
    );
    assert_eq!(config.policy.provider.force.allow_fallbacks, Some(false));
    assert_eq!(
        config.policies["strict"].models.allow,
        ["openai/*", "anthropic/*"]
    );
    assert_eq!(config.policy.aliases["gpt-4o"], "openai/gpt-4o");
}

#[test]
fn every_problem_is_reported_with_its_path() {
    let problems = problems_of(
        r#"
[server]
listen = "0.0.0.0:8080"
max_bdy = "1MiB"

[upstream]
connect_timeout = "soon"
base_url = "ftp://example.org"

[[auth.keys]]
id = "alice"
hash = "md5:abc"
policy = "nope"

[[auth.keys]]
id = "alice"
hash = "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
colour = "blue"

[limits]
burst = 0

[policy]
models.deny = ["openai/[gpt"]
[policy.provider]
quantizations = ["fp7"]
sort = "cheapest"

[telemetry]
x = 1
"#,
    );
    let expect = [
        "server.max_bdy: unknown key",
        "upstream.connect_timeout: invalid duration \"soon\"",
        "auth.keys[1].colour: unknown key",
        "telemetry: unknown section",
        "upstream.base_url: \"ftp://example.org\" must be an http or https URL",
        "auth.keys[0].hash: must be \"sha256:",
        "auth.keys[0].policy: no [policies.nope] is defined",
        "auth.keys[1].id: \"alice\" is used by another key",
        "limits.burst: must be at least 1",
        "policy.models.deny[0]: \"openai/[gpt\" is not a glob",
        "policy.provider.quantizations[0]: \"fp7\" is not one of",
        "policy.provider.sort: \"cheapest\" is not one of",
    ];
    for e in expect {
        assert!(
            problems.iter().any(|p| p.starts_with(e)),
            "missing {e:?} in {problems:#?}"
        );
    }
}

#[test]
fn a_non_loopback_address_needs_keys_or_an_explicit_opt_in() {
    let problems = problems_of("[server]\nlisten = \"0.0.0.0:8080\"\n");
    assert!(problems
        .iter()
        .any(|p| p.starts_with("server.listen: 0.0.0.0:8080 is not a loopback address")));
    assert!(
        problems_of("[server]\nlisten = \"0.0.0.0:8080\"\n[auth]\nallow_anonymous = true\n")
            .is_empty()
    );
    assert!(problems_of("[server]\nlisten = \"[::1]:8080\"\n").is_empty());
}

#[test]
fn syntax_errors_say_where() {
    let problems = problems_of("[server]\nlisten = \n");
    assert_eq!(problems.len(), 1);
    assert!(problems[0].contains("line 2"), "{problems:?}");
}

#[test]
fn environment_overrides_and_file_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("orgate.toml");
    std::fs::write(
        &config_path,
        "[upstream]\napi_key_env = \"MY_KEY\"\n[server]\nlisten = \"127.0.0.1:1\"\n",
    )
    .unwrap();
    let secret_path = dir.path().join("key");
    let mut file = std::fs::File::create(&secret_path).unwrap();
    writeln!(file, "sk-or-v1-from-file").unwrap();
    let env = Env::from_pairs([
        ("ORGATE_CONFIG", config_path.to_str().unwrap()),
        ("ORGATE_LISTEN", "127.0.0.1:7000"),
        ("ORGATE_UPSTREAM_URL", "http://127.0.0.1:9/api/v1"),
        ("MY_KEY_FILE", secret_path.to_str().unwrap()),
    ]);
    let (config, path) = load(&ConfigSource::default(), &env).unwrap();
    assert_eq!(path.as_deref(), Some(config_path.as_path()));
    assert_eq!(config.server.listen.to_string(), "127.0.0.1:7000");
    assert_eq!(config.upstream.base_url, "http://127.0.0.1:9/api/v1");
    assert_eq!(
        config.secrets.get("MY_KEY").unwrap().expose(),
        "sk-or-v1-from-file"
    );
    // --listen wins over everything; --config over $ORGATE_CONFIG.
    let source = ConfigSource {
        path: Some(config_path.clone()),
        listen: Some("127.0.0.1:7001".parse().unwrap()),
    };
    let (config, _) = load(&source, &env).unwrap();
    assert_eq!(config.server.listen.to_string(), "127.0.0.1:7001");
    // The variable itself wins over its _FILE.
    let env = Env::from_pairs([
        ("MY_KEY", "direct"),
        ("MY_KEY_FILE", secret_path.to_str().unwrap()),
    ]);
    let (config, _) = load(
        &ConfigSource {
            path: Some(config_path.clone()),
            listen: None,
        },
        &env,
    )
    .unwrap();
    assert_eq!(config.secrets.get("MY_KEY").unwrap().expose(), "direct");
    // A _FILE that cannot be read is a problem, named.
    let env = Env::from_pairs([("MY_KEY_FILE", "/nonexistent/secret")]);
    let problems = load(
        &ConfigSource {
            path: Some(config_path),
            listen: None,
        },
        &env,
    )
    .unwrap_err();
    assert!(
        problems
            .to_string()
            .contains("MY_KEY_FILE: cannot read /nonexistent/secret"),
        "{problems}"
    );
}

#[test]
fn problems_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[limits]\nburts = 3\n").unwrap();
    let problems = load(
        &ConfigSource {
            path: Some(path.clone()),
            listen: None,
        },
        &Env::default(),
    )
    .unwrap_err();
    assert_eq!(
        problems.to_string(),
        format!("{}: limits.burts: unknown key", path.display())
    );
}

#[test]
fn the_effective_config_prints_without_secrets() {
    let mut config = Config::default();
    config
        .secrets
        .insert("OPENROUTER_API_KEY", "sk-or-v1-hidden");
    let text = config.to_toml();
    assert!(!text.contains("sk-or-v1-hidden"));
    let (reparsed, problems) = parse_toml(&text);
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(
        reparsed.to_toml(),
        text,
        "check's output is itself a valid config"
    );
}

/// Every key of the schema is in the shipped example (set or commented), and the example is a
/// valid config.
#[test]
fn the_example_config_is_complete_and_valid() {
    let example = include_str!("../../config/orgate.example.toml");
    let (config, problems) = parse_toml(example);
    assert!(problems.is_empty(), "{problems:?}");
    assert!(validate(&config).is_empty());
    let uncommented: String = example
        .lines()
        .map(|l| l.trim_start_matches("# "))
        .collect::<Vec<_>>()
        .join("\n");
    let mut full = Config::default();
    full.auth.keys.push(KeyConfig {
        policy: Some(String::new()),
        requests_per_minute: Some(0),
        burst: Some(0),
        max_concurrent: Some(0),
        tokens_per_minute: Some(0),
        usd_per_day: Some(0.0),
        usd_per_month: Some(0.0),
        upstream_key_env: Some(String::new()),
        ..KeyConfig::default()
    });
    let p = &mut full.policy.provider;
    p.data_collection = Some(DataCollection::Deny);
    p.zdr = Some(true);
    p.enforce_distillable_text = Some(true);
    p.require_parameters = Some(true);
    p.sort = Some(ProviderSort::By("price".into()));
    p.allow_fallbacks = Some(true);
    p.preferred_min_throughput = Some(Percentiles::P50(0.0));
    p.preferred_max_latency = Some(Percentiles::P50(0.0));
    p.force.sort = Some(ProviderSort::By("price".into()));
    p.force.allow_fallbacks = Some(true);
    let schema = toml::Value::try_from(&full).unwrap();
    let mut missing = Vec::new();
    collect_keys(&schema, &mut |key| {
        let present = [format!("{key} ="), format!("{key}."), format!("{key}]")]
            .iter()
            .any(|form| uncommented.contains(form.as_str()));
        if !present {
            missing.push(key.to_owned());
        }
    });
    assert!(
        missing.is_empty(),
        "keys missing from config/orgate.example.toml: {missing:?}"
    );
}

fn collect_keys(value: &toml::Value, f: &mut dyn FnMut(&str)) {
    match value {
        toml::Value::Table(t) => {
            for (k, v) in t {
                f(k);
                collect_keys(v, f);
            }
        }
        toml::Value::Array(a) => a.iter().for_each(|v| collect_keys(v, f)),
        _ => {}
    }
}

#[test]
fn the_redis_backend_settings_are_checked() {
    let (config, problems) = parse_toml("");
    assert!(problems.is_empty());
    assert_eq!(config.limits.lease_ttl, Duration::from_secs(30));
    assert_eq!(config.limits.backend_timeout, Duration::from_millis(200));

    let problems = problems_of(
        "[limits]\nbackend = \"redis\"\nredis_url = \"http://:hunter2@redis:6379\"\n\
         lease_ttl = \"0s\"\nbackend_timeout = \"0ms\"\n\
         redis_ca_file = \"/nonexistent/ca.pem\"\n",
    );
    let text = problems.join("\n");
    assert!(
        text.contains("limits.redis_url: is not a Redis URL"),
        "{text}"
    );
    assert!(
        text.contains("limits.redis_ca_file: cannot read \"/nonexistent/ca.pem\""),
        "{text}"
    );
    assert!(
        text.contains("limits.lease_ttl: must be greater than 0"),
        "{text}"
    );
    assert!(
        text.contains("limits.backend_timeout: must be greater than 0"),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "{text}");

    for url in [
        "redis://redis:6379/0",
        "rediss://orgate:hunter2@redis:6380/0",
    ] {
        let problems = problems_of(&format!(
            "[limits]\nbackend = \"redis\"\nredis_url = \"{url}\"\n"
        ));
        assert!(problems.is_empty(), "{problems:?}");
    }
    let problems = problems_of("[limits]\nbackend = \"redis\"\n");
    assert!(
        problems
            .join("\n")
            .contains("needs limits.redis_url or limits.redis_url_env"),
        "{problems:?}"
    );
}

#[test]
fn a_password_in_the_redis_url_is_not_printed() {
    let (config, _) = parse_toml("[limits]\nredis_url = \"redis://:hunter2@redis:6379/0\"\n");
    let text = config.to_toml();
    assert!(!text.contains("hunter2"), "{text}");
    assert!(
        text.contains("redis_url = \"redis://:%5Bredacted%5D@redis:6379/0\""),
        "{text}"
    );
    let (config, _) =
        parse_toml("[limits]\nredis_url = \"rediss://orgate:hunter2@redis:6380/0\"\n");
    let text = config.to_toml();
    assert!(
        text.contains("redis_url = \"rediss://orgate:%5Bredacted%5D@redis:6380/0\""),
        "{text}"
    );
    let (config, _) = parse_toml("[limits]\nredis_url = \"redis://redis:6379\"\n");
    assert!(config
        .to_toml()
        .contains("redis_url = \"redis://redis:6379\""));
}

#[test]
fn io_threads_default_to_one_per_cpu_and_are_bounded() {
    let (config, problems) = parse_toml("");
    assert!(problems.is_empty());
    assert_eq!(config.server.workers, 0);
    assert!(config.server.io_threads() >= 1);
    let mut three = config.server.clone();
    three.workers = 3;
    assert_eq!(three.io_threads(), 3);
    assert!(problems_of("[server]\nworkers = 4\n").is_empty());
    assert_eq!(
        problems_of("[server]\nworkers = 5000\n"),
        ["server.workers: must be at most 1024 (0: one per CPU)"]
    );
    assert_eq!(problems_of("[server]\nworkers = -1\n").len(), 1);
}

#[test]
fn an_unusable_upstream_ca_file_is_reported_at_its_key() {
    let text = problems_of("[upstream]\nca_file = \"/nonexistent/ca.pem\"\n").join("\n");
    assert!(
        text.contains("upstream.ca_file: cannot read \"/nonexistent/ca.pem\""),
        "{text}"
    );
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "no certificates here\n").unwrap();
    let text = problems_of(&format!("[upstream]\nca_file = {empty:?}\n")).join("\n");
    assert!(
        text.contains("upstream.ca_file") && text.contains("holds no certificate"),
        "{text}"
    );
}

#[test]
fn an_upstream_base_url_the_client_cannot_send_to_is_reported() {
    let text = problems_of("[upstream]\nbase_url = \"https://bücher.example/api/v1\"\n").join("\n");
    assert!(
        text.contains("upstream.base_url") && text.contains("punycode"),
        "{text}"
    );
    let text =
        problems_of("[upstream]\nbase_url = \"https://me:hunter2@up.example/api/v1\"\n").join("\n");
    assert!(
        text.contains("must not carry a user name or password"),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "{text}");
    assert!(
        problems_of("[upstream]\nbase_url = \"https://xn--bcher-kva.example/api/v1\"\n").is_empty()
    );
}
