//! Schema pieces shared by the kinds: name patterns and the Kubernetes list-map shape of `conditions`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::{Schema, SchemaGenerator, json_schema};

/// A DNS-1123 label of at most 60 characters: the shape of every session name.
pub fn session_name(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "minLength": 1,
        "maxLength": crate::MAX_SESSION_NAME,
        "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
    })
}

pub fn optional_session_name(g: &mut SchemaGenerator) -> Schema {
    let mut s = session_name(g);
    s.insert("nullable".into(), true.into());
    s
}

/// A DNS-1123 subdomain: the shape of references to other objects (blueprints).
pub fn optional_object_name(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "nullable": true,
        "minLength": 1,
        "maxLength": 253,
        "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
    })
}

/// `conditions` as a list-map keyed by `type`, so server-side apply merges conditions by type.
pub fn conditions(g: &mut SchemaGenerator) -> Schema {
    let mut s = g.subschema_for::<Vec<Condition>>();
    s.insert("x-kubernetes-list-type".into(), "map".into());
    s.insert(
        "x-kubernetes-list-map-keys".into(),
        serde_json::json!(["type"]),
    );
    s
}

/// A non-negative decimal string such as "2.50": money as text, so no float rounding reaches the API.
pub fn optional_decimal(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "nullable": true,
        "maxLength": 32,
        "pattern": "^[0-9]+(\\.[0-9]+)?$",
    })
}
