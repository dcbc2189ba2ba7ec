//! Small network value types shared by the resources and the policy IR: CIDRs, numbers that may
//! be written as strings, protocols, ports and MAC addresses. Parsing here never fails loudly: it
//! returns a message that says what was wrong and what to write instead, and validation attaches
//! the file position.

use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An IP network with its host bits cleared, e.g. `10.0.0.0/8` or `fd00::/64`. A bare address
/// parses as a single-address network (/32 or /128); host bits are masked, as Calico does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Cidr {
    V4 { addr: Ipv4Addr, len: u8 },
    V6 { addr: Ipv6Addr, len: u8 },
}

impl Cidr {
    /// The network of `addr` with prefix length `len`, host bits cleared; None if `len` is too
    /// long for the address family.
    pub fn new(addr: IpAddr, len: u8) -> Option<Cidr> {
        match addr {
            IpAddr::V4(a) if len <= 32 => {
                let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
                Some(Cidr::V4 {
                    addr: Ipv4Addr::from(u32::from(a) & mask),
                    len,
                })
            }
            IpAddr::V6(a) if len <= 128 => {
                let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
                Some(Cidr::V6 {
                    addr: Ipv6Addr::from(u128::from(a) & mask),
                    len,
                })
            }
            _ => None,
        }
    }

    /// The single-address network of `addr` (/32 or /128).
    pub fn host(addr: IpAddr) -> Cidr {
        match addr {
            IpAddr::V4(addr) => Cidr::V4 { addr, len: 32 },
            IpAddr::V6(addr) => Cidr::V6 { addr, len: 128 },
        }
    }

    pub fn addr(&self) -> IpAddr {
        match *self {
            Cidr::V4 { addr, .. } => IpAddr::V4(addr),
            Cidr::V6 { addr, .. } => IpAddr::V6(addr),
        }
    }

    pub fn prefix_len(&self) -> u8 {
        match *self {
            Cidr::V4 { len, .. } | Cidr::V6 { len, .. } => len,
        }
    }

    pub fn is_v4(&self) -> bool {
        matches!(self, Cidr::V4 { .. })
    }

    /// 4 or 6.
    pub fn ip_version(&self) -> u8 {
        if self.is_v4() {
            4
        } else {
            6
        }
    }

    /// True for `0.0.0.0/0` and `::/0`.
    pub fn is_everything(&self) -> bool {
        self.prefix_len() == 0
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        Cidr::new(ip, self.prefix_len()).is_some_and(|n| n == *self)
    }

    /// True if every address of `other` is in `self`.
    pub fn contains_cidr(&self, other: &Cidr) -> bool {
        other.prefix_len() >= self.prefix_len() && self.contains(other.addr())
    }

    /// Parses a CIDR or bare address and also says whether host bits had to be cleared, for the
    /// few places (IP pools) where Calico insists on a strictly masked network.
    pub fn parse_reporting_host_bits(s: &str) -> Result<(Cidr, bool), String> {
        let bad = || {
            let example = if s.contains(':') {
                "fd00::/64"
            } else {
                "10.0.0.0/8"
            };
            format!("{s:?} is not a CIDR; write an address and prefix length such as {example}")
        };
        let (addr, len) = match s.split_once('/') {
            Some((addr, len)) => (addr, Some(len)),
            None => (s, None),
        };
        let addr = IpAddr::from_str(addr).map_err(|_| bad())?;
        let len = match len {
            None => match addr {
                IpAddr::V4(_) => 32,
                IpAddr::V6(_) => 128,
            },
            Some(len) if !len.is_empty() && len.bytes().all(|b| b.is_ascii_digit()) => {
                len.parse::<u8>().map_err(|_| bad())?
            }
            Some(_) => return Err(bad()),
        };
        let cidr = Cidr::new(addr, len).ok_or_else(bad)?;
        Ok((cidr, cidr.addr() != addr))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr(), self.prefix_len())
    }
}

impl Serialize for Cidr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidr, String> {
        Cidr::parse_reporting_host_bits(s).map(|(cidr, _)| cidr)
    }
}

/// Parses a single IP address, with a message that says what to write instead.
pub fn parse_ip(s: &str) -> Result<IpAddr, String> {
    IpAddr::from_str(s).map_err(|_| {
        format!("{s:?} is not an IP address; write an address such as 10.0.0.1 or fd00::1")
    })
}

/// A value that upstream accepts either as a number or as a string (Kubernetes' IntOrString,
/// Calico's numorstring types): ports, protocols, target ports, DSCP values.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IntOrString {
    Int(i64),
    String(String),
}

impl fmt::Display for IntOrString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IntOrString::Int(n) => write!(f, "{n}"),
            IntOrString::String(s) => f.write_str(s),
        }
    }
}

impl From<i64> for IntOrString {
    fn from(n: i64) -> Self {
        IntOrString::Int(n)
    }
}

impl From<&str> for IntOrString {
    fn from(s: &str) -> Self {
        IntOrString::String(s.to_string())
    }
}

impl<'de> Deserialize<'de> for IntOrString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = IntOrString;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number or a string")
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<IntOrString, E> {
                Ok(IntOrString::Int(n))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<IntOrString, E> {
                i64::try_from(n)
                    .map(IntOrString::Int)
                    .map_err(|_| E::custom(format!("{n} is too large")))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<IntOrString, E> {
                Ok(IntOrString::String(s.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for IntOrString {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            IntOrString::Int(n) => s.serialize_i64(*n),
            IntOrString::String(v) => s.serialize_str(v),
        }
    }
}

impl JsonSchema for IntOrString {
    fn schema_name() -> Cow<'static, str> {
        "IntOrString".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        schemars::json_schema!({
            "description": "A number or a string.",
            "anyOf": [{ "type": "integer" }, { "type": "string" }]
        })
    }
}

/// IANA protocol numbers weft names.
pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_ICMPV6: u8 = 58;
pub const PROTO_SCTP: u8 = 132;
pub const PROTO_UDPLITE: u8 = 136;

const PROTOCOL_NAMES: [(&str, u8); 6] = [
    ("TCP", PROTO_TCP),
    ("UDP", PROTO_UDP),
    ("ICMP", PROTO_ICMP),
    ("ICMPv6", PROTO_ICMPV6),
    ("SCTP", PROTO_SCTP),
    ("UDPLite", PROTO_UDPLITE),
];

/// The JSON Schema of a Calico protocol, as Calico's validator takes it (libcalico-go's
/// `validateProtocol`): a number from 1 to 255, possibly written as a string, or one of the
/// names spelled exactly so (it refuses `tcp`). Only for the schema: the loader reads the field
/// as an `IntOrString` and `parse_protocol` says what to write instead.
pub struct ProtocolSchema;

impl JsonSchema for ProtocolSchema {
    fn schema_name() -> Cow<'static, str> {
        "Protocol".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        let names: Vec<&str> = PROTOCOL_NAMES.iter().map(|(name, _)| *name).collect();
        schemars::json_schema!({
            "description": "TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite (case-sensitive) or a number from 1 to 255.",
            "anyOf": [
                { "type": "integer", "minimum": 1, "maximum": 255 },
                { "type": "string", "enum": names },
                { "type": "string", "pattern": "^0*(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]?)$" }
            ]
        })
    }
}

/// The JSON Schema of an endpoint port's protocol: one that has ports (TCP, UDP or SCTP), as
/// Calico's validator requires of a named port.
pub struct PortProtocolSchema;

impl JsonSchema for PortProtocolSchema {
    fn schema_name() -> Cow<'static, str> {
        "PortProtocol".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        schemars::json_schema!({
            "description": "TCP, UDP or SCTP (case-sensitive), or their numbers 6, 17 or 132.",
            "anyOf": [
                { "type": "integer", "enum": [PROTO_TCP, PROTO_UDP, PROTO_SCTP] },
                { "type": "string", "enum": ["TCP", "UDP", "SCTP"] },
                { "type": "string", "pattern": "^0*(6|17|132)$" }
            ]
        })
    }
}

/// Parses a Calico protocol: one of the names (spelled exactly as Calico spells them) or a number
/// from 1 to 255, possibly written as a string.
pub fn parse_protocol(v: &IntOrString) -> Result<u8, String> {
    const WRITE: &str = "write TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite or a number from 1 to 255";
    match v {
        IntOrString::Int(n) => match u8::try_from(*n) {
            Ok(p) if p > 0 => Ok(p),
            _ => Err(format!("protocol {n} is out of range; {WRITE}")),
        },
        IntOrString::String(s) => {
            if let Some((_, p)) = PROTOCOL_NAMES.iter().find(|(name, _)| name == s) {
                return Ok(*p);
            }
            if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
                return parse_protocol(&IntOrString::Int(s.parse().unwrap_or(i64::MAX)));
            }
            match PROTOCOL_NAMES
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(s))
            {
                Some((name, _)) => Err(format!(
                    "protocol {s:?} is not known; protocol names are case-sensitive: write {name}"
                )),
                None => Err(format!("protocol {s:?} is not known; {WRITE}")),
            }
        }
    }
}

/// The name Calico uses for a protocol number, or the number itself.
pub fn protocol_name(p: u8) -> Cow<'static, str> {
    match PROTOCOL_NAMES.iter().find(|(_, n)| *n == p) {
        Some((name, _)) => Cow::Borrowed(name),
        None => Cow::Owned(p.to_string()),
    }
}

/// True for the protocols that have ports: TCP, UDP and SCTP.
pub fn protocol_has_ports(p: u8) -> bool {
    matches!(p, PROTO_TCP | PROTO_UDP | PROTO_SCTP)
}

/// One port match in a rule: an inclusive range of port numbers, or the name of a port that
/// endpoints declare (resolved per endpoint by the policy compiler).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PortMatch {
    Range { lo: u16, hi: u16 },
    Named(String),
}

impl PortMatch {
    pub fn single(port: u16) -> PortMatch {
        PortMatch::Range { lo: port, hi: port }
    }
}

impl fmt::Display for PortMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortMatch::Range { lo, hi } if lo == hi => write!(f, "{lo}"),
            PortMatch::Range { lo, hi } => write!(f, "{lo}:{hi}"),
            PortMatch::Named(name) => f.write_str(name),
        }
    }
}

impl Serialize for PortMatch {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            PortMatch::Range { lo, hi } if lo == hi => s.serialize_u16(*lo),
            m => s.collect_str(m),
        }
    }
}

/// Parses a port of a Calico rule: a number, a "lo:hi" range or a port name (1 to 128 letters,
/// digits, '_', '.' or '-').
pub fn parse_rule_port(v: &IntOrString) -> Result<PortMatch, String> {
    const WRITE: &str = "write a number from 0 to 65535, a range such as 8000:8080 or a port name";
    let number = |s: &str| -> Result<u16, String> {
        s.parse::<u16>()
            .map_err(|_| format!("port {s} is out of range; {WRITE}"))
    };
    match v {
        IntOrString::Int(n) => u16::try_from(*n)
            .map(PortMatch::single)
            .map_err(|_| format!("port {n} is out of range; {WRITE}")),
        IntOrString::String(s) => {
            let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
            if all_digits(s) {
                return number(s).map(PortMatch::single);
            }
            if let Some((lo, hi)) = s.split_once(':') {
                if all_digits(lo) && all_digits(hi) {
                    let (lo, hi) = (number(lo)?, number(hi)?);
                    if lo > hi {
                        return Err(format!(
                            "port range {s:?} starts after it ends; write the lower port first, such as {hi}:{lo}"
                        ));
                    }
                    return Ok(PortMatch::Range { lo, hi });
                }
            }
            if is_calico_port_name(s) {
                Ok(PortMatch::Named(s.clone()))
            } else {
                Err(format!(
                    "{s:?} is not a port; {WRITE} (letters, digits, '_', '.' or '-', at most 128)"
                ))
            }
        }
    }
}

fn is_calico_port_name(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Kubernetes' rule for port names (IANA service names): 1 to 15 lower-case letters, digits
/// and '-', at least one letter, no '-' at either end and no "--".
pub fn iana_port_name_problem(s: &str) -> Option<&'static str> {
    if s.is_empty() || s.len() > 15 {
        Some("must be 1 to 15 characters")
    } else if !s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        Some("may contain only lower-case letters, digits and '-'")
    } else if !s.bytes().any(|b| b.is_ascii_lowercase()) {
        Some("must contain at least one letter")
    } else if s.starts_with('-') || s.ends_with('-') || s.contains("--") {
        Some("must not start or end with '-' or contain \"--\"")
    } else {
        None
    }
}

/// Parses a MAC address written as six pairs of hex digits separated by ':' or '-'.
pub fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let bad = || {
        format!(
            "{s:?} is not a MAC address; write six pairs of hex digits such as 02:42:ac:11:00:02"
        )
    };
    let sep = if s.contains('-') { '-' } else { ':' };
    let parts: Vec<&str> = s.split(sep).collect();
    if parts.len() != 6 {
        return Err(bad());
    }
    let mut mac = [0u8; 6];
    for (byte, part) in mac.iter_mut().zip(parts) {
        if part.len() != 2 {
            return Err(bad());
        }
        *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
    }
    Ok(mac)
}

/// Linux interface names as Calico accepts them: 1 to 15 letters, digits, '_', '.' or '-'.
pub fn interface_name_problem(s: &str) -> Option<String> {
    let ok = (1..=15).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    (!ok).then(|| {
        format!("{s:?} is not an interface name; write 1 to 15 letters, digits, '_', '.' or '-', such as eth0")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parses_and_masks() {
        let c: Cidr = "10.1.2.3/8".parse().unwrap();
        assert_eq!(c.to_string(), "10.0.0.0/8");
        assert!(Cidr::parse_reporting_host_bits("10.1.2.3/8").unwrap().1);
        assert!(!Cidr::parse_reporting_host_bits("10.0.0.0/8").unwrap().1);
        assert_eq!(
            "10.0.0.7".parse::<Cidr>().unwrap().to_string(),
            "10.0.0.7/32"
        );
        assert_eq!(
            "fd00::1:2/64".parse::<Cidr>().unwrap().to_string(),
            "fd00::/64"
        );
        assert_eq!("::1".parse::<Cidr>().unwrap().prefix_len(), 128);
        assert_eq!("0.0.0.0/0".parse::<Cidr>().unwrap().prefix_len(), 0);
        assert!("::/0".parse::<Cidr>().unwrap().is_everything());
    }

    #[test]
    fn cidr_rejects_nonsense_with_advice() {
        assert_eq!(
            "10.0.0.300/8".parse::<Cidr>().unwrap_err(),
            "\"10.0.0.300/8\" is not a CIDR; write an address and prefix length such as 10.0.0.0/8"
        );
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("10.0.0.0/".parse::<Cidr>().is_err());
        assert!("10.0.0.0/+8".parse::<Cidr>().is_err());
        assert!("fd00::/129"
            .parse::<Cidr>()
            .unwrap_err()
            .contains("fd00::/64"));
    }

    #[test]
    fn cidr_containment() {
        let net: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(net.contains("10.9.9.9".parse().unwrap()));
        assert!(!net.contains("11.0.0.1".parse().unwrap()));
        assert!(!net.contains("::1".parse().unwrap()));
        assert!(net.contains_cidr(&"10.1.0.0/16".parse().unwrap()));
        assert!(!net.contains_cidr(&"0.0.0.0/0".parse().unwrap()));
    }

    #[test]
    fn protocols() {
        assert_eq!(parse_protocol(&"TCP".into()), Ok(6));
        assert_eq!(parse_protocol(&"UDPLite".into()), Ok(136));
        assert_eq!(parse_protocol(&"58".into()), Ok(58));
        assert_eq!(parse_protocol(&IntOrString::Int(132)), Ok(132));
        assert_eq!(
            parse_protocol(&"tcp".into()).unwrap_err(),
            "protocol \"tcp\" is not known; protocol names are case-sensitive: write TCP"
        );
        assert!(parse_protocol(&IntOrString::Int(0)).is_err());
        assert!(parse_protocol(&IntOrString::Int(256)).is_err());
        assert!(parse_protocol(&"GRE".into())
            .unwrap_err()
            .contains("ICMPv6"));
        assert_eq!(protocol_name(58), "ICMPv6");
        assert_eq!(protocol_name(47), "47");
    }

    #[test]
    fn rule_ports() {
        assert_eq!(
            parse_rule_port(&IntOrString::Int(80)),
            Ok(PortMatch::single(80))
        );
        assert_eq!(parse_rule_port(&"443".into()), Ok(PortMatch::single(443)));
        assert_eq!(
            parse_rule_port(&"8000:8080".into()),
            Ok(PortMatch::Range { lo: 8000, hi: 8080 })
        );
        assert_eq!(
            parse_rule_port(&"http-alt".into()),
            Ok(PortMatch::Named("http-alt".into()))
        );
        assert!(parse_rule_port(&"9:8".into()).unwrap_err().contains("8:9"));
        assert!(parse_rule_port(&IntOrString::Int(65536)).is_err());
        assert!(parse_rule_port(&"70000".into()).is_err());
        assert!(parse_rule_port(&"a b".into()).is_err());
        assert_eq!(PortMatch::Range { lo: 1, hi: 2 }.to_string(), "1:2");
    }

    #[test]
    fn macs_and_interfaces() {
        assert_eq!(
            parse_mac("02:42:AC:11:00:02"),
            Ok([2, 0x42, 0xac, 0x11, 0, 2])
        );
        assert_eq!(
            parse_mac("02-42-ac-11-00-02"),
            Ok([2, 0x42, 0xac, 0x11, 0, 2])
        );
        assert!(parse_mac("02:42:ac:11:00").is_err());
        assert!(parse_mac("02:42:ac:11:00:zz").is_err());
        assert!(interface_name_problem("cali1234567890a").is_none());
        assert!(interface_name_problem("cali1234567890ab").is_some());
        assert!(interface_name_problem("a/b").is_some());
        assert!(interface_name_problem("").is_some());
        assert_eq!(iana_port_name_problem("http"), None);
        assert!(iana_port_name_problem("HTTP").is_some());
        assert!(iana_port_name_problem("80").is_some());
        assert!(iana_port_name_problem("a--b").is_some());
    }
}
