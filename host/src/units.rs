//! Sizes and durations as they are written on the command line.

use std::time::Duration;

/// The longest duration accepted for any timeout.
const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

/// A duration such as `30s`, `500ms` or `2m`, from zero (refused) to a day.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text).map_err(|err| err.to_string())?;
    if duration.is_zero() {
        return Err("must be more than zero".into());
    }
    if duration > MAX_DURATION {
        return Err("must be at most a day (24h)".into());
    }
    Ok(duration)
}

/// `KEY=VALUE`, the key not empty (the value may be).
pub fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.into(), value.into())),
        _ => Err(format!("`{text}` is not KEY=VALUE")),
    }
}

/// A byte size such as `128MiB`, `64KiB`, `1GiB` or a plain number of bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a size such as `64KiB` or `128MiB`"))?;
    let scale: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" | "KB" => 1 << 10,
        "MiB" | "M" | "MB" => 1 << 20,
        "GiB" | "G" | "GB" => 1 << 30,
        other => return Err(format!("unknown unit `{other}` (use B, KiB, MiB or GiB)")),
    };
    match number.checked_mul(scale) {
        Some(0) => Err("must be more than zero".into()),
        Some(bytes) => Ok(bytes),
        None => Err(format!("`{text}` is too large")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("128MiB"), Ok(128 << 20));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("0").is_err());
        assert!(parse_size("12XB").is_err());
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("99999999999GiB").is_err());
    }

    #[test]
    fn durations_must_be_positive() {
        assert_eq!(parse_duration("1500ms"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("300000000000y").is_err());
        assert_eq!(parse_duration("24h"), Ok(MAX_DURATION));
    }

    /// Properties of the size and duration parsers, over arbitrary input.
    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        const UNITS: [(&str, u64); 7] = [
            ("", 1),
            ("B", 1),
            ("KiB", 1 << 10),
            ("K", 1 << 10),
            ("MiB", 1 << 20),
            ("MB", 1 << 20),
            ("GiB", 1 << 30),
        ];

        proptest! {
            /// Any text parses or is refused with a message; nothing panics.
            #[test]
            fn parsers_never_panic(text in any::<String>()) {
                let _ = parse_size(&text);
                let _ = parse_duration(&text);
            }

            /// `N<unit>` is N times the unit, or refused when that is zero
            /// or does not fit in 64 bits.
            #[test]
            fn sizes_scale_by_their_unit(n in any::<u64>(), unit in 0..UNITS.len()) {
                let (suffix, scale) = UNITS[unit];
                let parsed = parse_size(&format!("{n}{suffix}"));
                match n.checked_mul(scale) {
                    Some(0) | None => prop_assert!(parsed.is_err()),
                    Some(bytes) => prop_assert_eq!(parsed, Ok(bytes)),
                }
            }

            /// A duration in milliseconds is accepted from 1 ms to a day,
            /// and refused outside.
            #[test]
            fn durations_are_bounded(ms in 0u64..200_000_000) {
                let parsed = parse_duration(&format!("{ms}ms"));
                if ms == 0 || ms > 86_400_000 {
                    prop_assert!(parsed.is_err());
                } else {
                    prop_assert_eq!(parsed, Ok(Duration::from_millis(ms)));
                }
            }
        }
    }
}
