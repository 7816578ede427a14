//! What the shell knows of the services: enoki services with their
//! methods (asked once with [`DESCRIBE_METHOD`]), Python nameko services
//! (which cannot tell) and those not asked yet by name.

use std::collections::BTreeMap;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{Map, Value};

use crate::client::ClusterRpc;
use crate::describe::{DESCRIBE_METHOD, ServiceDescription};
use crate::error::{Error, Result};

/// How long completion waits for a service to describe itself.
pub(crate) const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(1);

/// What the shell knows of the services: enoki services with their
/// methods, Python services (and those not asked yet) by name.
#[derive(Debug, Default)]
pub(crate) struct Catalog {
    /// `None`: the methods are not known (not asked yet, or a Python
    /// nameko service, which cannot tell).
    pub(crate) services: BTreeMap<String, Known>,
}

#[derive(Debug, Clone, Default)]
pub(crate) enum Known {
    #[default]
    NotAsked,
    Unknowable,
    Described(ServiceDescription),
}

impl Catalog {
    pub(crate) fn seen(&mut self, service: &str) {
        self.services.entry(service.to_owned()).or_default();
    }

    pub(crate) fn methods(&self, service: &str) -> Option<Vec<String>> {
        match self.services.get(service) {
            Some(Known::Described(d)) => Some(d.rpc.clone()),
            _ => None,
        }
    }
}

/// Asks `service` to describe itself (once; the answer is kept). `Ok(None)`
/// when it cannot (a Python nameko service).
pub(crate) async fn describe(
    rpc: &ClusterRpc,
    catalog: &Mutex<Catalog>,
    service: &str,
    timeout: Duration,
) -> Result<Option<ServiceDescription>> {
    match catalog.lock().services.get(service) {
        Some(Known::Described(d)) => return Ok(Some(d.clone())),
        Some(Known::Unknowable) => return Ok(None),
        _ => {}
    }
    let reply = rpc
        .with_timeout(timeout)
        .call(service, DESCRIBE_METHOD, Value::Array(vec![]), Map::new())
        .await;
    let known = match reply {
        Ok(value) => match serde_json::from_value::<ServiceDescription>(value) {
            Ok(description) => Known::Described(description),
            // A method of the service's own that happens to have the name.
            Err(_) => Known::Unknowable,
        },
        Err(Error::Remote(remote)) if remote.exc_type == "MethodNotFound" => Known::Unknowable,
        Err(err) => return Err(err),
    };
    catalog
        .lock()
        .services
        .insert(service.to_owned(), known.clone());
    Ok(match known {
        Known::Described(d) => Some(d),
        _ => None,
    })
}
