//! Deadlines: how long a handler may run before its replica kills it (TIMEOUT), and how long
//! the front door waits for a verdict before it answers DEADLINE_EXCEEDED and records PENDING.
//!
//! A method's deadline `D` is configured per method (default [`DEFAULT_DEADLINE`]); a caller's
//! `grpc-timeout` `T` can only shorten it, to `T × 45 %`. The front door waits `2 × D` from
//! receipt for the verdict (so at most 90 % of `T`): the handler's own `D`, and as much again
//! for logging, queueing behind earlier inputs and the vote. `D` travels in the INPUT record,
//! so every replica applies the same one.

use std::collections::HashMap;
use std::time::Duration;

/// A method's deadline when none is configured.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(1);
/// The shortest deadline a caller's timeout can impose.
pub const MIN_DEADLINE: Duration = Duration::from_millis(1);
/// The longest deadline a method may be given (it must fit the INPUT's `deadline_ms`).
pub const MAX_DEADLINE: Duration = Duration::from_secs(24 * 3600);

/// The deadlines of a service's methods.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deadlines {
    /// Methods without their own.
    pub default: Duration,
    /// By method path (`/bank.v1.Bank/Open`).
    pub per_method: HashMap<String, Duration>,
}

impl Default for Deadlines {
    fn default() -> Deadlines {
        Deadlines {
            default: DEFAULT_DEADLINE,
            per_method: HashMap::new(),
        }
    }
}

/// One call's deadlines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallDeadline {
    /// How long the handler may run (the INPUT's `deadline_ms`).
    pub handler: Duration,
    /// How long the front door waits for the verdict from receipt.
    pub verdict: Duration,
}

impl Deadlines {
    /// Deadlines with `default` and `METHOD=MS` entries (the `--method-deadline` flags).
    pub fn parse(default_ms: u64, entries: &[String]) -> Result<Deadlines, String> {
        let default = checked(default_ms, "--deadline-ms")?;
        let mut per_method = HashMap::new();
        for entry in entries {
            let (method, ms) = entry
                .rsplit_once('=')
                .ok_or_else(|| format!("method deadline {entry:?} is not METHOD=MS"))?;
            if !method.starts_with('/') || method.len() < 2 {
                return Err(format!(
                    "method deadline {entry:?}: the method is a path like /bank.v1.Bank/Open"
                ));
            }
            let ms: u64 = ms
                .parse()
                .map_err(|_| format!("method deadline {entry:?}: {ms:?} is not milliseconds"))?;
            per_method.insert(method.to_owned(), checked(ms, entry)?);
        }
        Ok(Deadlines {
            default,
            per_method,
        })
    }

    /// The deadlines of a call of `method` whose caller sent `grpc_timeout` (the header's value,
    /// if any; one that does not parse is ignored).
    pub fn for_call(&self, method: &str, grpc_timeout: Option<&str>) -> CallDeadline {
        let mut handler = *self.per_method.get(method).unwrap_or(&self.default);
        if let Some(t) = grpc_timeout.and_then(parse_grpc_timeout) {
            handler = handler.min(t * 45 / 100).max(MIN_DEADLINE);
        }
        CallDeadline {
            handler,
            verdict: handler * 2,
        }
    }
}

fn checked(ms: u64, what: &str) -> Result<Duration, String> {
    let d = Duration::from_millis(ms);
    if d < MIN_DEADLINE || d > MAX_DEADLINE {
        return Err(format!(
            "{what}: a deadline is {} ms to {} ms",
            MIN_DEADLINE.as_millis(),
            MAX_DEADLINE.as_millis()
        ));
    }
    Ok(d)
}

/// A `grpc-timeout` header value: up to 8 digits and a unit (H, M, S, m, u, n).
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let unit = value.chars().last()?;
    let digits = &value[..value.len() - unit.len_utf8()];
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        'H' => Duration::from_secs(n * 3600),
        'M' => Duration::from_secs(n * 60),
        'S' => Duration::from_secs(n),
        'm' => Duration::from_millis(n),
        'u' => Duration::from_micros(n),
        'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves: every grpc-timeout unit parses, and malformed values are refused.
    #[test]
    fn grpc_timeouts_parse() {
        assert_eq!(parse_grpc_timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_grpc_timeout("3M"), Some(Duration::from_secs(180)));
        assert_eq!(parse_grpc_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("7u"), Some(Duration::from_micros(7)));
        assert_eq!(parse_grpc_timeout("9n"), Some(Duration::from_nanos(9)));
        for bad in ["", "m", "123456789m", "12x", "-1S", "1.5S", "१S"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
        }
    }

    // Proves: a method's own deadline beats the default, a caller's timeout only shortens it
    // (to 45 %), and the verdict wait is twice the handler's deadline.
    #[test]
    fn a_callers_timeout_only_shortens() {
        let d = Deadlines::parse(1000, &["/s.S/Slow=5000".to_owned()]).unwrap();
        let slow = d.for_call("/s.S/Slow", None);
        assert_eq!(slow.handler, Duration::from_secs(5));
        assert_eq!(slow.verdict, Duration::from_secs(10));
        assert_eq!(
            d.for_call("/s.S/Other", None).handler,
            Duration::from_secs(1)
        );
        assert_eq!(
            d.for_call("/s.S/Other", Some("1000m")).handler,
            Duration::from_millis(450)
        );
        assert_eq!(
            d.for_call("/s.S/Other", Some("100S")).handler,
            Duration::from_secs(1),
            "a long timeout does not lengthen"
        );
        assert_eq!(d.for_call("/s.S/Other", Some("1n")).handler, MIN_DEADLINE);
        assert_eq!(
            d.for_call("/s.S/Other", Some("junk")).handler,
            Duration::from_secs(1)
        );
    }

    // Proves: malformed deadline flags are refused with the entry named.
    #[test]
    fn bad_deadline_flags_are_refused() {
        assert!(
            Deadlines::parse(0, &[])
                .unwrap_err()
                .contains("--deadline-ms")
        );
        for bad in ["Open=5", "/s.S/Open", "/s.S/Open=x", "/s.S/Open=0", "/=5"] {
            let e = Deadlines::parse(1000, &[bad.to_owned()]).unwrap_err();
            assert!(e.contains(bad), "{e}");
        }
    }
}
