//! Reading traces and writing results: files appear whole or not at all.

use std::path::Path;

use anyhow::Context;
use prewarm_core::{format_duration, parse_trace, read_trace, Trace};

/// The trace used when none is given: NAB's AWS ELB request counts.
const BUNDLED_NAME: &str = "fixtures/nab-elb-5m.csv (bundled)";
const BUNDLED: &str = include_str!("../../../fixtures/nab-elb-5m.csv");

/// Reads a trace, or the bundled fixture when no path is given; returns it with its name.
pub(crate) fn load_trace(path: Option<&Path>) -> anyhow::Result<(Trace, String)> {
    Ok(match path {
        Some(path) => (read_trace(path)?, path.display().to_string()),
        None => (
            parse_trace(BUNDLED.as_bytes(), Path::new(BUNDLED_NAME))?,
            BUNDLED_NAME.to_string(),
        ),
    })
}

/// Writes `contents` to `path` through a temporary file and a rename.
pub(crate) fn write_atomic(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, contents).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot move {} into place", path.display()))
}

/// A one-paragraph description of a trace.
pub(crate) fn describe(trace: &Trace, name: &str) -> String {
    let end = trace.timestamp(trace.len());
    let observed: Vec<f64> = trace
        .requests
        .iter()
        .copied()
        .filter(|v| !v.is_nan())
        .collect();
    let total: f64 = observed.iter().sum();
    let peak = observed.iter().copied().fold(0.0, f64::max);
    let mut text = format!(
        "{name}: {} buckets of {} from {} to {} ({}), {} missing; {:.0} requests in all, peak {:.0} per bucket ({:.2}/s)",
        trace.len(),
        format_duration(trace.step_secs),
        trace.start.to_rfc3339(),
        end.to_rfc3339(),
        format_duration((end - trace.start).num_seconds()),
        trace.missing(),
        total,
        peak,
        peak / trace.step_secs as f64,
    );
    if !trace.extra.is_empty() {
        let names: Vec<&str> = trace.extra.iter().map(|(n, _)| n.as_str()).collect();
        text.push_str(&format!("; extra columns: {}", names.join(", ")));
    }
    text
}

/// A share as a percentage in plain decimals, without the sign: `0.1`, `0.035`, `12`, `100`
/// (never `1.0e2`).
pub(crate) fn percent(share: f64) -> String {
    let p = 100.0 * share;
    if !p.is_finite() {
        "-".into()
    } else if p == 0.0 {
        "0".into()
    } else if p >= 10.0 {
        format!("{p:.0}")
    } else if p >= 1.0 {
        format!("{p:.1}")
    } else {
        // Two significant digits, trailing zeros dropped.
        let digits = (2 - p.log10().floor() as i32 - 1).clamp(0, 12) as usize;
        let text = format!("{p:.digits$}");
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn percentages_read_as_plain_decimals() {
        use super::percent;
        assert_eq!(percent(0.001), "0.1");
        assert_eq!(percent(0.00035), "0.035");
        assert_eq!(percent(0.12), "12");
        assert_eq!(percent(1.0), "100");
        assert_eq!(percent(0.015), "1.5");
        assert_eq!(percent(0.0), "0");
    }
}
