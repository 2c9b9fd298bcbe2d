//! The OpenAPI 3.1 document of the API, built from the handlers' `#[utoipa::path]`
//! annotations and the wire types' schemas, then completed with what every route shares:
//! path parameters, bearer authentication and the error answers.
//!
//! It is served at `GET /v1/openapi.json` and committed at `docs/openapi.json`; a test fails
//! when the two differ (`AI2IN_WRITE_OPENAPI=1 cargo test -p ai2in-server openapi` rewrites the
//! committed file).

use ai2in_api::ErrorBody;
use serde_json::json;
use utoipa::OpenApi;
use utoipa::openapi::path::{Operation, Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Components, Content, Ref, RefOr, Required, ResponseBuilder, Schema, Type};

/// The document's fixed parts; the paths come from the router (`router::api`).
#[derive(OpenApi)]
#[openapi(
    info(
        title = "ai2in",
        description = "Secure, disposable sandboxes for untrusted code: create one in milliseconds, \
            run code in stateful Python, JavaScript and bash contexts, drive a shell, background \
            commands and terminals, read, write and watch files, pause and resume, watch metrics, \
            expose ports; images, volumes and snapshots. Every request authenticates with `Authorization: Bearer ai2in_live_…`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    servers((url = "http://127.0.0.1:4747", description = "A local node")),
    components(schemas(ErrorBody)),
    tags(
        (name = "sandboxes", description = "Create, list, inspect, pause, resume, time out and destroy sandboxes; metrics and exposed ports."),
        (name = "code", description = "Run code in stateful contexts (Python, JavaScript, bash)."),
        (name = "shell", description = "Run a shell command to completion."),
        (name = "commands", description = "Background commands and their output."),
        (name = "files", description = "Read, write, list and watch files."),
        (name = "pty", description = "Interactive terminals."),
        (name = "desktop", description = "Desktop sandboxes: screenshots, mouse, keyboard, windows, programs and a live view of their display."),
        (name = "images", description = "Pull, import, list and delete OCI images."),
        (name = "volumes", description = "Persistent filesystems that outlive sandboxes."),
        (name = "hosting", description = "Long-running services from images, supervised, at stable URLs."),
        (name = "databases", description = "Real PostgreSQL, MySQL (MariaDB) and Redis servers, one per database, at urls of their own."),
        (name = "keys", description = "API keys (admin)."),
        (name = "nodes", description = "The cluster's nodes (admin): a gateway lists every node of its cluster, a node on its own itself."),
        (name = "node", description = "The node itself."),
    )
)]
pub struct ApiDoc;

/// The path parameters, by name.
const PATH_PARAMETERS: &[(&str, &str)] = &[
    (
        "id",
        "The sandbox's id, `sbx_…` (`key_…` under `/v1/keys`, the node's id under `/v1/nodes`; under `/v1/images`, an `img_…` id \
         or a reference the tenant has, percent-encoded; under `/v1/volumes`, a `vol_…` id or \
         the volume's name).",
    ),
    (
        "cid",
        "The command's id `cmd_…`, or the context's id under `/contexts`.",
    ),
    ("wid", "The watch's id, `wch_…`."),
    ("pid", "The terminal's process id, as `pty` answered it."),
];

/// Error answers shared by many routes: (status, component name, when).
const ERRORS: &[(&str, &str, &str)] = &[
    (
        "400",
        "BadRequest",
        "The body or a parameter is invalid; the sentence names the field.",
    ),
    (
        "401",
        "Unauthenticated",
        "No API key, or an unknown or revoked one.",
    ),
    (
        "403",
        "Forbidden",
        "The key lacks the scope this route needs (named in the sentence).",
    ),
    (
        "404",
        "NotFound",
        "No such sandbox (or it belongs to another tenant), or no such item in it.",
    ),
    ("409", "Paused", "The sandbox is paused: resume it first."),
    (
        "410",
        "Ended",
        "The sandbox has ended (expired or destroyed).",
    ),
    ("415", "UnsupportedMediaType", "The body is not JSON."),
    (
        "502",
        "SandboxUnresponsive",
        "The sandbox's agent did not answer, or nothing listens on the port.",
    ),
];

/// Route segments that reach into a running sandbox (409 while paused, 502 when it fails).
const IN_SANDBOX: &[&str] = &[
    "/run",
    "/shell",
    "/fs/",
    "/commands",
    "/pty",
    "/expose",
    "/contexts",
    "/desktop",
];

/// Routes anyone may call.
const PUBLIC: &[&str] = &["/healthz", "/v1/openapi.json"];

/// Fills in what the handlers' annotations leave to convention.
pub fn complete(api: &mut utoipa::openapi::OpenApi) {
    let components = api.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("ai2in_live_…")
                .description(Some("An API key: `Authorization: Bearer ai2in_live_…`."))
                .build(),
        ),
    );
    for (_, name, when) in ERRORS {
        components.responses.insert(
            (*name).to_string(),
            RefOr::T(
                ResponseBuilder::new()
                    .description(*when)
                    .content(
                        "application/json",
                        Content::new(Some(Ref::from_schema_name("ErrorBody"))),
                    )
                    .build(),
            ),
        );
    }
    let optional_bodies = optional_bodies(components);
    for (path, item) in api.paths.paths.iter_mut() {
        let parameters = path_parameters(path);
        if !parameters.is_empty() {
            item.parameters = Some(parameters);
        }
        for (method, op) in [
            ("get", &mut item.get),
            ("post", &mut item.post),
            ("delete", &mut item.delete),
        ] {
            if let Some(op) = op {
                complete_operation(path, method, op);
                mark_optional_body(op, &optional_bodies);
            }
        }
    }
}

/// The document as served and committed: pretty JSON and a final newline. The event
/// streams' schemas are added here, as JSON: utoipa's model has no `contentSchema`.
pub fn json(doc: &utoipa::openapi::OpenApi) -> String {
    let mut value = serde_json::to_value(doc).expect("the OpenAPI document serializes");
    for (name, schema) in stream_events() {
        value["components"]["schemas"][name] = schema;
    }
    serde_json::to_string_pretty(&value).expect("JSON serializes") + "\n"
}

/// The Server-Sent Events of `run/stream` and `fs/watch/{wid}/events`: each event has a
/// name (`event`) and JSON `data` whose schema depends on the name.
fn stream_events() -> [(&'static str, serde_json::Value); 3] {
    let event = |names: &[&str], data: serde_json::Value| {
        json!({ "type": "object", "required": ["event", "data"], "properties": {
            "event": { "enum": names },
            "data": { "type": "string", "contentMediaType": "application/json",
                      "contentSchema": data } } })
    };
    let schema_ref = |name: &str| json!({ "$ref": format!("#/components/schemas/{name}") });
    [
        (
            "RunStreamEvent",
            json!({
                "description": "An event of `run/stream`: `stdout` and `stderr` carry `{text}`, \
                    `result` `{result}`, `error` the code's error, and the last, `done`, \
                    `{execution}` (`null`, with `error`, if the run failed after the stream \
                    began).",
                "oneOf": [
                    event(&["stdout", "stderr"], json!({ "type": "object", "required": ["text"],
                        "properties": { "text": { "type": "string" } } })),
                    event(&["result"], json!({ "type": "object", "required": ["result"],
                        "properties": { "result": schema_ref("ExecResult") } })),
                    event(&["error"], schema_ref("ExecError")),
                    event(&["done"], json!({ "type": "object", "required": ["execution"],
                        "properties": {
                            "execution": { "oneOf": [schema_ref("Execution"), { "type": "null" }] },
                            "error": { "type": "string" } } })),
                ],
            }),
        ),
        (
            "LogStreamEvent",
            json!({
                "description": "An event of a service's log stream: `log` carries a LogLine \
                    (its `seq` is also the event's id).",
                "oneOf": [event(&["log"], schema_ref("LogLine"))],
            }),
        ),
        (
            "WatchStreamEvent",
            json!({
                "description": "An event of a watch's stream: `fs` carries a WatchEvent; \
                    `error` `{error}` ends a failed watch.",
                "oneOf": [
                    event(&["fs"], schema_ref("WatchEvent")),
                    event(&["error"], schema_ref("ErrorBody")),
                ],
            }),
        ),
    ]
}

/// The schemas of request bodies without required fields: such a body may be left out.
fn optional_bodies(components: &Components) -> Vec<String> {
    components
        .schemas
        .iter()
        .filter(
            |(_, schema)| matches!(schema, RefOr::T(Schema::Object(o)) if o.required.is_empty()),
        )
        .map(|(name, _)| format!("#/components/schemas/{name}"))
        .collect()
}

/// Marks `op`'s body optional when its schema is one of `optional`.
fn mark_optional_body(op: &mut Operation, optional: &[String]) {
    let Some(body) = &mut op.request_body else {
        return;
    };
    let optional = body
        .content
        .values()
        .any(|c| matches!(&c.schema, Some(RefOr::Ref(r)) if optional.contains(&r.ref_location)));
    if optional {
        body.required = Some(Required::False);
    }
}

/// A required string parameter for each `{name}` in `path`.
fn path_parameters(path: &str) -> Vec<Parameter> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| {
            let description = PATH_PARAMETERS
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, d)| *d);
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .description(description)
                .schema(Some(utoipa::openapi::Object::with_type(Type::String)))
                .build()
        })
        .collect()
}

/// Security, a unique operation id, and the error answers `op` can give.
fn complete_operation(path: &str, method: &str, op: &mut Operation) {
    let tag = op
        .tags
        .as_ref()
        .and_then(|t| t.first())
        .cloned()
        .unwrap_or_default();
    if let Some(id) = &op.operation_id {
        op.operation_id = Some(format!("{tag}_{id}"));
    }
    let public = PUBLIC.contains(&path);
    let in_sandbox =
        path.starts_with("/v1/sandboxes/{id}/") && IN_SANDBOX.iter().any(|seg| path.contains(seg));
    let mut errors = Vec::new();
    if op.request_body.is_some() {
        errors.extend(["400", "415"]);
    } else if method == "get" && path == "/v1/sandboxes" {
        errors.push("400"); // a bad filter
    } else if path.contains("/desktop") {
        errors.push("400"); // a sandbox without a desktop
    }
    if !public {
        errors.extend(["401", "403"]);
    }
    if path.starts_with("/v1/sandboxes/{id}")
        || path.starts_with("/v1/keys/{id}")
        || path.starts_with("/v1/volumes/{id}")
        || path.starts_with("/v1/nodes/{id}")
    {
        errors.push("404");
    }
    if path.starts_with("/v1/sandboxes/{id}") {
        errors.push("410");
    }
    if in_sandbox {
        errors.extend(["409", "502"]);
    }
    for status in errors {
        let (_, name, _) = ERRORS
            .iter()
            .find(|(s, _, _)| *s == status)
            .expect("every status used is in ERRORS");
        op.responses
            .responses
            .entry(status.to_string())
            .or_insert_with(|| RefOr::Ref(Ref::new(format!("#/components/responses/{name}"))));
    }
    if !public {
        op.security = Some(vec![SecurityRequirement::new::<_, _, &str>("bearer", [])]);
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    /// The committed document is the one the server serves.
    #[test]
    fn openapi_document_is_committed() {
        let served = super::json(&crate::router::api().1);
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json");
        if std::env::var_os("AI2IN_WRITE_OPENAPI").is_some() {
            std::fs::write(&path, &served).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == served,
            "docs/openapi.json differs from the document the server serves; run \
             `AI2IN_WRITE_OPENAPI=1 cargo test -p ai2in-server openapi` and commit it"
        );
    }
}
