use enoki::prelude::*;

#[derive(Dependencies)]
struct Web;

#[service(name = "web")]
impl Web {
    #[http(FETCH, "/a")]
    async fn unknown_method(&self) {}

    #[http(GET, "a/{id}")]
    async fn relative(&self) {}

    #[http(GET, "/a/{id")]
    async fn unclosed(&self) {}

    #[http(GET, "/a/{*rest}/b")]
    async fn rest_not_last(&self) {}

    #[http(GET)]
    async fn no_path(&self) {}

    #[http(GET, "/b/{name}")]
    async fn borrowed(&self, name: &str) -> String {
        name.to_owned()
    }

    #[http(GET, "/c")]
    fn not_async(&self) {}
}

#[derive(Dependencies)]
struct NotExtractor;

#[service(name = "not_extractor")]
impl NotExtractor {
    #[http(GET, "/d")]
    async fn takes(&self, value: std::time::Instant) -> String {
        format!("{value:?}")
    }
}

fn main() {}
