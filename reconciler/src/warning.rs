//! Warnings: what the configuration asks that this host cannot do as asked. They are said (by
//! `weft diff`, `weft apply`, the daemon's log) and the rest is applied. Each says what it is
//! about, so that a caller can tell a service's warnings from an endpoint's without reading
//! the message (the incremental path replaces one service's warnings alone).

use std::fmt;

/// One warning.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Warning {
    /// What it concerns.
    #[serde(flatten)]
    pub about: About,
    /// For people: the file, the resource and what happens instead.
    pub message: String,
}

/// What a warning concerns. The order of the variants is the order warnings are given in.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(tag = "about", content = "name", rename_all = "kebab-case")]
pub enum About {
    /// A WorkloadEndpoint, as namespace/name.
    Endpoint(String),
    /// A Service, as namespace/name.
    Service(String),
    /// The host as a whole (no cgroup2 hierarchy, say).
    Host,
    /// Another resource of the files, as `Kind namespace/name`.
    Resource(String),
}

impl Warning {
    pub fn endpoint(name: impl Into<String>, message: impl Into<String>) -> Warning {
        Warning {
            about: About::Endpoint(name.into()),
            message: message.into(),
        }
    }

    pub fn service(name: impl Into<String>, message: impl Into<String>) -> Warning {
        Warning {
            about: About::Service(name.into()),
            message: message.into(),
        }
    }

    pub fn resource(name: impl Into<String>, message: impl Into<String>) -> Warning {
        Warning {
            about: About::Resource(name.into()),
            message: message.into(),
        }
    }

    pub fn host(message: impl Into<String>) -> Warning {
        Warning {
            about: About::Host,
            message: message.into(),
        }
    }

    pub fn is_service(&self) -> bool {
        matches!(self.about, About::Service(_))
    }

    /// Where it goes among the others: endpoints', then services', then the host's.
    fn rank(&self) -> u8 {
        match self.about {
            About::Endpoint(_) => 0,
            About::Service(_) => 1,
            About::Host => 2,
            About::Resource(_) => 3,
        }
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Puts warnings in the order they are given in: by what they concern, each kind in the order
/// it was found (a stable sort), so that any two computations of one configuration agree.
pub fn order(warnings: &mut [Warning]) {
    warnings.sort_by_key(Warning::rank);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_then_services_then_the_host_each_in_the_order_found() {
        let mut w = vec![
            Warning::host("h"),
            Warning::service("shop/b", "b"),
            Warning::endpoint("shop/a", "a2"),
            Warning::service("shop/a", "a"),
            Warning::endpoint("shop/a", "a1"),
        ];
        order(&mut w);
        let said: Vec<String> = w.iter().map(ToString::to_string).collect();
        assert_eq!(said, ["a2", "a1", "b", "a", "h"]);
        assert_eq!(
            serde_json::to_value(&w[2]).unwrap(),
            serde_json::json!({"about": "service", "name": "shop/b", "message": "b"})
        );
    }
}
