//! The real `sluice` executable as a child process: started with
//! arguments, its address read from its "listening on" log line, its log
//! readable line by line, and killed when dropped.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use super::PATIENCE;

/// The `sluice` binary this test run built.
pub const SLUICE: &str = env!("CARGO_BIN_EXE_sluice");

/// A running `sluice` process.
pub struct Sluice {
    child: Child,
    /// The first MQTT listener's address.
    pub addr: SocketAddr,
    log: Receiver<String>,
    /// Log lines read so far.
    lines: Vec<String>,
}

impl Sluice {
    /// Starts `sluice` with `args` and waits (bounded) for its
    /// "listening on" line.
    pub fn start(args: &[&str]) -> Sluice {
        Self::start_with_env(args, &[])
    }

    /// Like [`Sluice::start`], with environment variables set (`None`:
    /// removed).
    pub fn start_with_env(args: &[&str], env: &[(&str, Option<&std::ffi::OsStr>)]) -> Sluice {
        let mut command = Command::new(SLUICE);
        for (name, value) in env {
            match value {
                Some(v) => command.env(name, v),
                None => command.env_remove(name),
            };
        }
        let mut child = command
            .args(args)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("start sluice");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, log) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut sluice = Sluice {
            child,
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            log,
            lines: Vec::new(),
        };
        let line = sluice.wait_for("listening on ");
        sluice.addr = after(&line, "listening on ");
        sluice
    }

    /// Waits (bounded) for the next log line containing `needle`, and
    /// returns it. Lines before it are kept for [`Sluice::count`] but not
    /// searched again.
    pub fn wait_for(&mut self, needle: &str) -> String {
        self.wait_for_all(&[needle])
    }

    /// Like [`Sluice::wait_for`], for a line containing every one of
    /// `needles`.
    pub fn wait_for_all(&mut self, needles: &[&str]) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = self.log.recv_timeout(left) else {
                panic!(
                    "sluice never logged {needles:?}; it logged: {:#?}",
                    self.lines
                )
            };
            self.lines.push(line.clone());
            if needles.iter().all(|n| line.contains(n)) {
                return line;
            }
        }
    }

    /// Waits (bounded) until every one of `needles` has appeared in some
    /// log line (earlier ones included); every line so far.
    pub fn wait_until_logged(&mut self, needles: &[&str]) -> Vec<String> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            self.lines.extend(self.log.try_iter());
            if needles
                .iter()
                .all(|n| self.lines.iter().any(|l| l.contains(n)))
            {
                return self.lines.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.log.recv_timeout(left) {
                Ok(line) => self.lines.push(line),
                Err(_) => panic!("sluice never logged all of {needles:?}: {:#?}", self.lines),
            }
        }
    }

    /// Every log line so far (read now without waiting).
    pub fn lines(&mut self) -> &[String] {
        self.lines.extend(self.log.try_iter());
        &self.lines
    }

    /// Log lines so far (read now without waiting) that contain `needle`.
    pub fn count(&mut self, needle: &str) -> usize {
        self.lines.extend(self.log.try_iter());
        self.lines.iter().filter(|l| l.contains(needle)).count()
    }

    /// The admin endpoint's address, from its log line.
    pub fn admin_addr(&mut self) -> SocketAddr {
        let line = self.wait_for("admin endpoint on http://");
        after(&line, "admin endpoint on http://")
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident set size, from /proc.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("read /proc/PID/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().strip_suffix("kB"))
            .and_then(|v| v.trim().parse().ok())
            .expect("VmRSS in /proc/PID/status")
    }

    /// Sends signal `name` (e.g. "HUP", "TERM").
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Kills the process with SIGKILL (no shutdown of any kind: a crash)
    /// and reaps it.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL sluice");
        self.child.wait().expect("reap sluice");
    }

    /// Waits (bounded) for the process to exit.
    pub fn wait(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "sluice did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Sluice {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The socket address right after `marker` in a log line.
fn after(line: &str, marker: &str) -> SocketAddr {
    line.split(marker)
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address after {marker:?} in {line:?}"))
}
