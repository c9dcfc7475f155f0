//! A plugin's log: `host.log` records and the lines it writes to stdout
//! and stderr, as log records under the plugin's name. Each record is cut
//! at [`MAX_RECORD`] bytes, and a plugin may write [`RATE`] records a
//! second (all its instances together); the rest are counted, never
//! buffered: the first one dropped in a second is announced, and their
//! number is logged when the plugin next writes.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::AsyncWrite;
use tokio::time::Instant;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

use super::bindings::sluice::plugin::host::LogLevel;

/// Longest record; longer ones are cut (and say by how much).
pub const MAX_RECORD: usize = 4096;
/// Records a plugin may write per second.
pub const RATE: u32 = 100;

/// One plugin's log: its name and its rate limit.
#[derive(Debug)]
pub struct PluginLog {
    plugin: Arc<str>,
    window: Mutex<Window>,
}

/// Records written in the current one-second window, and those dropped.
#[derive(Debug)]
struct Window {
    started: Instant,
    written: u32,
    dropped: u64,
}

impl PluginLog {
    pub fn new(plugin: Arc<str>) -> Self {
        PluginLog {
            plugin,
            window: Mutex::new(Window {
                started: Instant::now(),
                written: 0,
                dropped: 0,
            }),
        }
    }

    /// Whether a record may be written now; counts it either way, and logs
    /// how many were dropped when a new window opens after drops.
    fn admit(&self) -> bool {
        let mut w = self.window.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if now.duration_since(w.started) >= Duration::from_secs(1) {
            if w.dropped > 0 {
                tracing::warn!(
                    target: "plugin", plugin = &*self.plugin,
                    "{} log records dropped: a plugin may write {RATE} a second",
                    w.dropped
                );
            }
            *w = Window {
                started: now,
                written: 0,
                dropped: 0,
            };
        }
        if w.written < RATE {
            w.written += 1;
            return true;
        }
        if w.dropped == 0 {
            tracing::warn!(
                target: "plugin", plugin = &*self.plugin,
                "log records beyond {RATE} a second are dropped (and counted) until the second is over"
            );
        }
        w.dropped += 1;
        false
    }

    /// Logs a `host.log` record. A record at a level the broker does not
    /// log costs nothing of the plugin's rate (a plugin logging at debug
    /// under an `info` broker is not reported as dropping records).
    pub fn record(&self, level: LogLevel, message: &str) {
        let enabled = match level {
            LogLevel::Trace => tracing::enabled!(target: "plugin", tracing::Level::TRACE),
            LogLevel::Debug => tracing::enabled!(target: "plugin", tracing::Level::DEBUG),
            LogLevel::Info => tracing::enabled!(target: "plugin", tracing::Level::INFO),
            LogLevel::Warn => tracing::enabled!(target: "plugin", tracing::Level::WARN),
            LogLevel::Error => tracing::enabled!(target: "plugin", tracing::Level::ERROR),
        };
        if !enabled || !self.admit() {
            return;
        }
        let message = Cut(message.as_bytes());
        let plugin = &*self.plugin;
        match level {
            LogLevel::Trace => tracing::trace!(target: "plugin", plugin, "{message}"),
            LogLevel::Debug => tracing::debug!(target: "plugin", plugin, "{message}"),
            LogLevel::Info => tracing::info!(target: "plugin", plugin, "{message}"),
            LogLevel::Warn => tracing::warn!(target: "plugin", plugin, "{message}"),
            LogLevel::Error => tracing::error!(target: "plugin", plugin, "{message}"),
        }
    }

    /// Logs a line of stdout (info) or stderr (warn).
    fn line(&self, stream: Stream, line: &[u8]) {
        if !self.admit() {
            return;
        }
        let text = Cut(line);
        let plugin = &*self.plugin;
        match stream {
            Stream::Stdout => tracing::info!(target: "plugin", plugin, stream = "stdout", "{text}"),
            Stream::Stderr => tracing::warn!(target: "plugin", plugin, stream = "stderr", "{text}"),
        }
    }
}

/// Text shown at most [`MAX_RECORD`] bytes long (lossy UTF-8), with how
/// much was cut.
struct Cut<'a>(&'a [u8]);

impl std::fmt::Display for Cut<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.len() <= MAX_RECORD {
            return f.write_str(&String::from_utf8_lossy(self.0));
        }
        let shown = String::from_utf8_lossy(&self.0[..MAX_RECORD]);
        write!(f, "{shown}… ({} more bytes cut)", self.0.len() - MAX_RECORD)
    }
}

#[derive(Clone, Copy, Debug)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// A plugin's stdout or stderr: each line becomes a log record (stdout at
/// info, stderr at warn); a line is cut at [`MAX_RECORD`] bytes.
#[derive(Clone)]
pub struct LogStream {
    log: Arc<PluginLog>,
    stream: Stream,
}

impl LogStream {
    pub fn new(log: Arc<PluginLog>, stream: Stream) -> Self {
        LogStream { log, stream }
    }
}

impl IsTerminal for LogStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogStream {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(LineLogger {
            log: self.log.clone(),
            stream: self.stream,
            line: Vec::new(),
        })
    }
}

struct LineLogger {
    log: Arc<PluginLog>,
    stream: Stream,
    line: Vec<u8>,
}

impl LineLogger {
    fn emit(&mut self) {
        if self.line.is_empty() {
            return;
        }
        self.log.line(self.stream, &self.line);
        self.line.clear();
    }
}

impl AsyncWrite for LineLogger {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        for &b in buf {
            if b == b'\n' || self.line.len() >= MAX_RECORD {
                self.emit();
            }
            if b != b'\n' {
                self.line.push(b);
            }
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.emit();
        Poll::Ready(Ok(()))
    }
}

impl Drop for LineLogger {
    fn drop(&mut self) {
        self.emit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_records_are_cut_and_say_so() {
        let short = "abc".to_string();
        assert_eq!(Cut(short.as_bytes()).to_string(), "abc");
        let long = "x".repeat(MAX_RECORD + 10);
        let shown = Cut(long.as_bytes()).to_string();
        assert!(shown.starts_with(&"x".repeat(MAX_RECORD)));
        assert!(shown.ends_with("(10 more bytes cut)"), "{shown}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_plugin_writes_at_most_its_rate_per_second() {
        let log = PluginLog::new(Arc::from("p"));
        let admitted = (0..RATE * 3).filter(|_| log.admit()).count();
        assert_eq!(admitted, RATE as usize);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(log.admit(), "a new second, a new allowance");
    }

    #[test]
    fn records_below_the_broker_level_cost_no_rate() {
        let log = PluginLog::new(Arc::from("p"));
        let info = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_writer(io::sink)
            .finish();
        tracing::subscriber::with_default(info, || {
            for _ in 0..RATE * 3 {
                log.record(LogLevel::Debug, "not logged");
            }
            let w = log.window.lock().expect("window");
            assert_eq!((w.written, w.dropped), (0, 0));
            drop(w);
            for _ in 0..RATE + 1 {
                log.record(LogLevel::Info, "logged");
            }
            let w = log.window.lock().expect("window");
            assert_eq!((w.written, w.dropped), (RATE, 1));
        });
    }
}
