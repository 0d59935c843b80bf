//! `/healthz` and `/readyz`.

use crate::helpers::{Backend, spawn_app};

#[tokio::test]
async fn health_and_readiness_answer_200() {
    let app = spawn_app(Backend::Sqlite).await;
    for path in ["/healthz", "/readyz"] {
        let response = app
            .client
            .get(format!("{}{path}", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
}
