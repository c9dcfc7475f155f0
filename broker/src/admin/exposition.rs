//! The Prometheus text exposition format (version 0.0.4), written by hand:
//! families with their `# HELP` and `# TYPE` lines, samples with escaped
//! labels, and histograms (cumulative `_bucket`s up to `le="+Inf"`, `_sum`,
//! `_count`). `metrics.rs` decides what goes in it.

use std::fmt::Write as _;

use crate::plugins::Latency;

/// Prometheus metric types used here.
#[derive(Clone, Copy)]
pub(super) enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Prometheus text exposition (format 0.0.4) being written.
#[derive(Default)]
pub(super) struct Exposition(String);

impl Exposition {
    /// The text written.
    pub(super) fn into_text(self) -> String {
        self.0
    }

    /// Starts a metric family: its `# HELP` and `# TYPE` lines.
    pub(super) fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    /// A family with one unlabelled sample.
    pub(super) fn single(&mut self, name: &str, kind: Kind, help: &str, value: u64) {
        self.family(name, kind, help);
        let _ = writeln!(self.0, "{name} {value}");
    }

    /// A sample labelled with a plugin name.
    pub(super) fn plugin_sample(&mut self, name: &str, plugin: &str, value: u64) {
        self.labelled(name, "plugin", plugin, value);
    }

    /// A sample with one label.
    pub(super) fn labelled(&mut self, name: &str, label: &str, value_of_label: &str, value: u64) {
        let _ = writeln!(
            self.0,
            "{name}{{{label}=\"{}\"}} {value}",
            escape_label(value_of_label)
        );
    }

    /// A sample with `labels` (written by [`labels`]).
    pub(super) fn sample(&mut self, name: &str, labels: &str, value: impl std::fmt::Display) {
        let _ = writeln!(self.0, "{name}{{{labels}}} {value}");
    }

    /// The samples of one histogram of family `name` (started as a
    /// [`Kind::Histogram`]): its cumulative buckets up to `le="+Inf"`, its
    /// sum in seconds and its count.
    pub(super) fn histogram(&mut self, name: &str, labels: &str, latency: &Latency) {
        for (bound, count) in latency.cumulative() {
            let le = bound.map_or_else(|| "+Inf".to_owned(), seconds);
            let _ = writeln!(self.0, "{name}_bucket{{{labels},le=\"{le}\"}} {count}");
        }
        let sum = seconds(latency.sum_nanos);
        let _ = writeln!(self.0, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(self.0, "{name}_count{{{labels}}} {}", latency.count());
    }
}

/// `name="value"` pairs, comma-separated, the values escaped.
pub(super) fn labels(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(name, value)| format!("{name}=\"{}\"", escape_label(value)))
        .collect::<Vec<_>>()
        .join(",")
}

/// Nanoseconds as seconds, in the shortest decimal that reads back the
/// same (`0.000005`, `2.5`).
fn seconds(nanos: u64) -> String {
    (nanos as f64 / 1e9).to_string()
}

/// A label value as the text format needs it: `\`, `"` and line feeds
/// escaped.
fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(escape_label("plain"), "plain");
        assert_eq!(
            labels(&[("plugin", "a\"b"), ("hook", "on-publish")]),
            "plugin=\"a\\\"b\",hook=\"on-publish\""
        );
    }

    #[test]
    fn histograms_are_cumulative_with_their_sum_in_seconds() {
        let mut latency = Latency::default();
        latency.buckets[0] = 2;
        latency.buckets[3] = 1;
        latency.buckets[latency.buckets.len() - 1] = 1;
        latency.sum_nanos = 3_000_050_000;
        let mut out = Exposition::default();
        out.family("h", Kind::Histogram, "A test.");
        out.histogram("h", "plugin=\"p\"", &latency);
        let lines: Vec<&str> = out.0.lines().collect();
        assert_eq!(lines[1], "# TYPE h histogram");
        assert_eq!(lines[2], "h_bucket{plugin=\"p\",le=\"0.000005\"} 2");
        assert_eq!(lines[3], "h_bucket{plugin=\"p\",le=\"0.00001\"} 2");
        assert_eq!(lines[5], "h_bucket{plugin=\"p\",le=\"0.00005\"} 3");
        assert!(
            lines.contains(&"h_bucket{plugin=\"p\",le=\"2.5\"} 3"),
            "{}",
            out.0
        );
        assert_eq!(
            lines[lines.len() - 3],
            "h_bucket{plugin=\"p\",le=\"+Inf\"} 4"
        );
        assert_eq!(lines[lines.len() - 2], "h_sum{plugin=\"p\"} 3.00005");
        assert_eq!(lines[lines.len() - 1], "h_count{plugin=\"p\"} 4");
        assert_eq!(lines.len(), 2 + latency.buckets.len() + 2);
    }
}
