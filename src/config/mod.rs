//! The configuration: its TOML schema, its defaults, and how it is loaded.
//!
//! Every key has a default, so an empty file (or none) is valid. Loading is three steps, each in
//! its own module: [`load`] parses the file and refuses unknown keys with their path, [`env`]
//! applies the `ORGATE_*` overrides and resolves secrets (`NAME` or `NAME_FILE`), and
//! [`validate`] checks what types cannot (globs, hashes, addresses) and reports every problem at
//! once, with the file and the key path, for `orgate check`.

mod ca_file;
mod env;
mod load;
mod redis_url;
mod route_pattern;
mod units;
mod validate;

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

pub(crate) use ca_file::read_ca_file;
pub use env::{Env, Secrets};
pub use load::{load, load_reporting, parse_toml, ConfigSource, Problem, Problems};
pub(crate) use redis_url::{check_redis_url, is_tls_url, redis_client};
pub use route_pattern::RoutePattern;
pub use units::{Duration, Size};
pub use validate::{parse_key_hash, validate, QUANTIZATIONS};

/// The key id of requests made without a client key (where `auth` allows them): what logs,
/// metrics and limits call such a caller.
pub const ANONYMOUS: &str = "anonymous";

/// The whole configuration file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    pub server: ServerConfig,
    pub upstream: UpstreamConfig,
    pub auth: AuthConfig,
    pub limits: LimitsConfig,
    /// Org-wide rules applied to every request.
    pub policy: PolicyConfig,
    /// Named policies, layered on `[policy]` for the keys that name them.
    pub policies: BTreeMap<String, PolicyConfig>,
    /// Paths opened beyond the model doors and the catalogue.
    pub routes: RoutesConfig,
    /// Secrets resolved from the environment; never part of the file, never printed.
    #[serde(skip)]
    pub secrets: Secrets,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Larger request bodies get 413.
    pub max_body: Size,
    /// On SIGTERM/SIGINT: stop accepting, let in-flight streams finish up to this long.
    pub shutdown_grace: Duration,
    /// A client must send its whole request head within this long of accept (slowloris guard).
    pub header_read_timeout: Duration,
    /// A request body not received whole within this long: 408.
    pub body_read_timeout: Duration,
    /// A kept-alive connection with no request in flight for this long is closed (sooner when
    /// `header_read_timeout` is shorter: hyper times the wait for the next head with it).
    pub idle_timeout: Duration,
    /// I/O threads serving connections; 0: one per CPU.
    pub workers: u32,
}

impl ServerConfig {
    /// How many I/O threads `workers` asks for: the number given, or with 0 one per CPU this
    /// process may run on.
    pub fn io_threads(&self) -> usize {
        match self.workers {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n as usize,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body: Size::mib(10),
            shutdown_grace: Duration::from_secs(30),
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(75),
            workers: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct UpstreamConfig {
    /// Where every request goes; nothing a client sends can change it.
    pub base_url: String,
    /// The environment variable that holds the upstream key (or `NAME_FILE`, its path).
    pub api_key_env: String,
    pub connect_timeout: Duration,
    /// No response headers by then: 504.
    pub first_byte_timeout: Duration,
    /// No body bytes for this long: the stream ends with an error event.
    pub idle_timeout: Duration,
    /// Retries for connect errors and 502/503, only before anything reached the client.
    pub retries: u32,
    /// Sent as `HTTP-Referer` when the client sent none (OpenRouter app attribution).
    pub referer: String,
    /// Sent as `X-OpenRouter-Title` and `X-Title` when the client sent neither.
    pub title: String,
    /// A PEM bundle trusted besides the built-in roots (networks that inspect TLS); `""`: none.
    pub ca_file: String,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            base_url: "https://openrouter.ai/api/v1".to_owned(),
            api_key_env: "OPENROUTER_API_KEY".to_owned(),
            connect_timeout: Duration::from_secs(5),
            first_byte_timeout: Duration::from_secs(120),
            idle_timeout: Duration::from_secs(300),
            retries: 2,
            referer: String::new(),
            title: String::new(),
            ca_file: String::new(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct AuthConfig {
    /// Without keys anyone who reaches the port uses the upstream key: refused on a non-loopback
    /// address unless this is true. With keys, lets requests without credentials in as
    /// `anonymous` (a wrong key is still refused).
    pub allow_anonymous: bool,
    pub keys: Vec<KeyConfig>,
}

/// One client key. Only its hash is stored.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct KeyConfig {
    /// Appears in logs and metrics; never the key itself.
    pub id: String,
    /// `sha256:<64 hex>`, from `orgate hash-key`.
    pub hash: String,
    /// A named policy layered on `[policy]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_minute: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_minute: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usd_per_day: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usd_per_month: Option<f64>,
    /// A different upstream key for this client (the name of the variable that holds it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_key_env: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LimitsBackend {
    #[default]
    Memory,
    Redis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnBackendError {
    /// Deny for budgets, allow for rates.
    #[default]
    Default,
    Deny,
    Allow,
}

/// Defaults for every key (and for anonymous use); `0` means unlimited.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct LimitsConfig {
    pub requests_per_minute: u64,
    pub burst: u64,
    pub max_concurrent: u64,
    pub tokens_per_minute: u64,
    pub usd_per_day: f64,
    pub usd_per_month: f64,
    pub global_requests_per_second: u64,
    pub backend: LimitsBackend,
    pub redis_url: String,
    /// The variable holding the Redis URL when it carries credentials (or `NAME_FILE`).
    pub redis_url_env: String,
    /// PEM certificates trusted for a `rediss://` server besides the system roots (a private
    /// CA).
    pub redis_ca_file: String,
    /// Where state survives restarts (`""` = not kept): the memory backend's spend counters,
    /// the Redis backend's journal of charges Redis could not take yet.
    pub state_dir: String,
    pub on_backend_error: OnBackendError,
    /// Redis backend: how long a request's concurrency lease lives without renewal (a replica
    /// that dies gives its slots back after this).
    pub lease_ttl: Duration,
    /// Redis backend: the most any call to Redis may take before `on_backend_error` decides.
    pub backend_timeout: Duration,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            requests_per_minute: 600,
            burst: 60,
            max_concurrent: 64,
            tokens_per_minute: 0,
            usd_per_day: 0.0,
            usd_per_month: 0.0,
            global_requests_per_second: 0,
            backend: LimitsBackend::Memory,
            redis_url: String::new(),
            redis_url_env: String::new(),
            redis_ca_file: String::new(),
            state_dir: String::new(),
            on_backend_error: OnBackendError::Default,
            lease_ttl: Duration::from_secs(30),
            backend_timeout: Duration::from_millis(200),
        }
    }
}

/// `[policy]` and each `[policies.NAME]`: rules on models, caps, plugins and the provider object.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PolicyConfig {
    pub models: ModelRules,
    /// `"gpt-4o" = "openai/gpt-4o"`: rewrites the model id before the rules are checked.
    pub aliases: BTreeMap<String, String>,
    /// Ceiling on `max_tokens` / `max_completion_tokens`; 0 = none.
    pub max_tokens: u64,
    /// Plugin ids a request may not use (e.g. `"web"`).
    pub deny_plugins: Vec<String>,
    pub presets: PresetRules,
    pub provider: ProviderPolicy,
}

/// `presets.allow`: the OpenRouter presets a request may name. The gateway cannot see inside a
/// preset, so none is allowed unless listed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PresetRules {
    /// Preset slugs (`"@preset/x"` and `"preset": "x"` both name `x`).
    pub allow: Vec<String>,
}

/// `[routes]`: what a client key may reach besides the model doors and the read-only catalogue.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RoutesConfig {
    /// `"METHOD /path"` under the API prefix; `*` matches one path segment, `**` the rest.
    pub allow: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModelRules {
    /// Glob patterns on model ids (`"openai/*"`, `"*:free"`).
    pub allow: Vec<String>,
    pub deny: Vec<String>,
}

impl Default for ModelRules {
    fn default() -> Self {
        Self {
            allow: vec!["*".to_owned()],
            deny: Vec::new(),
        }
    }
}

/// The policy's side of OpenRouter's `provider` object. Every field defaults to "unset": an
/// empty policy leaves the client's request untouched. Empty lists mean unset too.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProviderPolicy {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_collection: Option<DataCollection>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zdr: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enforce_distillable_text: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub require_parameters: Option<bool>,
    pub ignore: Vec<String>,
    pub only: Vec<String>,
    pub quantizations: Vec<String>,
    pub order: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sort: Option<ProviderSort>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_fallbacks: Option<bool>,
    pub max_price: MaxPrice,
    /// Tokens/s; a number (p50) or per-percentile; 0 = none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preferred_min_throughput: Option<Percentiles>,
    /// Seconds; a number (p50) or per-percentile; 0 = none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preferred_max_latency: Option<Percentiles>,
    /// Overrides the client for the routing preferences the client otherwise decides.
    pub force: ForcedRouting,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataCollection {
    Allow,
    Deny,
}

/// `sort = "price"` or `sort = { by = "throughput", partition = "none" }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ProviderSort {
    By(String),
    Detailed {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        partition: Option<String>,
    },
}

/// `max_price`: USD per million tokens (prompt, completion), per image, audio unit or request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MaxPrice {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completion: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audio: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<f64>,
}

/// A performance preference: one number (p50) or a floor/ceiling per percentile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Percentiles {
    P50(f64),
    Each {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        p50: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        p75: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        p90: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        p99: Option<f64>,
    },
}

/// `[policy.provider.force]`: routing preferences that override the client's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ForcedRouting {
    pub order: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sort: Option<ProviderSort>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_fallbacks: Option<bool>,
}

impl Config {
    /// The effective config as `orgate check` prints it: TOML, secrets left out.
    pub fn to_toml(&self) -> String {
        let rendered = match redact_url_password(&self.limits.redis_url) {
            Some(redacted) => {
                let mut shown = self.clone();
                shown.limits.redis_url = redacted;
                toml::to_string_pretty(&shown)
            }
            None => toml::to_string_pretty(self),
        };
        rendered.unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }
}

/// `url` with its password replaced by `[redacted]`; `None` when it has none.
fn redact_url_password(url: &str) -> Option<String> {
    let mut parsed = url::Url::parse(url).ok()?;
    parsed.password()?;
    parsed.set_password(Some(crate::secret::REDACTED)).ok()?;
    Some(parsed.to_string())
}

#[cfg(test)]
mod tests;
