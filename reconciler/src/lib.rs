pub mod skel {
    include!(concat!(env!("OUT_DIR"), "/weft_wep.skel.rs"));
}
