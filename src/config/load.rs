//! Reading the TOML file into [`Config`], refusing unknown keys with their path.
//!
//! Each top-level section is read on its own, so one broken section does not hide the problems
//! of the others, and unknown keys are collected (rather than failing on the first) with
//! `serde_ignored`, so `orgate check` can list them all.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use super::env::{apply_overrides, resolve_secrets};
use super::{validate, Config, Env};

/// One thing wrong with the configuration: where (file, key path) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: Option<PathBuf>,
    /// The key path (`limits.burst`, `auth.keys[2].hash`) or the variable (`$ORGATE_LISTEN`).
    pub path: String,
    pub why: String,
}

impl Problem {
    pub fn at(path: &str, why: impl Into<String>) -> Self {
        Self {
            file: None,
            path: path.to_owned(),
            why: why.into(),
        }
    }

    pub(super) fn env(var: &str, why: impl Into<String>) -> Self {
        Self::at(&format!("${var}"), why)
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(file) => write!(f, "{}: {}: {}", file.display(), self.path, self.why),
            None => write!(f, "{}: {}", self.path, self.why),
        }
    }
}

/// Every problem found, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

/// Where the config comes from.
#[derive(Debug, Clone, Default)]
pub struct ConfigSource {
    /// `--config`; else `$ORGATE_CONFIG`; else `config/orgate.toml` if present; else defaults.
    pub path: Option<PathBuf>,
    /// `--listen`, which wins over the file and `ORGATE_LISTEN`.
    pub listen: Option<std::net::SocketAddr>,
}

/// Loads, overrides, resolves secrets and validates. Returns every problem found, not the first.
pub fn load(source: &ConfigSource, env: &Env) -> Result<(Config, Option<PathBuf>), Problems> {
    let path = source.path.clone().or_else(|| env.config_path());
    let (mut config, mut problems) = match &path {
        Some(path) => read_file(path),
        None => (Config::default(), Vec::new()),
    };
    apply_overrides(&mut config, env, &mut problems);
    if let Some(listen) = source.listen {
        config.server.listen = listen;
    }
    resolve_secrets(&mut config, env, &mut problems);
    problems.extend(validate(&config));
    if let Some(path) = &path {
        for problem in &mut problems {
            if !problem.path.starts_with('$') {
                problem.file.get_or_insert_with(|| path.clone());
            }
        }
    }
    if problems.is_empty() {
        Ok((config, path))
    } else {
        Err(Problems(problems))
    }
}

fn read_file(path: &Path) -> (Config, Vec<Problem>) {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_toml(&text),
        Err(e) => (
            Config::default(),
            vec![Problem::at(
                "(file)",
                format!("cannot read {}: {e}", path.display()),
            )],
        ),
    }
}

/// Parses TOML text. Always returns a config (defaults where a section could not be read) and
/// the problems found; callers decide whether problems are fatal.
pub fn parse_toml(text: &str) -> (Config, Vec<Problem>) {
    let mut config = Config::default();
    let mut problems = Vec::new();
    let table: toml::Table = match text.parse() {
        Ok(table) => table,
        Err(e) => {
            problems.push(Problem::at("(syntax)", one_line(&e.to_string())));
            return (config, problems);
        }
    };
    for (section, value) in table {
        match section.as_str() {
            "server" => read_section(&section, value, &mut config.server, &mut problems),
            "upstream" => read_section(&section, value, &mut config.upstream, &mut problems),
            "auth" => read_section(&section, value, &mut config.auth, &mut problems),
            "limits" => read_section(&section, value, &mut config.limits, &mut problems),
            "policy" => read_section(&section, value, &mut config.policy, &mut problems),
            "policies" => read_section(&section, value, &mut config.policies, &mut problems),
            _ => problems.push(Problem::at(
                &section,
                "unknown section (expected server, upstream, auth, limits, policy or policies)",
            )),
        }
    }
    (config, problems)
}

fn read_section<T: DeserializeOwned>(
    name: &str,
    value: toml::Value,
    slot: &mut T,
    problems: &mut Vec<Problem>,
) {
    let mut unknown = Vec::new();
    let mut on_unknown = |path: serde_ignored::Path<'_>| unknown.push(path.to_string());
    let deserializer = serde_ignored::Deserializer::new(value, &mut on_unknown);
    match serde_path_to_error::deserialize(deserializer) {
        Ok(parsed) => *slot = parsed,
        Err(e) => {
            let inner = e.path().to_string();
            let path = if inner == "." {
                name.to_owned()
            } else {
                join(name, &inner)
            };
            problems.push(Problem::at(&path, one_line(&e.inner().to_string())));
        }
    }
    for path in unknown {
        problems.push(Problem::at(&join(name, &path), "unknown key"));
    }
}

/// `serde_path_to_error` writes sequence indices as `keys[0]`-less `keys.0`; make it read like TOML.
fn join(section: &str, inner: &str) -> String {
    let mut out = section.to_owned();
    for part in inner.split('.').filter(|p| !p.is_empty() && *p != "?") {
        if part.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{part}]"));
        } else if part.starts_with('[') {
            out.push_str(part);
        } else {
            out.push('.');
            out.push_str(part);
        }
    }
    out
}

fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}
