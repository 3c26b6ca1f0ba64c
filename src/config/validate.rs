//! Checks that types cannot express, collecting every problem with its key path.

use std::collections::HashSet;

use super::{
    check_redis_url, read_ca_file, Config, KeyConfig, LimitsBackend, Percentiles, PolicyConfig,
    Problem, ProviderPolicy, ProviderSort,
};

/// Quantization levels OpenRouter knows; a typo here would silently match nothing.
pub const QUANTIZATIONS: &[&str] = &[
    "int4", "int8", "fp4", "mxfp4", "nvfp4", "fp6", "fp8", "mxfp8", "fp16", "bf16", "fp32",
    "unknown",
];
const SORT_BY: &[&str] = &["price", "throughput", "latency", "exacto"];
const SORT_PARTITION: &[&str] = &["model", "none"];
/// Each I/O thread has its own runtime and upstream pool; more than this is a typo.
const MAX_WORKERS: u32 = 1024;

/// A problem at each of `durations` (key path, value) that is zero: every one is a timeout or
/// a lifetime, which 0 would make fire at once.
fn require_nonzero(durations: &[(&str, super::Duration)], out: &mut Vec<Problem>) {
    for (path, duration) in durations {
        if duration.get().is_zero() {
            out.push(Problem::at(path, "must be greater than 0"));
        }
    }
}

/// Every problem in `config`, in the order of the file's sections.
pub fn validate(config: &Config) -> Vec<Problem> {
    let mut out = Vec::new();
    let server = &config.server;
    if server.max_body.bytes() == 0 {
        out.push(Problem::at("server.max_body", "must be greater than 0"));
    }
    require_nonzero(
        &[
            ("server.header_read_timeout", server.header_read_timeout),
            ("server.body_read_timeout", server.body_read_timeout),
            ("server.idle_timeout", server.idle_timeout),
        ],
        &mut out,
    );
    if server.workers > MAX_WORKERS {
        out.push(Problem::at(
            "server.workers",
            format!("must be at most {MAX_WORKERS} (0: one per CPU)"),
        ));
    }
    if config.auth.keys.is_empty()
        && !config.auth.allow_anonymous
        && !server.listen.ip().is_loopback()
    {
        out.push(Problem::at(
            "server.listen",
            format!(
                "{} is not a loopback address and no client keys are configured: anyone who reaches it \
                 would use the upstream key; add [[auth.keys]] or set auth.allow_anonymous = true",
                server.listen
            ),
        ));
    }

    validate_upstream(config, &mut out);
    validate_keys(config, &mut out);
    validate_limits(config, &mut out);
    validate_policy("policy", &config.policy, &mut out);
    for (name, policy) in &config.policies {
        if !is_identifier(name) {
            out.push(Problem::at(
                &format!("policies.{name}"),
                "a policy name may use only letters, digits, '-', '_' and '.'",
            ));
        }
        validate_policy(&format!("policies.{name}"), policy, &mut out);
    }
    for (i, entry) in config.routes.allow.iter().enumerate() {
        if let Err(why) = super::RoutePattern::parse(entry) {
            out.push(Problem::at(&format!("routes.allow[{i}]"), why));
        }
    }
    out
}

fn validate_upstream(config: &Config, out: &mut Vec<Problem>) {
    let upstream = &config.upstream;
    match url::Url::parse(&upstream.base_url) {
        Ok(url) if !matches!(url.scheme(), "http" | "https") => out.push(Problem::at(
            "upstream.base_url",
            format!("{:?} must be an http or https URL", upstream.base_url),
        )),
        Ok(url) if url.host().is_none() || url.query().is_some() || url.fragment().is_some() => out
            .push(Problem::at(
                "upstream.base_url",
                format!(
                    "{:?} must have a host and no query or fragment",
                    upstream.base_url
                ),
            )),
        Ok(url) if !url.username().is_empty() || url.password().is_some() => out.push(
            Problem::at(
                "upstream.base_url",
                "must not carry a user name or password (the upstream key goes in upstream.api_key_env)",
            ),
        ),
        // The upstream client reads it as an HTTP URI, which takes no Unicode host: the same
        // question here, so that `check` refuses what the start would.
        Ok(_) if upstream.base_url.parse::<http::Uri>().is_err() => out.push(Problem::at(
            "upstream.base_url",
            format!(
                "{:?} must be ASCII: write a host in its punycode (xn--) form",
                upstream.base_url
            ),
        )),
        Ok(_) => {}
        Err(e) => out.push(Problem::at(
            "upstream.base_url",
            format!("{:?} is not a URL: {e}", upstream.base_url),
        )),
    }
    if !is_env_name(&upstream.api_key_env) {
        out.push(Problem::at(
            "upstream.api_key_env",
            format!(
                "{:?} is not an environment variable name",
                upstream.api_key_env
            ),
        ));
    }
    require_nonzero(
        &[
            ("upstream.connect_timeout", upstream.connect_timeout),
            ("upstream.first_byte_timeout", upstream.first_byte_timeout),
            ("upstream.idle_timeout", upstream.idle_timeout),
        ],
        out,
    );
    if upstream.retries > 10 {
        out.push(Problem::at("upstream.retries", "at most 10"));
    }
    for (path, value) in [
        ("upstream.referer", &upstream.referer),
        ("upstream.title", &upstream.title),
    ] {
        if http::HeaderValue::from_str(value).is_err() {
            out.push(Problem::at(
                path,
                "must be printable ASCII (it is sent as a header)",
            ));
        }
    }
    if !upstream.ca_file.is_empty() {
        if let Err(why) = read_ca_file(&upstream.ca_file) {
            out.push(Problem::at("upstream.ca_file", why));
        }
    }
}

fn validate_keys(config: &Config, out: &mut Vec<Problem>) {
    let mut ids = HashSet::new();
    let mut hashes = HashSet::new();
    for (i, key) in config.auth.keys.iter().enumerate() {
        let at = |field: &str| format!("auth.keys[{i}].{field}");
        if key.id.is_empty() || !is_identifier(&key.id) || key.id == "anonymous" {
            out.push(Problem::at(
                &at("id"),
                format!(
                    "{:?}: an id is 1+ letters, digits, '-', '_' or '.', and not \"anonymous\"",
                    key.id
                ),
            ));
        } else if !ids.insert(key.id.as_str()) {
            out.push(Problem::at(
                &at("id"),
                format!("{:?} is used by another key", key.id),
            ));
        }
        match parse_key_hash(&key.hash) {
            Ok(digest) => {
                if !hashes.insert(digest) {
                    out.push(Problem::at(
                        &at("hash"),
                        "the same hash is used by another key",
                    ));
                }
            }
            Err(why) => out.push(Problem::at(&at("hash"), why)),
        }
        if let Some(name) = &key.policy {
            if !config.policies.contains_key(name) {
                out.push(Problem::at(
                    &at("policy"),
                    format!("no [policies.{name}] is defined"),
                ));
            }
        }
        if let Some(var) = &key.upstream_key_env {
            if !is_env_name(var) {
                out.push(Problem::at(
                    &at("upstream_key_env"),
                    format!("{var:?} is not an environment variable name"),
                ));
            }
        }
        validate_key_limits(key, &config.limits, &at, out);
    }
}

fn validate_key_limits(
    key: &KeyConfig,
    limits: &super::LimitsConfig,
    at: &dyn Fn(&str) -> String,
    out: &mut Vec<Problem>,
) {
    let rpm = key
        .requests_per_minute
        .unwrap_or(limits.requests_per_minute);
    let burst = key.burst.unwrap_or(limits.burst);
    if rpm > 0 && burst == 0 {
        out.push(Problem::at(
            &at("burst"),
            "must be at least 1 when requests_per_minute is set",
        ));
    }
    for (field, value) in [
        ("usd_per_day", key.usd_per_day),
        ("usd_per_month", key.usd_per_month),
    ] {
        if let Some(v) = value {
            if !(v.is_finite() && v >= 0.0) {
                out.push(Problem::at(&at(field), "must be a number ≥ 0"));
            }
        }
    }
}

fn validate_limits(config: &Config, out: &mut Vec<Problem>) {
    let limits = &config.limits;
    if limits.requests_per_minute > 0 && limits.burst == 0 {
        out.push(Problem::at(
            "limits.burst",
            "must be at least 1 when requests_per_minute is set",
        ));
    }
    for (path, v) in [
        ("limits.usd_per_day", limits.usd_per_day),
        ("limits.usd_per_month", limits.usd_per_month),
    ] {
        if !(v.is_finite() && v >= 0.0) {
            out.push(Problem::at(path, "must be a number ≥ 0"));
        }
    }
    if limits.backend == LimitsBackend::Redis
        && limits.redis_url.is_empty()
        && limits.redis_url_env.is_empty()
    {
        out.push(Problem::at(
            "limits.backend",
            "\"redis\" needs limits.redis_url or limits.redis_url_env",
        ));
    }
    if !limits.redis_url_env.is_empty() && !is_env_name(&limits.redis_url_env) {
        out.push(Problem::at(
            "limits.redis_url_env",
            "is not an environment variable name",
        ));
    }
    if !limits.redis_url.is_empty() {
        if let Err(why) = check_redis_url(&limits.redis_url) {
            out.push(Problem::at("limits.redis_url", why));
        }
    } else if let Some(url) = config.secrets.get(&limits.redis_url_env) {
        if let Err(why) = check_redis_url(url.expose()) {
            out.push(Problem::at(
                "limits.redis_url_env",
                format!("{}: {why}", limits.redis_url_env),
            ));
        }
    }
    if !limits.redis_ca_file.is_empty() {
        if let Err(why) = read_ca_file(&limits.redis_ca_file) {
            out.push(Problem::at("limits.redis_ca_file", why));
        }
    }
    require_nonzero(
        &[
            ("limits.lease_ttl", limits.lease_ttl),
            ("limits.backend_timeout", limits.backend_timeout),
        ],
        out,
    );
}

fn validate_policy(at: &str, policy: &PolicyConfig, out: &mut Vec<Problem>) {
    for (list, patterns) in [
        ("allow", &policy.models.allow),
        ("deny", &policy.models.deny),
    ] {
        for (i, pattern) in patterns.iter().enumerate() {
            if let Err(e) = globset::Glob::new(pattern) {
                out.push(Problem::at(
                    &format!("{at}.models.{list}[{i}]"),
                    format!("{pattern:?} is not a glob: {}", e.kind()),
                ));
            }
        }
    }
    for (from, to) in &policy.aliases {
        if from.is_empty() || to.is_empty() {
            out.push(Problem::at(
                &format!("{at}.aliases"),
                "aliases map non-empty model ids to non-empty model ids",
            ));
        }
    }
    validate_provider(&format!("{at}.provider"), &policy.provider, out);
}

fn validate_provider(at: &str, p: &ProviderPolicy, out: &mut Vec<Problem>) {
    for (i, q) in p.quantizations.iter().enumerate() {
        if !QUANTIZATIONS.contains(&q.as_str()) {
            out.push(Problem::at(
                &format!("{at}.quantizations[{i}]"),
                format!("{q:?} is not one of {}", QUANTIZATIONS.join(", ")),
            ));
        }
    }
    for (path, sort) in [
        (format!("{at}.sort"), &p.sort),
        (format!("{at}.force.sort"), &p.force.sort),
    ] {
        if let Some(sort) = sort {
            validate_sort(&path, sort, out);
        }
    }
    let prices = [
        ("prompt", p.max_price.prompt),
        ("completion", p.max_price.completion),
        ("image", p.max_price.image),
        ("audio", p.max_price.audio),
        ("request", p.max_price.request),
    ];
    for (field, price) in prices {
        if let Some(v) = price {
            if !(v.is_finite() && v >= 0.0) {
                out.push(Problem::at(
                    &format!("{at}.max_price.{field}"),
                    "must be a number ≥ 0",
                ));
            }
        }
    }
    for (field, pref) in [
        ("preferred_min_throughput", &p.preferred_min_throughput),
        ("preferred_max_latency", &p.preferred_max_latency),
    ] {
        let values: Vec<f64> = match pref {
            None => continue,
            Some(Percentiles::P50(v)) => vec![*v],
            Some(Percentiles::Each { p50, p75, p90, p99 }) => [p50, p75, p90, p99]
                .into_iter()
                .flatten()
                .copied()
                .collect(),
        };
        if values.iter().any(|v| !(v.is_finite() && *v >= 0.0)) {
            out.push(Problem::at(&format!("{at}.{field}"), "must be numbers ≥ 0"));
        }
    }
}

fn validate_sort(at: &str, sort: &ProviderSort, out: &mut Vec<Problem>) {
    let (by, partition) = match sort {
        ProviderSort::By(by) => (Some(by), None),
        ProviderSort::Detailed { by, partition } => (by.as_ref(), partition.as_ref()),
    };
    if let Some(by) = by.filter(|b| !SORT_BY.contains(&b.as_str())) {
        out.push(Problem::at(
            at,
            format!("{by:?} is not one of {}", SORT_BY.join(", ")),
        ));
    }
    if let Some(p) = partition.filter(|p| !SORT_PARTITION.contains(&p.as_str())) {
        out.push(Problem::at(
            at,
            format!(
                "partition {p:?} is not one of {}",
                SORT_PARTITION.join(", ")
            ),
        ));
    }
}

/// `sha256:<64 hex>` → the digest.
pub fn parse_key_hash(text: &str) -> Result<[u8; 32], String> {
    let Some(hex_part) = text.strip_prefix("sha256:") else {
        return Err("must be \"sha256:<64 hex digits>\" (run `orgate hash-key`)".to_owned());
    };
    let mut digest = [0u8; 32];
    hex::decode_to_slice(hex_part, &mut digest).map_err(|_| {
        "must be \"sha256:\" followed by 64 hex digits (run `orgate hash-key`)".to_owned()
    })?;
    Ok(digest)
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

fn is_env_name(s: &str) -> bool {
    !s.is_empty()
        && !s.as_bytes()[0].is_ascii_digit()
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}
