//! What a kernel test needs from the machine, and what happens when it is missing: the test
//! is skipped with a reason, unless WEFT_REQUIRE_KERNEL=1 (CI) makes that a failure.

use std::path::Path;

/// True when missing capabilities must fail tests rather than skip them.
pub fn required() -> bool {
    std::env::var("WEFT_REQUIRE_KERNEL").is_ok_and(|v| v == "1")
}

/// Checks that the test can use the kernel: root, and a bpffs at /sys/fs/bpf. Returns false
/// (after saying why) when the test should be skipped; panics when skipping is not allowed.
pub fn available(test: &str) -> bool {
    let why = if unsafe { libc::geteuid() } != 0 {
        Some("not running as root".to_string())
    } else if !weft::bpf::is_bpffs(Path::new("/sys/fs/bpf")) {
        Some("/sys/fs/bpf is not a bpffs (mount -t bpf bpf /sys/fs/bpf)".to_string())
    } else {
        None
    };
    match why {
        None => true,
        Some(why) if required() => panic!("{test}: WEFT_REQUIRE_KERNEL=1 but {why}"),
        Some(why) => {
            eprintln!("SKIPPED {test}: {why}");
            false
        }
    }
}
