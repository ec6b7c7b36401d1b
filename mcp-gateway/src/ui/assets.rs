//! The dashboard's files, embedded at build time: nothing is fetched at run time (clusters are often offline) and
//! nothing is built but the binary (plain HTML, one ES module, CSS; see docs/architecture.md for why).

use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use http::{StatusCode, header};

const INDEX: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/style.css");

/// The embedded files by name, with their content types.
pub fn lookup(name: &str) -> Option<(&'static str, &'static str)> {
    Some(match name {
        "" | "index.html" => (INDEX, "text/html; charset=utf-8"),
        "app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        "style.css" => (STYLE, "text/css; charset=utf-8"),
        _ => return None,
    })
}

fn serve(name: &str) -> Response {
    match lookup(name) {
        Some((body, content_type)) => (
            [
                (header::CONTENT_TYPE, content_type),
                // Same URL, new binary: the browser asks again rather than running an old page against a new API.
                (header::CACHE_CONTROL, "no-cache"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                (
                    header::CONTENT_SECURITY_POLICY,
                    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; connect-src 'self'",
                ),
            ],
            body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such dashboard file").into_response(),
    }
}

pub async fn index() -> Response {
    serve("")
}

pub async fn file(Path(name): Path<String>) -> Response {
    serve(&name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_embedded_files() {
        assert!(lookup("app.js").is_some() && lookup("style.css").is_some());
        assert!(lookup("../Cargo.toml").is_none());
        // Every script and stylesheet of the page is one of ours: nothing from the internet.
        for needle in ["http://", "https://"] {
            assert!(!INDEX.contains(needle), "index.html refers to {needle}");
            assert!(!APP_JS.contains(needle), "app.js refers to {needle}");
        }
        assert!(INDEX.contains("src=\"app.js\"") && INDEX.contains("href=\"style.css\""));
    }
}
