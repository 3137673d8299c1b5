//! Prometheus text exposition format 0.0.4 for a merged [`Snapshot`].
//!
//! Hand-written rather than built on `prometheus-client`: that crate emits
//! OpenMetrics text (counters get a `_total` suffix and the body ends in
//! `# EOF`), which would rename Consul's families (`consul_raft_apply` becomes
//! `consul_raft_apply_total`) and break dashboards written against Consul, and
//! its metric types are atomics meant to be registered once, whereas our values
//! already sit in a plain per-core snapshot. The
//! `prometheus` crate encodes 0.0.4 but only from its protobuf model behind a
//! registry. The format itself is a few lines of escaping and number
//! formatting, done here.
//!
//! Mapping: counters are `counter` with the summed increments as value, gauges
//! are `gauge`, samples are `summary` with `quantile="0.5"|"0.9"|"0.99"` plus
//! `_sum` and `_count` (quantiles are `NaN` until the first value, like Go's
//! client). Families and series are sorted, so output is deterministic.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::snapshot::{MetricKind, SampleValue, SeriesKey, Snapshot};

/// `Content-Type` for the body produced by [`Snapshot::to_prometheus`].
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Quantiles exposed for samples, as Consul's Prometheus sink does.
pub const SUMMARY_QUANTILES: [(f64, &str); 3] = [(0.5, "0.5"), (0.9, "0.9"), (0.99, "0.99")];

/// Consul dotted name to Prometheus metric name: every character outside
/// `[a-zA-Z0-9_:]` becomes `_` (`consul.raft.commitTime` → `consul_raft_commitTime`),
/// and a leading digit gets a `_` prefix.
pub fn prometheus_name(name: &str) -> String {
    sanitize(name, true)
}

fn sanitize(name: &str, allow_colon: bool) -> String {
    let mut out = String::with_capacity(name.len() + 1);
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        out.push('_');
    }
    out.extend(name.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' || (allow_colon && c == ':') {
            c
        } else {
            '_'
        }
    }));
    out
}

fn escape_label_value(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn escape_help(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Formats like Go's `strconv.FormatFloat(v, 'g', -1, 64)` closely enough for
/// Prometheus' parser: shortest round-trip digits, exponent for extreme magnitudes.
fn write_f64(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else if v != 0.0 && !(1e-5..1e15).contains(&v.abs()) {
        let _ = write!(out, "{v:e}");
    } else {
        let _ = write!(out, "{v}");
    }
}

/// `a="x",b="y"` (no braces) for a series' own labels.
fn render_labels(key: &SeriesKey) -> String {
    let mut out = String::new();
    for (i, (name, value)) in key.labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let name = sanitize(name, false);
        // `quantile` is reserved for summary lines; keep a user label of that name apart.
        out.push_str(if name == "quantile" {
            "quantile_"
        } else {
            &name
        });
        out.push_str("=\"");
        escape_label_value(value, &mut out);
        out.push('"');
    }
    out
}

enum Series<'a> {
    Scalar(f64),
    Summary(&'a SampleValue),
}

struct Family<'a> {
    kind: MetricKind,
    help: String,
    /// Keyed by rendered labels: sorted and free of duplicates.
    series: BTreeMap<String, Series<'a>>,
}

fn type_name(kind: MetricKind) -> &'static str {
    match kind {
        MetricKind::Counter => "counter",
        MetricKind::Gauge => "gauge",
        MetricKind::Sample => "summary",
    }
}

fn add_series<'a>(
    families: &mut BTreeMap<String, Family<'a>>,
    snap: &Snapshot,
    key: &SeriesKey,
    kind: MetricKind,
    series: Series<'a>,
) {
    let family = families
        .entry(prometheus_name(key.name))
        .or_insert_with(|| Family {
            kind,
            help: snap.help(key.name).unwrap_or(key.name).to_owned(),
            series: BTreeMap::new(),
        });
    if family.kind != kind {
        // Two kinds under one Prometheus name would make the whole body
        // unparsable; the first kind (gauges, then counters, then samples) wins.
        log::warn!(
            "metrics: {} recorded as {:?} and {:?}; exposing only the {:?}",
            key.name,
            family.kind,
            kind,
            family.kind
        );
        return;
    }
    // Distinct dotted names can map to one Prometheus name (`a.b`, `a_b`); keep the first.
    family.series.entry(render_labels(key)).or_insert(series);
}

fn write_sample_line(
    out: &mut String,
    name: &str,
    suffix: &str,
    labels: &str,
    extra: Option<&str>,
    v: f64,
) {
    out.push_str(name);
    out.push_str(suffix);
    if !labels.is_empty() || extra.is_some() {
        out.push('{');
        out.push_str(labels);
        if let Some(extra) = extra {
            if !labels.is_empty() {
                out.push(',');
            }
            out.push_str(extra);
        }
        out.push('}');
    }
    out.push(' ');
    write_f64(out, v);
    out.push('\n');
}

pub(crate) fn render(snap: &Snapshot) -> String {
    let mut families: BTreeMap<String, Family<'_>> = BTreeMap::new();
    for (key, g) in &snap.gauges {
        add_series(
            &mut families,
            snap,
            key,
            MetricKind::Gauge,
            Series::Scalar(g.value()),
        );
    }
    for (key, c) in &snap.counters {
        add_series(
            &mut families,
            snap,
            key,
            MetricKind::Counter,
            Series::Scalar(c.sum()),
        );
    }
    for (key, s) in &snap.samples {
        add_series(
            &mut families,
            snap,
            key,
            MetricKind::Sample,
            Series::Summary(s),
        );
    }

    let mut out = String::with_capacity(families.len() * 160);
    for (name, family) in &families {
        out.push_str("# HELP ");
        out.push_str(name);
        out.push(' ');
        escape_help(&family.help, &mut out);
        out.push('\n');
        out.push_str("# TYPE ");
        out.push_str(name);
        out.push(' ');
        out.push_str(type_name(family.kind));
        out.push('\n');
        for (labels, series) in &family.series {
            match series {
                Series::Scalar(v) => write_sample_line(&mut out, name, "", labels, None, *v),
                Series::Summary(s) => {
                    for (q, q_text) in SUMMARY_QUANTILES {
                        let extra = format!("quantile=\"{q_text}\"");
                        let v = s.quantile(q).unwrap_or(f64::NAN);
                        write_sample_line(&mut out, name, "", labels, Some(&extra), v);
                    }
                    write_sample_line(&mut out, name, "_sum", labels, None, s.aggregate().sum());
                    write_sample_line(
                        &mut out,
                        name,
                        "_count",
                        labels,
                        None,
                        s.aggregate().count() as f64,
                    );
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_sanitized() {
        assert_eq!(prometheus_name("consul.raft.apply"), "consul_raft_apply");
        assert_eq!(
            prometheus_name("consul.raft.commitTime"),
            "consul_raft_commitTime"
        );
        assert_eq!(
            prometheus_name("consul.catalog.service.query-tag"),
            "consul_catalog_service_query_tag"
        );
        assert_eq!(prometheus_name("a:b/c d"), "a:b_c_d");
        assert_eq!(prometheus_name("9lives"), "_9lives");
        assert_eq!(sanitize("a:b", false), "a_b");
    }

    #[test]
    fn label_values_are_escaped() {
        let mut out = String::new();
        escape_label_value("a\\b\"c\nd", &mut out);
        assert_eq!(out, r#"a\\b\"c\nd"#);
        let mut help = String::new();
        escape_help("x\\y\n\"z\"", &mut help);
        assert_eq!(help, r#"x\\y\n"z""#);
    }

    #[test]
    fn numbers_format_for_prometheus() {
        let f = |v: f64| {
            let mut s = String::new();
            write_f64(&mut s, v);
            s
        };
        assert_eq!(f(0.0), "0");
        assert_eq!(f(3.0), "3");
        assert_eq!(f(-2.5), "-2.5");
        assert_eq!(f(1e300), "1e300");
        assert_eq!(f(1.5e-7), "1.5e-7");
        assert_eq!(f(f64::NAN), "NaN");
        assert_eq!(f(f64::INFINITY), "+Inf");
        assert_eq!(f(f64::NEG_INFINITY), "-Inf");
    }
}
