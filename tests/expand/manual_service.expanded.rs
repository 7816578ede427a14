// The expansion of `tests/expand/manual_service.rs`, checked by macros/src/snapshots.rs.
// Regenerate: ENOKI_BLESS=1 cargo test -p enoki-macros snapshots

use enoki::prelude::*;
/// The service struct: its fields are its dependencies.
#[derive(Debug)]
pub struct ManualService {
    config: Settings,
}
impl ::enoki::Dependencies for ManualService {
    fn providers() -> ::enoki::ProviderSet {
        let __provider_0 = <Config as ::core::default::Default>::default();
        ::enoki::__private::assert_provides::<_, Settings>(&__provider_0);
        ::enoki::ProviderSet::new().with("config", __provider_0)
    }
    #[allow(unused_variables)]
    fn inject(
        __providers: &::enoki::ProviderSet,
        __worker: &::enoki::WorkerCtx,
    ) -> Self {
        Self {
            config: __providers.get(0, __worker),
        }
    }
}
impl ManualService {
    /// Adds two numbers.
    pub async fn add(&self, a: i64, b: i64) -> Result<i64, RemoteError> {
        a.checked_add(b)
            .ok_or_else(|| RemoteError::new("OverflowError", "integer overflow"))
    }
    /// Greets someone, with an optional greeting.
    pub async fn greet(
        &self,
        name: String,
        greeting: Option<String>,
    ) -> Result<String, RemoteError> {
        let greeting = greeting.unwrap_or_else(|| "Hello".to_owned());
        Ok(format!("{greeting}, {name}!"))
    }
    /// Who called, as the worker context tells: call-id stack, context data
    /// and the RPC exchange from the config.
    pub async fn whoami(
        &self,
        ctx: &WorkerCtx,
    ) -> Result<serde_json::Value, RemoteError> {
        Ok(
            serde_json::json!(
                { "call_id_stack" : ctx.call_id_stack(), "context_data" : ctx
                .context_data(), "rpc_exchange" : self.config.rpc_exchange(), }
            ),
        )
    }
}
impl ::enoki::Service for ManualService {
    const NAME: &'static str = "manual_service";
    fn entrypoints() -> ::std::vec::Vec<::enoki::__private::EntrypointSpec> {
        ::std::vec![
            ::enoki::__private::EntrypointSpec::rpc("add"),
            ::enoki::__private::EntrypointSpec::rpc("greet"),
            ::enoki::__private::EntrypointSpec::rpc("whoami")
        ]
    }
    fn schemas() -> ::std::vec::Vec<::enoki::__private::MethodSchema> {
        #[allow(unused_imports)]
        use ::enoki::__private::{ViaAny as _, ViaJsonSchema as _};
        ::std::vec![
            ::enoki::__private::MethodSchema::new("add", & [" Adds two numbers."],
            ::std::vec![("a", true, (& ::enoki::__private::SchemaProbe:: < i64 > ::new())
            .probe()), ("b", true, (& ::enoki::__private::SchemaProbe:: < i64 > ::new())
            .probe())], (& ::enoki::__private::SchemaProbe:: < i64 > ::new()).probe(),),
            ::enoki::__private::MethodSchema::new("greet", &
            [" Greets someone, with an optional greeting."], ::std::vec![("name", true,
            (& ::enoki::__private::SchemaProbe:: < String > ::new()).probe()),
            ("greeting", false, (& ::enoki::__private::SchemaProbe:: < Option < String >
            > ::new()).probe())], (& ::enoki::__private::SchemaProbe:: < String >
            ::new()).probe(),), ::enoki::__private::MethodSchema::new("whoami", &
            [" Who called, as the worker context tells: call-id stack, context data",
            " and the RPC exchange from the config."], ::std::vec![], (&
            ::enoki::__private::SchemaProbe:: < serde_json::Value > ::new()).probe(),)
        ]
    }
    #[allow(unused_variables)]
    async fn dispatch(
        &self,
        __method: &::core::primitive::str,
        __payload: &[::core::primitive::u8],
        __ctx: &::enoki::WorkerCtx,
    ) -> ::enoki::__private::Outcome {
        match __method {
            "add" => {
                const PARAMS: &[::enoki::__private::Param] = &[
                    ::enoki::__private::Param {
                        name: "a",
                        required: true,
                    },
                    ::enoki::__private::Param {
                        name: "b",
                        required: true,
                    },
                ];
                let __args = ::enoki::__private::Args::bind("add", __payload, PARAMS)?;
                let __returned = self.add(__args.get(0)?, __args.get(1)?).await;
                ::enoki::__private::IntoOutcome::into_outcome(__returned)
            }
            "greet" => {
                const PARAMS: &[::enoki::__private::Param] = &[
                    ::enoki::__private::Param {
                        name: "name",
                        required: true,
                    },
                    ::enoki::__private::Param {
                        name: "greeting",
                        required: false,
                    },
                ];
                let __args = ::enoki::__private::Args::bind("greet", __payload, PARAMS)?;
                let __returned = self.greet(__args.get(0)?, __args.get(1)?).await;
                ::enoki::__private::IntoOutcome::into_outcome(__returned)
            }
            "whoami" => {
                const PARAMS: &[::enoki::__private::Param] = &[];
                ::enoki::__private::Args::bind("whoami", __payload, PARAMS)?;
                let __returned = self.whoami(__ctx).await;
                ::enoki::__private::IntoOutcome::into_outcome(__returned)
            }
            __other => {
                ::core::result::Result::Err(
                    ::enoki::RemoteError::method_not_found(__other),
                )
            }
        }
    }
}
/** A typed client of the `manual_service` service: one method per `#[rpc]` of `ManualService`.

 Generated by `#[service]`.*/
#[derive(::core::fmt::Debug, ::core::clone::Clone)]
#[allow(dead_code, unreachable_pub)]
pub struct ManualServiceClient {
    rpc: ::enoki::ClusterRpc,
}
#[allow(dead_code, unreachable_pub, private_interfaces)]
impl ManualServiceClient {
    /// The service name, `manual_service`.
    pub const SERVICE: &'static str = "manual_service";
    /// A client calling through `rpc`.
    pub fn new(rpc: impl ::core::convert::AsRef<::enoki::ClusterRpc>) -> Self {
        ManualServiceClient {
            rpc: ::core::clone::Clone::clone(
                <_ as ::core::convert::AsRef<::enoki::ClusterRpc>>::as_ref(&rpc),
            ),
        }
    }
    /// Adds two numbers.
    ///
    /// Calls `manual_service.add`.
    pub async fn add(&self, a: i64, b: i64) -> ::enoki::Result<i64> {
        self.rpc.call_typed(Self::SERVICE, "add", &(a, b)).await
    }
    /// Greets someone, with an optional greeting.
    ///
    /// Calls `manual_service.greet`.
    pub async fn greet(
        &self,
        name: String,
        greeting: Option<String>,
    ) -> ::enoki::Result<String> {
        self.rpc.call_typed(Self::SERVICE, "greet", &(name, greeting)).await
    }
    /// Who called, as the worker context tells: call-id stack, context data
    /// and the RPC exchange from the config.
    ///
    /// Calls `manual_service.whoami`.
    pub async fn whoami(&self) -> ::enoki::Result<serde_json::Value> {
        self.rpc.call_typed(Self::SERVICE, "whoami", &[(); 0]).await
    }
}
