//! [`Endpoints`]: the broker addresses of one transport. `AMQP_URI` may
//! name several, in kombu's failover syntax (`amqp://h1:5672//;amqp://h2:5673//`,
//! as nameko passes it to kombu): the transport connects to the first that
//! answers, and after a connection loss tries the next ones in turn.

use std::sync::atomic::{AtomicUsize, Ordering};

use lapin::uri::AMQPUri;

use super::options::AmqpOptions;
use crate::error::{Error, Result};

/// The most addresses one `AMQP_URI` may list.
pub const MAX_ENDPOINTS: usize = 16;

/// One broker address.
#[derive(Debug, Clone)]
pub(super) struct Endpoint {
    pub(super) uri: AMQPUri,
    /// The address as given, without its password.
    pub(super) shown: String,
}

/// The addresses of a transport, and which one it is connected to.
#[derive(Debug)]
pub(super) struct Endpoints {
    list: Vec<Endpoint>,
    current: AtomicUsize,
}

impl Endpoints {
    /// Parses a URI or a `;`-separated list of them. A malformed entry is
    /// an [`Error::Transport`] naming the entry (password hidden) and its
    /// position.
    pub(super) fn parse(uris: &str, options: &AmqpOptions) -> Result<Endpoints> {
        let entries: Vec<&str> = uris.split(';').map(str::trim).collect();
        let count = entries.len();
        if count > MAX_ENDPOINTS {
            return Err(Error::Transport(format!(
                "AMQP URI lists {count} brokers; at most {MAX_ENDPOINTS} are allowed"
            )));
        }
        let list = entries
            .iter()
            .enumerate()
            .map(|(index, entry)| {
                let position = (count > 1).then(|| (index + 1, count));
                Endpoint::parse(entry, position, options)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Endpoints {
            list,
            current: AtomicUsize::new(0),
        })
    }

    /// How many addresses there are.
    pub(super) fn len(&self) -> usize {
        self.list.len()
    }

    /// The address at `index` (modulo the count).
    pub(super) fn get(&self, index: usize) -> &Endpoint {
        &self.list[index % self.list.len()]
    }

    /// The index of the address in use (or last in use).
    pub(super) fn current_index(&self) -> usize {
        self.current.load(Ordering::Relaxed)
    }

    /// The address in use (or last in use).
    pub(super) fn current(&self) -> &Endpoint {
        self.get(self.current_index())
    }

    /// Records that the transport is connected to the address at `index`.
    pub(super) fn set_current(&self, index: usize) {
        self.current
            .store(index % self.list.len(), Ordering::Relaxed);
    }

    /// Every address, without passwords, `;`-separated.
    pub(super) fn shown(&self) -> String {
        let shown: Vec<&str> = self.list.iter().map(|e| e.shown.as_str()).collect();
        shown.join(";")
    }
}

impl Endpoint {
    fn parse(
        entry: &str,
        position: Option<(usize, usize)>,
        options: &AmqpOptions,
    ) -> Result<Endpoint> {
        let shown = redact_one(entry);
        let at = match position {
            Some((n, count)) => format!(" (entry {n} of {count})"),
            None => String::new(),
        };
        if entry.is_empty() {
            return Err(Error::Transport(format!(
                "invalid AMQP URI: empty entry{at} (expected amqp://USER:PASSWORD@HOST:PORT/VHOST, several separated by `;`)"
            )));
        }
        let mut uri: AMQPUri = kombu_to_amqp(entry).parse().map_err(|err: String| {
            Error::Transport(format!(
                "invalid AMQP URI {shown}{at}: {err} (expected amqp://USER:PASSWORD@HOST:PORT/VHOST)"
            ))
        })?;
        if uri.vhost.is_empty() {
            // kombu (and so nameko) reads `amqp://host/` as the default vhost.
            uri.vhost = "/".into();
        }
        if uri.query.heartbeat.is_none() {
            uri.query.heartbeat = Some(options.heartbeat);
        }
        if uri.query.connection_timeout.is_none() {
            uri.query.connection_timeout = Some(10_000);
        }
        Ok(Endpoint { uri, shown })
    }
}

/// The URI with its password replaced by `***`; in a `;`-separated list,
/// every entry's.
pub fn redact_uri(uri: &str) -> String {
    if uri.contains(';') {
        let shown: Vec<String> = uri.split(';').map(|e| redact_one(e.trim())).collect();
        return shown.join(";");
    }
    redact_one(uri)
}

fn redact_one(uri: &str) -> String {
    let Some(scheme_end) = uri.find("://").map(|i| i + 3) else {
        return uri.to_owned();
    };
    let rest = &uri[scheme_end..];
    let before_query = rest.split('?').next().unwrap_or(rest);
    let Some(at) = before_query.rfind('@') else {
        return uri.to_owned();
    };
    match rest[..at].find(':') {
        Some(colon) => format!(
            "{}{}:***{}",
            &uri[..scheme_end],
            &rest[..colon],
            &rest[at..]
        ),
        None => uri.to_owned(),
    }
}

/// nameko configs name the driver in the scheme (kombu URLs:
/// `pyamqp://`, `librabbitmq://`); they are all AMQP 0-9-1.
fn kombu_to_amqp(uri: &str) -> std::borrow::Cow<'_, str> {
    let uri = uri.trim();
    for driver in ["pyamqp://", "librabbitmq://"] {
        if let Some(rest) = uri.strip_prefix(driver) {
            return format!("amqp://{rest}").into();
        }
    }
    uri.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(uris: &str) -> Result<Endpoints> {
        Endpoints::parse(uris, &AmqpOptions::default())
    }

    #[test]
    fn passwords_never_show() {
        assert_eq!(
            redact_uri("amqp://guest:secret@127.0.0.1:5999/%2f"),
            "amqp://guest:***@127.0.0.1:5999/%2f"
        );
        assert_eq!(redact_uri("amqp://127.0.0.1:5672"), "amqp://127.0.0.1:5672");
        assert_eq!(redact_uri("amqp://user@host/v"), "amqp://user@host/v");
        assert_eq!(
            redact_uri("amqps://u:p@ss@h:1/v?heartbeat=5"),
            "amqps://u:***@h:1/v?heartbeat=5"
        );
        assert_eq!(redact_uri("not a uri"), "not a uri");
        assert_eq!(
            redact_uri("amqp://a:s1@h1//; amqp://b:s2@h2:5673//"),
            "amqp://a:***@h1//;amqp://b:***@h2:5673//"
        );
    }

    #[test]
    fn kombu_schemes_are_amqp() {
        assert_eq!(
            kombu_to_amqp("pyamqp://guest:guest@localhost"),
            "amqp://guest:guest@localhost"
        );
        assert_eq!(kombu_to_amqp("librabbitmq://h/v"), "amqp://h/v");
        assert_eq!(kombu_to_amqp("amqps://h/v"), "amqps://h/v");
    }

    #[test]
    fn failover_lists_parse_in_order() {
        let endpoints =
            parse("amqp://guest:guest@h1:5672//;pyamqp://guest:pw@h2:5673/%2f; amqp://h3/v")
                .unwrap();
        assert_eq!(endpoints.len(), 3);
        let hosts: Vec<_> = (0..3)
            .map(|i| {
                let uri = &endpoints.get(i).uri;
                (
                    uri.authority.host.clone(),
                    uri.authority.port,
                    uri.vhost.clone(),
                )
            })
            .collect();
        assert_eq!(
            hosts,
            [
                ("h1".to_owned(), 5672, "/".to_owned()),
                ("h2".to_owned(), 5673, "/".to_owned()),
                ("h3".to_owned(), 5672, "v".to_owned()),
            ]
        );
        assert_eq!(
            endpoints.shown(),
            "amqp://guest:***@h1:5672//;pyamqp://guest:***@h2:5673/%2f;amqp://h3/v"
        );
        endpoints.set_current(4);
        assert_eq!(endpoints.current().uri.authority.host, "h2");
        assert_eq!(parse("amqp://h/v").unwrap().len(), 1);
    }

    #[test]
    fn a_malformed_entry_is_named_without_its_password() {
        let err = parse("amqp://guest:pw@h1//;http://guest:secret@h2//").unwrap_err();
        let message = err.to_string();
        assert!(message.contains("http://guest:***@h2//"), "{message}");
        assert!(message.contains("entry 2 of 2"), "{message}");
        assert!(!message.contains("secret"), "{message}");

        let err = parse("amqp://h1//;;amqp://h3//").unwrap_err().to_string();
        assert!(err.contains("empty entry (entry 2 of 3)"), "{err}");

        let many = vec!["amqp://h//"; MAX_ENDPOINTS + 1].join(";");
        let err = parse(&many).unwrap_err().to_string();
        assert!(err.contains("at most 16"), "{err}");

        // One URI alone keeps the short message.
        let err = parse("amqp://guest:pw@h:notaport//")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("invalid AMQP URI amqp://guest:***@h:notaport//: "),
            "{err}"
        );
        assert!(!err.contains("entry"), "{err}");
    }
}
