//! Output names from request fields (with LiveKit's placeholders and a room name that may be
//! anything) and origin request paths: whatever comes in, a name that is accepted stays
//! inside the egress folder.
#![no_main]

use std::path::{Component, Path};

use libfuzzer_sys::fuzz_target;
use roomcast::origin::safe_join;
use roomcast::spec::names::{file_path, output_name, Placeholders};

fn inside(name: &str) -> bool {
    Path::new(name).components().all(|c| matches!(c, Component::Normal(_)))
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (template, room) = text.split_once('\n').unwrap_or((text, "room"));
    let ph = Placeholders::at(1_700_000_000_123, Some((room, room)));
    for got in [output_name(template, "default", "fuzz", &ph), file_path(template, ".mp4", &ph)] {
        if let Ok(name) = got {
            assert!(!name.is_empty() && inside(&name), "{template:?} with room {room:?} gave {name:?}");
        }
    }
    let (id, file) = text.split_once('/').unwrap_or(("EG_x", text));
    if let Some(p) = safe_join(Path::new("/out"), id, file) {
        let rel = p.strip_prefix("/out").expect("under the output folder");
        assert!(inside(&rel.display().to_string()), "{id:?} {file:?} gave {}", p.display());
    }
});
