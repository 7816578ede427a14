//! The 3-node RabbitMQ cluster of `scripts/cluster` (nodes
//! `enoki-c{1,2,3}@localhost` on 127.0.0.1:5681..5683), a throwaway vhost on
//! it per test, and the faults: kill -9 of a node, and reviving it.
//!
//! When the cluster is not up the helper prints `skipped: ...` and returns
//! `None`, unless `CI=true`, where it panics (`./scripts/test` starts it).
#![allow(dead_code)]

use std::process::Command;
use std::time::Duration;

/// Node `n`'s AMQP port.
pub(crate) fn port(n: usize) -> u16 {
    5680 + n as u16
}

/// Node `n`'s Erlang node name.
pub(crate) fn node(n: usize) -> String {
    format!("enoki-c{n}@localhost")
}

fn reachable(n: usize) -> bool {
    std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port(n))),
        Duration::from_secs(2),
    )
    .is_ok()
}

fn script(args: &[&str]) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/cluster");
    let output = Command::new(script)
        .args(args)
        .output()
        .unwrap_or_else(|err| panic!("cannot run scripts/cluster {args:?}: {err}"));
    assert!(
        output.status.success(),
        "scripts/cluster {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `rabbitmqctl -n <node n> ARGS`, stdout; panics on failure.
pub(crate) fn ctl(n: usize, args: &[&str]) -> String {
    let output = Command::new("rabbitmqctl")
        .arg("-n")
        .arg(node(n))
        .args(args)
        .output()
        .unwrap_or_else(|err| panic!("cannot run rabbitmqctl: {err}"));
    assert!(
        output.status.success(),
        "rabbitmqctl -n {} {args:?} failed: {}{}",
        node(n),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// kill -9 of node `n`; returns once it no longer listens.
pub(crate) fn kill(n: usize) {
    script(&["kill", &n.to_string()]);
}

/// Starts node `n` again and waits until it is up (it rejoins the cluster).
pub(crate) fn revive(n: usize) {
    script(&["revive", &n.to_string()]);
}

/// A fresh vhost on the cluster that guest may use fully.
#[derive(Debug)]
pub(crate) struct ClusterVhost {
    pub(crate) name: String,
}

impl ClusterVhost {
    /// Creates the vhost through the first node that is up, or `None`
    /// (after printing why) when the cluster is down and `CI` is not `true`.
    pub(crate) fn create() -> Option<ClusterVhost> {
        let Some(up) = (1..=3).find(|n| reachable(*n)) else {
            let message = "the RabbitMQ test cluster is not up (./scripts/cluster start)";
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{message} (CI=true: cluster tests must run)");
            }
            println!("skipped: {message}");
            eprintln!("skipped: {message}");
            return None;
        };
        let name = format!("enoki-cluster-{}", uuid::Uuid::new_v4().simple());
        ctl(up, &["add_vhost", &name]);
        ctl(
            up,
            &["set_permissions", "-p", &name, "guest", ".*", ".*", ".*"],
        );
        Some(ClusterVhost { name })
    }

    /// The failover `AMQP_URI` of the three nodes, node `first` first.
    pub(crate) fn uris(&self, first: usize) -> String {
        (0..3)
            .map(|i| {
                let n = (first - 1 + i) % 3 + 1;
                format!("amqp://guest:guest@127.0.0.1:{}/{}", port(n), self.name)
            })
            .collect::<Vec<_>>()
            .join(";")
    }

    /// The URI of node `n` alone.
    pub(crate) fn uri(&self, n: usize) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/{}", port(n), self.name)
    }
}

impl Drop for ClusterVhost {
    fn drop(&mut self) {
        if let Some(up) = (1..=3).find(|n| reachable(*n)) {
            let _ = Command::new("rabbitmqctl")
                .args(["-n", &node(up), "delete_vhost", &self.name])
                .output();
        }
    }
}
