//! The environment's part of the config: `ORGATE_*` overrides and secrets.
//!
//! Nothing here reads `std::env` directly except [`Env::from_process`]: tests hand in a map, so
//! they can run in parallel without touching the process environment.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::{Config, Problem};
use crate::secret::Secret;

/// A snapshot of environment variables.
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: BTreeMap<String, String>,
}

impl Env {
    pub fn from_process() -> Self {
        Self {
            // Variables that are not valid UTF-8 cannot hold anything orgate reads.
            vars: std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
        }
    }

    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// A secret from `NAME`, else from the file `NAME_FILE` names (Docker/Kubernetes secrets).
    /// `Ok(None)` when neither is set; an error when the file cannot be read or is empty.
    pub fn secret(&self, name: &str) -> Result<Option<Secret<String>>, String> {
        if let Some(value) = self.get(name) {
            return Ok(Some(Secret::new(value.to_owned())));
        }
        let file_var = format!("{name}_FILE");
        let Some(path) = self.get(&file_var) else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{file_var}: cannot read {path}: {e}"))?;
        // Secret files usually end with a newline that is not part of the key.
        let value = text.trim_end_matches(['\r', '\n']);
        if value.is_empty() {
            return Err(format!("{file_var}: {path} is empty"));
        }
        Ok(Some(Secret::new(value.to_owned())))
    }

    /// The config path: `$ORGATE_CONFIG`, else `config/orgate.toml` if it exists.
    pub fn config_path(&self) -> Option<PathBuf> {
        if let Some(path) = self.get("ORGATE_CONFIG") {
            return Some(PathBuf::from(path));
        }
        let default = PathBuf::from("config/orgate.toml");
        default.exists().then_some(default)
    }
}

/// Secrets resolved from the environment, by the name of the variable that held them.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    values: BTreeMap<String, Secret<String>>,
}

impl Secrets {
    pub fn insert(&mut self, var: impl Into<String>, value: impl Into<String>) {
        self.values.insert(var.into(), Secret::new(value.into()));
    }

    pub fn get(&self, var: &str) -> Option<&Secret<String>> {
        self.values.get(var)
    }
}

/// Applies `ORGATE_LISTEN` and `ORGATE_UPSTREAM_URL`.
pub(super) fn apply_overrides(config: &mut Config, env: &Env, problems: &mut Vec<Problem>) {
    if let Some(listen) = env.get("ORGATE_LISTEN") {
        match listen.parse() {
            Ok(addr) => config.server.listen = addr,
            Err(_) => problems.push(Problem::env(
                "ORGATE_LISTEN",
                format!("{listen:?} is not a socket address like 127.0.0.1:8080"),
            )),
        }
    }
    if let Some(url) = env.get("ORGATE_UPSTREAM_URL") {
        config.upstream.base_url = url.to_owned();
    }
}

/// Every variable that names a secret: the default upstream key, each key's own, Redis.
pub(super) fn resolve_secrets(config: &mut Config, env: &Env, problems: &mut Vec<Problem>) {
    let mut wanted: Vec<(String, String)> = vec![(
        "upstream.api_key_env".to_owned(),
        config.upstream.api_key_env.clone(),
    )];
    for (i, key) in config.auth.keys.iter().enumerate() {
        if let Some(var) = &key.upstream_key_env {
            wanted.push((format!("auth.keys[{i}].upstream_key_env"), var.clone()));
        }
    }
    if !config.limits.redis_url_env.is_empty() {
        wanted.push((
            "limits.redis_url_env".to_owned(),
            config.limits.redis_url_env.clone(),
        ));
    }
    for (path, var) in wanted {
        if var.is_empty() || config.secrets.get(&var).is_some() {
            continue;
        }
        match env.secret(&var) {
            Ok(Some(value)) => {
                config.secrets.values.insert(var, value);
            }
            Ok(None) => {}
            Err(why) => problems.push(Problem::at(&path, why)),
        }
    }
}
