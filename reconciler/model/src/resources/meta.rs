//! Pieces shared by Calico and Kubernetes resources: object metadata, Kubernetes label
//! selectors, status conditions and object references.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Kubernetes object metadata. weft reads the name, namespace, labels and annotations; the fields
/// an API server sets (uid, resourceVersion, timestamps, managedFields...) are accepted so that
/// `kubectl get -o yaml` output loads, checked for their shape, and not kept.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ObjectMeta {
    /// The resource's name, unique per kind (and namespace, for namespaced kinds).
    pub name: String,
    /// For namespaced kinds; "default" when absent. Not allowed on cluster-wide kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(
        default,
        deserialize_with = "text_map",
        skip_serializing_if = "Labels::is_empty"
    )]
    pub labels: Labels,
    #[serde(
        default,
        deserialize_with = "text_map",
        skip_serializing_if = "Labels::is_empty"
    )]
    pub annotations: Labels,
    #[serde(default, skip_serializing_if = "Ignored::skip")]
    pub generate_name: Ignored<Option<String>>,
    #[serde(default, skip_serializing_if = "Ignored::skip")]
    pub self_link: Ignored<Option<String>>,
    #[serde(default, skip_serializing_if = "Ignored::skip")]
    pub uid: Ignored<Option<String>>,
    #[serde(default, skip_serializing_if = "Ignored::skip")]
    pub resource_version: Ignored<Option<String>>,
    #[serde(default, skip_serializing_if = "Ignored::skip")]
    pub generation: Ignored<Option<i64>>,
    #[serde(default, skip_serializing_if = "Ignored::skip")]
    pub creation_timestamp: Ignored<Option<serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Ignored::skip")]
    pub deletion_timestamp: Ignored<Option<serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Ignored::skip")]
    pub deletion_grace_period_seconds: Ignored<Option<i64>>,
    #[serde(default, skip_serializing_if = "Ignored::skip")]
    pub finalizers: Ignored<Vec<String>>,
    #[serde(default, skip_serializing_if = "Ignored::skip")]
    pub owner_references: Ignored<Vec<serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Ignored::skip")]
    pub managed_fields: Ignored<Vec<serde_json::Value>>,
}

/// A field weft accepts, checks the shape of (it must read as a `T`) and then drops: it takes no
/// room in the resource. The fields an API server or controller writes (uid, managedFields, an
/// endpoint's targetRef...) are such fields; keeping them cost 11 MB at 10,000 endpoints,
/// policies and services. Its schema is `T`'s; two are always equal; it is never written out.
pub struct Ignored<T>(std::marker::PhantomData<fn() -> T>);

impl<T> Default for Ignored<T> {
    fn default() -> Self {
        Ignored(std::marker::PhantomData)
    }
}

impl<T> Clone for Ignored<T> {
    fn clone(&self) -> Self {
        Ignored::default()
    }
}

impl<T> std::fmt::Debug for Ignored<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ignored")
    }
}

impl<T> PartialEq for Ignored<T> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl<T> Ignored<T> {
    /// For `skip_serializing_if`: there is nothing to write.
    pub fn skip(&self) -> bool {
        true
    }
}

/// Never called where fields say `skip_serializing_if = "Ignored::skip"`; writes nothing.
impl<T> Serialize for Ignored<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_none()
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Ignored<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        T::deserialize(d).map(|_| Ignored::default())
    }
}

impl<T: JsonSchema> JsonSchema for Ignored<T> {
    fn inline_schema() -> bool {
        T::inline_schema()
    }

    fn schema_name() -> std::borrow::Cow<'static, str> {
        T::schema_name()
    }

    fn schema_id() -> std::borrow::Cow<'static, str> {
        T::schema_id()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        T::json_schema(generator)
    }
}

/// Reads a map of text values (labels, annotations, label selectors) as Kubernetes does: each
/// value must be a YAML string. serde_yaml would hand over any scalar's text, so `version: 1.10`
/// loaded as the label "1.10" although YAML (and kubectl, calicoctl, the JSON Schemas) reads
/// it as the number 1.1, and a tool that rewrites the file (yq, kustomize) writes 1.1.
pub(crate) fn text_map<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Labels, D::Error> {
    struct Text(String);
    impl<'de> Deserialize<'de> for Text {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Text, D::Error> {
            d.deserialize_any(TextVisitor)
        }
    }
    struct TextVisitor;
    impl serde::de::Visitor<'_> for TextVisitor {
        type Value = Text;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("text")
        }
        fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Text, E> {
            Ok(Text(s.to_string()))
        }
        fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Text, E> {
            Err(unquoted(&format!("the number {n}")))
        }
        fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Text, E> {
            Err(unquoted(&format!("the number {n}")))
        }
        fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<Text, E> {
            Err(unquoted(&format!("the number {n}")))
        }
        fn visit_bool<E: serde::de::Error>(self, b: bool) -> Result<Text, E> {
            Err(unquoted(&format!("the boolean {b}")))
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Text, E> {
            Err(E::custom(
                "a value is missing: values here are text; write \"\" for an empty one",
            ))
        }
    }
    fn unquoted<E: serde::de::Error>(what: &str) -> E {
        E::custom(format!(
            "YAML reads this unquoted value as {what}, and values here are text; write it in quotes exactly as meant, such as \"1.10\""
        ))
    }
    let map: Vec<(String, Text)> = d.deserialize_map(Pairs(Vec::new()))?;
    Ok(map.into_iter().map(|(k, v)| (k, v.0)).collect())
}

/// Reads a map's pairs as written, without building a map on the way.
struct Pairs<V>(Vec<(String, V)>);

impl<'de, V: Deserialize<'de>> serde::de::Visitor<'de> for Pairs<V> {
    type Value = Vec<(String, V)>;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a map")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(
        mut self,
        mut map: A,
    ) -> Result<Self::Value, A::Error> {
        while let Some(pair) = map.next_entry()? {
            self.0.push(pair);
        }
        Ok(self.0)
    }
}

/// Text keys to text values in key order, each key once: labels, annotations, matchLabels, a
/// Service's selector. A sorted vector of exactly its pairs rather than a `BTreeMap`, which
/// gives even one label a node with room for eleven: at 10,000 endpoints, policies and
/// services that was 27 MB of a 230 MB peak. Lookups are binary searches, as in the map.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Labels(Vec<(String, String)>);

impl Labels {
    pub fn new() -> Labels {
        Labels::default()
    }

    fn find(&self, key: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| k.as_str().cmp(key))
    }

    pub fn get(&self, key: &str) -> Option<&String> {
        self.find(key).ok().map(|i| &self.0[i].1)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.find(key).is_ok()
    }

    /// Sets `key`, giving back the value it replaces.
    pub fn insert(&mut self, key: String, value: String) -> Option<String> {
        match self.find(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, value)),
            Err(i) => {
                self.0.insert(i, (key, value));
                None
            }
        }
    }

    pub fn remove(&mut self, key: &str) -> Option<String> {
        self.find(key).ok().map(|i| self.0.remove(i).1)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> LabelsIter<'_> {
        LabelsIter(self.0.iter())
    }

    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.0.iter().map(|(k, _)| k)
    }
}

/// The pairs of `Labels`, in key order.
pub struct LabelsIter<'a>(std::slice::Iter<'a, (String, String)>);

impl<'a> Iterator for LabelsIter<'a> {
    type Item = (&'a String, &'a String);
    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(|(k, v)| (k, v))
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl<'a> IntoIterator for &'a Labels {
    type Item = (&'a String, &'a String);
    type IntoIter = LabelsIter<'a>;
    fn into_iter(self) -> LabelsIter<'a> {
        self.iter()
    }
}

impl IntoIterator for Labels {
    type Item = (String, String);
    type IntoIter = std::vec::IntoIter<(String, String)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// A later pair wins over an earlier one with the same key, as in a map.
impl FromIterator<(String, String)> for Labels {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(pairs: I) -> Labels {
        let mut v: Vec<(String, String)> = pairs.into_iter().collect();
        // Stable, so pairs with one key stay in the order given, the last kept.
        v.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out: Vec<(String, String)> = Vec::with_capacity(v.len());
        for pair in v {
            match out.last_mut() {
                Some(last) if last.0 == pair.0 => *last = pair,
                _ => out.push(pair),
            }
        }
        out.shrink_to_fit();
        Labels(out)
    }
}

impl Extend<(String, String)> for Labels {
    fn extend<I: IntoIterator<Item = (String, String)>>(&mut self, pairs: I) {
        for (k, v) in pairs {
            self.insert(k, v);
        }
    }
}

impl<const N: usize> From<[(String, String); N]> for Labels {
    fn from(pairs: [(String, String); N]) -> Labels {
        pairs.into_iter().collect()
    }
}

impl From<BTreeMap<String, String>> for Labels {
    fn from(map: BTreeMap<String, String>) -> Labels {
        Labels(map.into_iter().collect())
    }
}

impl From<Labels> for BTreeMap<String, String> {
    fn from(labels: Labels) -> BTreeMap<String, String> {
        labels.0.into_iter().collect()
    }
}

/// The value of a key that must be there, as a map's index gives it.
impl std::ops::Index<&str> for Labels {
    type Output = String;
    fn index(&self, key: &str) -> &String {
        self.get(key)
            .unwrap_or_else(|| panic!("no label {key:?} among {self:?}"))
    }
}

impl std::fmt::Debug for Labels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Serialize for Labels {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

impl JsonSchema for Labels {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> std::borrow::Cow<'static, str> {
        <BTreeMap<String, String>>::schema_name()
    }

    fn schema_id() -> std::borrow::Cow<'static, str> {
        <BTreeMap<String, String>>::schema_id()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        <BTreeMap<String, String>>::json_schema(generator)
    }
}

/// A Kubernetes label selector: every matchLabels pair and every expression must hold. An empty
/// selector selects everything.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LabelSelector {
    #[serde(
        default,
        deserialize_with = "text_map",
        skip_serializing_if = "Labels::is_empty"
    )]
    pub match_labels: Labels,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LabelSelectorRequirement {
    pub key: String,
    pub operator: LabelSelectorOperator,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum LabelSelectorOperator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

/// A status condition (metav1.Condition and the older per-kind variants). Status is written by
/// controllers, so weft accepts it and does not look at it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub condition_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A reference to another object (an EndpointSlice endpoint's targetRef).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ObjectReference {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field_path: Option<String>,
}

/// Ingress or Egress: which direction a policy applies to.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum PolicyType {
    Ingress,
    Egress,
}
