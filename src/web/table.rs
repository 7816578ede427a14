//! The route table of a [`WebServer`](super::WebServer): which method and
//! path belong to whom, and the clash check that stops start-up naming
//! both definitions.
//!
//! Two routes clash when they take the same method (or one takes every
//! method) on paths of the same shape (`/users/{id}` and `/users/{name}`
//! are one path), when they spell one shape with different parameter
//! names, or when the router could not tell them apart (axum's matcher
//! refuses them).

use std::sync::Arc;

use axum::http::Method;
use futures::future::BoxFuture;

use crate::error::{Error, Result};

/// What answers a route.
pub type Handler = Arc<
    dyn Fn(axum::extract::Request) -> BoxFuture<'static, axum::response::Response> + Send + Sync,
>;

/// One route of a table.
#[derive(Clone)]
pub(crate) struct Entry {
    /// The method; `None` for every method (the gateway's own paths).
    pub(crate) method: Option<Method>,
    /// The path, axum's syntax (`/users/{id}`).
    pub(crate) path: String,
    /// Who defined it, for errors: `users.profile (#[http])`,
    /// `routes/examples.yaml:12`.
    pub(crate) owner: String,
    /// Its registration, for removal.
    pub(crate) id: u64,
    /// What answers it; `None` for a reserved route served elsewhere.
    pub(crate) handler: Option<Handler>,
}

impl Entry {
    fn describe(&self) -> String {
        match &self.method {
            Some(method) => format!("{method} {} of {}", self.path, self.owner),
            None => format!("{} of {}", self.path, self.owner),
        }
    }
}

/// The routes of a web server.
#[derive(Default)]
pub(crate) struct Table {
    pub(crate) entries: Vec<Entry>,
    next_id: u64,
}

impl Table {
    /// A fresh registration id.
    pub(crate) fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Checks `adding` against the table and against itself: an error
    /// names both definitions of the first clash.
    pub(crate) fn check(&self, adding: &[Entry]) -> Result<()> {
        for entry in adding {
            parse_path(&entry.path)
                .map_err(|err| Error::Config(format!("{}: {err}", entry.owner)))?;
        }
        for (i, new) in adding.iter().enumerate() {
            let earlier = self.entries.iter().chain(&adding[..i]);
            if let Some(other) = earlier.into_iter().find(|old| same_route(old, new)) {
                return Err(clash(new, other));
            }
        }
        let mut matcher = matchit::Router::new();
        let mut seen: Vec<&str> = Vec::new();
        for entry in self.entries.iter().chain(adding) {
            if seen.contains(&entry.path.as_str()) {
                continue;
            }
            seen.push(&entry.path);
            if let Err(err) = matcher.insert(entry.path.as_str(), ()) {
                let other = match &err {
                    matchit::InsertError::Conflict { with } => {
                        self.entries.iter().chain(adding).find(|e| e.path == *with)
                    }
                    _ => None,
                };
                return Err(match other {
                    Some(other) => clash(entry, other),
                    None => Error::Config(format!("{}: {err}", entry.describe())),
                });
            }
        }
        Ok(())
    }
}

fn same_route(a: &Entry, b: &Entry) -> bool {
    let methods_meet = match (&a.method, &b.method) {
        (Some(x), Some(y)) => x == y,
        _ => true,
    };
    shape(&a.path) == shape(&b.path) && (methods_meet || a.path != b.path)
}

fn clash(new: &Entry, old: &Entry) -> Error {
    Error::Config(format!(
        "HTTP route clash: {} and {}",
        old.describe(),
        new.describe()
    ))
}

/// Checks a route path; returns its parameter names.
pub fn parse_path(path: &str) -> Result<Vec<String>> {
    let bad = |why: &str| Err(Error::Invalid(format!("bad path `{path}`: {why}")));
    let Some(rest) = path.strip_prefix('/') else {
        return bad("it must start with `/`");
    };
    let mut params: Vec<String> = Vec::new();
    if rest.is_empty() {
        return Ok(params);
    }
    let segments: Vec<&str> = rest.split('/').collect();
    for (i, segment) in segments.iter().enumerate() {
        if segment.is_empty() {
            return bad("empty segment (`//` or a trailing `/`)");
        }
        if let Some(inner) = segment.strip_prefix('{') {
            let Some(name) = inner.strip_suffix('}') else {
                return bad("a parameter must be a whole segment, `{name}`");
            };
            let name = match name.strip_prefix('*') {
                Some(name) if i + 1 == segments.len() => name,
                Some(_) => return bad("a `{*rest}` parameter must be the last segment"),
                None => name,
            };
            if !is_ident(name) {
                return bad(&format!("`{{{name}}}` is not a parameter name"));
            }
            if params.iter().any(|p| p == name) {
                return bad(&format!("parameter `{name}` appears twice"));
            }
            params.push(name.to_owned());
        } else if segment.contains(['{', '}', '*', ':']) {
            return bad(&format!(
                "`{segment}`: parameters are written `{{name}}`, as a whole segment"
            ));
        }
    }
    Ok(params)
}

/// The path with parameter names erased: `/a/{x}` and `/a/{y}` are the
/// same route.
pub fn shape(path: &str) -> String {
    path.split('/')
        .map(|s| {
            if s.starts_with("{*") {
                "{*}"
            } else if s.starts_with('{') {
                "{}"
            } else {
                s
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

pub(crate) fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(method: Option<&str>, path: &str, owner: &str) -> Entry {
        Entry {
            method: method.map(|m| Method::from_bytes(m.as_bytes()).unwrap()),
            path: path.to_owned(),
            owner: owner.to_owned(),
            id: 0,
            handler: None,
        }
    }

    fn check(existing: &[Entry], adding: &[Entry]) -> Result<()> {
        let table = Table {
            entries: existing.to_vec(),
            next_id: 0,
        };
        table.check(adding)
    }

    #[test]
    fn clashes_name_both_definitions() {
        let gateway = [
            entry(Some("GET"), "/users/{id}", "routes/examples.yaml:12"),
            entry(None, "/ws", "the gateway"),
        ];
        let err = check(
            &gateway,
            &[entry(Some("GET"), "/users/{uid}", "users.get (#[http])")],
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("GET /users/{id} of routes/examples.yaml:12")
                && err.contains("GET /users/{uid} of users.get (#[http])"),
            "{err}"
        );
        let err = check(
            &gateway,
            &[entry(Some("POST"), "/ws", "chat.post (#[http])")],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("/ws of the gateway"), "{err}");
        let twice = [
            entry(Some("PUT"), "/a", "x.one (#[http])"),
            entry(Some("PUT"), "/a", "y.two (#[http])"),
        ];
        let err = check(&[], &twice).unwrap_err().to_string();
        assert!(err.contains("x.one") && err.contains("y.two"), "{err}");
    }

    #[test]
    fn routes_that_can_live_together_do() {
        let gateway = [entry(Some("GET"), "/users/{id}", "routes/examples.yaml:12")];
        check(
            &gateway,
            &[
                entry(
                    Some("GET"),
                    "/users/{id}/profile",
                    "users.profile (#[http])",
                ),
                entry(Some("DELETE"), "/users/{id}", "users.delete (#[http])"),
                entry(Some("GET"), "/users/me", "users.me (#[http])"),
            ],
        )
        .unwrap();
    }

    #[test]
    fn the_matcher_refuses_what_it_cannot_tell_apart() {
        let err = check(
            &[entry(Some("GET"), "/a/{x}", "one")],
            &[entry(Some("POST"), "/a/{*rest}", "two")],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("one") && err.contains("two"), "{err}");
        let err = check(&[], &[entry(Some("GET"), "/a/{x", "bad (#[http])")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("bad (#[http]): bad path `/a/{x`"), "{err}");
    }
}
