//! A `redis-server` (or `valkey-server`) of a test's own on an ephemeral port: plain, or TLS
//! only with a certificate made by the test and a password; killed when dropped.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use super::{eventually_within, tool_present, unused_port};

/// The password of every TLS server here (never to appear in a log or a message).
pub const REDIS_PASSWORD: &str = "hunter2-redis-secret";

/// How a server is started.
#[derive(Debug, Clone, Copy, Default)]
pub struct RedisOptions {
    /// `valkey-server` instead of `redis-server`.
    pub valkey: bool,
    /// TLS only (`--port 0 --tls-port`), a certificate for 127.0.0.1 made here, and
    /// [`REDIS_PASSWORD`].
    pub tls: bool,
    /// Append-only, fsync'ed on every write: what was written survives a `SIGKILL`.
    pub persistent: bool,
}

pub struct RedisServer {
    child: Option<std::process::Child>,
    pub port: u16,
    options: RedisOptions,
    dir: tempfile::TempDir,
    /// The server's certificate (self-signed: it is its own CA), PEM, with `tls`.
    pub ca_file: Option<PathBuf>,
}

impl RedisServer {
    /// `None` (after a loud `SKIPPED:` line) when the server is not installed; under CI that is
    /// a failure instead.
    pub async fn start(test: &str, options: RedisOptions) -> Option<Self> {
        let binary = Self::binary_of(options);
        if !tool_present(
            std::process::Command::new(binary).arg("--version"),
            &format!("{test}: {binary} (apt-get install {binary})"),
        ) {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let ca_file = options.tls.then(|| {
            let certified =
                rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
            std::fs::write(
                dir.path().join("server.key"),
                certified.key_pair.serialize_pem(),
            )
            .unwrap();
            let cert = dir.path().join("server.pem");
            std::fs::write(&cert, certified.cert.pem()).unwrap();
            cert
        });
        let mut server = Self {
            child: None,
            port: unused_port(),
            options,
            dir,
            ca_file,
        };
        server.restart().await;
        Some(server)
    }

    fn binary_of(options: RedisOptions) -> &'static str {
        if options.valkey {
            "valkey-server"
        } else {
            "redis-server"
        }
    }

    /// The URL the gateway is given (with the password over TLS).
    pub fn url(&self) -> String {
        if self.options.tls {
            format!("rediss://:{REDIS_PASSWORD}@127.0.0.1:{}", self.port)
        } else {
            format!("redis://127.0.0.1:{}", self.port)
        }
    }

    /// A client for the test's own commands.
    pub fn client(&self) -> redis::Client {
        match &self.ca_file {
            Some(ca) => redis::Client::build_with_tls(
                self.url(),
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(std::fs::read(ca).unwrap()),
                },
            )
            .unwrap(),
            None => redis::Client::open(self.url()).unwrap(),
        }
    }

    /// Starts it (again) on its port, with what it kept (if persistent), and waits until it
    /// answers PING (10 s at most).
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let port = self.port.to_string();
        let mut command = std::process::Command::new(Self::binary_of(self.options));
        command.args(["--bind", "127.0.0.1", "--save", ""]);
        if self.options.persistent {
            command.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            command.args(["--appendonly", "no"]);
        }
        if self.options.tls {
            let dir = self.dir.path();
            command
                .args(["--port", "0", "--tls-port", &port])
                .arg("--tls-cert-file")
                .arg(dir.join("server.pem"))
                .arg("--tls-key-file")
                .arg(dir.join("server.key"))
                .arg("--tls-ca-cert-file")
                .arg(dir.join("server.pem"))
                .args(["--tls-auth-clients", "no", "--requirepass", REDIS_PASSWORD]);
        } else {
            command.args(["--port", &port]);
        }
        let child = command
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let client = self.client();
        eventually_within(
            Duration::from_secs(10),
            "redis-server to answer PING",
            async || {
                if let Ok(Ok(mut connection)) = tokio::time::timeout(
                    Duration::from_secs(1),
                    client.get_multiplexed_async_connection(),
                )
                .await
                {
                    let pong: redis::RedisResult<String> =
                        redis::cmd("PING").query_async(&mut connection).await;
                    if pong.is_ok_and(|p| p == "PONG") {
                        return true;
                    }
                }
                if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                    panic!("redis-server exited: {status}");
                }
                false
            },
        )
        .await;
    }

    /// Kills it (`SIGKILL`): every connection drops; unless persistent, every key is gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        self.client()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
