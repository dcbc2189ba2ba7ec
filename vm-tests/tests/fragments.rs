//! IPv4 fragments and ICMP errors on a real kernel: a datagram larger than the path's MTU
//! reaches a workload (directly and through a ClusterIP) when policy allows its port and not
//! when it does not; and a NodePort client behind a smaller MTU gets the host's
//! "fragmentation needed" about its own packet, so a large upload does not stall.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::mpsc;
use std::time::Duration;

use weft_vm_tests::*;

const B: Ipv4Addr = Ipv4Addr::new(10, 65, 0, 3);
const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 20);

/// b's UDP ports 5353 (allowed from the shop) and 5354 (allowed by nothing).
const POLICY: &str = r#"apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata:
  name: b-udp
  namespace: shop
spec:
  selector: app == 'b'
  types: [Ingress]
  ingress:
    - action: Allow
      protocol: UDP
      destination:
        ports: [5353]
    - action: Allow
      protocol: TCP
      destination:
        ports: [8080]
"#;

/// A UDP server in `ns` on `port` that echoes whole datagrams, however large.
fn big_udp_echo(ns: &Netns, port: u16) {
    let (tx, rx) = mpsc::channel();
    ns.spawn(move || {
        let s = UdpSocket::bind(("0.0.0.0", port)).expect("bind udp");
        tx.send(()).expect("ready");
        let mut buf = vec![0u8; 65536];
        while let Ok((n, from)) = s.recv_from(&mut buf) {
            let _ = s.send_to(&buf[..n], from);
        }
    });
    rx.recv().expect("server ready");
}

/// Sends a `len`-byte datagram from `ns` to `to` and returns the length of the answer, if one
/// comes.
fn big_udp(ns: &Netns, to: Ipv4Addr, port: u16, len: usize) -> Option<usize> {
    ns.run(move || {
        let s = UdpSocket::bind(("0.0.0.0", 0)).expect("bind");
        s.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
        s.send_to(&payload, (to, port)).ok()?;
        let mut buf = vec![0u8; 65536];
        let (n, _) = s.recv_from(&mut buf).ok()?;
        (buf[..n] == payload[..]).then_some(n)
    })
}

fn shop(test: &str) -> Option<Bed> {
    let mut bed = Bed::new(test)?;
    bed.shop(SHOP_NAMESPACE, "", &[("app", "a"), ("app", "b")]);
    bed.write("policy.yaml", POLICY);
    Some(bed)
}

#[test]
fn a_fragmented_datagram_reaches_a_workload_when_its_port_is_allowed() {
    let Some(bed) = shop("fragments_direct") else {
        return;
    };
    bed.apply();
    big_udp_echo(&bed.w(1).ns, 5353);
    big_udp_echo(&bed.w(1).ns, 5354);
    assert_eq!(
        big_udp(&bed.w(0).ns, B, 5353, 100),
        Some(100),
        "an unfragmented datagram, for comparison"
    );
    assert_eq!(
        big_udp(&bed.w(0).ns, B, 5353, 4000),
        Some(4000),
        "4,000 bytes are three fragments each way: every one passes with its first"
    );
    assert_eq!(
        big_udp(&bed.w(0).ns, B, 5354, 4000),
        None,
        "a port policy denies stays denied, fragment by fragment"
    );
}

#[test]
fn a_fragmented_datagram_reaches_a_service_backend() {
    let Some(bed) = shop("fragments_service") else {
        return;
    };
    bed.write(
        "svc.yaml",
        &format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: dns\n  namespace: shop\nspec:\n  clusterIP: {VIP}\n  selector:\n    app: b\n  ports:\n    - {{name: dns, protocol: UDP, port: 53, targetPort: 5353}}\n"),
    );
    bed.apply();
    big_udp_echo(&bed.w(1).ns, 5353);
    assert_eq!(
        big_udp(&bed.w(0).ns, VIP, 53, 4000),
        Some(4000),
        "every fragment is translated to the backend, and every fragment of the answer back"
    );
}

/// A server in `ns` on `port` that reads a whole upload and answers with its length.
fn upload_sink(ns: &Netns, port: u16) {
    let (tx, rx) = mpsc::channel();
    ns.spawn(move || {
        let l = TcpListener::bind(("0.0.0.0", port)).expect("bind");
        tx.send(()).expect("ready");
        for s in l.incoming().flatten() {
            let mut s = s;
            let mut n = 0usize;
            let mut buf = vec![0u8; 65536];
            loop {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(k) => n += k,
                }
            }
            let _ = s.write_all(n.to_string().as_bytes());
        }
    });
    rx.recv().expect("server ready");
}

/// Uploads `len` bytes from `ns` to `to` and returns what the server counted.
fn upload(ns: &Netns, to: SocketAddr, len: usize) -> Result<usize, String> {
    ns.run(move || {
        let mut s =
            TcpStream::connect_timeout(&to, Duration::from_secs(2)).map_err(|e| e.to_string())?;
        s.set_write_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        s.write_all(&vec![7u8; len])
            .map_err(|e| format!("upload stalled: {e}"))?;
        s.shutdown(Shutdown::Write).map_err(|e| e.to_string())?;
        let mut answer = String::new();
        s.read_to_string(&mut answer)
            .map_err(|e| format!("no answer: {e}"))?;
        answer
            .trim()
            .parse()
            .map_err(|e| format!("{answer:?}: {e}"))
    })
}

#[test]
fn fragmentation_needed_reaches_a_node_port_client_in_its_own_terms() {
    let Some(bed) = shop("icmp_frag_needed") else {
        return;
    };
    bed.write(
        "svc.yaml",
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: up\n  namespace: shop\nspec:\n  type: NodePort\n  clusterIP: 10.96.0.21\n  selector:\n    app: b\n  ports:\n    - {name: up, port: 80, targetPort: 8080, nodePort: 30080}\n",
    );
    bed.write(
        "felix.yaml",
        "apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata:\n  name: default\nspec:\n  bpfDataIfacePattern: \"^up0$\"\n",
    );
    bed.apply();
    upload_sink(&bed.w(1).ns, 8080);
    let to = SocketAddr::from((HOST_IP, 30080));
    assert_eq!(upload(&bed.outside, to, 200_000), Ok(200_000));
    // The backend's interface narrows to 1,000 bytes: the host answers the client's full-size
    // segments (DF set) with "fragmentation needed" about client -> backend. Only translated
    // back (client -> NodePort) does the client's TCP take it and send smaller segments.
    bed.host
        .ip(&["link", "set", &bed.w(1).iface, "mtu", "1000"]);
    assert_eq!(upload(&bed.outside, to, 200_000), Ok(200_000));
    let bpffs = bed.bpffs.to_str().expect("utf-8 path").to_string();
    let counters = output_text(&bed.weft(&["dump", "counters", "--bpffs", &bpffs]));
    assert!(
        counters.contains("accept-related-icmp"),
        "the error passed as related to the flow:\n{counters}"
    );
}
