//! The project's trace format.
//!
//! One CSV per series: a header that starts `timestamp,requests`, then one row per bucket with an
//! RFC 3339 timestamp (any offset; stored as UTC) and the number of requests that arrived in the
//! bucket starting at that instant. Further numeric columns (`tokens_in,tokens_out`, ...) are kept.
//! Rows sit on one fixed interval, the smallest gap between two rows. A bucket with no row, or an
//! empty value, is *missing* (NaN in memory), not zero: forecasting interpolates it.

use std::{
    collections::HashMap,
    io::{Read, Write},
    path::Path,
};

use chrono::{DateTime, SecondsFormat, Utc};

use crate::TraceError;

/// A request-rate series on a regular grid: bucket `i` starts at `start + i * step_secs`.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    /// Start of the first bucket.
    pub start: DateTime<Utc>,
    /// Bucket width in seconds.
    pub step_secs: i64,
    /// Requests per bucket; NaN where the bucket is missing.
    pub requests: Vec<f64>,
    /// Extra numeric columns (name, values per bucket), in file order.
    pub extra: Vec<(String, Vec<f64>)>,
    /// The file line each bucket was read from (0 for a missing bucket); empty when the trace
    /// was not read from a file. Errors found later (at import) name the line with it.
    pub lines: Vec<u64>,
}

impl Trace {
    /// A trace with no extra columns.
    pub fn new(start: DateTime<Utc>, step_secs: i64, requests: Vec<f64>) -> Self {
        Self {
            start,
            step_secs,
            requests,
            extra: Vec::new(),
            lines: Vec::new(),
        }
    }

    /// Where bucket `index` came from, for messages: `line N (TIMESTAMP)`, or the timestamp
    /// alone when the line is not known.
    pub fn locate(&self, index: usize) -> String {
        match self.lines.get(index).copied().filter(|l| *l > 0) {
            Some(line) => format!("line {line} ({})", rfc3339(self.timestamp(index))),
            None => rfc3339(self.timestamp(index)),
        }
    }

    /// Number of buckets.
    pub fn len(&self) -> usize {
        self.requests.len()
    }

    /// Whether the trace has no buckets.
    pub fn is_empty(&self) -> bool {
        self.requests.is_empty()
    }

    /// Start of bucket `index`.
    pub fn timestamp(&self, index: usize) -> DateTime<Utc> {
        self.start + chrono::Duration::seconds(self.step_secs * index as i64)
    }

    /// Number of missing buckets.
    pub fn missing(&self) -> usize {
        self.requests.iter().filter(|v| v.is_nan()).count()
    }

    /// Values of an extra column, if present.
    pub fn column(&self, name: &str) -> Option<&[f64]> {
        self.extra
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }
}

/// Reads and validates a trace file. Errors name the file and line.
pub fn read_trace(path: &Path) -> Result<Trace, TraceError> {
    let file = std::fs::File::open(path).map_err(|source| TraceError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_trace(std::io::BufReader::new(file), path)
}

/// Parses a trace from any reader; `path` is only used in error messages.
pub fn parse_trace(mut reader: impl Read, path: &Path) -> Result<Trace, TraceError> {
    let path_buf = || path.to_path_buf();
    // Read whole, so that a record's line is counted from its byte offset: the CSV reader's own
    // line numbers skip blank lines, and an editor's do not.
    let mut bytes = Vec::new();
    reader
        .read_to_end(&mut bytes)
        .map_err(|source| TraceError::Io {
            path: path_buf(),
            source,
        })?;
    let mut lines = LineCounter::new(&bytes);
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(bytes.as_slice());
    let mut records = csv.records();
    let header = match records.next() {
        Some(Ok(h)) => h,
        Some(Err(e)) => return Err(malformed(path, 1, e.to_string())),
        None => {
            return Err(TraceError::BadHeader {
                path: path_buf(),
                found: String::new(),
            })
        }
    };
    let names: Vec<String> = header.iter().map(|s| s.to_ascii_lowercase()).collect();
    if names.len() < 2 || names[0] != "timestamp" || names[1] != "requests" {
        return Err(TraceError::BadHeader {
            path: path_buf(),
            found: crate::shorten(&header.iter().collect::<Vec<_>>().join(","), 80),
        });
    }
    let columns = names.len();

    // First pass: parse and check each row on its own.
    let mut rows: Vec<(u64, DateTime<Utc>, Vec<f64>)> = Vec::new();
    let mut seen: HashMap<i64, u64> = HashMap::new();
    for record in records {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| lines.line_at(p.byte()));
            malformed(path, line, e.to_string())
        })?;
        let line = record.position().map_or(0, |p| lines.line_at(p.byte()));
        if record.len() == 1 && record[0].is_empty() {
            continue; // a blank line
        }
        if record.len() != columns {
            return Err(malformed(
                path,
                line,
                format!(
                    "expected {columns} fields like the header, found {}",
                    record.len()
                ),
            ));
        }
        let timestamp = DateTime::parse_from_rfc3339(&record[0])
            .map_err(|e| {
                malformed(
                    path,
                    line,
                    format!(
                        "`{}` is not an RFC 3339 timestamp ({e}); write e.g. 2026-03-08T09:00:00Z",
                        crate::shorten(&record[0], 60)
                    ),
                )
            })?
            .with_timezone(&Utc);
        let mut values = Vec::with_capacity(columns - 1);
        for (field, name) in record.iter().zip(&names).skip(1) {
            let value = if field.is_empty() {
                f64::NAN
            } else {
                let v: f64 = field.parse().map_err(|_| {
                    malformed(
                        path,
                        line,
                        format!(
                            "column `{name}`: `{}` is not a number",
                            crate::shorten(field, 60)
                        ),
                    )
                })?;
                if v.is_nan() {
                    return Err(malformed(
                        path,
                        line,
                        format!(
                            "column `{name}`: `{}` is not a count; leave the field empty for a missing bucket",
                            crate::shorten(field, 60)
                        ),
                    ));
                }
                if v.is_infinite() {
                    return Err(malformed(
                        path,
                        line,
                        format!(
                            "column `{name}`: `{}` is not a finite number",
                            crate::shorten(field, 60)
                        ),
                    ));
                }
                if v < 0.0 {
                    return Err(TraceError::Negative {
                        path: path_buf(),
                        line,
                        column: name.clone(),
                        value: v,
                    });
                }
                v
            };
            values.push(value);
        }
        if let Some(&first_line) = seen.get(&timestamp.timestamp()) {
            return Err(TraceError::Duplicate {
                path: path_buf(),
                line,
                first_line,
                timestamp: rfc3339(timestamp),
            });
        }
        if let Some((_, previous, _)) = rows.last() {
            if timestamp < *previous {
                return Err(TraceError::Unsorted {
                    path: path_buf(),
                    line,
                    timestamp: rfc3339(timestamp),
                    previous: rfc3339(*previous),
                });
            }
        }
        seen.insert(timestamp.timestamp(), line);
        rows.push((line, timestamp, values));
    }
    if rows.len() < 2 {
        return Err(TraceError::TooShort {
            path: path_buf(),
            rows: rows.len(),
        });
    }

    // The interval is the smallest gap; every other gap must be a whole number of it.
    let step_secs = rows
        .windows(2)
        .map(|w| (w[1].1 - w[0].1).num_seconds())
        .min()
        .unwrap_or(1)
        .max(1);
    for w in rows.windows(2) {
        let gap = (w[1].1 - w[0].1).num_seconds();
        let sub_second = (w[1].1 - w[0].1).subsec_nanos() != 0;
        if gap % step_secs != 0 || sub_second {
            return Err(TraceError::MixedInterval {
                path: path_buf(),
                line: w[1].0,
                timestamp: rfc3339(w[1].1),
                offset_secs: gap,
                step_secs,
            });
        }
    }

    let start = rows[0].1;
    let last = rows[rows.len() - 1].1;
    let len = ((last - start).num_seconds() / step_secs) as usize + 1;
    let mut requests = vec![f64::NAN; len];
    let mut lines = vec![0u64; len];
    let mut extra: Vec<(String, Vec<f64>)> = names[2..]
        .iter()
        .map(|n| (n.clone(), vec![f64::NAN; len]))
        .collect();
    for (line, timestamp, values) in rows {
        let index = ((timestamp - start).num_seconds() / step_secs) as usize;
        requests[index] = values[0];
        lines[index] = line;
        for (column, value) in extra.iter_mut().zip(&values[1..]) {
            column.1[index] = *value;
        }
    }
    Ok(Trace {
        start,
        step_secs,
        requests,
        extra,
        lines,
    })
}

/// Writes a trace in the project's format; missing buckets are written with empty values.
///
/// The file is written to a temporary name beside `path` and renamed into place, so a failed
/// write never leaves a half-written trace.
pub fn write_trace(trace: &Trace, path: &Path) -> std::io::Result<()> {
    let tmp = path.with_extension("csv.partial");
    {
        let file = std::fs::File::create(&tmp)?;
        let mut out = std::io::BufWriter::new(file);
        write!(out, "timestamp,requests")?;
        for (name, _) in &trace.extra {
            write!(out, ",{name}")?;
        }
        writeln!(out)?;
        for i in 0..trace.len() {
            write!(
                out,
                "{},{}",
                rfc3339(trace.timestamp(i)),
                number(trace.requests[i])
            )?;
            for (_, values) in &trace.extra {
                write!(out, ",{}", number(values[i]))?;
            }
            writeln!(out)?;
        }
        out.flush()?;
        out.get_ref().sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

fn number(v: f64) -> String {
    if v.is_nan() {
        String::new()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{:.6}", v)
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Line numbers from byte offsets, for offsets that only grow.
struct LineCounter<'a> {
    bytes: &'a [u8],
    offset: usize,
    line: u64,
}

impl<'a> LineCounter<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self {
            bytes,
            offset: 0,
            line: 1,
        }
    }

    /// The line (from 1) of the record starting at byte `at`. A record after blank lines is
    /// placed at the first of them by the CSV reader: skip them.
    fn line_at(&mut self, at: u64) -> u64 {
        let mut at = (at as usize).min(self.bytes.len());
        while at < self.bytes.len() && matches!(self.bytes[at], b'\n' | b'\r') {
            at += 1;
        }
        if at >= self.offset {
            self.line += self.bytes[self.offset..at]
                .iter()
                .filter(|b| **b == b'\n')
                .count() as u64;
            self.offset = at;
        }
        self.line
    }
}

fn malformed(path: &Path, line: u64, message: String) -> TraceError {
    TraceError::Malformed {
        path: path.to_path_buf(),
        line,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Trace, TraceError> {
        parse_trace(text.as_bytes(), Path::new("t.csv"))
    }

    #[test]
    fn reads_a_regular_trace_with_extra_columns() {
        let t = parse(
            "timestamp,requests,tokens_in\n2026-01-01T00:00:00Z,5,100\n2026-01-01T00:01:00Z,7,140\n",
        )
        .unwrap();
        assert_eq!(t.step_secs, 60);
        assert_eq!(t.requests, vec![5.0, 7.0]);
        assert_eq!(t.column("tokens_in"), Some(&[100.0, 140.0][..]));
    }

    #[test]
    fn a_gap_or_empty_value_is_missing_not_zero() {
        let t = parse("timestamp,requests\n2026-01-01T00:00:00Z,5\n2026-01-01T00:01:00Z,\n2026-01-01T00:03:00Z,2\n").unwrap();
        assert_eq!(t.len(), 4);
        assert_eq!(t.missing(), 2);
        assert!(t.requests[1].is_nan() && t.requests[2].is_nan());
    }

    #[test]
    fn offsets_are_read_as_utc() {
        let t = parse("timestamp,requests\n2026-01-01T01:00:00+01:00,1\n2026-01-01T00:05:00Z,1\n")
            .unwrap();
        assert_eq!(t.start.to_rfc3339(), "2026-01-01T00:00:00+00:00");
        assert_eq!(t.step_secs, 300);
    }

    #[test]
    fn malformed_lines_name_file_and_line() {
        let e = parse("timestamp,requests\n2026-01-01T00:00:00Z,5\n2026-01-01T00:01:00Z,lots\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("t.csv: line 3") && e.contains("`lots` is not a number"),
            "{e}"
        );
        let e = parse("timestamp,requests\nyesterday,5\n2026-01-01T00:01:00Z,1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("RFC 3339"), "{e}");
        let e = parse("timestamp,requests\n2026-01-01T00:00:00Z,5,9\n2026-01-01T00:01:00Z,1\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("line 2") && e.contains("expected 2 fields"),
            "{e}"
        );
        let e = parse("timestamp,requests\n2026-01-01T00:00:00Z,inf\n2026-01-01T00:01:00Z,1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a finite number"), "{e}");
        // `NaN` is not a count: a missing bucket is an empty field, said so.
        let e = parse("timestamp,requests\n2026-01-01T00:00:00Z,NaN\n2026-01-01T00:01:00Z,1\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("line 2") && e.contains("leave the field empty"),
            "{e}"
        );
        // A huge field is quoted shortened, with its size.
        let huge = "9x".repeat(1_000_000);
        let e = parse(&format!(
            "timestamp,requests\n2026-01-01T00:00:00Z,{huge}\n2026-01-01T00:01:00Z,1\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.len() < 300 && e.contains("2000000 bytes in all"),
            "{}",
            &e[..300.min(e.len())]
        );
        // Digits that overflow to infinity, in `requests` or a token column, are cut too.
        let digits = "9".repeat(1_000_000);
        for header in ["timestamp,requests", "timestamp,requests,tokens_in"] {
            let row = if header.ends_with("tokens_in") {
                format!("2026-01-01T00:00:00Z,1,{digits}")
            } else {
                format!("2026-01-01T00:00:00Z,{digits}")
            };
            let tail = if header.ends_with("tokens_in") {
                ",1"
            } else {
                ""
            };
            let e = parse(&format!(
                "{header}
{row}
2026-01-01T00:01:00Z,1{tail}
"
            ))
            .unwrap_err()
            .to_string();
            assert!(
                e.len() < 300
                    && e.contains("not a finite number")
                    && e.contains("1000000 bytes in all"),
                "{}",
                &e[..300.min(e.len())]
            );
        }
    }

    #[test]
    fn each_bucket_knows_its_line() {
        let t = parse(
            "timestamp,requests\n2026-01-01T00:00:00Z,5\n2026-01-01T00:01:00Z,1\n\n2026-01-01T00:03:00Z,2\n",
        )
        .unwrap();
        assert_eq!(t.lines, vec![2, 3, 0, 5]);
        assert_eq!(t.locate(3), "line 5 (2026-01-01T00:03:00Z)");
        assert_eq!(t.locate(2), "2026-01-01T00:02:00Z");
    }

    #[test]
    fn bad_header_says_how_to_convert() {
        let e = parse("time,value\n2026-01-01T00:00:00Z,5\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("timestamp,requests") && e.contains("prewarm trace import"),
            "{e}"
        );
        assert!(matches!(parse(""), Err(TraceError::BadHeader { .. })));
    }

    #[test]
    fn duplicates_unsorted_negative_and_mixed_intervals_are_rejected() {
        let e = parse("timestamp,requests\n2026-01-01T00:00:00Z,5\n2026-01-01T00:00:00Z,6\n")
            .unwrap_err();
        assert!(
            matches!(
                e,
                TraceError::Duplicate {
                    line: 3,
                    first_line: 2,
                    ..
                }
            ),
            "{e}"
        );
        let e = parse("timestamp,requests\n2026-01-01T00:05:00Z,5\n2026-01-01T00:00:00Z,6\n")
            .unwrap_err();
        assert!(matches!(e, TraceError::Unsorted { line: 3, .. }), "{e}");
        let e = parse("timestamp,requests\n2026-01-01T00:00:00Z,-1\n2026-01-01T00:05:00Z,6\n")
            .unwrap_err();
        assert!(e.to_string().contains("negative"), "{e}");
        let e = parse("timestamp,requests\n2026-01-01T00:00:00Z,1\n2026-01-01T00:05:00Z,6\n2026-01-01T00:12:00Z,6\n")
            .unwrap_err();
        assert!(
            matches!(
                e,
                TraceError::MixedInterval {
                    line: 4,
                    offset_secs: 420,
                    step_secs: 300,
                    ..
                }
            ),
            "{e}"
        );
        let e = parse("timestamp,requests\n2026-01-01T00:00:00Z,1\n").unwrap_err();
        assert!(matches!(e, TraceError::TooShort { rows: 1, .. }), "{e}");
    }

    #[test]
    fn write_then_read_round_trips() {
        let dir = std::env::temp_dir().join(format!("prewarm-core-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("rt.csv");
        let mut t = Trace::new(
            "2026-03-08T06:00:00Z".parse().unwrap(),
            10,
            vec![1.0, f64::NAN, 2.5],
        );
        t.extra
            .push(("tokens_in".into(), vec![10.0, f64::NAN, 30.0]));
        write_trace(&t, &path).unwrap();
        let back = read_trace(&path).unwrap();
        assert_eq!(back.start, t.start);
        assert_eq!(back.step_secs, 10);
        assert_eq!(back.requests[2], 2.5);
        assert!(back.requests[1].is_nan());
        assert_eq!(back.column("tokens_in").unwrap()[0], 10.0);
        assert!(!path.with_extension("csv.partial").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
