//! The HTTP API: thin handlers over the service layer, documented by OpenAPI from the code.
//!
//! **Architecture Invariant:** handlers never write SQL; every read takes the [`Caller`] the
//! [`Auth`] extractor produced, so no route can forget the tenant.

mod error;
mod routes;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderName, Request};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

pub use error::{ApiError, ErrorBody};

use crate::metrics::Metrics;
use crate::service::access::{Caller, Keys};
use crate::store::Store;

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The store.
    pub store: Store,
    /// The metrics.
    pub metrics: Arc<Metrics>,
    /// API keys.
    pub keys: Arc<Keys>,
    /// Requests per key.
    pub limiter: Arc<DefaultKeyedRateLimiter<String>>,
}

impl AppState {
    /// State over `store` allowing each key `per_second` requests (bursts of twice that).
    pub fn new(store: Store, metrics: Arc<Metrics>, per_second: u32) -> AppState {
        let rate = NonZeroU32::new(per_second.max(1)).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(per_second.max(1).saturating_mul(2)).unwrap_or(NonZeroU32::MIN);
        AppState {
            store,
            metrics,
            keys: Arc::new(Keys::default()),
            limiter: Arc::new(RateLimiter::keyed(
                Quota::per_second(rate).allow_burst(burst),
            )),
        }
    }
}

/// The caller of a request, from `Authorization: Bearer dt_...`, within its rate limit.
#[derive(Debug, Clone)]
pub struct Auth(pub Caller);

impl<S> FromRequestParts<S> for Auth
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let app = AppState::from_ref(state);
        let key = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .ok_or(ApiError::Unauthorized)?;
        let caller = app.keys.verify(&app.store, key.trim()).await?;
        if app.limiter.check_key(&caller.key_id).is_err() {
            return Err(ApiError::RateLimited);
        }
        Ok(Auth(caller))
    }
}

/// The application's routes and their OpenAPI document.
pub fn router(state: AppState) -> Router {
    let (api, openapi) = routes::api().split_for_parts();
    let openapi = Arc::new(openapi);
    let request_id = HeaderName::from_static("x-request-id");
    api.route(
        "/api/v1/openapi.json",
        axum::routing::get(move || {
            let openapi = openapi.clone();
            async move { axum::Json(openapi.as_ref().clone()) }
        }),
    )
    .with_state(state)
    .layer(
        TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
            let id = request
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-");
            tracing::info_span!("request", method = %request.method(), uri = %request.uri(), request_id = %id)
        }),
    )
    .layer(PropagateRequestIdLayer::new(request_id.clone()))
    .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
    .layer(tower_http::timeout::TimeoutLayer::with_status_code(
        axum::http::StatusCode::REQUEST_TIMEOUT,
        Duration::from_secs(300),
    ))
}

/// The OpenAPI document, as served at `/api/v1/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes::api().split_for_parts().1
}
