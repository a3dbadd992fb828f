//! The embedded web front end: served at `/` and `/assets/*` with the right content types and
//! a restrictive Content-Security-Policy, without shadowing any API route.

use sqlx::PgPool;

use crate::helpers::TestApp;

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn the_page_and_its_assets_are_served_with_content_types_and_a_strict_csp(db: PgPool) {
    let app = TestApp::spawn(db).await;
    for (path, content_type, needle) in [
        ("/", "text/html; charset=utf-8", "<script type=\"module\" src=\"/assets/app.js\">"),
        ("/assets/app.js", "text/javascript; charset=utf-8", "EventSource"),
        ("/assets/api.js", "text/javascript; charset=utf-8", "sessionStorage"),
        ("/assets/style.css", "text/css; charset=utf-8", ":focus-visible"),
    ] {
        let res = app.get(path, None).await;
        res.assert_status(200);
        assert_eq!(res.header("content-type").as_deref(), Some(content_type), "{path}");
        let csp = res.header("content-security-policy").expect("a CSP");
        assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'"), "{csp}");
        assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{csp}");
        assert_eq!(res.header("x-content-type-options").as_deref(), Some("nosniff"));
        let body = res.0.text().await.expect("body");
        assert!(body.contains(needle), "{path} contains {needle}");
    }
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn an_unchanged_asset_is_a_304_for_its_etag(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let etag = app.get("/assets/app.js", None).await.header("etag").expect("an ETag");
    let res = app.client.get(app.url("/assets/app.js")).header("If-None-Match", &etag).send().await.expect("sent");
    assert_eq!(res.status(), 304);
}

#[sqlx::test(migrator = "seatgate::MIGRATOR")]
async fn unknown_paths_and_assets_still_get_the_apis_problem_404(db: PgPool) {
    let app = TestApp::spawn(db).await;
    for path in ["/assets/nope.js", "/nope", "/index.html", "/api/v1/nope", "/assets/../Cargo.toml"] {
        let problem = app.get(path, None).await.problem(404).await;
        assert_eq!(problem.code, "not_found", "{path}");
    }
    // API routes are untouched by the front end.
    let showtimes = app.get("/api/v1/showtimes", None).await;
    assert_eq!(showtimes.header("content-type").as_deref(), Some("application/json"));
    app.get("/openapi.json", None).await.assert_status(200);
}
