//! The subset of the pcap filter language (`man pcap-filter`) that weft's packet traces
//! understand: what FelixConfiguration `bpfLogFilters` values may say.
//!
//! Calico compiles each expression with libpcap into classic BPF inside its programs. weft
//! instead compiles a conjunction of simple primitives into a small fixed match that the one
//! shared program checks from a map entry per interface, so a filter costs neither a reload
//! nor a per-interface program. The subset:
//!
//! ```text
//! expr  := "" | "all" | prim (("and" | "&&") prim)*
//! prim  := ["src" | "dst"] "host" ADDR          an IPv4 address
//!        | ["src" | "dst"] "net" ADDR/LEN        an IPv4 network
//!        | [PROTO] ["src" | "dst"] "port" N      TCP, UDP or SCTP port (PROTO narrows it)
//!        | PROTO                                 "tcp", "udp", "icmp" or "sctp"
//!        | "ip"                                  IPv4 packets (not ARP or IPv6)
//! ```
//!
//! Without `src` or `dst`, a host, net or port matches either side, as in pcap. At most
//! [`MAX_HOSTS`] host/net terms and [`MAX_PORTS`] port terms; anything else (`or`, `not`,
//! parentheses, host names, port ranges, IPv6) is an error that says what is supported.

use std::fmt;
use std::net::Ipv4Addr;

/// Host and net terms a filter may hold (the fixed match's address slots).
pub const MAX_HOSTS: usize = 4;
/// Port terms a filter may hold.
pub const MAX_PORTS: usize = 4;

/// What the subset supports, for error messages.
pub const SUPPORTED: &str =
    "weft supports host A, net A/LEN, port N (each optionally after src or dst), \
tcp, udp, icmp, sctp, ip and tcp/udp/sctp port N, joined by and; empty or all traces every packet";

/// Which side of a packet a term looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Side {
    Src,
    Dst,
    /// Either the source or the destination.
    Either,
}

impl Side {
    fn prefix(self) -> &'static str {
        match self {
            Side::Src => "src ",
            Side::Dst => "dst ",
            Side::Either => "",
        }
    }
}

/// `[src|dst] host A` (len 32) or `[src|dst] net A/LEN`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostTerm {
    pub side: Side,
    /// The network, host bits cleared.
    pub addr: Ipv4Addr,
    pub len: u8,
}

/// `[src|dst] port N`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortTerm {
    pub side: Side,
    pub port: u16,
}

/// A parsed filter: every term must match. The empty filter matches every packet.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct PacketFilter {
    /// Only IPv4 packets (any term implies it).
    pub ipv4: bool,
    /// Only this IP protocol.
    pub proto: Option<u8>,
    pub hosts: Vec<HostTerm>,
    pub ports: Vec<PortTerm>,
}

impl PacketFilter {
    /// True for the filter that matches every packet.
    pub fn is_everything(&self) -> bool {
        *self == PacketFilter::default()
    }
}

/// The filter in the subset's own words (the canonical form `weft diff` shows).
impl fmt::Display for PacketFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        match self.proto {
            Some(p) => parts.push(proto_name(p).to_string()),
            None if self.ipv4 && self.hosts.is_empty() && self.ports.is_empty() => {
                parts.push("ip".into())
            }
            None => {}
        }
        for h in &self.hosts {
            if h.len == 32 {
                parts.push(format!("{}host {}", h.side.prefix(), h.addr));
            } else {
                parts.push(format!("{}net {}/{}", h.side.prefix(), h.addr, h.len));
            }
        }
        for p in &self.ports {
            parts.push(format!("{}port {}", p.side.prefix(), p.port));
        }
        if parts.is_empty() {
            f.write_str("all")
        } else {
            f.write_str(&parts.join(" and "))
        }
    }
}

/// Why an expression is not in the subset; `column` is 1-based, in characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterError {
    pub column: usize,
    pub message: String,
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at column {})", self.message, self.column)
    }
}

const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
const PROTO_ICMP: u8 = 1;
const PROTO_SCTP: u8 = 132;

fn proto_named(word: &str) -> Option<u8> {
    Some(match word {
        "tcp" => PROTO_TCP,
        "udp" => PROTO_UDP,
        "icmp" => PROTO_ICMP,
        "sctp" => PROTO_SCTP,
        _ => return None,
    })
}

fn proto_name(p: u8) -> &'static str {
    match p {
        PROTO_TCP => "tcp",
        PROTO_UDP => "udp",
        PROTO_ICMP => "icmp",
        PROTO_SCTP => "sctp",
        _ => "ip",
    }
}

/// A word of the expression and the column it starts at.
#[derive(Clone, Copy)]
struct Token<'a> {
    word: &'a str,
    column: usize,
}

/// Words separated by white space; `&&`, `||`, `!`, `(` and `)` are words of their own even
/// when written against their neighbours, so that they can be refused by name.
fn tokens(text: &str) -> Vec<Token<'_>> {
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let column_of = |byte: usize| text[..byte].chars().count() + 1;
    let mut i = 0;
    while i < chars.len() {
        let (b, c) = chars[i];
        let two = text[b..].get(..2);
        let op_len = if matches!(two, Some("&&") | Some("||")) {
            2
        } else if matches!(c, '!' | '(' | ')') {
            1
        } else {
            0
        };
        if c.is_whitespace() || op_len > 0 {
            if let Some(s) = start.take() {
                out.push(Token {
                    word: &text[s..b],
                    column: column_of(s),
                });
            }
            if op_len > 0 {
                out.push(Token {
                    word: &text[b..b + op_len],
                    column: column_of(b),
                });
                i += op_len;
                continue;
            }
        } else if start.is_none() {
            start = Some(b);
        }
        i += 1;
    }
    if let Some(s) = start {
        out.push(Token {
            word: &text[s..],
            column: column_of(s),
        });
    }
    out
}

struct Parser<'a> {
    toks: Vec<Token<'a>>,
    at: usize,
    /// The column just past the end, for "expected more" errors.
    end: usize,
    filter: PacketFilter,
}

impl<'a> Parser<'a> {
    fn err<T>(&self, column: usize, message: impl Into<String>) -> Result<T, FilterError> {
        Err(FilterError {
            column,
            message: message.into(),
        })
    }

    fn peek(&self) -> Option<Token<'a>> {
        self.toks.get(self.at).copied()
    }

    fn next(&mut self, wanted: &str) -> Result<Token<'a>, FilterError> {
        match self.peek() {
            Some(t) => {
                self.at += 1;
                Ok(t)
            }
            None => self.err(
                self.end,
                format!("the expression ends where {wanted} should follow"),
            ),
        }
    }

    fn unsupported(&self, t: Token<'_>) -> FilterError {
        let what = match t.word {
            "or" | "||" => "`or` is not supported".to_string(),
            "not" | "!" => "`not` is not supported".to_string(),
            "(" | ")" => "parentheses are not supported".to_string(),
            "portrange" => "port ranges are not supported".to_string(),
            "ip6" | "arp" | "rarp" | "ether" | "vlan" | "gateway" | "broadcast" | "multicast"
            | "less" | "greater" | "proto" | "inbound" | "outbound" => {
                format!("`{}` is not supported", t.word)
            }
            w => format!("{w:?} is not a primitive weft knows"),
        };
        FilterError {
            column: t.column,
            message: format!("{what}; {SUPPORTED}"),
        }
    }

    fn set_proto(&mut self, p: u8, t: Token<'_>) -> Result<(), FilterError> {
        match self.filter.proto {
            Some(q) if q != p => self.err(
                t.column,
                format!(
                    "{} and {} together match no packet; a filter can name one protocol",
                    proto_name(q),
                    proto_name(p)
                ),
            ),
            _ => {
                self.filter.proto = Some(p);
                Ok(())
            }
        }
    }

    fn primitive(&mut self) -> Result<(), FilterError> {
        let t = self.next("a primitive")?;
        self.filter.ipv4 = true;
        if t.word == "ip" {
            return Ok(());
        }
        let mut proto_tok = None;
        let mut t = t;
        if let Some(p) = proto_named(t.word) {
            self.set_proto(p, t)?;
            // `tcp port 80`, `udp src port 53`: the protocol qualifies a port.
            match self.peek().map(|n| n.word) {
                Some("port") | Some("src") | Some("dst") => {
                    proto_tok = Some((p, t));
                    t = self.next("port")?;
                }
                _ => return Ok(()),
            }
        }
        let side = match t.word {
            "src" => Side::Src,
            "dst" => Side::Dst,
            _ => Side::Either,
        };
        let kw = if side == Side::Either {
            t
        } else {
            let k = self.next("host, net or port")?;
            if matches!(k.word, "or" | "and") {
                let d = t.word;
                return self.err(
                    k.column,
                    format!(
                        "`{d} {}` is not supported: write {d} host, {d} net or {d} port",
                        k.word
                    ),
                );
            }
            k
        };
        if let Some((p, pt)) = proto_tok {
            if kw.word != "port" {
                return self.err(
                    kw.column,
                    format!(
                        "after {} only port may follow (as in {} port 80); write {} and ... for the rest",
                        proto_name(p),
                        proto_name(p),
                        pt.word
                    ),
                );
            }
        }
        match kw.word {
            "host" => {
                let a = self.next("an IPv4 address")?;
                let addr = self.ipv4(a)?;
                self.host(
                    HostTerm {
                        side,
                        addr,
                        len: 32,
                    },
                    kw,
                )
            }
            "net" => {
                let a = self.next("an IPv4 network such as 10.0.0.0/8")?;
                let (text, len) = match a.word.split_once('/') {
                    Some((addr, len)) => match len.parse::<u8>() {
                        Ok(l) if l <= 32 => (addr, l),
                        _ => {
                            return self.err(
                                a.column + addr.chars().count() + 1,
                                format!("{len:?} is not a prefix length; write 0 to 32"),
                            )
                        }
                    },
                    None => {
                        if self.peek().is_some_and(|n| n.word == "mask") {
                            return self.err(
                                self.peek().map_or(self.end, |n| n.column),
                                format!("`mask` is not supported: write the network as ADDR/LEN; {SUPPORTED}"),
                            );
                        }
                        (a.word, 32)
                    }
                };
                let addr = self.ipv4(Token {
                    word: text,
                    column: a.column,
                })?;
                let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
                self.host(
                    HostTerm {
                        side,
                        addr: Ipv4Addr::from(u32::from(addr) & mask),
                        len,
                    },
                    kw,
                )
            }
            "port" => {
                let n = self.next("a port number")?;
                let port = match n.word.parse::<u16>() {
                    Ok(p) => p,
                    Err(_) if n.word.chars().all(|c| c.is_ascii_digit()) => {
                        return self.err(n.column, format!("port {} is out of range; write 0 to 65535", n.word))
                    }
                    Err(_) => {
                        return self.err(
                            n.column,
                            format!("{:?} is not a port number; service names are not supported, write e.g. port 53", n.word),
                        )
                    }
                };
                if self.filter.proto == Some(PROTO_ICMP) {
                    return self.err(
                        n.column,
                        "icmp has no ports: icmp and port N match no packet",
                    );
                }
                if self.filter.ports.len() == MAX_PORTS {
                    return self.err(
                        kw.column,
                        format!("a filter can hold at most {MAX_PORTS} port terms"),
                    );
                }
                self.filter.ports.push(PortTerm { side, port });
                Ok(())
            }
            _ if side != Side::Either => self.err(
                kw.column,
                format!(
                    "after {} write host, net or port, not {:?}",
                    t.word, kw.word
                ),
            ),
            _ => Err(self.unsupported(kw)),
        }
    }

    fn ipv4(&self, t: Token<'_>) -> Result<Ipv4Addr, FilterError> {
        match t.word.parse::<Ipv4Addr>() {
            Ok(a) => Ok(a),
            Err(_) if t.word.contains(':') => self.err(
                t.column,
                format!("{:?} is an IPv6 address: weft traces IPv4 only", t.word),
            ),
            Err(_) => self.err(
                t.column,
                format!(
                    "{:?} is not an IPv4 address; host names are not supported, write e.g. host 10.0.0.1",
                    t.word
                ),
            ),
        }
    }

    fn host(&mut self, term: HostTerm, t: Token<'_>) -> Result<(), FilterError> {
        if self.filter.hosts.len() == MAX_HOSTS {
            return self.err(
                t.column,
                format!("a filter can hold at most {MAX_HOSTS} host and net terms"),
            );
        }
        self.filter.hosts.push(term);
        Ok(())
    }
}

/// Parses `text` as a filter of the subset. Keywords are case-sensitive, as in pcap.
pub fn parse_filter(text: &str) -> Result<PacketFilter, FilterError> {
    let toks = tokens(text);
    let mut p = Parser {
        end: text.chars().count() + 1,
        toks,
        at: 0,
        filter: PacketFilter::default(),
    };
    match p.toks.as_slice() {
        [] => return Ok(PacketFilter::default()),
        [t] if t.word == "all" => return Ok(PacketFilter::default()),
        _ => {}
    }
    loop {
        p.primitive()?;
        if p.filter.proto == Some(PROTO_ICMP) && !p.filter.ports.is_empty() {
            let col = p.toks[p.at - 1].column;
            return p.err(col, "icmp has no ports: icmp and port N match no packet");
        }
        match p.peek() {
            None => break,
            Some(t) if t.word == "and" || t.word == "&&" => {
                p.at += 1;
                if p.peek().is_none() {
                    return p.err(p.end, format!("the expression ends after `{}`", t.word));
                }
            }
            Some(t) if matches!(t.word, "or" | "||" | "not" | "!" | "(" | ")") => {
                return Err(p.unsupported(t))
            }
            Some(t) => {
                return p.err(
                    t.column,
                    format!("expected `and` before {:?}; {SUPPORTED}", t.word),
                )
            }
        }
    }
    Ok(p.filter)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> PacketFilter {
        parse_filter(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    fn err(text: &str) -> String {
        parse_filter(text)
            .map(|f| panic!("{text:?} parsed as {f:?}"))
            .unwrap_err()
            .to_string()
    }

    fn host(side: Side, a: [u8; 4], len: u8) -> HostTerm {
        HostTerm {
            side,
            addr: Ipv4Addr::from(a),
            len,
        }
    }

    #[test]
    fn empty_and_all_match_everything() {
        assert!(ok("").is_everything());
        assert!(ok("   ").is_everything());
        assert!(ok("all").is_everything());
        assert_eq!(ok("all").to_string(), "all");
    }

    #[test]
    fn primitives_joined_by_and() {
        let f = ok("src host 10.65.0.2 and dst net 10.0.0.0/8 && tcp and dst port 80");
        assert_eq!(
            f,
            PacketFilter {
                ipv4: true,
                proto: Some(6),
                hosts: vec![
                    host(Side::Src, [10, 65, 0, 2], 32),
                    host(Side::Dst, [10, 0, 0, 0], 8)
                ],
                ports: vec![PortTerm {
                    side: Side::Dst,
                    port: 80
                }],
            }
        );
        assert_eq!(
            f.to_string(),
            "tcp and src host 10.65.0.2 and dst net 10.0.0.0/8 and dst port 80"
        );
        let f = ok("host 10.0.0.1 and port 53");
        assert_eq!(f.hosts, [host(Side::Either, [10, 0, 0, 1], 32)]);
        assert_eq!(
            f.ports,
            [PortTerm {
                side: Side::Either,
                port: 53
            }]
        );
        assert_eq!(f.proto, None);
    }

    #[test]
    fn a_protocol_may_qualify_a_port_and_nets_lose_their_host_bits() {
        let f = ok("udp src port 53");
        assert_eq!(f.proto, Some(17));
        assert_eq!(f.ports[0].side, Side::Src);
        assert_eq!(ok("tcp port 443").to_string(), "tcp and port 443");
        assert_eq!(
            ok("net 10.1.2.3/16").hosts,
            [host(Side::Either, [10, 1, 0, 0], 16)]
        );
        assert_eq!(
            ok("net 10.1.2.3").hosts,
            [host(Side::Either, [10, 1, 2, 3], 32)]
        );
        assert_eq!(ok("icmp").proto, Some(1));
        assert_eq!(ok("ip").to_string(), "ip");
        assert!(ok("ip").ipv4);
        assert_eq!(ok("tcp and tcp").proto, Some(6));
    }

    #[test]
    fn what_is_outside_the_subset_says_so_with_a_column() {
        assert_eq!(
            err("host 10.0.0.1 or host 10.0.0.2"),
            format!("`or` is not supported; {SUPPORTED} (at column 15)")
        );
        assert_eq!(
            err("not port 22"),
            format!("`not` is not supported; {SUPPORTED} (at column 1)")
        );
        assert_eq!(
            err("src or dst host 10.0.0.1"),
            "`src or` is not supported: write src host, src net or src port (at column 5)"
        );
        assert_eq!(
            err("tcp and (port 80)"),
            format!("parentheses are not supported; {SUPPORTED} (at column 9)")
        );
        assert_eq!(
            err("host db.example"),
            "\"db.example\" is not an IPv4 address; host names are not supported, write e.g. host 10.0.0.1 (at column 6)"
        );
        assert_eq!(
            err("host fd00::1"),
            "\"fd00::1\" is an IPv6 address: weft traces IPv4 only (at column 6)"
        );
        assert_eq!(
            err("port http"),
            "\"http\" is not a port number; service names are not supported, write e.g. port 53 (at column 6)"
        );
        assert_eq!(
            err("port 70000"),
            "port 70000 is out of range; write 0 to 65535 (at column 6)"
        );
        assert_eq!(
            err("net 10.0.0.0/33"),
            "\"33\" is not a prefix length; write 0 to 32 (at column 14)"
        );
        assert_eq!(
            err("tcp and udp"),
            "tcp and udp together match no packet; a filter can name one protocol (at column 9)"
        );
        assert_eq!(
            err("icmp and port 80"),
            "icmp has no ports: icmp and port N match no packet (at column 15)"
        );
        assert_eq!(
            err("host 10.0.0.1 and"),
            "the expression ends after `and` (at column 18)"
        );
        assert_eq!(
            err("src"),
            "the expression ends where host, net or port should follow (at column 4)"
        );
        assert_eq!(
            err("host 10.0.0.1 port 80"),
            format!("expected `and` before \"port\"; {SUPPORTED} (at column 15)")
        );
        assert_eq!(
            err("portrange 1-2"),
            format!("port ranges are not supported; {SUPPORTED} (at column 1)")
        );
        assert_eq!(
            err("src foo 1"),
            "after src write host, net or port, not \"foo\" (at column 5)"
        );
        assert_eq!(
            err("tcp host 10.0.0.1"),
            format!("expected `and` before \"host\"; {SUPPORTED} (at column 5)")
        );
    }

    #[test]
    fn the_fixed_match_has_room_for_four_of_each() {
        ok("host 1.1.1.1 and host 2.2.2.2 and net 3.0.0.0/8 and dst host 4.4.4.4");
        assert_eq!(
            err("host 1.1.1.1 and host 2.2.2.2 and host 3.3.3.3 and host 4.4.4.4 and host 5.5.5.5"),
            "a filter can hold at most 4 host and net terms (at column 69)"
        );
        assert_eq!(
            err("port 1 and port 2 and port 3 and port 4 and port 5"),
            "a filter can hold at most 4 port terms (at column 45)"
        );
    }

    #[test]
    fn operators_are_words_even_when_written_against_their_neighbours() {
        assert_eq!(ok("tcp&&port 80").to_string(), "tcp and port 80");
        assert_eq!(
            err("!tcp"),
            format!("`not` is not supported; {SUPPORTED} (at column 1)")
        );
    }
}
