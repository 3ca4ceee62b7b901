//! The OpenAPI 3.1 document: paths from [`crate::ROUTES`] (so it lists exactly the routes the
//! server serves, each with its role), bodies from the Rust types the handlers read and write
//! (their JSON Schemas come from `schemars`, so a field added to a type is in the document at
//! the next build). `docs/openapi.json` is this document, committed; a test fails when they
//! differ (`switchyard openapi > docs/openapi.json` rewrites it).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{json, Map, Value};
use switchyard_api_types::admin as wire;
use switchyard_api_types::{
    changes, experiments, ofrep, requests, rollouts, schedules, sdk, webhooks, ErrorBody,
};
use switchyard_engine::document::{Document, SegmentDef};
use switchyard_engine::FlagDef;

use crate::admin::{AuditFilter, FlagFilter, ForceQuery, FormatQuery};
use crate::auth::Access;
use crate::{Readiness, ROUTES};

type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

fn schema<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    g.subschema_for::<T>()
}

/// What an operation reads.
#[derive(Clone, Copy)]
enum Body {
    /// Nothing.
    None,
    /// A JSON body of this schema.
    Json(SchemaFn),
    /// A JSON body that may be left out (`{"reason": …}` of kill, release, delete…).
    Optional(SchemaFn),
    /// A flag: its bare definition, or the resource as GET returned it; plus `reason`.
    FlagWrite,
    /// A segment: its bare definition, or the resource as GET returned it; plus `reason`.
    SegmentWrite,
    /// A flag file, JSON or YAML.
    FlagFile,
    /// One flag's proposed definition: as a flag write takes it (JSON), or YAML text.
    FlagDraft,
}

/// What an operation answers when it succeeds.
#[derive(Clone, Copy)]
enum Answer {
    Json(SchemaFn),
    Text,
    EventStream,
    /// JSON (a flag file) or YAML, by `?format=`.
    FlagFile,
    NoContent,
}

/// Which error body a route's refusals use.
#[derive(Clone, Copy, PartialEq)]
enum Errors {
    /// `{"error": {"code", "message", "details"}}`.
    Admin,
    /// OFREP's single-flag failure (`key`, `errorCode`, `errorDetails`).
    OfrepFlag,
    /// OFREP's bulk failure (`errorCode`, `errorDetails`).
    OfrepBulk,
}

/// Everything the document says about one operation beyond the route table.
struct Io {
    query: Option<SchemaFn>,
    body: Body,
    status: u16,
    answer: Answer,
    /// Other statuses that are not errors (304).
    also: &'static [(u16, &'static str)],
    /// Error statuses the handler itself produces (the guard's and the edge's are added).
    errors: &'static [u16],
    errors_shape: Errors,
    /// Takes `If-Match` (a version, or `*`).
    if_match: bool,
    /// Takes `If-None-Match` (an ETag) and answers 304.
    if_none_match: bool,
    /// Answers with an `ETag` (the version) without taking `If-None-Match`.
    etag: bool,
    /// May answer 202 with a `PendingChange`: the environment requires approval.
    accepted: bool,
}

const READ: &[u16] = &[400, 404];
const WRITE: &[u16] = &[400, 404, 409, 422];

impl Io {
    const fn new(status: u16, answer: Answer) -> Io {
        Io {
            query: None,
            body: Body::None,
            status,
            answer,
            also: &[],
            errors: &[],
            errors_shape: Errors::Admin,
            if_match: false,
            if_none_match: false,
            etag: false,
            accepted: false,
        }
    }
    const fn read(answer: SchemaFn) -> Io {
        let mut io = Io::new(200, Answer::Json(answer));
        io.errors = READ;
        io
    }
    const fn write(status: u16, body: Body, answer: Answer) -> Io {
        let mut io = Io::new(status, answer);
        io.body = body;
        io.errors = WRITE;
        io
    }
    /// A partial flag change: a small body, the flag back, `If-Match` optional.
    const fn flag_change(body: Body) -> Io {
        let mut io = Io::write(200, body, Answer::Json(flag_or_preview));
        io.if_match = true;
        io.accepted = true;
        io.query(schema::<crate::admin::DryRunQuery>)
    }
    const fn query(mut self, query: SchemaFn) -> Io {
        self.query = Some(query);
        self
    }
}

/// The operation at `method path`, described. `None` for a route the table has and this
/// function forgot, which a test catches.
fn io(method: &str, path: &str) -> Option<Io> {
    let reason = Body::Optional(schema::<wire::Reason>);
    let flag = || Answer::Json(schema::<wire::FlagResource>);
    Some(match (method, path) {
        ("GET", "/healthz") => Io::new(200, Answer::Text),
        ("GET", "/readyz") => Io {
            also: &[(503, "Starting: no snapshot is served yet (same body).")],
            ..Io::new(200, Answer::Json(schema::<Readiness>))
        },
        ("GET", "/metrics") => Io::new(200, Answer::Text),
        ("GET", "/api/v1/openapi.json") => Io::new(200, Answer::Json(|_| json_object())),
        ("POST", "/ofrep/v1/evaluate/flags/{key}") => Io {
            body: Body::Json(schema::<ofrep::EvaluationRequest>),
            errors: &[400, 404, 500],
            errors_shape: Errors::OfrepFlag,
            ..Io::new(200, Answer::Json(schema::<ofrep::EvaluationSuccess>))
        },
        ("POST", "/ofrep/v1/evaluate/flags") => Io {
            body: Body::Json(schema::<ofrep::EvaluationRequest>),
            errors: &[400, 500],
            errors_shape: Errors::OfrepBulk,
            if_none_match: true,
            ..Io::new(200, Answer::Json(schema::<ofrep::BulkEvaluationSuccess>))
        },
        ("GET", "/ofrep/v1/events") => Io {
            errors_shape: Errors::OfrepBulk,
            ..Io::new(200, Answer::EventStream).query(schema::<StreamTokenQuery>)
        },
        ("GET", "/sdk/v1/ruleset") => Io {
            if_none_match: true,
            ..Io::new(200, Answer::Json(schema::<sdk::Ruleset>))
        },
        ("GET", "/sdk/v1/stream") => Io::new(200, Answer::EventStream),
        ("POST", "/sdk/v1/events") => Io {
            body: Body::Json(schema::<sdk::EventBatch>),
            errors: &[400],
            ..Io::new(200, Answer::Json(schema::<sdk::IngestResult>))
        },
        ("GET", "/api/v1/exposures") => {
            Io::read(schema::<wire::ExposureCounts>).query(schema::<crate::events::ExposureQuery>)
        }
        ("GET", "/api/v1/experiments") => Io::read(schema::<experiments::ExperimentList>)
            .query(schema::<crate::experiments::ListQuery>),
        ("POST", "/api/v1/experiments") => Io::write(
            201,
            Body::Json(schema::<experiments::ExperimentSpec>),
            Answer::Json(schema::<experiments::ExperimentResource>),
        ),
        ("GET", "/api/v1/experiments/{id}") => Io {
            etag: true,
            ..Io::read(schema::<experiments::ExperimentResource>)
        },
        ("PUT", "/api/v1/experiments/{id}") => Io {
            if_match: true,
            ..Io::write(
                200,
                Body::Json(schema::<experiments::ExperimentSpec>),
                Answer::Json(schema::<experiments::ExperimentResource>),
            )
        },
        (
            "POST",
            "/api/v1/experiments/{id}/start"
            | "/api/v1/experiments/{id}/pause"
            | "/api/v1/experiments/{id}/resume"
            | "/api/v1/experiments/{id}/complete"
            | "/api/v1/experiments/{id}/cancel",
        ) => Io::write(
            200,
            Body::Optional(schema::<experiments::TransitionRequest>),
            Answer::Json(schema::<experiments::ExperimentResource>),
        ),
        ("GET", "/api/v1/experiments/{id}/results") => {
            Io::read(schema::<experiments::ExperimentResults>)
        }
        ("GET", "/api/v1/reports/stale-flags") => {
            Io::read(schema::<wire::StaleReport>).query(schema::<crate::admin::StaleQuery>)
        }
        ("GET", "/api/v1/schedules") => {
            Io::read(schema::<schedules::ScheduleList>).query(schema::<crate::schedules::ListQuery>)
        }
        ("POST", "/api/v1/schedules") => Io::write(
            201,
            Body::Json(schema::<schedules::NewSchedule>),
            Answer::Json(schema::<schedules::ScheduleResource>),
        ),
        ("DELETE", "/api/v1/schedules/{id}") => Io::write(
            200,
            Body::None,
            Answer::Json(schema::<schedules::ScheduleResource>),
        )
        .query(schema::<crate::schedules::CancelQuery>),
        ("GET", "/api/v1/webhooks") => Io::read(schema::<webhooks::WebhookList>),
        ("POST", "/api/v1/webhooks") => Io::write(
            201,
            Body::Json(schema::<webhooks::WebhookSpec>),
            Answer::Json(schema::<webhooks::WebhookResource>),
        ),
        ("DELETE", "/api/v1/webhooks/{id}") => Io::write(204, Body::None, Answer::NoContent)
            .query(schema::<crate::webhooks::DeleteQuery>),
        ("GET", "/api/v1/webhooks/{id}/deliveries") => Io::read(schema::<webhooks::DeliveryList>)
            .query(schema::<crate::webhooks::DeliveriesQuery>),
        ("DELETE", "/api/v1/units/{unit}/events") => Io {
            errors: READ,
            ..Io::new(200, Answer::Json(schema::<experiments::Erased>))
                .query(schema::<crate::experiments::EraseQuery>)
        },
        ("GET", "/api/v1/flags") => Io::read(schema::<wire::FlagList>).query(schema::<FlagFilter>),
        ("POST", "/api/v1/flags") => Io {
            accepted: true,
            ..Io::write(201, Body::FlagWrite, flag())
        },
        ("GET", "/api/v1/flags/{key}") => Io {
            etag: true,
            ..Io::read(schema::<wire::FlagResource>)
        },
        ("PUT", "/api/v1/flags/{key}") => Io {
            errors: &[400, 404, 409, 422, 428],
            if_match: true,
            etag: true,
            accepted: true,
            ..Io::write(200, Body::FlagWrite, flag()).query(schema::<ForceQuery>)
        },
        ("DELETE", "/api/v1/flags/{key}") => Io {
            if_match: true,
            ..Io::write(204, reason, Answer::NoContent)
        },
        ("POST", "/api/v1/flags/{key}/archive" | "/api/v1/flags/{key}/unarchive")
        | (
            "POST" | "DELETE",
            "/api/v1/flags/{key}/kill" | "/api/v1/flags/{key}/environments/{env}/kill",
        )
        | (
            "DELETE",
            "/api/v1/flags/{key}/tenants/{tenant}"
            | "/api/v1/flags/{key}/environments/{env}/tenants/{tenant}",
        ) => Io::flag_change(reason),
        (
            "PUT",
            "/api/v1/flags/{key}/enabled" | "/api/v1/flags/{key}/environments/{env}/enabled",
        ) => Io::flag_change(Body::Json(schema::<wire::SetEnabled>)),
        (
            "PUT",
            "/api/v1/flags/{key}/rollout" | "/api/v1/flags/{key}/environments/{env}/rollout",
        ) => Io::flag_change(Body::Json(schema::<wire::SetRollout>)),
        (
            "PUT",
            "/api/v1/flags/{key}/targets" | "/api/v1/flags/{key}/environments/{env}/targets",
        ) => Io::flag_change(Body::Json(schema::<wire::SetTargets>)),
        ("PUT", "/api/v1/flags/{key}/rules" | "/api/v1/flags/{key}/environments/{env}/rules") => {
            Io::flag_change(Body::Json(schema::<wire::SetRules>))
        }
        (
            "PUT",
            "/api/v1/flags/{key}/tenants/{tenant}"
            | "/api/v1/flags/{key}/environments/{env}/tenants/{tenant}",
        ) => Io::flag_change(Body::Json(schema::<wire::SetTenant>)),
        ("POST", "/api/v1/flags/{key}/evaluate") => Io {
            body: Body::Json(schema::<wire::ExplainRequest>),
            errors: &[400, 404],
            ..Io::new(200, Answer::Json(schema::<wire::Explanation>))
        },
        ("GET", "/api/v1/segments") => Io::read(schema::<wire::SegmentList>),
        ("GET", "/api/v1/segments/{name}") => Io::read(schema::<wire::SegmentResource>),
        ("PUT", "/api/v1/segments/{name}") => Io {
            also: &[(201, "Created.")],
            errors: &[400, 409, 422, 428],
            if_match: true,
            ..Io::write(
                200,
                Body::SegmentWrite,
                Answer::Json(schema::<wire::SegmentResource>),
            )
            .query(schema::<ForceQuery>)
        },
        ("DELETE", "/api/v1/segments/{name}") => Io {
            if_match: true,
            ..Io::write(204, reason, Answer::NoContent)
        },
        ("GET", "/api/v1/environments") => Io::read(schema::<Vec<wire::Environment>>),
        ("PUT", "/api/v1/environments/{name}") => Io::write(
            200,
            Body::Json(schema::<wire::EnvironmentPolicy>),
            Answer::Json(schema::<wire::Environment>),
        ),
        ("POST", "/api/v1/flags/{key}/promote") => Io {
            if_match: true,
            accepted: true,
            ..Io::write(
                200,
                Body::Json(schema::<changes::PromoteRequest>),
                Answer::Json(schema::<changes::PromoteResult>),
            )
        },
        ("POST", "/api/v1/bulk/flags") => Io::write(
            200,
            Body::Json(schema::<changes::BulkChange>),
            Answer::Json(schema::<changes::BulkResult>),
        ),
        ("GET", "/api/v1/reports/evaluations") => Io::read(schema::<wire::EvaluationReport>),
        ("GET", "/api/v1/requests") => Io::read(schema::<requests::ChangeRequestList>)
            .query(schema::<crate::requests::ListQuery>),
        ("GET", "/api/v1/requests/{id}") => Io::read(schema::<requests::ChangeRequest>),
        ("POST", "/api/v1/requests/{id}/approve" | "/api/v1/requests/{id}/reject") => Io::write(
            200,
            Body::Optional(schema::<wire::Reason>),
            Answer::Json(schema::<requests::ChangeRequest>),
        ),
        ("GET", "/api/v1/rollouts") => {
            Io::read(schema::<rollouts::RolloutList>).query(schema::<crate::rollouts::ListQuery>)
        }
        ("POST", "/api/v1/rollouts") => Io::write(
            201,
            Body::Json(schema::<rollouts::RolloutPlan>),
            Answer::Json(schema::<rollouts::RolloutResource>),
        ),
        ("GET", "/api/v1/rollouts/{id}") => Io::read(schema::<rollouts::RolloutResource>),
        ("POST", "/api/v1/rollouts/{id}/{action}") => Io::write(
            200,
            Body::Optional(schema::<wire::Reason>),
            Answer::Json(schema::<rollouts::RolloutResource>),
        ),
        ("GET", "/api/v1/guards") => Io::read(schema::<rollouts::GuardList>),
        ("POST", "/api/v1/guards") => Io::write(
            201,
            Body::Json(schema::<rollouts::GuardSpec>),
            Answer::Json(schema::<rollouts::GuardResource>),
        ),
        ("DELETE", "/api/v1/guards/{id}") => Io::write(204, Body::None, Answer::NoContent)
            .query(schema::<crate::webhooks::DeleteQuery>),
        ("POST", "/api/v1/environments") => Io::write(
            201,
            Body::Json(schema::<wire::NewEnvironment>),
            Answer::Json(schema::<wire::Environment>),
        ),
        ("GET", "/api/v1/tokens") => Io::read(schema::<wire::TokenList>),
        ("POST", "/api/v1/tokens") => Io::write(
            201,
            Body::Json(schema::<wire::NewToken>),
            Answer::Json(schema::<wire::CreatedToken>),
        ),
        ("DELETE", "/api/v1/tokens/{id}") => {
            Io::write(200, reason, Answer::Json(schema::<wire::TokenInfo>))
        }
        ("GET", "/api/v1/audit") => {
            Io::read(schema::<wire::AuditList>).query(schema::<AuditFilter>)
        }
        ("POST", "/api/v1/import") => Io::write(
            200,
            Body::FlagFile,
            Answer::Json(schema::<wire::ImportResult>),
        )
        .query(schema::<FormatQuery>),
        ("GET", "/api/v1/export") => Io {
            errors: &[400],
            ..Io::new(200, Answer::FlagFile).query(schema::<FormatQuery>)
        },
        ("POST", "/api/v1/flags/{key}/check") => Io {
            body: Body::FlagDraft,
            errors: &[400, 422],
            ..Io::new(200, Answer::Json(schema::<changes::FlagCheckResult>))
        },
        ("POST", "/api/v1/flags/{key}/preview") => Io {
            body: Body::Json(schema::<changes::PreviewRequest>),
            errors: &[400, 404, 422],
            ..Io::new(200, Answer::Json(schema::<changes::PreviewResult>))
        },
        ("GET", "/api/v1/session") => Io::read(schema::<wire::Whoami>),
        ("GET", "/api/v1/changes") => Io::new(200, Answer::EventStream),
        ("POST", "/api/v1/seed") => {
            Io::write(200, Body::None, Answer::Json(schema::<wire::ImportResult>))
        }
        _ => return None,
    })
}

/// A partial flag change's answer: the flag, or with `?dryRun=true` what it would change.
fn flag_or_preview(g: &mut SchemaGenerator) -> Schema {
    let flag = g.subschema_for::<wire::FlagResource>();
    let preview = g.subschema_for::<changes::ChangePreview>();
    schemars::json_schema!({
        "description": "The flag after the change; with `dryRun=true`, what the change would change (nothing is written).",
        "anyOf": [flag, preview]
    })
}

/// `?token=` of the OFREP event stream.
#[derive(JsonSchema)]
#[allow(dead_code)] // Only its schema is used: the guard reads the token from the query string.
struct StreamTokenQuery {
    /// The signed, short-lived token from a bulk evaluation's `eventStreams[].url`.
    token: String,
}

fn json_object() -> Schema {
    schemars::json_schema!({"type": "object"})
}

fn generator() -> SchemaGenerator {
    let mut settings = SchemaSettings::draft2020_12();
    settings.definitions_path = "/components/schemas".into();
    settings.meta_schema = None;
    settings.into_generator()
}

/// A query type's fields as OpenAPI query parameters.
fn query_parameters(query: SchemaFn) -> Vec<Value> {
    let mut settings = SchemaSettings::draft2020_12();
    settings.inline_subschemas = true;
    let mut g = settings.into_generator();
    let root = query(&mut g).to_value();
    let required: Vec<&str> = root["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let Some(props) = root["properties"].as_object() else {
        return Vec::new();
    };
    props
        .iter()
        .map(|(name, prop)| {
            let mut prop = prop.clone();
            let description = prop
                .as_object_mut()
                .and_then(|p| p.remove("description"))
                .unwrap_or(Value::Null);
            json!({
                "name": name,
                "in": "query",
                "required": required.contains(&name.as_str()),
                "description": description,
                "schema": prop,
            })
        })
        .collect()
}

fn header_parameter(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "header", "required": false, "description": description,
           "schema": {"type": "string"}})
}

fn request_body(body: Body, g: &mut SchemaGenerator) -> Option<Value> {
    let json_body = |schema: Value, required: bool| json!({"required": required, "content": {"application/json": {"schema": schema}}});
    Some(match body {
        Body::None => return None,
        Body::Json(s) => json_body(s(g).to_value(), true),
        Body::Optional(s) => json_body(s(g).to_value(), false),
        Body::FlagWrite => json_body(
            write_schema(
                g.subschema_for::<FlagDef>(),
                g.subschema_for::<wire::FlagResource>(),
                "flag",
            ),
            true,
        ),
        Body::SegmentWrite => json_body(
            write_schema(
                g.subschema_for::<SegmentDef>(),
                g.subschema_for::<wire::SegmentResource>(),
                "segment",
            ),
            true,
        ),
        Body::FlagDraft => {
            let json_write = write_schema(
                g.subschema_for::<FlagDef>(),
                g.subschema_for::<wire::FlagResource>(),
                "flag",
            );
            json!({
                "required": true,
                "description": "The proposed definition: JSON as PUT /api/v1/flags/{key} takes it, or the flag's YAML (Content-Type: application/yaml; errors then name their line).",
                "content": {
                    "application/json": {"schema": json_write},
                    "application/yaml": {"schema": g.subschema_for::<FlagDef>()}
                }
            })
        }
        Body::FlagFile => {
            let document = g.subschema_for::<Document>();
            json!({
                "required": true,
                "description": "A flag file (JSON or YAML, by Content-Type or ?format=), as `switchyard validate` reads it.",
                "content": {
                    "application/json": {"schema": document},
                    "application/yaml": {"schema": document}
                }
            })
        }
    })
}

/// The body of a flag or segment write: the bare definition, or the resource as `GET`
/// returned it; either with an optional `reason` for the audit log.
fn write_schema(definition: Schema, resource: Schema, what: &str) -> Value {
    let reason = json!({"reason": {"type": ["string", "null"], "description": "Why (goes to the audit log)."}});
    json!({
        "description": format!("The {what}'s definition, or the {what} as GET returned it (its `version` is then the precondition when no If-Match is sent); either with an optional `reason`."),
        "anyOf": [
            {"allOf": [definition], "properties": reason},
            {"allOf": [resource], "properties": reason}
        ]
    })
}

fn answer_content(answer: Answer, g: &mut SchemaGenerator) -> Option<Value> {
    Some(match answer {
        Answer::Json(s) => json!({"application/json": {"schema": s(g)}}),
        Answer::Text => json!({"text/plain": {"schema": {"type": "string"}}}),
        Answer::EventStream => json!({"text/event-stream": {"schema": {
            "type": "object",
            "description": "Each server-sent event: its `event` name, its `data` (JSON text) and, where the stream resumes, its `id`. Heartbeats are comments, not events.",
            "properties": {
                "event": {"type": "string"},
                "data": {"type": "string"},
                "id": {"type": "string"},
                "retry": {"type": "integer"}
            },
            "required": ["data"]
        }}}),
        Answer::FlagFile => {
            let document = g.subschema_for::<Document>();
            json!({
                "application/json": {"schema": document},
                "application/yaml": {"schema": document}
            })
        }
        Answer::NoContent => return None,
    })
}

fn error_text(status: u16) -> &'static str {
    match status {
        400 => "Bad request: the body, a parameter or the context is malformed; the message names the field.",
        401 => "No token, or an unknown or revoked one.",
        403 => "The token's role may not do this.",
        404 => "No such flag, segment, environment or token (the message suggests near names).",
        408 => "The request body arrived too slowly.",
        409 => "Conflict: a stale If-Match version, a name already taken, or read-only (GitOps) mode.",
        413 => "The body is larger than this route accepts.",
        422 => "Validation failed; `details.problems` lists every problem with its field path.",
        428 => "If-Match is required; the message names the current version.",
        429 => "The SDK key used its request budget; see Retry-After.",
        500 => "The flag could not be evaluated (its definition is broken).",
        503 => "The store is unreachable for writes, the server is starting, or it holds its connection limit; see Retry-After.",
        _ => "Error.",
    }
}

fn operation(
    route: &crate::RouteDoc,
    io: &Io,
    g: &mut SchemaGenerator,
    shared: &mut Map<String, Value>,
) -> Value {
    let mut parameters: Vec<Value> = route
        .path
        .split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
        .collect();
    if let Some(query) = io.query {
        parameters.extend(query_parameters(query));
    }
    if io.if_match {
        parameters.push(header_parameter(
            "If-Match",
            "The version the change was based on (the ETag of a GET, `\"3\"`), or `*` for whatever is stored.",
        ));
    }
    if io.if_none_match {
        parameters.push(header_parameter(
            "If-None-Match",
            "The ETag of the last answer; 304 when nothing changed.",
        ));
    }

    let mut responses = Map::new();
    let mut ok = json!({"description": "OK"});
    if let Some(content) = answer_content(io.answer, g) {
        ok["content"] = content;
    }
    if io.if_none_match || io.etag {
        ok["headers"] = json!({"ETag": {"description": "The version of what was returned.", "schema": {"type": "string"}}});
    }
    responses.insert(io.status.to_string(), ok.clone());
    for (status, text) in io.also {
        let mut other = ok.clone();
        other["description"] = json!(text);
        responses.insert(status.to_string(), other);
    }
    if io.accepted {
        let schema = g.subschema_for::<switchyard_api_types::requests::PendingChange>();
        responses.insert(
            "202".into(),
            json!({
                "description": "Not applied: the environment requires approval, and the change waits as a change request (its URL in `Location`) for someone else to approve.",
                "content": {"application/json": {"schema": schema}},
            }),
        );
    }
    if io.if_none_match {
        responses.insert(
            "304".into(),
            json!({"description": "Not modified since the ETag sent in If-None-Match."}),
        );
    }

    let (shape, error_schema) = match io.errors_shape {
        Errors::Admin => ("Admin", g.subschema_for::<ErrorBody>()),
        Errors::OfrepFlag => ("OfrepFlag", g.subschema_for::<ofrep::EvaluationFailure>()),
        Errors::OfrepBulk => (
            "OfrepBulk",
            g.subschema_for::<ofrep::BulkEvaluationFailure>(),
        ),
    };
    let mut errors: Vec<u16> = io.errors.to_vec();
    if route.access != Access::Public {
        errors.extend([400, 401, 403]);
    }
    if matches!(route.access, Access::Role(switchyard_api_types::Role::Sdk)) {
        errors.push(429);
    }
    if !matches!(io.body, Body::None) || matches!(route.method, "POST" | "PUT") {
        errors.extend([408, 413]);
    }
    errors.push(503);
    errors.sort_unstable();
    errors.dedup();
    for status in errors {
        if io.status == status || io.also.iter().any(|(s, _)| *s == status) {
            continue;
        }
        // Error answers are shared components: one per body shape and status.
        let name = format!("{shape}Error{status}");
        shared.entry(name.clone()).or_insert_with(|| {
            json!({
                "description": error_text(status),
                "content": {"application/json": {"schema": error_schema.clone()}}
            })
        });
        responses.insert(
            status.to_string(),
            json!({"$ref": format!("#/components/responses/{name}")}),
        );
    }

    let mut op = json!({
        "summary": route.summary,
        "operationId": operation_id(route.method, route.path),
        "tags": [tag(route.path)],
        "parameters": parameters,
        "responses": responses,
    });
    if let Some(body) = request_body(io.body, g) {
        op["requestBody"] = body;
    }
    match route.access {
        Access::Public => op["security"] = json!([]),
        Access::SignedStreamUrl => {
            // The credential is the signed `?token=` of a bulk evaluation's eventStreams url.
            op["security"] = json!([]);
            op["x-switchyard-role"] = json!(route.access.as_str());
        }
        Access::Role(role) => {
            op["security"] = json!([{"BearerAuth": []}, {"ApiKeyAuth": []}]);
            op["x-switchyard-role"] = json!(role.as_str());
        }
    }
    op
}

fn tag(path: &str) -> &'static str {
    if path.starts_with("/ofrep/") {
        "OFREP"
    } else if path.starts_with("/sdk/") {
        "SDK"
    } else if path.starts_with("/api/v1/flags") {
        "Flags"
    } else if path.starts_with("/api/v1/segments") {
        "Segments"
    } else if path.starts_with("/api/v1/") {
        "Administration"
    } else {
        "Operations"
    }
}

/// Builds the OpenAPI 3.1 document.
///
/// # Panics
///
/// When a route of the table has no description here; a unit test builds the document, so
/// that cannot ship.
pub fn document() -> Value {
    let mut g = generator();
    let mut paths = Map::new();
    let mut shared = Map::new();
    for route in ROUTES {
        let io = io(route.method, route.path).unwrap_or_else(|| {
            panic!(
                "{} {} is served but not described in openapi::io",
                route.method, route.path
            )
        });
        let entry = paths
            .entry(route.path.to_owned())
            .or_insert_with(|| json!({}));
        entry[route.method.to_ascii_lowercase()] = operation(route, &io, &mut g, &mut shared);
    }
    let schemas = g.take_definitions(true);
    json!({
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "info": {
            "title": "Switchyard API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The admin API (/api/v1), OFREP (/ofrep/v1) and the SDK endpoints (/sdk/v1). Admin errors share one body, {\"error\": {\"code\", \"message\", \"details\"}}; OFREP errors use OFREP's. Every operation names the role it needs in x-switchyard-role (viewer < editor < admin; sdk apart)."
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "BearerAuth": {"type": "http", "scheme": "bearer"},
                "ApiKeyAuth": {"type": "apiKey", "in": "header", "name": "X-API-Key"}
            },
            "responses": shared,
            "schemas": schemas
        }
    })
}

fn operation_id(method: &str, path: &str) -> String {
    let mut id = method.to_ascii_lowercase();
    for seg in path
        .split('/')
        .filter(|s| !s.is_empty() && *s != "api" && *s != "v1")
    {
        let clean: String = seg.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
        id.push('_');
        id.push_str(&clean);
    }
    id
}

/// The document, rendered once: it cannot change while the process runs.
pub fn rendered() -> &'static str {
    static TEXT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TEXT.get_or_init(|| {
        let mut text = serde_json::to_string_pretty(&document()).unwrap_or_default();
        text.push('\n');
        text
    })
}

/// `GET /api/v1/openapi.json`.
pub async fn serve() -> Response {
    (
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        rendered(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_described_and_every_description_is_a_route() {
        for route in ROUTES {
            assert!(
                io(route.method, route.path).is_some(),
                "{} {} has no description",
                route.method,
                route.path
            );
        }
        let doc = document();
        let ops: usize = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .map(|p| p.as_object().unwrap().len())
            .sum();
        assert_eq!(ops, ROUTES.len());
    }

    /// `docs/openapi.json` is the committed document; it must be what the server serves.
    #[test]
    fn the_committed_document_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == rendered(),
            "docs/openapi.json differs from the document the server serves; regenerate it with\n  cargo run -q -p switchyard -- openapi > docs/openapi.json"
        );
    }

    #[test]
    fn every_reference_resolves() {
        let doc = document();
        let text = doc.to_string();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for part in text.split("\"$ref\":\"").skip(1) {
            let target = part.split('"').next().unwrap();
            if let Some(name) = target.strip_prefix("#/components/responses/") {
                assert!(
                    doc["components"]["responses"][name].is_object(),
                    "dangling reference {target}"
                );
                continue;
            }
            let name = target
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("reference outside components: {target}"));
            assert!(schemas.contains_key(name), "dangling reference {target}");
        }
    }

    #[test]
    fn bodies_are_described_not_bare_objects() {
        let doc = document();
        let create = &doc["paths"]["/api/v1/flags"]["post"];
        let body = &create["requestBody"]["content"]["application/json"]["schema"];
        assert!(body["anyOf"].is_array(), "{body}");
        let flag = &doc["components"]["schemas"]["FlagDef"];
        assert!(flag["properties"]["variants"].is_object(), "{flag}");
        assert!(flag["properties"]["rules"].is_object(), "{flag}");
        let kill = &doc["paths"]["/api/v1/flags/{key}/kill"]["post"];
        assert_eq!(kill["requestBody"]["required"], false);
        assert_eq!(kill["x-switchyard-role"], "editor");
        let ofrep = &doc["paths"]["/ofrep/v1/evaluate/flags/{key}"]["post"];
        assert_eq!(
            ofrep["responses"]["404"]["$ref"],
            "#/components/responses/OfrepFlagError404"
        );
        assert_eq!(
            doc["components"]["responses"]["OfrepFlagError404"]["content"]["application/json"]
                ["schema"]["$ref"],
            "#/components/schemas/EvaluationFailure"
        );
    }
}
