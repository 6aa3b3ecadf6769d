//! LiveKit's v2 `StartEgressRequest` (one request for every source, a list of outputs) turned
//! into the v1 request it is equivalent to, so that [`super::request`] stays the one place a
//! request is validated. What v2 adds and roomcast does not do yet (a `MediaSource`, storage
//! and webhooks per request) is refused here as `unimplemented`, naming the field.

use livekit_protocol as proto;
use proto::start_egress_request::{Encoding as V2Encoding, Source};

use super::SpecError;

/// The v1 request a v2 request amounts to.
#[derive(Debug, Clone, PartialEq)]
pub enum V1Request {
    Room(proto::RoomCompositeEgressRequest),
    Web(proto::WebEgressRequest),
}

/// The outputs of a v2 request, sorted by kind as v1 requests list them.
#[derive(Default)]
struct Outputs {
    files: Vec<proto::EncodedFileOutput>,
    streams: Vec<proto::StreamOutput>,
    segments: Vec<proto::SegmentedFileOutput>,
    images: Vec<proto::ImageOutput>,
}

fn outputs(req: &proto::StartEgressRequest) -> Result<Outputs, SpecError> {
    if req.outputs.is_empty() {
        return Err(SpecError::invalid("outputs: at least one output is required"));
    }
    if req.storage.is_some() {
        return Err(SpecError::Unsupported(
            "storage: uploads are not implemented yet; outputs are written to the egress's folder and served by roomcast".into(),
        ));
    }
    if !req.webhooks.is_empty() {
        return Err(SpecError::Unsupported("webhooks: per-request webhooks are not implemented yet".into()));
    }
    let mut out = Outputs::default();
    for (i, o) in req.outputs.iter().enumerate() {
        if o.storage.is_some() {
            return Err(SpecError::Unsupported(format!("outputs[{i}].storage: uploads are not implemented yet")));
        }
        use proto::output::Config as C;
        match &o.config {
            Some(C::File(f)) => out.files.push(proto::EncodedFileOutput {
                file_type: f.file_type,
                filepath: f.filepath.clone(),
                disable_manifest: f.disable_manifest,
                output: None,
            }),
            Some(C::Stream(s)) => out.streams.push(s.clone()),
            Some(C::Segments(s)) => out.segments.push(s.clone()),
            Some(C::Images(m)) => out.images.push(m.clone()),
            None => return Err(SpecError::invalid(format!("outputs[{i}]: no output kind set (file, stream, segments or images)"))),
        }
    }
    Ok(out)
}

/// The v1 request a v2 `StartEgressRequest` amounts to.
pub fn v1_request(req: &proto::StartEgressRequest) -> Result<V1Request, SpecError> {
    Ok(match &req.source {
        None => return Err(SpecError::invalid("source is required: template, web or media")),
        Some(Source::Media(_)) => {
            return Err(SpecError::Unsupported(
                "source.media (track and participant egress) is not implemented by roomcast: use a template or web source".into(),
            ))
        }
        Some(Source::Template(t)) => {
            let o = outputs(req)?;
            use proto::room_composite_egress_request::Options as O;
            V1Request::Room(proto::RoomCompositeEgressRequest {
                room_name: req.room_name.clone(),
                layout: t.layout.clone(),
                audio_only: t.audio_only,
                video_only: t.video_only,
                custom_base_url: t.custom_base_url.clone(),
                file_outputs: o.files,
                stream_outputs: o.streams,
                segment_outputs: o.segments,
                image_outputs: o.images,
                options: req.encoding.map(|e| match e {
                    V2Encoding::Preset(p) => O::Preset(p),
                    V2Encoding::Advanced(a) => O::Advanced(a),
                }),
                ..Default::default()
            })
        }
        Some(Source::Web(w)) => {
            let o = outputs(req)?;
            use proto::web_egress_request::Options as O;
            V1Request::Web(proto::WebEgressRequest {
                url: w.url.clone(),
                audio_only: w.audio_only,
                video_only: w.video_only,
                await_start_signal: w.await_start_signal,
                file_outputs: o.files,
                stream_outputs: o.streams,
                segment_outputs: o.segments,
                image_outputs: o.images,
                options: req.encoding.map(|e| match e {
                    V2Encoding::Preset(p) => O::Preset(p),
                    V2Encoding::Advanced(a) => O::Advanced(a),
                }),
                ..Default::default()
            })
        }
    })
}

impl super::JobSpec {
    /// A v2 request: the spec of the v1 request it amounts to.
    pub fn from_start_request(egress_id: &str, req: &proto::StartEgressRequest, cfg: &crate::config::Config) -> Result<Self, SpecError> {
        Self::from_start_request_in(egress_id, req, cfg, None)
    }

    /// [`Self::from_start_request`] for a room whose id the caller knows.
    pub fn from_start_request_in(
        egress_id: &str,
        req: &proto::StartEgressRequest,
        cfg: &crate::config::Config,
        room_id: Option<&str>,
    ) -> Result<Self, SpecError> {
        match v1_request(req)? {
            V1Request::Room(r) => Self::from_room_request_in(egress_id, &r, cfg, room_id),
            V1Request::Web(w) => Self::from_web_request(egress_id, &w, cfg),
        }
    }
}
