//! Feeds arbitrary bytes to `ChunkHeader::decode`, `decode_frame`, `Scanner` and `classify` and
//! asserts the invariants in `checks/scan.rs` (which the property tests also run).

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../checks/scan.rs"]
mod scan_check;

fuzz_target!(|data: &[u8]| scan_check::check(data));
