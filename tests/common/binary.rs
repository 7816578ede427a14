//! The `enoki` binary as a child process: the gateway started on a free
//! port, and plain HTTP/1.1 requests to it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// The binary under test.
pub(crate) const ENOKI: &str = env!("CARGO_BIN_EXE_enoki");

/// `127.0.0.1:<a port nothing listens on now>`, for a child to listen on.
pub(crate) fn free_addr() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("127.0.0.1:{port}")
}

/// Plain `enoki --listen 127.0.0.1:<free port> EXTRA...`, started in `cwd`
/// without the environment it would read from the test runner (`AMQP_URI`,
/// `RUST_LOG`, `DB_URIS`), its stderr to `stderr`: waits for the URL line
/// on stdout and returns the child and the address.
pub(crate) fn start_gateway(cwd: &Path, stderr: Stdio, extra: &[&str]) -> (Child, String) {
    let listen = free_addr();
    let mut child = Command::new(ENOKI)
        .args(["--listen", &listen])
        .args(extra)
        .current_dir(cwd)
        .env_remove("AMQP_URI")
        .env_remove("RUST_LOG")
        .env_remove("RUST_BACKTRACE")
        .env_remove("DB_URIS")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap_or_else(|err| panic!("cannot run {ENOKI}: {err}"));
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().expect("a line on stdout").unwrap();
    assert_eq!(
        first,
        format!("enoki gateway: listening on http://{listen}/")
    );
    (child, listen)
}

/// One HTTP/1.1 request with a JSON `body` (may be empty): the whole
/// response as text.
pub(crate) fn http(listen: &str, method: &str, path: &str, body: &str) -> String {
    let mut stream = std::net::TcpStream::connect(listen).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {listen}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}
