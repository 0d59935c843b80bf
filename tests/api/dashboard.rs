//! The audience dashboard page: public, loading nothing from other origins,
//! and every file it references served with its content type.

use reqwest::StatusCode;
use reqwest::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, IF_NONE_MATCH,
    X_CONTENT_TYPE_OPTIONS,
};
use union360::http::dashboard;

use crate::helpers::spawn_app;

/// The values of the `src` and `href` attributes of `html`.
fn references(html: &str) -> Vec<String> {
    let mut found = Vec::new();
    for attribute in ["src=\"", "href=\""] {
        let mut rest = html;
        while let Some(start) = rest.find(attribute) {
            rest = &rest[start + attribute.len()..];
            let end = rest.find('"').unwrap();
            found.push(rest[..end].to_owned());
            rest = &rest[end..];
        }
    }
    found
}

/// The content type a file under `/dashboard/assets/` must be served with.
fn expected_type(path: &str) -> &'static str {
    let name = path.split('?').next().unwrap();
    if name.ends_with(".js") {
        "text/javascript"
    } else if name.ends_with(".css") {
        "text/css"
    } else {
        panic!("the dashboard references an asset of an unexpected kind: {path}")
    }
}

#[tokio::test]
async fn the_dashboard_is_public_and_serves_every_asset_it_references() {
    let app = spawn_app(crate::helpers::Backend::Sqlite).await;
    // No API key: the page and its files are public; the data is not.
    let browser = reqwest::Client::new();
    let response = browser
        .get(format!("{}/dashboard", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers().clone();
    assert!(
        headers[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html"),
        "{headers:?}"
    );
    let csp = headers[CONTENT_SECURITY_POLICY].to_str().unwrap();
    for directive in [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
    ] {
        assert!(
            csp.split(';').any(|d| d.trim() == directive),
            "{directive} in {csp}"
        );
    }
    assert!(
        !csp.contains("http") && !csp.contains('*') && !csp.contains("unsafe"),
        "the policy allows more than this server: {csp}"
    );
    assert_eq!(headers[X_CONTENT_TYPE_OPTIONS], "nosniff");
    let page = response.text().await.unwrap();
    for reference in references(&page) {
        assert!(
            reference.starts_with('/') && !reference.starts_with("//") || reference == "data:,",
            "the page references something outside this server: {reference}"
        );
    }

    let (missing, reason) = dashboard::missing_assets();
    if !missing.is_empty() {
        // The build could not fetch the charting library (no npm, or
        // UNION360_SKIP_NPM=1): the page must say so instead of the charts.
        assert!(page.contains("data-union360-assets-missing"), "{page}");
        for name in missing {
            assert!(page.contains(name), "{name} is not named on the page");
        }
        eprintln!(
            "skipping the dashboard's asset checks: this build could not embed {missing:?} ({reason})"
        );
        return;
    }

    let assets: Vec<String> = references(&page)
        .into_iter()
        .filter(|r| r.starts_with("/dashboard/assets/"))
        .collect();
    assert!(
        assets.iter().any(|a| a.contains("echarts.min.js")),
        "{assets:?}"
    );
    assert!(assets.iter().any(|a| a.contains(".css")), "{assets:?}");
    assert!(assets.len() >= 3, "{assets:?}");
    assert!(
        !page.contains("https://") && !page.contains("http://"),
        "the page names another origin"
    );
    for asset in &assets {
        let response = browser
            .get(format!("{}{asset}", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{asset}");
        let content_type = response.headers()[CONTENT_TYPE].to_str().unwrap();
        assert!(
            content_type.starts_with(expected_type(asset)),
            "{asset} is served as {content_type}"
        );
        assert_eq!(response.headers()[X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert!(
            !response.bytes().await.unwrap().is_empty(),
            "{asset} is empty"
        );
    }

    // The library is fingerprinted: cached for good, revalidated by ETag.
    let library = assets.iter().find(|a| a.contains("echarts")).unwrap();
    let response = browser
        .get(format!("{}{library}", app.address))
        .send()
        .await
        .unwrap();
    assert!(
        response.headers()[CACHE_CONTROL]
            .to_str()
            .unwrap()
            .contains("immutable")
    );
    let etag = response.headers()[ETAG].clone();
    let revalidated = browser
        .get(format!("{}{library}", app.address))
        .header(IF_NONE_MATCH, etag)
        .send()
        .await
        .unwrap();
    assert_eq!(revalidated.status(), StatusCode::NOT_MODIFIED);

    let unknown = browser
        .get(format!("{}/dashboard/assets/nothing.js", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_playground_links_to_the_dashboard() {
    let app = spawn_app(crate::helpers::Backend::Sqlite).await;
    let script = reqwest::Client::new()
        .get(format!(
            "{}/graphiql/assets/union360-graphiql.js",
            app.address
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(script.contains("href: '/dashboard'"), "{script}");
}
