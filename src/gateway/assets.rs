//! The page: `static/` from disk when there is one, else the copy built
//! into the binary; and the JSON 404 for everything else.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

pub(crate) async fn not_found(uri: axum::http::Uri) -> Response {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("no route for {}", uri.path()),
    )
    .into_response()
}

/// The page, built in, for when there is no `static/` directory.
pub(crate) async fn embedded_static(uri: axum::http::Uri) -> Response {
    let (body, content_type) = match uri.path() {
        "/" | "/index.html" => (
            include_str!("../../static/index.html"),
            "text/html; charset=utf-8",
        ),
        "/app.js" => (
            include_str!("../../static/app.js"),
            "text/javascript; charset=utf-8",
        ),
        "/style.css" => (
            include_str!("../../static/style.css"),
            "text/css; charset=utf-8",
        ),
        "/PROTOCOL.md" => (
            include_str!("../../static/PROTOCOL.md"),
            "text/markdown; charset=utf-8",
        ),
        _ => {
            return ApiError::new(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("no route for {}", uri.path()),
            )
            .into_response();
        }
    };
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}
