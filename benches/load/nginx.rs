//! nginx as the reference proxy: tuned the way one would tune it for SSE in front of an LLM
//! API (no response buffering, HTTP/1.1 keep-alive upstream, `tcp_nodelay`), one worker.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::procs::{self, Guard};

/// The nginx binary, if installed: `NGINX_BIN` when set, else `PATH`, then the usual sbin
/// directories.
pub(crate) fn find() -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os("NGINX_BIN") {
        let bin = PathBuf::from(bin);
        return bin.is_file().then_some(bin);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([
            "/usr/sbin".into(),
            "/usr/local/sbin".into(),
            "/usr/local/nginx/sbin".into(),
        ])
        .map(|dir| dir.join("nginx"))
        .find(|p| p.is_file())
}

/// `files` is the open-files limit the worker may use; `streams` the most concurrent streams
/// the scenario holds (two connections each).
fn config(dir: &Path, listen: SocketAddr, upstream_port: u16, files: u64, streams: u64) -> String {
    let dir = dir.display();
    // nginx preallocates (and touches) every connection slot, so more slots than needed would
    // be counted as its memory; too few, and once fewer than 1/16 are free it starts closing
    // idle keep-alive client connections (our not-yet-used stream connections). Two per
    // stream, the 1/16 reserve, and some room.
    let connections = streams * 2 * 16 / 15 + 1024;
    format!(
        r#"# Written by benches/load.
worker_processes 1;
worker_rlimit_nofile {files};
pid {dir}/nginx.pid;
error_log stderr warn;

events {{
    worker_connections {connections};
    multi_accept on;
}}

http {{
    access_log off;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;

    tcp_nodelay on;
    keepalive_timeout 75s;
    keepalive_requests 1000000;
    # 1 MB chat bodies stay in memory, as they do in orgate.
    client_max_body_size 16m;
    client_body_buffer_size 2m;

    upstream mock {{
        server 127.0.0.1:{upstream_port};
        keepalive 1024;
        keepalive_requests 1000000;
    }}

    server {{
        listen {listen} backlog=4096;
        location / {{
            proxy_pass http://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_read_timeout 300s;
        }}
    }}
}}
"#
    )
}

/// Starts nginx (master and one worker, `daemon off` so the master is our child) in front of
/// `upstream_port`, with its config, pid and logs in `dir`.
pub(crate) fn start(
    bin: &Path,
    dir: &Path,
    upstream_port: u16,
    files: u64,
    streams: u64,
) -> Result<(Guard, SocketAddr), String> {
    let listen: SocketAddr = ([127, 0, 0, 1], procs::free_port()?).into();
    let conf = dir.join("nginx.conf");
    std::fs::write(&conf, config(dir, listen, upstream_port, files, streams))
        .map_err(|e| format!("writing {}: {e}", conf.display()))?;
    let child = Command::new(bin)
        .arg("-p")
        .arg(dir)
        .args(["-e", "stderr"])
        .arg("-c")
        .arg(&conf)
        .args(["-g", "daemon off;"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start nginx: {e}"))?;
    // SIGTERM first: the master stops its worker; a SIGKILLed master would orphan it.
    let mut guard = Guard {
        child,
        term_first: true,
    };
    // Any path will do: the mock answers every request with 200.
    procs::wait_ready(listen, "/", &mut guard).map_err(|e| format!("nginx {e}"))?;
    Ok((guard, listen))
}
