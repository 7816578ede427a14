//! The expansion names only absolute paths: it compiles in a module without
//! the prelude, next to items that shadow common names.

#![allow(dead_code, non_camel_case_types)]

mod service {
    #![no_implicit_prelude]

    // Shadow what generated code might otherwise pick up.
    struct Result;
    struct Option;
    struct Vec;
    struct Box;
    struct String;
    struct Default;
    const method: () = ();
    const payload: () = ();
    const ctx: () = ();
    const args: () = ();
    mod enoki {}

    #[derive(::enoki::Dependencies)]
    pub struct Quiet {
        #[dependency(::enoki::Config)]
        config: ::enoki::Settings,
    }

    #[::enoki::service(name = "quiet")]
    impl Quiet {
        #[rpc]
        async fn echo(
            &self,
            text: ::std::string::String,
            maybe: ::std::option::Option<u8>,
        ) -> ::core::result::Result<::std::string::String, ::enoki::RemoteError> {
            let _ = maybe;
            ::core::result::Result::Ok(text)
        }

        #[event_handler("a", "b")]
        async fn on_b(&self, _value: u8, _context: &::enoki::WorkerCtx) -> ::enoki::Result<()> {
            ::core::result::Result::Ok(())
        }

        #[timer(interval = 1)]
        async fn tick(&self) -> ::core::result::Result<(), ::enoki::RemoteError> {
            ::core::result::Result::Ok(())
        }
    }
}

fn main() {
    let _ = enoki::service::<service::Quiet>();
    let _ = service::QuietClient::SERVICE;
}
