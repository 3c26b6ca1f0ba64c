//! The `orgate` binary: parse the command line, set up logging, call into the library.

use std::process::ExitCode;

use clap::Parser;
use orgate::cli::{self, Cli, Command};
use orgate::config::{ConfigSource, Env};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let env = Env::from_process();
    match cli.command.unwrap_or(Command::Serve {
        config: None,
        listen: None,
    }) {
        Command::Serve { config, listen } => serve(
            ConfigSource {
                path: config,
                listen,
            },
            &env,
        ),
        Command::Check { config } => cli::check(config, &env),
        Command::HashKey { key } => cli::hash_key(key),
        Command::Keygen { prefix } => cli::keygen(&prefix),
        Command::Explain { key, config, file } => cli::explain(&key, config, file, &env),
        Command::Healthcheck { addr } => cli::healthcheck(addr, &env),
    }
}

fn serve(source: ConfigSource, env: &Env) -> ExitCode {
    // Before any thread starts: see orgate::memory. A refusal leaves glibc's defaults.
    let _ = orgate::memory::keep_large_buffers();
    if let Err(e) = orgate::telemetry::init(env.get("ORGATE_LOG"), env.get("ORGATE_LOG_FORMAT")) {
        eprintln!("orgate: {e}");
        return ExitCode::FAILURE;
    }
    let config = match orgate::config::load(&source, env) {
        Ok((config, _)) => config,
        Err(problems) => {
            cli::report_problems("orgate: cannot start", &problems);
            return ExitCode::FAILURE;
        }
    };
    // This runtime only accepts, handles signals and reloads, and runs housekeeping; the
    // connections are served by the I/O threads (`orgate::workers`).
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
                orgate::StartupError::Config(format!(
                    "cannot listen on {}: {e}",
                    config.server.listen
                ))
            })?;
        // SIGHUP re-reads the config from the same place, environment included.
        let (reload_tx, reloads) = tokio::sync::mpsc::channel(4);
        tokio::spawn(orgate::shutdown::on_sighup(move || {
            let reloaded =
                orgate::config::load(&source, &Env::from_process()).map(|(config, _)| config);
            let _ = reload_tx.try_send(reloaded);
        }));
        orgate::serve_with_reloads(config, listener, orgate::shutdown::signal(), reloads).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("orgate: {e}");
            ExitCode::FAILURE
        }
    }
}
