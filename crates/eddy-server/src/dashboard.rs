//! The web dashboard (the bundle `eddy-web` embeds) at `/`.
//!
//! - `/`, `/index.html` and every view's path (`/overview`, `/overview/`, `/devices/<id>`, …): `index.html`
//!   with `Cache-Control: no-cache` (revalidated with its ETag), so a deep link or a reload of
//!   a view opens the dashboard at that view (the client-side router shows it).
//! - `/assets/*`: the bundler's content-hashed files, `public, max-age=31536000, immutable`.
//! - Every answer: a strong ETag (`If-None-Match` → 304), the gzip copy when the client
//!   accepts it (`Vary: Accept-Encoding`), and the security headers of [`SECURITY_HEADERS`]:
//!   a Content-Security-Policy that admits only the dashboard's own scripts, styles and
//!   connections (no inline code), no framing, no referrer, no MIME sniffing.
//!
//! The dashboard talks to the same HTTP API as every client (with the key the user signs in
//! with); these routes are public files, with no key and outside the OpenAPI document.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use eddy_web::{Asset, Assets, HASHED_PREFIX, INDEX};

use crate::state::AppState;

/// The client-side views: each path (and any path below it) answers `index.html`.
pub(crate) const VIEWS: &[&str] = &["overview", "devices", "alerts", "analytics", "sql", "admin"];

/// The policy every dashboard answer carries. `connect-src 'self'` covers the API and the
/// WebSocket of the same origin (CSP Level 3 matches `ws:`/`wss:` of the page's host);
/// `img-src data:` is for the inline SVG favicon.
pub(crate) const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
connect-src 'self'; img-src 'self' data:; font-src 'self'; object-src 'none'; \
base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Headers on every dashboard answer, 304s included.
pub(crate) const SECURITY_HEADERS: &[(&str, &str)] = &[
    ("content-security-policy", CSP),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("cross-origin-opener-policy", "same-origin"),
];

const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const REVALIDATE: &str = "no-cache";

/// The dashboard's routes, merged into the API router before its fallback.
pub(crate) fn router() -> Router<AppState> {
    let assets = Arc::new(Assets::load());
    let index = {
        let assets = assets.clone();
        move |headers: HeaderMap| {
            let assets = assets.clone();
            async move { serve(assets.index(), &headers) }
        }
    };
    let mut r = Router::new()
        .route("/", get(index.clone()))
        .route(&format!("/{INDEX}"), get(index.clone()));
    for view in VIEWS {
        // `/devices`, `/devices/` (a typed or bookmarked trailing slash) and `/devices/<id>…`.
        r = r
            .route(&format!("/{view}"), get(index.clone()))
            .route(&format!("/{view}/"), get(index.clone()))
            .route(&format!("/{view}/{{*rest}}"), get(index.clone()));
    }
    r.route(
        "/assets/{*path}",
        get(move |Path(path): Path<String>, headers: HeaderMap| {
            let assets = assets.clone();
            async move { serve(assets.get(&format!("{HASHED_PREFIX}{path}")), &headers) }
        }),
    )
}

/// One file as an HTTP answer: 404 (Eddy's JSON error) when it is not in the bundle.
fn serve(asset: Option<&Asset>, req: &HeaderMap) -> Response {
    let Some(asset) = asset else {
        return crate::Error::from(eddy_service::Error::NotFound(format!(
            "no such file in the dashboard (it has {INDEX} and {HASHED_PREFIX}*)"
        )))
        .into_response();
    };
    let mut headers = HeaderMap::new();
    for (name, value) in SECURITY_HEADERS {
        headers.insert(*name, HeaderValue::from_static(value));
    }
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(if asset.immutable {
            IMMUTABLE
        } else {
            REVALIDATE
        }),
    );
    if let Ok(etag) = HeaderValue::from_str(&asset.etag) {
        headers.insert(header::ETAG, etag);
    }
    headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    if none_match(req, &asset.etag) {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    if let Ok(ct) = HeaderValue::from_str(&asset.content_type) {
        headers.insert(header::CONTENT_TYPE, ct);
    }
    let body = match &asset.gzip {
        Some(gz) if accepts_gzip(req) => {
            headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            gz.clone()
        }
        _ => asset.body.clone(),
    };
    (StatusCode::OK, headers, Body::from(body)).into_response()
}

/// `If-None-Match` lists `etag` (or is `*`): the client's copy is current.
fn none_match(req: &HeaderMap, etag: &str) -> bool {
    req.get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == "*" || t == etag)
}

/// `Accept-Encoding` names `gzip` (or `*`) with a non-zero quality.
fn accepts_gzip(req: &HeaderMap) -> bool {
    req.get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && q > 0.0
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(name: header::HeaderName, v: &'static str) -> HeaderMap {
        let mut m = HeaderMap::new();
        m.insert(name, HeaderValue::from_static(v));
        m
    }

    #[test]
    fn gzip_is_chosen_by_quality() {
        assert!(accepts_gzip(&h(
            header::ACCEPT_ENCODING,
            "gzip, deflate, br"
        )));
        assert!(accepts_gzip(&h(
            header::ACCEPT_ENCODING,
            "br;q=1.0, GZIP;q=0.5"
        )));
        assert!(accepts_gzip(&h(header::ACCEPT_ENCODING, "*")));
        assert!(!accepts_gzip(&h(header::ACCEPT_ENCODING, "gzip;q=0, br")));
        assert!(!accepts_gzip(&h(header::ACCEPT_ENCODING, "identity")));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[test]
    fn if_none_match_lists_and_wildcards() {
        let tag = "\"abc\"";
        assert!(none_match(&h(header::IF_NONE_MATCH, "\"x\", \"abc\""), tag));
        assert!(none_match(&h(header::IF_NONE_MATCH, "W/\"abc\""), tag));
        assert!(none_match(&h(header::IF_NONE_MATCH, "*"), tag));
        assert!(!none_match(&h(header::IF_NONE_MATCH, "\"abcd\""), tag));
        assert!(!none_match(&HeaderMap::new(), tag));
    }
}
