//! The OpenAPI document, generated from [`crate::ROUTES`] so it always lists exactly the routes
//! the server serves.

use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use crate::ROUTES;

/// Builds the OpenAPI 3.1 document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for route in ROUTES {
        let entry = paths
            .entry(route.path.to_owned())
            .or_insert_with(|| json!({}));
        let params: Vec<Value> = route
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        let mut op = json!({
            "summary": route.summary,
            "operationId": operation_id(route.method, route.path),
            "parameters": params,
            "responses": responses(route.method, route.access.as_str()),
        });
        if route.access != crate::auth::Access::Public {
            op["security"] = json!([{"BearerAuth": []}, {"ApiKeyAuth": []}]);
            op["x-switchyard-role"] = json!(route.access.as_str());
        }
        if matches!(route.method, "POST" | "PUT") {
            op["requestBody"] =
                json!({"content": {"application/json": {"schema": {"type": "object"}}}});
        }
        entry[route.method.to_ascii_lowercase()] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Switchyard API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Admin API (/api/v1) and OFREP (/ofrep/v1). Errors of the admin API share one body: {\"error\": {\"code\", \"message\", \"details\"}}."
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "BearerAuth": {"type": "http", "scheme": "bearer"},
                "ApiKeyAuth": {"type": "apiKey", "in": "header", "name": "X-API-Key"}
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": {"type": "object", "required": ["code", "message"],
                        "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "details": {}}}}
                }
            }
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

fn responses(method: &str, role: &str) -> Value {
    let mut r = json!({"200": {"description": "OK"}});
    if method == "POST" {
        r["201"] = json!({"description": "Created"});
    }
    if method == "DELETE" {
        r["204"] = json!({"description": "Deleted"});
    }
    if role != "none" {
        r["401"] = json!({"description": "Missing or invalid token"});
        r["403"] = json!({"description": "The token's role may not do this"});
    }
    if role != "none" && role != "sdk" {
        let err = json!({"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
        for (code, text) in [
            ("400", "Bad request"),
            ("404", "Not found"),
            (
                "409",
                "Conflict: stale If-Match, already exists, or read-only mode",
            ),
            (
                "422",
                "Validation failed; details.problems lists every problem",
            ),
        ] {
            let mut e = err.clone();
            e["description"] = json!(text);
            r[code] = e;
        }
    }
    r
}

/// `GET /api/v1/openapi.json`.
pub async fn serve() -> Response {
    Json(document()).into_response()
}
