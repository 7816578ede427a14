//! Per-route rate limits: a token bucket per client (its address, or its
//! user id), answered with 429 `TooManyRequests` and `Retry-After` when
//! empty. A route sets one in its route file; the generic endpoint in
//! `GATEWAY.rpc`:
//!
//! ```yaml
//! routes:
//!   - method: POST
//!     path: /users
//!     rpc: users.create
//!     rate_limit: { requests: 5, per: 60, burst: 10, by: client }
//!
//! GATEWAY:
//!   rpc:
//!     rate_limit: { requests: 50 }          # per second, per client address
//! ```
//!
//! - `requests` per `per` seconds (default 1) is the rate at which a
//!   bucket refills; `burst` (default `requests`) is how many it holds, so
//!   a client that was quiet may send that many at once.
//! - `by: client` (the default) gives each client address a bucket (IPv6
//!   addresses by their /64 prefix: one host has a whole /64 to pick
//!   from); `by: user` gives each authenticated user one, and requests
//!   without a user fall back to their address.
//! - The address is the TCP peer's. Behind a reverse proxy every request
//!   comes from the proxy: use `by: user`, or limit at the proxy.
//! - Memory is bounded: a limiter tracks at most [`MAX_CLIENTS`] buckets.
//!   When full it first forgets the buckets that have refilled (a client
//!   that is back to a full bucket loses nothing by being forgotten); if
//!   that frees nothing, every request shares one overflow bucket until
//!   it can (at most once a second it tries again).
//!
//! The limits are checked after authentication (a request refused with
//! 401 or 403 costs no token) and before the body is read.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use serde::Deserialize;

use super::error::ApiError;
use crate::error::{Error, Result};

/// The most buckets one limiter tracks.
pub const MAX_CLIENTS: usize = 100_000;

/// The most requests per window, and the largest burst, a limit may allow.
pub const MAX_REQUESTS: u32 = 1_000_000;

/// The longest window (`per`), in seconds: a day.
pub const MAX_PER_SECONDS: f64 = 86_400.0;

/// How often a full limiter may forget refilled buckets.
const PRUNE_EVERY: Duration = Duration::from_secs(1);

/// Whom a bucket belongs to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RateKey {
    /// The client's address (the default).
    #[default]
    Client,
    /// The authenticated user; the address when there is none.
    User,
}

/// A rate limit, as written in a route file or in `GATEWAY.rpc`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Requests per `per` seconds: the refill rate.
    pub requests: u32,
    /// The window of `requests`, in seconds (default 1).
    #[serde(default = "one_second")]
    pub per: f64,
    /// Requests a full bucket allows at once (default `requests`).
    #[serde(default)]
    pub burst: Option<u32>,
    /// Whom a bucket belongs to (default `client`).
    #[serde(default)]
    pub by: RateKey,
}

fn one_second() -> f64 {
    1.0
}

impl RateLimit {
    /// Checks the numbers; the error says which one and why.
    ///
    /// ```
    /// use enoki::gateway::RateLimit;
    ///
    /// let limit: RateLimit = serde_yaml_ng::from_str("{requests: 0}").unwrap();
    /// assert_eq!(
    ///     limit.validate().unwrap_err().to_string(),
    ///     "`requests` must be from 1 to 1000000, got 0"
    /// );
    /// ```
    pub fn validate(&self) -> Result<()> {
        let count = |name: &str, n: u32| {
            if (1..=MAX_REQUESTS).contains(&n) {
                Ok(())
            } else {
                Err(Error::Invalid(format!(
                    "`{name}` must be from 1 to {MAX_REQUESTS}, got {n}"
                )))
            }
        };
        count("requests", self.requests)?;
        if let Some(burst) = self.burst {
            count("burst", burst)?;
        }
        if !(self.per.is_finite() && self.per >= 0.001 && self.per <= MAX_PER_SECONDS) {
            return Err(Error::Invalid(format!(
                "`per` must be a number of seconds from 0.001 to {MAX_PER_SECONDS}, got {}",
                self.per
            )));
        }
        Ok(())
    }

    /// The time one token takes to come back.
    fn refill(&self) -> Duration {
        let nanos = self.per * 1e9 / f64::from(self.requests);
        Duration::from_nanos(nanos.clamp(1.0, u64::MAX as f64) as u64)
    }
}

/// A bucket's owner.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Owner {
    Address(IpAddr),
    User(Arc<str>),
    /// Requests whose address is unknown (no TCP peer: an in-process call).
    Unknown,
    /// Every client a full limiter does not know yet.
    Overflow,
}

/// Who sent a request, as the limits see it.
#[derive(Debug, Clone, Default)]
pub struct Client<'a> {
    /// The TCP peer, when there is one.
    pub address: Option<SocketAddr>,
    /// The authenticated user, when there is one.
    pub user: Option<&'a str>,
}

/// The TCP peer of a request, as the server recorded it (axum's
/// `ConnectInfo`); `None` for a request that did not come over a socket
/// (one sent to the router in process).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerAddr(pub Option<SocketAddr>);

impl PeerAddr {
    /// The peer recorded in a request's extensions.
    pub fn of(extensions: &axum::http::Extensions) -> PeerAddr {
        PeerAddr(
            extensions
                .get::<axum::extract::ConnectInfo<SocketAddr>>()
                .map(|info| info.0),
        )
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for PeerAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(PeerAddr::of(&parts.extensions))
    }
}

/// IPv6 addresses by their /64: a host picks freely inside its prefix.
fn bucket_address(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(prefix))
            }
        },
    }
}

/// The buckets of one rate limit.
pub struct Limiter {
    limit: RateLimit,
    buckets: RateLimiter<Owner, DefaultKeyedStateStore<Owner>, DefaultClock>,
    clock: DefaultClock,
    created: Instant,
    /// When it last forgot refilled buckets, in ms since `created`.
    pruned_at: AtomicU64,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("limit", &self.limit)
            .field("clients", &self.buckets.len())
            .finish()
    }
}

impl Limiter {
    /// The buckets of `limit`, or why `limit` is wrong.
    pub fn new(limit: RateLimit) -> Result<Limiter> {
        limit.validate()?;
        let burst = limit.burst.unwrap_or(limit.requests);
        let invalid = |message: &str| Error::Invalid(message.to_owned());
        let quota = Quota::with_period(limit.refill())
            .ok_or_else(|| invalid("the refill period is zero"))?
            .allow_burst(
                NonZeroU32::new(burst).ok_or_else(|| invalid("`burst` must be at least 1"))?,
            );
        Ok(Limiter {
            limit,
            buckets: RateLimiter::keyed(quota),
            clock: DefaultClock::default(),
            created: Instant::now(),
            pruned_at: AtomicU64::new(0),
        })
    }

    /// The limit it enforces.
    pub fn limit(&self) -> &RateLimit {
        &self.limit
    }

    /// The buckets it tracks now.
    pub fn clients(&self) -> usize {
        self.buckets.len()
    }

    fn owner(&self, client: &Client<'_>) -> Owner {
        match (self.limit.by, client.user, client.address) {
            (RateKey::User, Some(user), _) => Owner::User(Arc::from(user)),
            (_, _, Some(address)) => Owner::Address(bucket_address(address.ip())),
            (_, _, None) => Owner::Unknown,
        }
    }

    /// Takes a token of `client`'s bucket, or says how long until there is
    /// one: 429 `TooManyRequests` with `Retry-After` (whole seconds,
    /// rounded up).
    pub fn check(&self, client: &Client<'_>) -> Result<(), ApiError> {
        let mut owner = self.owner(client);
        if self.buckets.len() >= MAX_CLIENTS {
            self.prune();
            if self.buckets.len() >= MAX_CLIENTS {
                owner = Owner::Overflow;
            }
        }
        match self.buckets.check_key(&owner) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                let mut error = ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "TooManyRequests",
                    format!(
                        "rate limit: {} requests per {} s; retry in {} ms",
                        self.limit.requests,
                        self.limit.per,
                        wait.as_millis().max(1)
                    ),
                );
                error.retry_after = Some(wait.as_secs() + u64::from(wait.subsec_nanos() > 0));
                Err(error)
            }
        }
    }

    /// Forgets the buckets that have refilled, at most once a
    /// [`PRUNE_EVERY`].
    fn prune(&self) {
        let now = self.created.elapsed().as_millis() as u64;
        let last = self.pruned_at.load(Ordering::Relaxed);
        let due = now.saturating_sub(last) >= PRUNE_EVERY.as_millis() as u64 || last == 0;
        if due
            && self
                .pruned_at
                .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.buckets.retain_recent();
            self.buckets.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(yaml: &str) -> Limiter {
        Limiter::new(serde_yaml_ng::from_str(yaml).unwrap()).unwrap()
    }

    fn from(address: &str) -> Client<'static> {
        Client {
            address: Some(address.parse().unwrap()),
            user: None,
        }
    }

    #[test]
    fn a_bucket_holds_the_burst_then_says_when_to_retry() {
        let limiter = limit("{requests: 2, per: 60, burst: 3}");
        let ann = from("10.0.0.1:1000");
        for _ in 0..3 {
            limiter.check(&ann).unwrap();
        }
        let refused = limiter.check(&ann).unwrap_err();
        assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
        // One token every 30 s.
        let retry = refused.retry_after.unwrap();
        assert!((29..=30).contains(&retry), "{retry}");
        // Another address (another port of the same one is the same client).
        limiter.check(&from("10.0.0.2:1000")).unwrap();
        assert!(limiter.check(&from("10.0.0.1:2000")).is_err());
    }

    #[test]
    fn ipv6_clients_are_their_slash_64_and_users_their_id() {
        let limiter = limit("{requests: 1, per: 60}");
        limiter.check(&from("[2001:db8:1:2::1]:1")).unwrap();
        assert!(limiter.check(&from("[2001:db8:1:2:ffff::9]:1")).is_err());
        limiter.check(&from("[2001:db8:1:3::1]:1")).unwrap();
        // A v4-mapped address is its v4 address.
        limiter.check(&from("10.1.1.1:1")).unwrap();
        assert!(limiter.check(&from("[::ffff:10.1.1.1]:1")).is_err());

        let by_user = limit("{requests: 1, per: 60, by: user}");
        let ann = |address| Client {
            address: Some(address),
            user: Some("ann"),
        };
        by_user.check(&ann("10.0.0.1:1".parse().unwrap())).unwrap();
        assert!(by_user.check(&ann("10.0.0.9:1".parse().unwrap())).is_err());
        // Anonymous: by address.
        by_user.check(&from("10.0.0.1:1")).unwrap();
    }

    #[test]
    fn bad_limits_say_what_is_wrong() {
        for (yaml, wants) in [
            ("{requests: 0}", "`requests` must be from 1"),
            ("{requests: 5, burst: 0}", "`burst` must be from 1"),
            ("{requests: 5, per: 0}", "`per` must be a number of seconds"),
            (
                "{requests: 5, per: 1e9}",
                "`per` must be a number of seconds",
            ),
            ("{requests: 2000000}", "`requests` must be from 1"),
        ] {
            let limit: RateLimit = serde_yaml_ng::from_str(yaml).unwrap();
            let err = Limiter::new(limit).unwrap_err().to_string();
            assert!(err.starts_with(wants), "{yaml}: {err}");
        }
        assert!(serde_yaml_ng::from_str::<RateLimit>("{requests: 5, by: nobody}").is_err());
        assert!(serde_yaml_ng::from_str::<RateLimit>("{requests: 5, rate: 1}").is_err());
    }

    #[test]
    fn memory_is_bounded_by_max_clients() {
        let limiter = limit("{requests: 1, per: 3600}");
        for n in 0..(MAX_CLIENTS as u32 + 10) {
            let address = IpAddr::V4(std::net::Ipv4Addr::from(n));
            let _ = limiter.check(&Client {
                address: Some(SocketAddr::new(address, 1)),
                user: None,
            });
        }
        // Nothing refilled within an hour: the newcomers shared the
        // overflow bucket.
        assert!(
            limiter.clients() <= MAX_CLIENTS + 1,
            "{}",
            limiter.clients()
        );
    }
}
