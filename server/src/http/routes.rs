//! The routes under `/api/v1`, each a thin handler over the service layer.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use utoipa::{IntoParams, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiError, AppState, Auth, ErrorBody};
use crate::import;
use crate::service::export::{Export, Format};
use crate::service::read::{
    CustomerLabels, CustomerView, DeadLetterView, Page, VehicleDetail, VehicleSummary,
};
use crate::store::{CampaignResponse, Import};

/// Largest JSON body, bytes.
pub const JSON_LIMIT: usize = 64 * 1024;
/// Largest CSV import, bytes.
pub const CSV_LIMIT: usize = 64 * 1024 * 1024;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "drivetag",
        description = "Customer labels and aftermarket strategies from vehicle telematics. Every route but /healthz, /metrics and this document needs `Authorization: Bearer <API key>`."
    ),
    components(schemas(ErrorBody))
)]
struct ApiDoc;

/// The documented routes.
pub fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(healthz))
        .routes(routes!(metrics))
        .routes(routes!(list_vehicles))
        .routes(routes!(get_vehicle))
        .routes(routes!(list_customers))
        .routes(routes!(get_customer))
        .routes(routes!(get_customer_labels))
        .routes(routes!(post_response))
        .routes(routes!(label_distribution))
        .routes(routes!(dead_letters))
        .routes(routes!(export_csv))
        .routes(routes!(export_ndjson))
        .routes(routes!(post_import))
        .layer(DefaultBodyLimit::max(CSV_LIMIT))
}

/// Query parameters, refused with a clear 400 when malformed or unknown.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|rejection: QueryRejection| ApiError::BadRequest(rejection.body_text()))
    }
}

/// A JSON body, refused with a clear 4xx when malformed, unknown fields or too large.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let is_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        if !is_json {
            return Err(ApiError::UnsupportedMediaType(
                "send the body as application/json".into(),
            ));
        }
        let bytes = axum::body::to_bytes(request.into_body(), JSON_LIMIT)
            .await
            .map_err(|_| ApiError::TooLarge(JSON_LIMIT))?;
        serde_json::from_slice(&bytes)
            .map(ApiJson)
            .map_err(|error| ApiError::BadRequest(format!("the JSON body: {error}")))
    }
}

/// A list query.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Label filter, e.g. `lifecycle=lost AND style=aggressive`.
    label: Option<String>,
    /// Start after this id (the `next` of the previous page).
    after: Option<String>,
    /// Items per page, 1-500 (default 50).
    limit: Option<usize>,
}

/// An export query.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// Label filter, e.g. `lifecycle=lost AND style=aggressive`.
    label: Option<String>,
}

/// A dead-letter page query.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeadLetterQuery {
    /// Start before this id (the `next` of the previous page).
    before: Option<i64>,
    /// Items per page, 1-500 (default 50).
    limit: Option<usize>,
}

/// A campaign response to record (the closed loop: responses feed the next labelling).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResponseBody {
    /// The campaign's name.
    campaign: String,
    /// The channel it went out on: push, sms, wechat, email, phone or mail.
    channel: String,
    /// When it was sent, YYYY-MM-DD.
    sent_date: String,
    /// Whether the customer responded.
    responded: bool,
}

/// The outcome of an import.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportReport {
    /// Rows imported.
    imported: usize,
    /// Rows refused, with their line and reason.
    skipped: Vec<SkippedRow>,
}

/// A refused row.
#[derive(Debug, Serialize, ToSchema)]
pub struct SkippedRow {
    /// Its line in the file.
    line: u64,
    /// Why.
    reason: String,
}

/// Health.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`.
    status: &'static str,
    /// Envelopes stored.
    envelopes: u64,
    /// Dead letters kept.
    dead_letters: u64,
}

#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = Health), (status = 500, body = ErrorBody)))]
async fn healthz(State(app): State<AppState>) -> Result<Json<Health>, ApiError> {
    let counts = app.store.counts().await?;
    Ok(Json(Health {
        status: "ok",
        envelopes: counts.envelopes,
        dead_letters: counts.dead_letters,
    }))
}

#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
async fn metrics(State(app): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.metrics.render(),
    )
}

#[utoipa::path(get, path = "/api/v1/vehicles", tag = "vehicles", params(ListQuery),
    responses((status = 200, body = Page<VehicleSummary>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn list_vehicles(
    Auth(caller): Auth,
    State(app): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Page<VehicleSummary>>, ApiError> {
    Ok(Json(
        app.store
            .list_vehicles(
                &caller,
                q.label.as_deref(),
                q.after.as_deref(),
                q.limit.unwrap_or(50),
            )
            .await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/vehicles/{vin}", tag = "vehicles", params(("vin" = String, Path, description = "Vehicle identification number")),
    responses((status = 200, body = VehicleDetail), (status = 404, body = ErrorBody)))]
async fn get_vehicle(
    Auth(caller): Auth,
    State(app): State<AppState>,
    Path(vin): Path<String>,
) -> Result<Json<VehicleDetail>, ApiError> {
    app.store
        .vehicle_detail(&caller, &vin)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("vehicle", vin))
}

#[utoipa::path(get, path = "/api/v1/customers", tag = "customers", params(ListQuery),
    responses((status = 200, body = Page<CustomerView>), (status = 400, body = ErrorBody)))]
async fn list_customers(
    Auth(caller): Auth,
    State(app): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Page<CustomerView>>, ApiError> {
    Ok(Json(
        app.store
            .list_customers(
                &caller,
                q.label.as_deref(),
                q.after.as_deref(),
                q.limit.unwrap_or(50),
            )
            .await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/customers/{id}", tag = "customers", params(("id" = String, Path, description = "Customer id")),
    responses((status = 200, body = CustomerView), (status = 404, body = ErrorBody)))]
async fn get_customer(
    Auth(caller): Auth,
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<CustomerView>, ApiError> {
    app.store
        .customer(&caller, &id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("customer", id))
}

#[utoipa::path(get, path = "/api/v1/customers/{id}/labels", tag = "customers", params(("id" = String, Path, description = "Customer id")),
    responses((status = 200, body = CustomerLabels, description = "Each vehicle's labels with explanations and next-best actions"), (status = 404, body = ErrorBody)))]
async fn get_customer_labels(
    Auth(caller): Auth,
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<CustomerLabels>, ApiError> {
    app.store
        .customer_labels(&caller, &id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("customer", id))
}

#[utoipa::path(post, path = "/api/v1/customers/{id}/responses", tag = "customers", params(("id" = String, Path, description = "Customer id")),
    request_body = ResponseBody,
    responses((status = 201, description = "Recorded"), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody)))]
async fn post_response(
    Auth(caller): Auth,
    State(app): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ResponseBody>,
) -> Result<StatusCode, ApiError> {
    if app.store.customer(&caller, &id).await?.is_none() {
        return Err(ApiError::not_found("customer", id));
    }
    if !crate::labels::rules::CHANNELS.contains(&body.channel.as_str()) {
        return Err(ApiError::BadRequest(format!(
            "channel {:?} is not push, sms, wechat, email, phone or mail",
            body.channel
        )));
    }
    if crate::store::registry::day_number(&body.sent_date).is_none() {
        return Err(ApiError::BadRequest(format!(
            "sent_date {:?} is not a date (YYYY-MM-DD)",
            body.sent_date
        )));
    }
    if body.campaign.trim().is_empty() || body.campaign.len() > 200 {
        return Err(ApiError::BadRequest(
            "campaign must be 1 to 200 characters".into(),
        ));
    }
    app.store
        .import(&Import::CampaignResponses(vec![CampaignResponse {
            customer_id: id,
            campaign: body.campaign,
            channel: body.channel,
            sent_date: body.sent_date,
            responded: body.responded,
        }]))
        .await?;
    Ok(StatusCode::CREATED)
}

#[utoipa::path(get, path = "/api/v1/stores/{id}/label-distribution", tag = "stores", params(("id" = i64, Path, description = "Store id")),
    responses((status = 200, description = "Vehicles per label, by group", body = BTreeMap<String, BTreeMap<String, i64>>), (status = 404, body = ErrorBody)))]
async fn label_distribution(
    Auth(caller): Auth,
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<BTreeMap<String, BTreeMap<String, i64>>>, ApiError> {
    let store_id: i64 = id
        .parse()
        .map_err(|_| ApiError::not_found("store", id.clone()))?;
    app.store
        .label_distribution(&caller, store_id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("store", id))
}

#[utoipa::path(get, path = "/api/v1/dead-letters", tag = "operations", params(DeadLetterQuery),
    responses((status = 200, body = Page<DeadLetterView>), (status = 403, body = ErrorBody)))]
async fn dead_letters(
    Auth(caller): Auth,
    State(app): State<AppState>,
    ApiQuery(q): ApiQuery<DeadLetterQuery>,
) -> Result<Json<Page<DeadLetterView>>, ApiError> {
    if !caller.is_admin() {
        return Err(ApiError::Forbidden("read dead letters (admin only)"));
    }
    Ok(Json(
        app.store
            .dead_letter_page(q.before, q.limit.unwrap_or(50))
            .await?,
    ))
}

async fn export(
    caller: crate::service::access::Caller,
    app: AppState,
    label: Option<String>,
    format: Format,
) -> Result<Response, ApiError> {
    let export = Export::start(app.store.clone(), caller, label, format).await?;
    let stream = futures::stream::unfold(Some(export), |state| async move {
        let mut export = state?;
        match export.next_chunk().await {
            Ok(Some(chunk)) => Some((
                Ok::<Bytes, std::io::Error>(Bytes::from(chunk)),
                Some(export),
            )),
            Ok(None) => None,
            Err(error) => {
                // Headers are gone already; cut the stream so the client sees it incomplete.
                tracing::error!(%error, "Export failed midway.");
                Some((Err(std::io::Error::other("export failed")), None))
            }
        }
    });
    Ok((
        [(header::CONTENT_TYPE, format.content_type())],
        Body::from_stream(stream),
    )
        .into_response())
}

#[utoipa::path(get, path = "/api/v1/exports/vehicles.csv", tag = "exports", params(ExportQuery),
    responses((status = 200, description = "Streamed CSV with a header row", content_type = "text/csv"), (status = 400, body = ErrorBody)))]
async fn export_csv(
    Auth(caller): Auth,
    State(app): State<AppState>,
    ApiQuery(q): ApiQuery<ExportQuery>,
) -> Result<Response, ApiError> {
    export(caller, app, q.label, Format::Csv).await
}

#[utoipa::path(get, path = "/api/v1/exports/vehicles.ndjson", tag = "exports", params(ExportQuery),
    responses((status = 200, description = "Streamed NDJSON, one object per line", content_type = "application/x-ndjson"), (status = 400, body = ErrorBody)))]
async fn export_ndjson(
    Auth(caller): Auth,
    State(app): State<AppState>,
    ApiQuery(q): ApiQuery<ExportQuery>,
) -> Result<Response, ApiError> {
    export(caller, app, q.label, Format::Ndjson).await
}

#[utoipa::path(post, path = "/api/v1/imports/{kind}", tag = "imports",
    params(("kind" = String, Path, description = "stores, pois, fleets, customers, vehicles, service_visits or campaign_responses")),
    request_body(content = String, content_type = "text/csv", description = "The CSV export, with a header row"),
    responses((status = 200, body = ImportReport), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 413, body = ErrorBody)))]
async fn post_import(
    Auth(caller): Auth,
    State(app): State<AppState>,
    Path(kind): Path<String>,
    request: Request,
) -> Result<Json<ImportReport>, ApiError> {
    if !caller.is_admin() {
        return Err(ApiError::Forbidden("import registry data (admin only)"));
    }
    if !import::KINDS.contains(&kind.as_str()) {
        return Err(ApiError::not_found("import kind", kind));
    }
    let is_csv = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/csv"));
    if !is_csv {
        return Err(ApiError::UnsupportedMediaType(
            "send the body as text/csv".into(),
        ));
    }
    let body = axum::body::to_bytes(request.into_body(), CSV_LIMIT)
        .await
        .map_err(|_| ApiError::TooLarge(CSV_LIMIT))?;
    let ids = app.store.registry_ids().await?;
    let parsed = import::parse(&kind, body.as_ref(), &ids)
        .map_err(|error| ApiError::BadRequest(error.to_string()))?;
    let imported = app.store.import(&parsed.rows).await?;
    Ok(Json(ImportReport {
        imported,
        skipped: parsed
            .bad
            .into_iter()
            .map(|b| SkippedRow {
                line: b.line,
                reason: b.reason,
            })
            .collect(),
    }))
}
