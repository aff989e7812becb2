//! The one error that becomes an HTTP response, with a stable JSON body:
//! `{"error": {"status": 404, "code": "not_found", "message": "vehicle LSV... not found"}}`.
//! `code` values are part of the API and never change meaning; a 5xx says nothing about
//! internals, and its cause is logged in the request's span.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::service::access::AccessError;
use crate::service::filter::FilterError;
use crate::service::read::ReadError;
use crate::store::StoreError;

/// An API error.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed (JSON, query, fields).
    #[error("{0}")]
    BadRequest(String),
    /// The label filter is not one.
    #[error(transparent)]
    Filter(#[from] FilterError),
    /// No or an invalid API key.
    #[error("a valid API key is needed: send `Authorization: Bearer dt_...`")]
    Unauthorized,
    /// The key's role may not do this.
    #[error("this API key may not {0}")]
    Forbidden(&'static str),
    /// Nothing the caller may see has that id.
    #[error("{what} {id} not found")]
    NotFound {
        /// What was looked for.
        what: &'static str,
        /// Its id.
        id: String,
    },
    /// The body is larger than allowed.
    #[error("the request body is larger than {0} bytes")]
    TooLarge(usize),
    /// The body is not the expected media type.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// Too many requests for this key.
    #[error("too many requests for this API key; slow down")]
    RateLimited,
    /// Something failed on the server.
    #[error("internal error")]
    Internal(String),
}

/// The JSON body of every error.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// The HTTP status.
    pub status: u16,
    /// A stable code: bad_request, invalid_filter, unauthorized, forbidden, not_found,
    /// payload_too_large, unsupported_media_type, rate_limited, internal.
    pub code: &'static str,
    /// What happened, for people.
    pub message: String,
}

impl ApiError {
    fn status_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::Filter(_) => (StatusCode::BAD_REQUEST, "invalid_filter"),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound { .. } => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            ApiError::RateLimited => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    /// A not-found error.
    pub fn not_found(what: &'static str, id: impl Into<String>) -> ApiError {
        ApiError::NotFound {
            what,
            id: id.into(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        ApiError::Internal(error.to_string())
    }
}

impl From<ReadError> for ApiError {
    fn from(error: ReadError) -> Self {
        match error {
            ReadError::Filter(error) => ApiError::Filter(error),
            ReadError::Store(error) => ApiError::from(error),
        }
    }
}

impl From<AccessError> for ApiError {
    fn from(error: AccessError) -> Self {
        match error {
            AccessError::Invalid => ApiError::Unauthorized,
            AccessError::Store(error) => ApiError::from(error),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_code();
        if let ApiError::Internal(cause) = &self {
            tracing::error!(%cause, "Request failed.");
        }
        let body = ErrorBody {
            error: ErrorDetail {
                status: status.as_u16(),
                code,
                message: self.to_string(),
            },
        };
        (status, Json(body)).into_response()
    }
}
