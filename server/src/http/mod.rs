//! The HTTP API: thin handlers over the store and the services.
//!
//! **Architecture Invariant:** handlers never write SQL.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::metrics::Metrics;
use crate::store::Store;

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The store.
    pub store: Store,
    /// The metrics.
    pub metrics: Arc<Metrics>,
}

/// The application's routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn healthz(State(app): State<AppState>) -> impl IntoResponse {
    match app.store.counts().await {
        Ok(counts) => (
            StatusCode::OK,
            axum::Json(serde_json::json!({
                "status": "ok",
                "envelopes": counts.envelopes,
                "dead_letters": counts.dead_letters,
            })),
        ),
        Err(error) => {
            tracing::error!(%error, "Health check failed.");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(
                    serde_json::json!({"status": "unavailable", "reason": "the database does not answer"}),
                ),
            )
        }
    }
}

async fn metrics(State(app): State<AppState>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        app.metrics.render(),
    )
}
