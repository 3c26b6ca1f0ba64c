//! The command line: `serve` (also bare `orgate`), `check`, `hash-key`, `keygen`, `explain`,
//! `healthcheck`; [`run`] carries out the one the command line names.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::auth::{generate_key, key_hash_field};
use crate::config::{self, Config, ConfigSource, Env};
use crate::policy::CompiledPolicy;
use crate::StartupError;

#[derive(Debug, Parser)]
#[command(
    name = "orgate",
    version,
    about = "An OpenAI-compatible gateway in front of OpenRouter"
)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// A bare `orgate` is `orgate serve`, and takes its options.
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// `serve`'s options.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Config file (else $ORGATE_CONFIG, else config/orgate.toml if present, else defaults).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Listen address, overriding the config and $ORGATE_LISTEN.
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway (the default).
    Serve(ServeArgs),
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
    /// Print what would be forwarded for a key's request to a door (FILE or stdin), or the refusal,
    /// and every rule that changed or refused it. No network. Exit 0 forwarded, 3 refused,
    /// 1 bad input.
    Explain {
        /// The key id (`anonymous` for a request without a key).
        #[arg(long)]
        key: String,
        #[arg(long)]
        config: Option<PathBuf>,
        /// The door the request is sent to (`/v1/messages`, `/responses`, ...).
        #[arg(long, default_value = "/v1/chat/completions")]
        path: String,
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

/// Runs the command the command line names, with the process's environment.
pub fn run(cli: Cli) -> ExitCode {
    let env = Env::from_process();
    match cli.command.unwrap_or(Command::Serve(cli.serve)) {
        Command::Serve(ServeArgs { config, listen }) => serve(
            ConfigSource {
                path: config,
                listen,
            },
            &env,
        ),
        Command::Check { config } => check(config, &env),
        Command::HashKey { key } => hash_key(key),
        Command::Keygen { prefix } => keygen(&prefix),
        Command::Explain {
            key,
            config,
            path,
            file,
        } => explain(&key, config, &path, file, &env),
        Command::Healthcheck { addr } => healthcheck(addr, &env),
    }
}

/// `orgate serve`: logging set up, the config loaded, the listener bound, then the gateway
/// until SIGTERM/SIGINT; SIGHUP reloads the config from the same place.
fn serve(source: ConfigSource, env: &Env) -> ExitCode {
    // Before any thread starts: see `crate::memory`. A refusal leaves glibc's defaults.
    let _ = crate::memory::keep_large_buffers();
    if let Err(e) = crate::telemetry::init(env.get("ORGATE_LOG"), env.get("ORGATE_LOG_FORMAT")) {
        eprintln!("orgate: {e}");
        return ExitCode::FAILURE;
    }
    let config = match load(&source, env) {
        Ok((config, _)) => config,
        Err(problems) => {
            report_problems("orgate: cannot start", &problems);
            return ExitCode::FAILURE;
        }
    };
    // This runtime only accepts, handles signals and reloads, and runs housekeeping; the
    // connections are served by the I/O threads (`crate::workers`).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("orgate: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(config.server.listen)
            .await
            .map_err(|e| {
                StartupError::Config(format!("cannot listen on {}: {e}", config.server.listen))
            })?;
        let (reload_tx, reloads) = tokio::sync::mpsc::channel(4);
        tokio::spawn(crate::shutdown::on_sighup(move || {
            // The environment is read again too: a secret's file may have been rotated.
            let reloaded = load(&source, &Env::from_process()).map(|(config, _)| config);
            let _ = reload_tx.try_send(reloaded);
        }));
        crate::serve_with_reloads(config, listener, crate::shutdown::signal(), reloads).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("orgate: {e}");
            ExitCode::FAILURE
        }
    }
}

fn check(path: Option<PathBuf>, env: &Env) -> ExitCode {
    let source = ConfigSource { path, listen: None };
    match load(&source, env) {
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
            let mut unset = Vec::new();
            for var in vars {
                let state = if config.secrets.get(&var).is_some() {
                    "set, [redacted]"
                } else {
                    unset.push(var.clone());
                    "NOT SET: serve will refuse to start"
                };
                println!("# upstream key ${var}: {state}");
            }
            let store = probe_store(&config);
            print!("{}", config.to_toml());
            if let Err(why) = store {
                eprintln!("orgate check: serve would refuse to start: {why}");
                return ExitCode::FAILURE;
            }
            if unset.is_empty() {
                return ExitCode::SUCCESS;
            }
            // What serve would refuse is a failed check, even with the file itself valid.
            eprintln!(
                "orgate check: serve would refuse to start: ${} not set (or {}_FILE)",
                unset.join(", $"),
                unset[0]
            );
            ExitCode::FAILURE
        }
        Err(problems) => {
            report_problems("orgate", &problems);
            ExitCode::FAILURE
        }
    }
}

/// With `limits.backend = "redis"`: connects once, as `serve` does at start, and says how it
/// went (as a comment line). `Err` for what `serve` refuses: a TLS certificate or credentials
/// Redis does not accept. Redis being down is reported, not a failure.
fn probe_store(config: &crate::config::Config) -> Result<(), String> {
    if config.limits.backend != crate::config::LimitsBackend::Redis {
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let answer = runtime.block_on(crate::limits::Limits::probe_config(
        config,
        crate::server::STORE_PROBE_WITHIN,
    ));
    match answer {
        Ok(None) => println!("# limits backend (redis): answers"),
        Ok(Some(why)) => {
            println!("# limits backend (redis): NOT REACHABLE now ({why}); serve starts anyway")
        }
        Err(why) => {
            println!("# limits backend (redis): REFUSED");
            return Err(why);
        }
    }
    Ok(())
}

fn explain(
    key: &str,
    config: Option<PathBuf>,
    path: &str,
    file: Option<PathBuf>,
    env: &Env,
) -> ExitCode {
    let Some(door) = crate::doors::ModelDoor::at(path) else {
        eprintln!("orgate explain: {path:?} is not a door to a model (chat/completions, responses, messages, completions, embeddings, rerank)");
        return ExitCode::FAILURE;
    };
    let source = ConfigSource {
        path: config,
        listen: None,
    };
    let config = match load(&source, env) {
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
    let explanation = crate::explain::explain(&config, key, door, &body);
    print!("{}", explanation.text);
    if !explanation.text.ends_with('\n') {
        println!();
    }
    ExitCode::from(explanation.exit_code)
}

/// The config from `source`, loaded and validated, with its policies compiled: every problem
/// `serve` would refuse it for, in one pass (the policies are compiled from what could be read
/// even when other values are bad).
fn load(source: &ConfigSource, env: &Env) -> Result<(Config, Option<PathBuf>), config::Problems> {
    let (config, path, mut problems) = config::load_reporting(source, env);
    let in_file = |problem: config::Problem| config::Problem {
        file: path.clone(),
        ..problem
    };
    // Compiling meets again what validating already said (a bad glob): said once.
    let said = |found: &config::Problem, before: &config::Problem| {
        found.why == before.why || found.why == format!("{}: {}", before.path, before.why)
    };
    for found in CompiledPolicy::problems(&config).into_iter().map(in_file) {
        if !problems.iter().any(|before| said(&found, before)) {
            problems.push(found);
        }
    }
    if problems.is_empty() {
        Ok((config, path))
    } else {
        Err(config::Problems(problems))
    }
}

/// Prints every config problem, one per line, under a heading naming the command.
fn report_problems(command: &str, problems: &config::Problems) {
    eprintln!("{command}: the config has {} problem(s):", problems.0.len());
    for problem in &problems.0 {
        eprintln!("  {problem}");
    }
}

fn hash_key(key: Option<String>) -> ExitCode {
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

fn healthcheck(addr: Option<std::net::SocketAddr>, env: &Env) -> ExitCode {
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

fn keygen(prefix: &str) -> ExitCode {
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
