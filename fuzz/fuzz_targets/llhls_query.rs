//! A playlist request's query string (`_HLS_msn`, `_HLS_part`, `_HLS_skip`): parsed or refused,
//! never a panic; a part directive never stands without its MSN.
#![no_main]

use libfuzzer_sys::fuzz_target;
use roomcast::origin::llhls::Directives;

fuzz_target!(|data: &[u8]| {
    let Ok(query) = std::str::from_utf8(data) else { return };
    if let Ok(d) = Directives::parse(Some(query)) {
        assert!(d.part.is_none() || d.msn.is_some(), "{query:?} gave {d:?}");
    }
});
