//! Where an egress's media goes. One [`Outputs`] per egress owns every output its spec names,
//! one per kind as livekit/egress has one sink per output: the HLS writer ([`hls`], which
//! publishes into the origin's live store), stream outputs ([`stream`]: RTMP/RTMPS/SRT, a
//! [`push`] process per URL), and file and image outputs ([`file`]). It takes the pipeline's
//! [`MuxOutput`]s through one [`Outputs::push`], which never waits on a slow destination; the
//! stream and file outputs join at the next fragment through one [`feeder`].

pub mod feeder;
pub mod file;
pub mod hls;
pub mod push;
pub mod stream;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use livekit_protocol as proto;
use tracing::error;

use crate::config::Retry;
use crate::media::MuxOutput;
use crate::net::Checker;
use crate::origin::live::LiveHls;
use crate::spec::{AudioCodec, JobSpec};
use file::FileOutputs;
use hls::{HlsStats, HlsWriter};
use stream::StreamOutputs;

/// How long the stream outputs may take to end cleanly (EOS to their servers).
const STREAMS_FINISH_WITHIN: Duration = Duration::from_secs(10);

/// Every output's state, as EgressInfo reports it.
#[derive(Debug, Default, Clone)]
pub struct OutputInfos {
    /// None without a segment output.
    pub segments: Option<HlsStats>,
    /// Each stream URL's state, by its raw URL (redacted ones can be alike).
    pub streams: Vec<(String, proto::StreamInfo)>,
    pub files: Vec<proto::FileInfo>,
    pub images: Vec<proto::ImagesInfo>,
}

pub struct Outputs {
    hls: Option<HlsWriter>,
    streams: StreamOutputs,
    files: FileOutputs,
    /// The main rendition's init segment, which the stream and file outputs start from.
    init: Option<Bytes>,
    /// The first error that ended an output and must end the egress.
    error: Option<String>,
}

impl Outputs {
    /// The outputs of `spec`, writing under `dir` (the egress's folder); `live` is its HLS
    /// store if it has a segment output (see [`LiveHls::for_spec`]).
    pub fn new(spec: &JobSpec, dir: &Path, live: Option<Arc<LiveHls>>, retry: Retry) -> anyhow::Result<Self> {
        let tracks = (spec.video.is_some(), spec.audio.is_some());
        let opus = spec.audio.as_ref().is_some_and(|a| a.codec == AudioCodec::Opus);
        Ok(Self {
            hls: live.map(HlsWriter::new).transpose()?,
            streams: StreamOutputs::new(&spec.streams, tracks, retry, Checker::new(spec.browser.network.clone())?),
            files: FileOutputs::new(dir, &spec.files, &spec.images, tracks, opus),
            init: None,
            error: None,
        })
    }

    /// Hands one init segment or chunk to every output; never waits for a stream or file
    /// destination (they only queue or append). Returns the error, the first time the HLS
    /// output fails: the egress must then stop.
    pub fn push(&mut self, m: MuxOutput) -> Option<String> {
        match &m {
            MuxOutput::Init(0, b) => self.init = Some(b.clone()),
            MuxOutput::Chunk(meta, b) if meta.rendition == 0 => {
                self.streams.offer(self.init.as_ref(), meta, b);
                self.files.offer(self.init.as_ref(), meta, b);
            }
            _ => {}
        }
        let hls = self.hls.as_mut()?;
        match hls.push(m) {
            Err(e) if self.error.is_none() => {
                error!("hls output: {e:#}");
                let e = format!("hls output: {e:#}");
                self.error = Some(e.clone());
                Some(e)
            }
            _ => None,
        }
    }

    /// UpdateStream: stream URLs (checked) to add, from the next fragment, and to end.
    pub fn update_streams(&mut self, add: &[String], remove: &[String]) {
        for u in remove {
            self.streams.remove(u);
        }
        for u in add {
            self.streams.add(u);
        }
    }

    /// Nothing left to send to (LiveKit ends such an egress: "All streams stopped").
    pub fn is_empty(&self) -> bool {
        self.hls.is_none() && self.streams.is_empty() && self.files.is_empty()
    }

    /// The segment output's counts (cheap: read once per part).
    pub fn segments(&self) -> Option<HlsStats> {
        self.hls.as_ref().map(HlsWriter::stats)
    }

    pub fn infos(&self) -> OutputInfos {
        let (files, images) = self.files.infos();
        OutputInfos { segments: self.segments(), streams: self.streams.infos(), files, images }
    }

    /// Ends every output: the playlists get EXT-X-ENDLIST, the streams EOS (bounded), the
    /// files their final form. Returns the final states and the first error, if any (an HLS
    /// error while running, then a file output's, then finalising the playlists').
    pub async fn finish(mut self) -> (OutputInfos, Option<String>) {
        let finalised = self.hls.as_mut().map(|h| h.finish().map_err(|e| format!("hls output: {e:#}"))).unwrap_or(Ok(()));
        let segments = self.segments();
        let streams = self.streams.finish(STREAMS_FINISH_WITHIN).await;
        let (files, images, file_error) = self.files.finish().await;
        let error = self.error.or(file_error).or(finalised.err());
        (OutputInfos { segments, streams, files, images }, error)
    }
}
