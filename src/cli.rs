//! The command line: `serve` (also bare `orgate`), `check`, `hash-key`, `keygen`, `explain`.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::auth::{generate_key, key_hash_field};
use crate::config::{self, ConfigSource, Env};

#[derive(Debug, Parser)]
#[command(
    name = "orgate",
    version,
    about = "An OpenAI-compatible gateway in front of OpenRouter"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway (the default).
    Serve {
        /// Config file (else $ORGATE_CONFIG, else config/orgate.toml if present, else defaults).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Listen address, overriding the config and $ORGATE_LISTEN.
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
    },
    /// Validate the config and print it with secrets redacted; exit 1 listing every problem.
    Check {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Print the `hash` value for a client key (the key as argument or on stdin).
    HashKey { key: Option<String> },
    /// Print a new random client key and its hash.
    Keygen {
        #[arg(long, default_value = "sk-orgate-")]
        prefix: String,
    },
    /// Print what would be forwarded for a key's chat request (FILE or stdin), or the refusal,
    /// and every rule that changed or refused it. No network. Exit 0 forwarded, 3 refused,
    /// 1 bad input.
    Explain {
        /// The key id (`anonymous` for a request without a key).
        #[arg(long)]
        key: String,
        #[arg(long)]
        config: Option<PathBuf>,
        /// The request body (JSON); stdin when absent.
        file: Option<PathBuf>,
    },
    /// Exit 0 if the local gateway answers `/readyz` with 200 (for container health checks,
    /// where no curl is available). The port comes from `--addr`, else $ORGATE_LISTEN.
    Healthcheck {
        #[arg(long)]
        addr: Option<std::net::SocketAddr>,
    },
}

/// Runs a command that does not serve; `serve` is run by `main` (it needs the runtime).
pub fn check(path: Option<PathBuf>, env: &Env) -> ExitCode {
    let source = ConfigSource { path, listen: None };
    match config::load(&source, env) {
        Ok((config, path)) => {
            let from = path.map_or_else(
                || "built-in defaults".to_owned(),
                |p| p.display().to_string(),
            );
            println!("# orgate config from {from}: OK");
            let mut vars = vec![config.upstream.api_key_env.clone()];
            vars.extend(
                config
                    .auth
                    .keys
                    .iter()
                    .filter_map(|k| k.upstream_key_env.clone()),
            );
            vars.dedup();
            for var in vars {
                let state = if config.secrets.get(&var).is_some() {
                    "set, [redacted]"
                } else {
                    "NOT SET: serve will refuse to start"
                };
                println!("# upstream key ${var}: {state}");
            }
            print!("{}", config.to_toml());
            ExitCode::SUCCESS
        }
        Err(problems) => {
            report_problems("orgate", &problems);
            ExitCode::FAILURE
        }
    }
}

pub fn explain(key: &str, config: Option<PathBuf>, file: Option<PathBuf>, env: &Env) -> ExitCode {
    let source = ConfigSource {
        path: config,
        listen: None,
    };
    let config = match config::load(&source, env) {
        Ok((config, _)) => config,
        Err(problems) => {
            report_problems("orgate explain", &problems);
            return ExitCode::FAILURE;
        }
    };
    let body = match &file {
        Some(path) => {
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
        }
        None => {
            let mut body = Vec::new();
            std::io::stdin()
                .read_to_end(&mut body)
                .map(|_| body)
                .map_err(|e| format!("cannot read stdin: {e}"))
        }
    };
    let body = match body {
        Ok(body) => body,
        Err(why) => {
            eprintln!("orgate explain: {why}");
            return ExitCode::FAILURE;
        }
    };
    let explanation = crate::policy::explain(&config, key, &body);
    print!("{}", explanation.text);
    if !explanation.text.ends_with('\n') {
        println!();
    }
    ExitCode::from(explanation.exit_code)
}

/// Prints every config problem, one per line, under a heading naming the command.
pub fn report_problems(command: &str, problems: &config::Problems) {
    eprintln!("{command}: the config has {} problem(s):", problems.0.len());
    for problem in &problems.0 {
        eprintln!("  {problem}");
    }
}

pub fn hash_key(key: Option<String>) -> ExitCode {
    let key = match key {
        Some(key) => key,
        None => {
            if std::io::stdin().is_terminal() {
                eprintln!("orgate hash-key: give the key as an argument or on stdin");
            }
            let mut text = String::new();
            if let Err(e) = std::io::stdin().read_to_string(&mut text) {
                eprintln!("orgate hash-key: cannot read stdin: {e}");
                return ExitCode::FAILURE;
            }
            text.trim_end_matches(['\r', '\n']).to_owned()
        }
    };
    if key.is_empty() {
        eprintln!("orgate hash-key: the key is empty");
        return ExitCode::FAILURE;
    }
    println!("{}", key_hash_field(&key));
    ExitCode::SUCCESS
}

pub fn healthcheck(addr: Option<std::net::SocketAddr>, env: &Env) -> ExitCode {
    use std::io::Write;
    use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
    use std::time::Duration;

    let listen = addr
        .or_else(|| env.get("ORGATE_LISTEN").and_then(|a| a.parse().ok()))
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)));
    // A gateway listening on every interface is reached on loopback.
    let target = if listen.ip().is_unspecified() {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), listen.port())
    } else {
        listen
    };
    let timeout = Duration::from_secs(3);
    let probe = || -> std::io::Result<bool> {
        let mut stream = TcpStream::connect_timeout(&target, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream
            .write_all(b"GET /readyz HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head)?;
        Ok(head.starts_with(b"HTTP/1.1 200"))
    };
    match probe() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("orgate healthcheck: {target} is not ready");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("orgate healthcheck: {target}: {e}");
            ExitCode::FAILURE
        }
    }
}

pub fn keygen(prefix: &str) -> ExitCode {
    match generate_key(prefix) {
        Ok(key) => {
            println!("key:  {key}");
            println!("hash: {}", key_hash_field(&key));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("orgate keygen: no randomness available: {e}");
            ExitCode::FAILURE
        }
    }
}
