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
    let (config, path, problems) = load_reporting(source, env);
    if problems.is_empty() {
        Ok((config, path))
    } else {
        Err(Problems(problems))
    }
}

/// [`load`], with the config as far as it could be read (each bad value left at its default)
/// beside every problem, for a caller that checks more of it (`orgate check`).
pub fn load_reporting(source: &ConfigSource, env: &Env) -> (Config, Option<PathBuf>, Vec<Problem>) {
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
    (config, path, problems)
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
            "routes" => read_section(&section, value, &mut config.routes, &mut problems),
            _ => problems.push(Problem::at(
                &section,
                "unknown section (expected server, upstream, auth, limits, policy, policies or routes)",
            )),
        }
    }
    (config, problems)
}

fn read_section<T: DeserializeOwned>(
    name: &str,
    mut value: toml::Value,
    slot: &mut T,
    problems: &mut Vec<Problem>,
) {
    // A type error stops serde at the first bad value. Report it, drop that value and read the
    // section again, so every bad value is reported and the good ones are still validated.
    const MAX_ATTEMPTS: usize = 32;
    for _ in 0..MAX_ATTEMPTS {
        let mut unknown = Vec::new();
        let mut on_unknown = |path: serde_ignored::Path<'_>| unknown.push(path.to_string());
        let deserializer = serde_ignored::Deserializer::new(value.clone(), &mut on_unknown);
        match serde_path_to_error::deserialize(deserializer) {
            Ok(parsed) => {
                *slot = parsed;
                for path in unknown {
                    problems.push(Problem::at(&join(name, &path), "unknown key"));
                }
                return;
            }
            Err(e) => {
                let inner = e.path().to_string();
                let path = if inner == "." {
                    name.to_owned()
                } else {
                    join(name, &inner)
                };
                problems.push(Problem::at(&path, one_line(&e.inner().to_string())));
                if !remove_path(&mut value, &inner) {
                    return;
                }
            }
        }
    }
}

/// Removes the value at a `serde_path_to_error` path (`keys[0].hash`, or `keys.0.hash`); false
/// if there is none.
fn remove_path(value: &mut toml::Value, path: &str) -> bool {
    // `keys[0]` is the key `keys`, then the index `0`.
    let parts: Vec<&str> = path
        .split(['.', '[', ']'])
        .filter(|p| !p.is_empty() && *p != "?")
        .collect();
    let Some((last, parents)) = parts.split_last() else {
        return false;
    };
    let mut node = value;
    for part in parents {
        node = match node {
            toml::Value::Table(t) => match t.get_mut(*part) {
                Some(next) => next,
                None => return false,
            },
            toml::Value::Array(a) => match part.parse::<usize>().ok().and_then(|i| a.get_mut(i)) {
                Some(next) => next,
                None => return false,
            },
            _ => return false,
        };
    }
    match node {
        toml::Value::Table(t) => t.remove(*last).is_some(),
        toml::Value::Array(a) => match last.parse::<usize>() {
            Ok(i) if i < a.len() => {
                a.remove(i);
                true
            }
            _ => false,
        },
        _ => false,
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
    let text = message.split_whitespace().collect::<Vec<_>>().join(" ");
    // toml appends " in `field`"; the path already says where.
    match text.rfind(" in `") {
        Some(i) if text.ends_with('`') => text[..i].to_owned(),
        _ => text,
    }
}
