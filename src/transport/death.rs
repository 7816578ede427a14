//! The `x-death` header: RabbitMQ's record of where a message was
//! dead-lettered, how often and why. The broker writes it (the embedded
//! broker writes it the same way, with [`record`]); enoki reads it to count
//! retries ([`count`]) and to show and replay dead letters
//! ([`newest`]).
//!
//! The header is a list of tables, the newest first. Each table is one
//! `(queue, reason)` pair: `queue`, `reason` (`rejected`, `expired`,
//! `maxlen`, `delivery_limit`), `count` (how often), `exchange` and
//! `routing-keys` (where the message was published before it died there)
//! and `time` (seconds since the epoch, of the first death).
//!
//! ```
//! use enoki::transport::{Headers, death};
//!
//! let mut headers = Headers::new();
//! death::record(&mut headers, "q.retry.1000", "expired", "", "q.retry.1000");
//! death::record(&mut headers, "q.retry.1000", "expired", "", "q.retry.1000");
//! assert_eq!(death::count(&headers, |queue, reason| {
//!     queue.starts_with("q.retry.") && reason == "expired"
//! }), 2);
//! assert_eq!(death::newest(&headers).unwrap().queue, "q.retry.1000");
//! ```

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use crate::message::Headers;

/// The header's name.
pub const HEADER: &str = "x-death";

/// The most entries [`record`] keeps (RabbitMQ keeps one per queue and
/// reason, so a message that went round many queues could grow it without
/// end).
pub const MAX_ENTRIES: usize = 64;

/// One entry of the header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Death {
    /// The queue it died in.
    pub queue: String,
    /// Why: `rejected`, `expired`, `maxlen`, `delivery_limit`.
    pub reason: String,
    /// How often it died there for that reason.
    pub count: u64,
    /// The exchange it had been published to.
    pub exchange: String,
    /// The routing keys it had been published with.
    pub routing_keys: Vec<String>,
}

impl Death {
    fn from_table(table: &Map<String, Value>) -> Death {
        let text = |key: &str| {
            table
                .get(key)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        Death {
            queue: text("queue"),
            reason: text("reason"),
            count: table.get("count").and_then(Value::as_u64).unwrap_or(1),
            exchange: text("exchange"),
            routing_keys: table
                .get("routing-keys")
                .and_then(Value::as_array)
                .map(|keys| {
                    keys.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

fn entries(headers: &Headers) -> impl Iterator<Item = &Map<String, Value>> {
    headers
        .get(HEADER)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
}

/// The newest entry, if the message died anywhere.
pub fn newest(headers: &Headers) -> Option<Death> {
    entries(headers).next().map(Death::from_table)
}

/// The sum of the counts of the entries whose queue and reason `select`
/// picks. Malformed entries count once; the header is data from outside.
pub fn count(headers: &Headers, select: impl Fn(&str, &str) -> bool) -> u64 {
    entries(headers)
        .filter(|table| {
            let text = |key| table.get(key).and_then(Value::as_str).unwrap_or_default();
            select(text("queue"), text("reason"))
        })
        .map(|table| table.get("count").and_then(Value::as_u64).unwrap_or(1))
        .fold(0, u64::saturating_add)
}

/// Records a death as RabbitMQ does: the entry of the same queue and
/// reason has its count raised and moves to the front; otherwise a new
/// entry goes first. At most [`MAX_ENTRIES`] are kept (the oldest go).
pub fn record(headers: &mut Headers, queue: &str, reason: &str, exchange: &str, routing_key: &str) {
    let mut list = match headers.remove(HEADER) {
        Some(Value::Array(list)) => list,
        _ => Vec::new(),
    };
    let same = list.iter().position(|entry| {
        entry.get("queue").and_then(Value::as_str) == Some(queue)
            && entry.get("reason").and_then(Value::as_str) == Some(reason)
    });
    let entry = match same {
        Some(index) => {
            let mut entry = list.remove(index);
            if let Some(table) = entry.as_object_mut() {
                let count = table.get("count").and_then(Value::as_u64).unwrap_or(1);
                table.insert("count".into(), count.saturating_add(1).into());
            }
            entry
        }
        None => {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |since| since.as_secs());
            serde_json::json!({
                "count": 1,
                "reason": reason,
                "queue": queue,
                "time": now,
                "exchange": exchange,
                "routing-keys": [routing_key],
            })
        }
    };
    list.insert(0, entry);
    list.truncate(MAX_ENTRIES);
    headers.insert(HEADER.into(), Value::Array(list));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_death_in_the_same_place_counts_up_and_moves_first() {
        let mut headers = Headers::new();
        record(&mut headers, "a", "expired", "", "a");
        record(&mut headers, "b", "rejected", "x", "k");
        record(&mut headers, "a", "expired", "", "a");
        let list = headers[HEADER].as_array().unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(newest(&headers).unwrap().count, 2);
        assert_eq!(newest(&headers).unwrap().queue, "a");
        assert_eq!(list[1]["exchange"], "x");
        assert_eq!(count(&headers, |_, _| true), 3);
        assert_eq!(count(&headers, |_, reason| reason == "rejected"), 1);
    }

    #[test]
    fn malformed_headers_count_as_little_as_possible() {
        let mut headers = Headers::new();
        headers.insert(HEADER.into(), serde_json::json!("not a list"));
        assert_eq!(count(&headers, |_, _| true), 0);
        assert_eq!(newest(&headers), None);
        headers.insert(
            HEADER.into(),
            serde_json::json!([7, {"queue": "q", "count": "many"}, {"queue": "q", "count": u64::MAX}, {"queue": "q", "count": 3}]),
        );
        assert_eq!(count(&headers, |queue, _| queue == "q"), u64::MAX);
        record(&mut headers, "q", "expired", "", "q");
        assert_eq!(newest(&headers).unwrap().count, 1);
    }

    #[test]
    fn the_header_is_bounded() {
        let mut headers = Headers::new();
        for n in 0..(MAX_ENTRIES + 10) {
            record(&mut headers, &format!("q{n}"), "expired", "", "q");
        }
        assert_eq!(headers[HEADER].as_array().unwrap().len(), MAX_ENTRIES);
        assert_eq!(
            newest(&headers).unwrap().queue,
            format!("q{}", MAX_ENTRIES + 9)
        );
    }
}
