//! One setting as its source wrote it — an environment variable or flag, or a key of a pool
//! in `--config.file` — with the name that source gives it, and the readers of the kinds of
//! value settings take. Every message starts with the setting's name as the operator wrote it
//! and says what is accepted, so the sources share the rules but not the spelling.

use std::fmt;
use std::time::Duration;

use super::{Error, duration};

/// A setting's value as written (or its source's documented default), and its name.
#[derive(Debug, Clone)]
pub(super) struct Setting<T = String> {
    /// How the source spells it: `XEN_TIMEOUT (--xen.timeout)`, or `` `timeout` `` in a pool
    /// of the file (whose loader puts the file and the pool before the message).
    pub(super) name: &'static str,
    /// What was written.
    pub(super) value: T,
}

/// The longest duration any setting takes: longer is a slip (`8m` for `8s`), not a wish.
const MAX_DURATION: Duration = Duration::from_secs(3600);

/// The most of anything a count setting allows; more would only exhaust memory or sockets.
const MAX_COUNT: usize = 100_000;

/// Whether a duration setting may be zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Zero {
    /// Zero turns the feature off.
    Off,
    /// Zero would make every request fail.
    Refused,
}

impl<T> Setting<T> {
    pub(super) fn new(name: &'static str, value: T) -> Self {
        Setting { name, value }
    }
}

impl Setting {
    /// The error for a value this setting does not take; `accepted` says what it does.
    pub(super) fn invalid(&self, accepted: impl fmt::Display) -> Error {
        Error(format!(
            "{} {:?} is not valid; {accepted}",
            self.name, self.value
        ))
    }

    /// `true`/`false`, also `1`/`0`, `yes`/`no`, `on`/`off`, any case.
    pub(super) fn boolean(&self) -> Result<bool, Error> {
        match self.value.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err(self.invalid("use \"true\" or \"false\"")),
        }
    }

    /// A duration in [the one syntax](duration::parse), at most an hour.
    pub(super) fn duration(&self, zero: Zero) -> Result<Duration, Error> {
        let range = match zero {
            Zero::Off => "from 0 (off) to 1h",
            Zero::Refused => "above 0 and at most 1h",
        };
        let why = match duration::parse(&self.value) {
            Ok(d) if d > MAX_DURATION || (d.is_zero() && zero == Zero::Refused) => {
                "it is out of range".to_string()
            }
            Ok(d) => return Ok(d),
            Err(why) => why,
        };
        Err(Error(format!(
            "{} {:?} is not valid ({why}); give a duration {range}, as Prometheus writes it (500ms, 8s, 1m30s) or in seconds (8, 2.5)",
            self.name, self.value
        )))
    }

    /// A whole number from 0 (no limit) to [`MAX_COUNT`]; `example` is the default.
    pub(super) fn count(&self, example: usize) -> Result<usize, Error> {
        match self.value.trim().parse::<usize>() {
            Ok(n) if n <= MAX_COUNT => Ok(n),
            _ => Err(self.invalid(format_args!(
                "give a whole number from 0 (no limit) to {MAX_COUNT}, e.g. {example}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setting(value: &str) -> Setting {
        Setting::new("XEN_TIMEOUT (--xen.timeout)", value.to_string())
    }

    #[test]
    fn durations_name_the_setting_and_keep_to_their_range() {
        assert_eq!(
            setting("1500ms").duration(Zero::Refused),
            Ok(Duration::from_millis(1500))
        );
        assert_eq!(setting("0").duration(Zero::Off), Ok(Duration::ZERO));
        assert_eq!(setting("1h").duration(Zero::Off), Ok(MAX_DURATION));
        for bad in ["8x", "0", "0s", "1h1ms", "3601", "-1"] {
            let Error(e) = setting(bad).duration(Zero::Refused).unwrap_err();
            assert!(e.starts_with("XEN_TIMEOUT (--xen.timeout)"), "{e}");
            assert!(e.contains("1m30s") && e.contains("2.5"), "{e}");
        }
    }

    #[test]
    fn booleans_and_counts() {
        assert_eq!(setting(" Yes ").boolean(), Ok(true));
        assert_eq!(setting("off").boolean(), Ok(false));
        assert!(setting("maybe").boolean().is_err());
        assert_eq!(setting("0").count(40), Ok(0));
        assert!(setting("100001").count(40).is_err());
        assert!(setting("-1").count(40).is_err());
    }
}
