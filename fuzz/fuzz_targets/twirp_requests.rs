//! A Twirp request body, decoded as every request roomcast takes (JSON or protobuf, as the
//! first byte says), and each start request turned into a job spec: any input gives a value or
//! an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use livekit_protocol as proto;
use roomcast::api::twirp::Codec;
use roomcast::config::Config;
use roomcast::spec::JobSpec;

fn config() -> Config {
    Config { api_key: Some("fuzz".into()), api_secret: Some("fuzz-secret-fuzz-secret-fuzz-secret".into()), ..Config::default() }
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, body)) = data.split_first() else { return };
    let codec = if first & 1 == 0 { Codec::Json } else { Codec::Protobuf };
    let cfg = config();
    if let Ok(r) = codec.decode::<proto::WebEgressRequest>(body) {
        let _ = JobSpec::from_web_request("EG_fuzz", &r, &cfg);
    }
    if let Ok(r) = codec.decode::<proto::RoomCompositeEgressRequest>(body) {
        let _ = JobSpec::from_room_request("EG_fuzz", &r, &cfg);
    }
    if let Ok(r) = codec.decode::<proto::StartEgressRequest>(body) {
        let _ = JobSpec::from_start_request("EG_fuzz", &r, &cfg);
    }
    let _ = codec.decode::<proto::UpdateStreamRequest>(body);
    let _ = codec.decode::<proto::UpdateLayoutRequest>(body);
    let _ = codec.decode::<proto::ListEgressRequest>(body);
    let _ = codec.decode::<proto::StopEgressRequest>(body);
});
