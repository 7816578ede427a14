//! The container stack checked against the program, as this machine has
//! no Docker engine: every command and flag `docker-compose.yml` and the
//! `Dockerfile` give `enoki` exists (`enoki … --help` accepts it), every
//! environment variable they set is one the program reads (`enoki --help`
//! lists them), every port published is the one the program listens on,
//! the health checks probe a path the gateway serves, every file the
//! Dockerfile copies exists, and `.dockerignore` keeps the build output
//! out of the context.
//!
//! Run: `cargo test --test compose`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde_yaml_ng::Value;

const ENOKI: &str = env!("CARGO_BIN_EXE_enoki");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn read(name: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(name))
        .unwrap_or_else(|err| panic!("cannot read {name}: {err}"))
}

fn compose() -> BTreeMap<String, Value> {
    let file: Value = serde_yaml_ng::from_str(&read("docker-compose.yml")).unwrap();
    serde_yaml_ng::from_value(file["services"].clone()).unwrap()
}

/// The services built from this repository (`build: .`).
fn ours() -> Vec<(String, Value)> {
    compose()
        .into_iter()
        .filter(|(_, service)| service.get("build").is_some())
        .collect()
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_sequence()
        .unwrap_or_else(|| panic!("not a list: {value:?}"))
        .iter()
        .map(|v| {
            v.as_str()
                .unwrap_or_else(|| panic!("not a string: {v:?}"))
                .to_owned()
        })
        .collect()
}

/// `enoki ARGS --help` succeeds: the command and its flags exist.
#[track_caller]
fn assert_accepted(args: &[String]) {
    let out = Command::new(ENOKI)
        .args(args)
        .arg("--help")
        .env_remove("AMQP_URI")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "`enoki {}` is not a valid command line: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The environment variables `enoki --help` says the program reads.
fn variables_read() -> Vec<String> {
    let out = Command::new(ENOKI).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout).into_owned();
    let section = help
        .split("Environment variables read:")
        .nth(1)
        .unwrap_or_else(|| panic!("`enoki --help` lists no environment variables:\n{help}"));
    section
        .lines()
        .skip(1)
        .take_while(|line| line.starts_with("  "))
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// The port of `--listen HOST:PORT` in `args`, else the default, 8000.
fn listen_port(args: &[String]) -> u16 {
    args.iter()
        .position(|a| a == "--listen")
        .map(|i| args[i + 1].rsplit(':').next().unwrap().parse().unwrap())
        .unwrap_or(8000)
}

/// The Dockerfile's instructions of its last stage, by keyword.
fn dockerfile() -> Vec<(String, String)> {
    let text = read("Dockerfile").replace("\\\n", " ");
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (keyword, rest) = line.split_once(' ').unwrap_or((line, ""));
            (keyword.to_uppercase(), rest.trim().to_owned())
        })
        .collect()
}

fn exec_form(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_else(|err| panic!("not an exec-form list: {text}: {err}"))
}

/// The image's default arguments (`CMD`, after `ENTRYPOINT ["enoki"]`).
fn image_cmd() -> Vec<String> {
    let lines = dockerfile();
    let entrypoint = lines
        .iter()
        .rfind(|(k, _)| k == "ENTRYPOINT")
        .map(|(_, v)| exec_form(v))
        .expect("an ENTRYPOINT");
    assert_eq!(entrypoint, ["enoki"]);
    lines
        .iter()
        .rfind(|(k, _)| k == "CMD")
        .map(|(_, v)| exec_form(v))
        .expect("a CMD")
}

/// A health check's command: `enoki …` must be accepted, `curl URL` must
/// probe the listening port on a path the gateway serves.
#[track_caller]
fn assert_probe(test: &[String], port: u16) {
    match test.first().map(String::as_str) {
        Some("enoki") => assert_accepted(&test[1..]),
        Some("curl") => {
            let url = test
                .iter()
                .find(|a| a.starts_with("http://"))
                .expect("a URL");
            let rest = url.trim_start_matches("http://");
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let probe_port: u16 = authority.rsplit(':').next().unwrap().parse().unwrap();
            assert_eq!(probe_port, port, "{url} probes another port than {port}");
            assert!(
                ["/healthz", "/readyz"].contains(&path),
                "{url}: not a health path"
            );
        }
        other => panic!("unexpected health check {other:?}"),
    }
}

#[test]
fn compose_commands_and_flags_exist() {
    let services = ours();
    assert!(services.len() >= 2, "the gateway and the services");
    for (name, service) in &services {
        let command = strings(&service["command"]);
        assert_accepted(&command);
        if let Some(check) = service.get("healthcheck") {
            let test = strings(&check["test"]);
            assert_eq!(test[0], "CMD", "{name}: exec form");
            assert_probe(&test[1..], listen_port(&command));
        }
    }
    // Two replicas of the services, the gateway on 8000, the stack's parts.
    let all = compose();
    assert_eq!(all["services"]["deploy"]["replicas"], Value::from(2));
    assert_eq!(strings(&all["services"]["command"]), ["run"]);
    for part in ["rabbitmq", "postgres", "gateway"] {
        assert!(all.contains_key(part), "no {part} in the stack");
    }
    assert!(
        all["rabbitmq"]["image"]
            .as_str()
            .unwrap()
            .contains("management"),
        "RabbitMQ with its management UI"
    );
}

#[test]
fn compose_environment_is_read_by_the_program() {
    let read = variables_read();
    for wanted in ["AMQP_URI", "DB_URIS", "RUST_LOG"] {
        assert!(
            read.contains(&wanted.to_owned()),
            "{wanted} not in {read:?}"
        );
    }
    for (name, service) in ours() {
        let env = service["environment"].as_mapping().expect("environment");
        for (key, value) in env {
            let key = key.as_str().unwrap();
            assert!(
                read.contains(&key.to_owned()),
                "{name}: {key} is not read by enoki"
            );
            let value = value.as_str().unwrap();
            // The values parse as the program will parse them.
            match key {
                "AMQP_URI" => assert!(value.starts_with("amqp://"), "{value}"),
                "DB_URIS" => {
                    let uris: BTreeMap<String, String> = serde_yaml_ng::from_str(value).unwrap();
                    assert!(uris["users"].starts_with("postgres://"), "{uris:?}");
                    assert!(uris["users"].contains("@postgres:5432/"), "{uris:?}");
                }
                _ => {}
            }
        }
        // `show-config` accepts the environment as the container sets it.
        let mut show = Command::new(ENOKI);
        show.arg("show-config");
        for (key, value) in env {
            show.env(key.as_str().unwrap(), value.as_str().unwrap());
        }
        let out = show.output().unwrap();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let shown = String::from_utf8_lossy(&out.stdout);
        for key in env
            .keys()
            .filter_map(Value::as_str)
            .filter(|k| *k != "RUST_LOG")
        {
            assert!(
                shown.contains(key),
                "{name}: show-config lacks {key}:\n{shown}"
            );
        }
    }
}

#[test]
fn compose_ports_are_the_ones_the_program_listens_on() {
    for (name, service) in ours() {
        let command = strings(&service["command"]);
        let Some(ports) = service.get("ports") else {
            assert_ne!(
                command.first().map(String::as_str),
                Some("gateway"),
                "{name}: unpublished gateway"
            );
            continue;
        };
        for port in strings(ports) {
            let container: u16 = port.rsplit(':').next().unwrap().parse().unwrap();
            assert_eq!(container, listen_port(&command), "{name}: publishes {port}");
        }
    }
}

#[test]
fn dockerfile_builds_what_it_runs() {
    let lines = dockerfile();
    let froms: Vec<&String> = lines
        .iter()
        .filter(|(k, _)| k == "FROM")
        .map(|(_, v)| v)
        .collect();
    assert!(froms.len() >= 2, "multi-stage");
    assert!(
        froms[0].starts_with("rust:"),
        "built in the Rust image: {froms:?}"
    );
    assert!(
        froms.last().unwrap().contains("slim"),
        "run in a slim image: {froms:?}"
    );
    // Every file copied from the context exists.
    for (_, args) in lines.iter().filter(|(k, _)| k == "COPY" || k == "ADD") {
        if args.starts_with("--from=") {
            continue;
        }
        let parts: Vec<&str> = args
            .split_whitespace()
            .filter(|a| !a.starts_with("--"))
            .collect();
        for source in &parts[..parts.len() - 1] {
            assert!(
                Path::new(ROOT).join(source).exists(),
                "the Dockerfile copies {source}, which does not exist"
            );
        }
    }
    // Dependencies in a layer of their own, then the code.
    let runs: Vec<&String> = lines
        .iter()
        .filter(|(k, _)| k == "RUN")
        .map(|(_, v)| v)
        .collect();
    let cook = runs
        .iter()
        .position(|r| r.contains("cargo chef cook"))
        .expect("a dependency layer");
    let build = runs
        .iter()
        .position(|r| r.contains("cargo build --release") && r.contains("--bin enoki"))
        .expect("builds the enoki binary");
    assert!(cook < build);
    // A non-root user, the port, the health check.
    let user = lines
        .iter()
        .rfind(|(k, _)| k == "USER")
        .map(|(_, v)| v.as_str());
    assert!(
        matches!(user, Some(u) if u != "root" && u != "0"),
        "runs as {user:?}"
    );
    let cmd = image_cmd();
    assert_accepted(&cmd);
    let port = listen_port(&cmd);
    let expose = lines
        .iter()
        .find(|(k, _)| k == "EXPOSE")
        .map(|(_, v)| v.as_str());
    assert_eq!(expose, Some(port.to_string().as_str()));
    let check = lines
        .iter()
        .find(|(k, _)| k == "HEALTHCHECK")
        .expect("a HEALTHCHECK");
    let form = &check.1[check.1.find('[').expect("exec form")..];
    assert_probe(&exec_form(form), port);
    // The binary copied into the image is the one built.
    assert!(
        lines
            .iter()
            .any(|(k, v)| k == "COPY" && v.contains("target/release/enoki"))
    );
}

#[test]
fn dockerignore_keeps_build_output_out_of_the_context() {
    let ignore = read(".dockerignore");
    let entries: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for wanted in ["target/", ".venv/", ".git/"] {
        assert!(
            entries.contains(&wanted),
            "{wanted} not ignored: {entries:?}"
        );
    }
    // Nothing the Dockerfile needs is ignored.
    for needed in [
        "Cargo.toml",
        "Cargo.lock",
        "src",
        "macros",
        "routes",
        "static",
    ] {
        assert!(
            !entries.iter().any(|e| e.trim_end_matches('/') == needed),
            "{needed} ignored"
        );
    }
}
