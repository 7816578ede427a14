//! Durations from outside: every timeout or interval a client or a config
//! file gives is checked here, with a documented maximum.

use std::time::Duration;

use crate::error::{Error, Result};

/// The longest timeout or interval enoki takes from a config file
/// (`RPC_TIMEOUT`, `GRACE_PERIOD`, the gateway's timeouts): one day.
pub const MAX_CONFIG_SECONDS: f64 = 86_400.0;
/// The longest RPC timeout a client may ask for (the `timeout` of a
/// WebSocket `call`): one hour.
pub const MAX_CLIENT_SECONDS: f64 = 3_600.0;

/// `secs` as a [`Duration`] if it is a finite number above 0 and at most
/// `max`; otherwise an [`Error::Invalid`] naming `what`. Every duration
/// that comes from a client or a config file goes through here.
///
/// ```
/// use enoki::config::positive_seconds;
///
/// assert_eq!(positive_seconds("timeout", 2.5, 60.0).unwrap().as_millis(), 2500);
/// for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e20] {
///     let err = positive_seconds("timeout", bad, 60.0).unwrap_err().to_string();
///     assert!(err.starts_with("`timeout` must be a number of seconds above 0 and at most 60"), "{err}");
/// }
/// ```
pub fn positive_seconds(what: &str, secs: f64, max: f64) -> Result<Duration> {
    if secs.is_finite()
        && secs > 0.0
        && secs <= max
        && let Ok(duration) = Duration::try_from_secs_f64(secs)
    {
        return Ok(duration);
    }
    Err(Error::Invalid(format!(
        "`{what}` must be a number of seconds above 0 and at most {max}, got {secs}"
    )))
}
