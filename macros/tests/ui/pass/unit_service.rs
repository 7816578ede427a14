//! A unit struct service, driven through the generated `dispatch`.

use enoki::context::ContextData;
use enoki::prelude::*;
use serde_json::{Value, json};

#[derive(Dependencies)]
struct Calculator;

#[service(name = "calculator")]
impl Calculator {
    #[rpc]
    async fn add(&self, a: i64, b: Option<i64>) -> Result<i64, RemoteError> {
        Ok(a + b.unwrap_or(10))
    }

    #[rpc]
    async fn whoami(&self, ctx: &WorkerCtx) -> Result<String, RemoteError> {
        Ok(ctx.service_name().to_owned())
    }

    #[event_handler("src", "evt")]
    async fn on_event(&self, payload: Vec<u8>) -> Result<usize, RemoteError> {
        Ok(payload.len())
    }

    #[timer(interval = 1)]
    async fn tick(&self) -> Result<&'static str, RemoteError> {
        Ok("tock")
    }
}

fn call(method: &str, payload: &str) -> Result<Value, RemoteError> {
    let ctx = WorkerCtx::new("calculator", method, ContextData::default(), 10);
    let outcome =
        futures::executor::block_on(Calculator.dispatch(method, payload.as_bytes(), &ctx));
    outcome.map(|raw| serde_json::from_str(raw.get()).unwrap())
}

fn main() {
    assert_eq!(
        call("add", r#"{"args": [1, 2], "kwargs": {}}"#).unwrap(),
        json!(3)
    );
    assert_eq!(
        call("add", r#"{"args": [], "kwargs": {"a": 1}}"#).unwrap(),
        json!(11)
    );
    let err = call("add", r#"{"args": [], "kwargs": {}}"#).unwrap_err();
    assert_eq!(
        err.value,
        "add() missing 1 required positional argument: 'a'"
    );
    assert_eq!(
        call("whoami", r#"{"args": [], "kwargs": {}}"#).unwrap(),
        json!("calculator")
    );
    let err = call("whoami", r#"{"args": [1], "kwargs": {}}"#).unwrap_err();
    assert_eq!(err.exc_type, "IncorrectSignature");
    assert_eq!(call("on_event", "[1, 2, 3]").unwrap(), json!(3));
    assert_eq!(call("tick", "").unwrap(), json!("tock"));
    let err = call("nope", "").unwrap_err();
    assert_eq!(err.exc_type, "MethodNotFound");

    let _ = enoki::service::<Calculator>();
    let _ = Calculator::providers();
}
