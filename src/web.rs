//! The web front end: a small single-page app in `web/` (plain JavaScript modules, no build
//! step), embedded in the binary at compile time and served at `/` and `/assets/*`. Pages are
//! hash routes (`/#/showtime/<id>`), so the front end owns exactly these two paths and can never
//! shadow an API route; any other unknown path still gets the API's problem+json 404.
//!
//! Every answer carries a restrictive Content-Security-Policy: scripts, styles and connections
//! from this origin only, no inline script, no framing.

use std::sync::LazyLock;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, get, web};
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// The policy of every front-end answer.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
    etag: String,
}

fn asset(name: &'static str, content_type: &'static str, body: &'static str) -> Asset {
    let etag = format!("\"{}\"", &hex::encode(Sha256::digest(body.as_bytes()))[..20]);
    Asset { name, content_type, body, etag }
}

static INDEX: LazyLock<Asset> =
    LazyLock::new(|| asset("index.html", "text/html; charset=utf-8", include_str!("../web/index.html")));

static ASSETS: LazyLock<Vec<Asset>> = LazyLock::new(|| {
    vec![
        asset("app.js", "text/javascript; charset=utf-8", include_str!("../web/app.js")),
        asset("api.js", "text/javascript; charset=utf-8", include_str!("../web/api.js")),
        asset("style.css", "text/css; charset=utf-8", include_str!("../web/style.css")),
    ]
});

fn serve(req: &HttpRequest, asset: &Asset) -> HttpResponse {
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|t| t.trim() == asset.etag));
    let mut res = if fresh { HttpResponse::NotModified() } else { HttpResponse::Ok() };
    res.insert_header((header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY)))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")))
        .insert_header((header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")))
        .insert_header((header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")))
        // Revalidate every time (cheap with the ETag), so a new deploy is picked up at once.
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-cache")))
        .insert_header((header::ETAG, asset.etag.clone()));
    if fresh {
        return res.finish();
    }
    res.content_type(asset.content_type).body(asset.body)
}

/// The single page.
#[get("/")]
pub async fn index(req: HttpRequest) -> HttpResponse {
    serve(&req, &INDEX)
}

/// Scripts and styles of the page.
#[get("/assets/{name}")]
pub async fn assets(req: HttpRequest, name: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let asset = ASSETS.iter().find(|a| a.name == name.as_str()).ok_or(ApiError::NotFound("no such resource"))?;
    Ok(serve(&req, asset))
}

/// Registers the front end's two routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(index).service(assets);
}
