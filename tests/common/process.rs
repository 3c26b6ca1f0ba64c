//! The `orgate` binary as a child process, with its stderr (JSON logs) collected by line, and
//! the config files it reads.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;

pub const BIN: &str = env!("CARGO_BIN_EXE_orgate");

/// `orgate serve` on an ephemeral loopback port with the config at `config`, in an empty
/// environment but for the upstream key and JSON logs (so [`Served::start`] reads the address).
pub fn serve_command(config: &std::path::Path) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(BIN);
    command
        .env_clear()
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(config)
        .env("OPENROUTER_API_KEY", super::UPSTREAM_KEY)
        .env("ORGATE_LOG_FORMAT", "json");
    command
}

/// A config file (`orgate.toml`) in a temporary directory of its own, with room beside it for
/// the files a config names (a secret, a certificate).
pub struct ConfigFile {
    dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl ConfigFile {
    pub fn new(toml: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("orgate.toml");
        std::fs::write(&path, toml).unwrap();
        Self { dir, path }
    }

    /// A config in front of `mock` with one client key (`id`, `secret`), `extra` (sections of
    /// its own, such as `[server]`) first.
    pub fn for_mock(
        mock: &super::mock_openrouter::MockOpenRouter,
        extra: &str,
        (id, secret): (&str, &str),
    ) -> Self {
        Self::new(&format!(
            "{extra}{}{}",
            mock.upstream_toml(),
            key_toml(id, secret)
        ))
    }

    /// Replaces the config's text (a reload reads it again).
    pub fn rewrite(&self, toml: &str) {
        std::fs::write(&self.path, toml).unwrap();
    }

    /// Writes `name` beside the config; returns its path.
    pub fn beside(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    /// The upstream key as a Docker secret file, beside the config.
    pub fn upstream_key_file(&self) -> PathBuf {
        self.beside("openrouter_api_key", &format!("{}\n", super::UPSTREAM_KEY))
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// An `[[auth.keys]]` entry for `id`, with the hash of the client key `secret`.
pub fn key_toml(id: &str, secret: &str) -> String {
    format!(
        "[[auth.keys]]\nid = \"{id}\"\nhash = \"{}\"\n",
        super::hash_field(secret)
    )
}

/// A running `orgate serve` child with its stderr (JSON logs) collected line by line.
pub struct Served {
    child: tokio::process::Child,
    lines: mpsc::UnboundedReceiver<String>,
    log: Vec<String>,
    pub addr: String,
}

impl super::Gateway for Served {
    fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Served {
    /// Like [`Served::start`] for pretty (non-JSON) logs: the address is read from the
    /// listening line's text.
    pub async fn start_pretty(command: &mut tokio::process::Command) -> Self {
        let mut served = Self::spawn(command);
        let line = served.wait_for("orgate listening").await;
        let addr = line
            .split("addr=")
            .nth(1)
            .expect("addr= in the listening line");
        served.addr = addr.split_whitespace().next().unwrap().to_owned();
        served
    }

    pub async fn start(command: &mut tokio::process::Command) -> Self {
        let mut served = Self::spawn(command);
        let line = served.wait_for("orgate listening").await;
        let json: serde_json::Value = serde_json::from_str(&line).expect("JSON logs");
        served.addr = json["addr"].as_str().unwrap().to_owned();
        served
    }

    fn spawn(command: &mut tokio::process::Command) -> Self {
        let mut child = command
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                let _ = tx.send(line);
            }
        });
        Self {
            child,
            lines,
            log: Vec::new(),
            addr: String::new(),
        }
    }

    /// Waits up to 10 s for a log line containing `needle`.
    pub async fn wait_for(&mut self, needle: &str) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let line = tokio::time::timeout_at(deadline, self.lines.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "no log line with {needle:?} in 10s; log so far:\n{}",
                        self.log.join("\n")
                    )
                })
                .unwrap_or_else(|| panic!("the process ended; log:\n{}", self.log.join("\n")));
            self.log.push(line.clone());
            if line.contains(needle) {
                return line;
            }
        }
    }

    /// `SIGHUP`: reload the config.
    pub fn hup(&self) {
        self.signal("-HUP");
    }

    /// `kill -9`: no shutdown, no cleanup, as a crashed replica.
    pub fn kill(&self) {
        self.signal("-KILL");
    }

    /// `SIGTERM`: a graceful shutdown.
    pub fn terminate(&self) {
        self.signal("-TERM");
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.id().unwrap().to_string();
        assert!(Command::new("kill")
            .args([signal, &pid])
            .status()
            .unwrap()
            .success());
    }

    /// Waits for exit and returns the code and the whole log.
    pub async fn finish(mut self) -> (Option<i32>, String) {
        let status = tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .expect("exited")
            .unwrap();
        while let Some(line) = self.lines.recv().await {
            self.log.push(line);
        }
        (status.code(), self.log.join("\n"))
    }
}
