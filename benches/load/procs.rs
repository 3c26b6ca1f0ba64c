//! Processes: starting the harness's own roles, reading memory and CPU from `/proc`, waiting
//! for ports, and stopping what was started (by pid, nothing else).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A child process that is killed and reaped when dropped, so an early return or a panic in
/// the orchestrator leaves nothing running.
#[derive(Debug)]
pub(crate) struct Guard {
    pub(crate) child: Child,
    /// Sent instead of SIGKILL first (nginx's master must tell its workers).
    pub(crate) term_first: bool,
}

impl Guard {
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it already exited (and how).
    pub(crate) fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if self.exited().is_some() {
            return;
        }
        if self.term_first {
            let _ = Command::new("kill")
                .args(["-TERM", &self.pid().to_string()])
                .status();
            // Profilers wrapping a target may take a while to write their output.
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if self.exited().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts this same executable in another role (`--role mock` …): the mock and the load
/// generator are separate processes from the orchestrator and from each other.
pub(crate) fn spawn_role(role: &str, args: &[String]) -> std::io::Result<Child> {
    spawn_wrapped_role(role, args, None)
}

/// [`spawn_role`] under a command (`ORGATE_BENCH_WRAP`, split on whitespace), when given.
fn spawn_wrapped_role(role: &str, args: &[String], wrap: Option<&str>) -> std::io::Result<Child> {
    let exe = std::env::current_exe()?;
    let mut wrap = wrap.unwrap_or_default().split_whitespace();
    let mut command = match wrap.next() {
        Some(tool) => {
            let mut c = Command::new(tool);
            c.args(wrap).arg(exe);
            c
        }
        None => Command::new(exe),
    };
    command
        .arg("--role")
        .arg(role)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
}

/// A role's runtime: one thread, so that the role's own cost stays small and predictable on a
/// 2-core machine. `None` (said on stderr) if it cannot be built.
pub(crate) fn role_runtime(role: &str) -> Option<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| eprintln!("{role}: runtime: {e}"))
        .ok()
}

/// Runs a server role (the mock, the floor) on its runtime until `serve` fails or the
/// orchestrator goes: its end of our stdin closes, so a parent that dies leaves no server
/// behind.
pub(crate) fn serve_role(
    role: &str,
    serve: impl std::future::Future<Output = std::io::Result<()>>,
) -> std::process::ExitCode {
    let Some(runtime) = role_runtime(role) else {
        return std::process::ExitCode::FAILURE;
    };
    std::thread::spawn(|| {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        std::process::exit(0);
    });
    match runtime.block_on(serve) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{role}: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Starts a mock upstream and returns it with the port it reported.
pub(crate) fn start_mock() -> Result<(Guard, u16), String> {
    start_listening_role("mock", &[], None)
}

/// Starts a role that listens on a port of its choosing and prints it on its first line (the
/// mock, the floor proxy), under `wrap` if given, and returns it with that port.
pub(crate) fn start_listening_role(
    role: &str,
    args: &[String],
    wrap: Option<&str>,
) -> Result<(Guard, u16), String> {
    let mut child = spawn_wrapped_role(role, args, wrap)
        .map_err(|e| format!("cannot start the {role}: {e}"))?;
    let stdout: ChildStdout = child.stdout.take().ok_or(format!("{role}: no stdout"))?;
    let guard = Guard {
        child,
        // A profiler must be let write its output.
        term_first: wrap.is_some(),
    };
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(|e| format!("{role}: {e}"))?;
    let port = line
        .trim()
        .parse()
        .map_err(|_| format!("{role}: expected a port, got {line:?}"))?;
    Ok((guard, port))
}

/// A port free right now on 127.0.0.1 (for nginx and orgate, whose port goes in a config file).
pub(crate) fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

/// Waits until `addr` answers `GET path` with 200, or `child` exits, or 30 s pass (a target
/// run under valgrind starts slowly).
pub(crate) fn wait_ready(addr: SocketAddr, path: &str, child: &mut Guard) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.exited() {
            return Err(format!("exited before it was ready ({status})"));
        }
        if get_status(addr, path) == Some(200) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("not answering on {addr} after 30 s"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn get_status(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// Resident memory of `pid` in KiB (`VmRSS`).
pub(crate) fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// CPU time (user + system) used so far by `pid`, all threads, in clock ticks.
pub(crate) fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; the fields after it are fixed: utime is the 12th
    // after the closing parenthesis, stime the 13th.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// The direct children of `pid` (nginx's workers), from every thread's `children` list.
pub(crate) fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|s| {
            s.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// A process and its children, as one target: RSS and CPU are summed over all of them.
pub(crate) fn family(pid: u32) -> Vec<u32> {
    let mut pids = vec![pid];
    pids.extend(children(pid));
    pids
}

pub(crate) fn family_rss_kib(pid: u32) -> u64 {
    family(pid).into_iter().filter_map(rss_kib).sum()
}

pub(crate) fn family_cpu_ticks(pid: u32) -> u64 {
    family(pid).into_iter().filter_map(cpu_ticks).sum()
}

/// Samples a target's RSS every 50 ms on a thread and keeps the peak.
#[derive(Debug)]
pub(crate) struct RssSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl RssSampler {
    pub(crate) fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(family_rss_kib(pid)));
        let thread = {
            let (stop, peak) = (stop.clone(), peak.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    peak.fetch_max(family_rss_kib(pid), Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        };
        Self {
            stop,
            peak,
            thread: Some(thread),
        }
    }

    /// Stops sampling; the peak in KiB.
    pub(crate) fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.peak.load(Ordering::Relaxed)
    }
}

/// Clock ticks per second for `/proc/*/stat` times (`getconf CLK_TCK`; 100 on Linux).
pub(crate) fn clock_ticks_per_s() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}
