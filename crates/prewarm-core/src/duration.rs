//! Durations as users type them on the command line and in config files.

/// Parses `90s`, `10m`, `1h`, `21d`, `2w` (a bare number is seconds) into whole seconds.
///
/// Returns a message that says what was expected when the text is not a duration.
pub fn parse_duration(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: i64 = number.parse().map_err(|_| {
        format!("`{text}` is not a duration: write a whole number and a unit, such as 90s, 10m, 1h, 21d or 2w")
    })?;
    let scale = match unit {
        "" | "s" => 1,
        "m" | "min" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => {
            return Err(format!(
                "`{text}` has an unknown unit `{unit}`: use s, m, h, d or w"
            ))
        }
    };
    value
        .checked_mul(scale)
        .filter(|secs| *secs > 0)
        .ok_or_else(|| format!("`{text}` must be a positive duration of reasonable size"))
}

/// Like [`parse_duration`], but zero (`0`, `0m`) is allowed: for windows that may be empty.
pub fn parse_duration_or_zero(text: &str) -> Result<i64, String> {
    let digits = text
        .trim()
        .trim_end_matches(|c: char| c.is_ascii_alphabetic());
    if !digits.is_empty() && digits.chars().all(|c| c == '0') {
        // Still reject an unknown unit, such as `0y`.
        return parse_duration(&text.trim().replacen('0', "1", 1)).map(|_| 0);
    }
    parse_duration(text)
}

/// Formats whole seconds in the largest unit that divides them (`600` gives `10m`).
pub fn format_duration(secs: i64) -> String {
    for (scale, unit) in [(7 * 86_400, "w"), (86_400, "d"), (3_600, "h"), (60, "m")] {
        if secs != 0 && secs % scale == 0 {
            return format!("{}{unit}", secs / scale);
        }
    }
    format!("{secs}s")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_units_users_type() {
        assert_eq!(parse_duration("90s"), Ok(90));
        assert_eq!(parse_duration("10m"), Ok(600));
        assert_eq!(parse_duration("1h"), Ok(3600));
        assert_eq!(parse_duration("21d"), Ok(21 * 86400));
        assert_eq!(parse_duration("2w"), Ok(14 * 86400));
        assert_eq!(parse_duration("45"), Ok(45));
    }

    #[test]
    fn rejects_what_is_not_a_duration() {
        assert!(parse_duration("ten minutes").unwrap_err().contains("10m"));
        assert!(parse_duration("10y").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("0m").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("99999999999999999w").is_err());
    }

    #[test]
    fn zero_is_allowed_where_a_window_may_be_empty() {
        assert_eq!(parse_duration_or_zero("0m"), Ok(0));
        assert_eq!(parse_duration_or_zero("0"), Ok(0));
        assert_eq!(parse_duration_or_zero("5m"), Ok(300));
        assert!(parse_duration_or_zero("0y").is_err());
        assert!(parse_duration("0m").is_err());
    }

    #[test]
    fn formats_in_the_largest_unit() {
        assert_eq!(format_duration(600), "10m");
        assert_eq!(format_duration(86_400 * 21), "3w");
        assert_eq!(format_duration(10), "10s");
        assert_eq!(format_duration(5_400), "90m");
    }
}

/// A positive duration written as `90s`, `15m`, `2h` or `1d` (in a TOML file also as a number
/// of seconds), held in seconds: the configuration's and the command line's duration type.
#[derive(Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(into = "String")]
pub struct Span(pub i64);

impl std::fmt::Debug for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&format_duration(self.0))
    }
}

impl std::fmt::Display for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&format_duration(self.0))
    }
}

impl From<Span> for String {
    fn from(s: Span) -> String {
        format_duration(s.0)
    }
}

impl std::str::FromStr for Span {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_duration(s).map(Span)
    }
}

impl<'de> serde::Deserialize<'de> for Span {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Secs(i64),
        }
        match Raw::deserialize(d)? {
            Raw::Secs(s) => Ok(Span(s)),
            Raw::Text(t) => parse_duration(&t)
                .map(Span)
                .map_err(|e| serde::de::Error::custom(format!("`{t}`: {e}"))),
        }
    }
}

/// A duration that may be zero (`0`, `0s`, `5m`), in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpanOrZero(pub i64);

impl std::str::FromStr for SpanOrZero {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_duration_or_zero(s).map(SpanOrZero)
    }
}

impl std::fmt::Display for SpanOrZero {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&format_duration(self.0))
    }
}
