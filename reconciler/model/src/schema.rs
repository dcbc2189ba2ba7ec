//! JSON Schemas (draft-07, what yaml-language-server understands) for every kind weft reads,
//! generated from the resource types so they cannot drift from what the loader accepts. Each
//! kind gets a file describing a whole document; `weft.json` accepts any kind (and `List`), for
//! files that mix kinds.

use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{json, Map, Value};

use crate::diag::Kind;
use crate::resources::calico::{
    FelixConfiguration, GlobalNetworkPolicy, GlobalNetworkSet, HostEndpoint, IPPool, NetworkPolicy,
    NetworkSet, Node, Profile, Tier, WorkloadEndpoint,
};
use crate::resources::k8s::{EndpointSlice, KubernetesNetworkPolicy, Namespace, Service};

fn generator() -> SchemaGenerator {
    SchemaSettings::draft07().into_generator()
}

/// The schema file name of a kind, e.g. `networkpolicy.json`; Kubernetes' NetworkPolicy is
/// `k8s-networkpolicy.json`.
pub fn schema_file_name(kind: Kind) -> String {
    match kind {
        Kind::KubernetesNetworkPolicy => "k8s-networkpolicy.json".into(),
        k => format!("{}.json", k.kind_name().to_lowercase()),
    }
}

fn root_schema<T: JsonSchema>(kind: Kind) -> Value {
    let mut schema = generator().into_root_schema_for::<T>().to_value();
    if let Some(obj) = schema.as_object_mut() {
        obj.insert(
            "title".into(),
            json!(format!("{} {}", kind.api_version(), kind.kind_name())),
        );
    }
    schema
}

fn kind_schema(kind: Kind) -> Value {
    match kind {
        Kind::WorkloadEndpoint => root_schema::<WorkloadEndpoint>(kind),
        Kind::HostEndpoint => root_schema::<HostEndpoint>(kind),
        Kind::NetworkPolicy => root_schema::<NetworkPolicy>(kind),
        Kind::GlobalNetworkPolicy => root_schema::<GlobalNetworkPolicy>(kind),
        Kind::Tier => root_schema::<Tier>(kind),
        Kind::Profile => root_schema::<Profile>(kind),
        Kind::NetworkSet => root_schema::<NetworkSet>(kind),
        Kind::GlobalNetworkSet => root_schema::<GlobalNetworkSet>(kind),
        Kind::FelixConfiguration => root_schema::<FelixConfiguration>(kind),
        Kind::Node => root_schema::<Node>(kind),
        Kind::IPPool => root_schema::<IPPool>(kind),
        Kind::KubernetesNetworkPolicy => root_schema::<KubernetesNetworkPolicy>(kind),
        Kind::Namespace => root_schema::<Namespace>(kind),
        Kind::Service => root_schema::<Service>(kind),
        Kind::EndpointSlice => root_schema::<EndpointSlice>(kind),
    }
}

/// The schema accepting any resource: one generator for all kinds, so the definitions are
/// shared, and an if/then per kind keyed on apiVersion and kind, so an editor reports the
/// errors of the kind the document says it is.
fn any_schema() -> Value {
    let mut generator = generator();
    let mut refs = Vec::new();
    macro_rules! add {
        ($($ty:ty => $kind:expr),* $(,)?) => {
            $( refs.push(($kind, generator.subschema_for::<$ty>().to_value())); )*
        };
    }
    add!(
        WorkloadEndpoint => Kind::WorkloadEndpoint,
        HostEndpoint => Kind::HostEndpoint,
        NetworkPolicy => Kind::NetworkPolicy,
        GlobalNetworkPolicy => Kind::GlobalNetworkPolicy,
        Tier => Kind::Tier,
        Profile => Kind::Profile,
        NetworkSet => Kind::NetworkSet,
        GlobalNetworkSet => Kind::GlobalNetworkSet,
        FelixConfiguration => Kind::FelixConfiguration,
        Node => Kind::Node,
        IPPool => Kind::IPPool,
        KubernetesNetworkPolicy => Kind::KubernetesNetworkPolicy,
        Namespace => Kind::Namespace,
        Service => Kind::Service,
        EndpointSlice => Kind::EndpointSlice,
    );
    let mut definitions: Map<String, Value> =
        generator.take_definitions(true).into_iter().collect();
    let conditional = |kind: &str, api: &str, then: Value| {
        json!({
            "if": {
                "properties": { "apiVersion": { "const": api }, "kind": { "const": kind } },
                "required": ["apiVersion", "kind"]
            },
            "then": then
        })
    };
    let mut cases: Vec<Value> = refs
        .iter()
        .map(|(kind, r)| conditional(kind.kind_name(), kind.api_version(), r.clone()))
        .collect();
    definitions.insert(
        "List".into(),
        json!({
            "description": "A list of resources, as `kubectl get -o yaml` writes it.",
            "type": "object",
            "required": ["apiVersion", "kind", "items"],
            "properties": {
                "apiVersion": { "const": "v1" },
                "kind": { "const": "List" },
                "metadata": { "type": "object" },
                "items": { "type": "array", "items": { "$ref": "#" } }
            },
            "additionalProperties": false
        }),
    );
    cases.push(conditional(
        "List",
        "v1",
        json!({ "$ref": "#/definitions/List" }),
    ));
    let mut kinds: Vec<&str> = Kind::ALL.iter().map(|k| k.kind_name()).collect();
    kinds.push("List");
    kinds.sort();
    kinds.dedup();
    let mut apis: Vec<&str> = Kind::ALL.iter().map(|k| k.api_version()).collect();
    apis.sort();
    apis.dedup();
    json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "weft resource",
        "description": "Any resource weft reads; apiVersion and kind decide which schema applies.",
        "type": "object",
        "required": ["apiVersion", "kind"],
        "properties": {
            "apiVersion": { "enum": apis },
            "kind": { "enum": kinds }
        },
        "allOf": cases,
        "definitions": definitions
    })
}

fn pretty(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).expect("a JSON value always serializes");
    s.push('\n');
    s
}

/// Every schema as (file name, pretty JSON): one per kind, then `weft.json`.
pub fn schemas() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Kind::ALL
        .iter()
        .map(|&k| (schema_file_name(k), pretty(&kind_schema(k))))
        .collect();
    out.push(("weft.json".into(), pretty(&any_schema())));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::path::PathBuf;

    fn checked_in() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../schemas")
    }

    #[test]
    fn checked_in_schemas_are_current() {
        let dir = checked_in();
        let generated = schemas();
        let mut stale = Vec::new();
        for (name, json) in &generated {
            match std::fs::read_to_string(dir.join(name)) {
                Ok(on_disk) if on_disk == *json => {}
                Ok(_) => stale.push(format!("{name} differs")),
                Err(_) => stale.push(format!("{name} is missing")),
            }
        }
        let names: BTreeSet<&str> = generated.iter().map(|(n, _)| n.as_str()).collect();
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".json") && !names.contains(name.as_str()) {
                stale.push(format!("{name} is no longer generated"));
            }
        }
        assert!(
            stale.is_empty(),
            "schemas/ is stale: run `cargo run -p weft-model --example write-schemas` ({})",
            stale.join(", ")
        );
    }

    #[test]
    fn every_kind_has_a_draft07_document_schema() {
        let all = schemas();
        assert_eq!(all.len(), Kind::ALL.len() + 1);
        for kind in Kind::ALL {
            let name = schema_file_name(kind);
            let json = &all.iter().find(|(n, _)| *n == name).unwrap().1;
            let v: Value = serde_json::from_str(json).unwrap();
            assert_eq!(
                v["$schema"], "http://json-schema.org/draft-07/schema#",
                "{name}"
            );
            assert_eq!(
                v["properties"]["apiVersion"]["const"],
                kind.api_version(),
                "{name}"
            );
            assert_eq!(v["properties"]["kind"]["const"], kind.kind_name(), "{name}");
            assert_eq!(v["additionalProperties"], false, "{name}");
            let required: Vec<&str> = v["required"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(Value::as_str)
                .collect();
            for field in ["apiVersion", "kind", "metadata"] {
                assert!(required.contains(&field), "{name} does not require {field}");
            }
            // draft-07 keeps definitions under "definitions" and has no "$defs".
            assert!(!json.contains("$defs"), "{name}");
        }
        let any: Value = serde_json::from_str(&all.last().unwrap().1).unwrap();
        assert_eq!(all.last().unwrap().0, "weft.json");
        assert_eq!(any["allOf"].as_array().unwrap().len(), Kind::ALL.len() + 1);
        assert!(any["definitions"]["List"].is_object());
    }

    #[test]
    fn schemas_use_upstream_spellings() {
        let all: String = schemas().into_iter().map(|(_, j)| j).collect();
        for field in [
            "\"notICMP\"",
            "\"containerID\"",
            "\"ipv4Gateway\"",
            "\"ipNATs\"",
            "\"bpfMapSizeNATFrontend\"",
            "\"bpfMapSizePerCpuConntrack\"",
            "\"bpfConntrackMode\"",
            "\"externalNodesList\"",
            "\"wireguardKeepAlive\"",
            "\"deviceRouteSourceAddressIPv6\"",
            "\"floatingIPs\"",
            "\"prometheusWireGuardMetricsEnabled\"",
            "\"preDNAT\"",
            "\"expectedIPs\"",
            "\"clusterIPs\"",
            "\"podCIDRs\"",
        ] {
            assert!(all.contains(field), "no field {field} in the schemas");
        }
        let felix: Value = serde_json::from_str(
            &schemas()
                .into_iter()
                .find(|(n, _)| n == "felixconfiguration.json")
                .unwrap()
                .1,
        )
        .unwrap();
        // Every field of Calico's FelixConfigurationSpec, and weft's own settings.
        let fields = felix["definitions"]["FelixConfigurationSpec"]["properties"]
            .as_object()
            .unwrap();
        let weft_own = ["bpfExternalServiceAcceleration"];
        for f in weft_own {
            assert!(fields.contains_key(f), "no field {f}");
        }
        assert_eq!(fields.len() - weft_own.len(), 188);
    }
}
