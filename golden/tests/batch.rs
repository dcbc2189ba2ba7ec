//! Batched map reads and writes (weft::bpf::batch) against the real maps: a hash map, which
//! has batches, and an LPM trie, which may not; both must read back exactly what was written.

use std::net::Ipv4Addr;

use weft::bpf::batch;
use weft::bpf::maps::{self, Entries, NatBackend, NatBackendKey, Route4Key, RouteValue};
use weft_golden::harness::Harness;

fn backends(n: u32) -> Entries {
    (0..n)
        .map(|i| {
            let k = NatBackendKey {
                svc_id: 1 + i / 10,
                ordinal: i % 10,
            };
            let v = NatBackend {
                addr: maps::addr_be(Ipv4Addr::from(0x0a80_0000 + i)),
                port: 8080,
                pad: 0,
            };
            maps::entry(&k, &v)
        })
        .collect()
}

fn routes(n: u32) -> Entries {
    (0..n)
        .map(|i| {
            let k = Route4Key {
                prefixlen: 32,
                addr: maps::addr_be(Ipv4Addr::from(0x0a41_0000 + i)),
            };
            let v = RouteValue {
                flags: maps::RT_F_LOCAL_WORKLOAD,
                ifindex: i,
                next_hop: 0,
                pad: 0,
            };
            maps::entry(&k, &v)
        })
        .collect()
}

#[test]
fn entries_written_in_batches_read_back_and_delete_in_batches() {
    let Some(h) = Harness::load("batch") else {
        return;
    };
    // More than one batch of the hash map; the harness's trie holds 1024.
    for (map, want) in [(maps::NAT_BE4, backends(4000)), (maps::RT4, routes(1000))] {
        let m = h.map(map);
        batch::write(&m, want.iter().map(|(k, v)| (k.as_slice(), v.as_slice())))
            .unwrap_or_else(|e| panic!("{map}: writing: {e}"));
        let got = batch::read_all(&m).unwrap_or_else(|e| panic!("{map}: reading: {e}"));
        assert_eq!(got, want, "{map}: what was written");

        // Every other key, and keys that were never there (no error: already gone).
        let mut gone: Vec<maps::Bytes> = want.keys().step_by(2).cloned().collect();
        // A valid key that is not there: the first one with its fifth byte changed (the
        // ordinal of a backend key, the first byte of a route's address).
        let mut stray = want.keys().next().unwrap().clone();
        stray[4] ^= 0xff;
        assert!(!want.contains_key(&stray));
        gone.insert(gone.len() / 2, stray.clone());
        gone.push(stray);
        batch::delete(&m, &gone).unwrap_or_else(|e| panic!("{map}: deleting: {e}"));
        let left: Entries = want
            .iter()
            .skip(1)
            .step_by(2)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        assert_eq!(batch::read_all(&m).unwrap(), left, "{map}: the rest");
    }
}
