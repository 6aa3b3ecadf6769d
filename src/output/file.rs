//! File and image outputs, fed the main rendition's CMAF chunks by [`super::Outputs`].
//!
//! - MP4: the init segment and every chunk are appended to the file as they come, so the file
//!   is a fragmented MP4 that plays up to its last complete fragment whatever kills what
//!   (nothing is held in memory). When the egress ends, a [`super::push`] process rewrites it
//!   as an MP4 with its index first (`mp4mux faststart`), which every player seeks in; if that
//!   fails, the fragmented file stays.
//! - Ogg/Opus (the sound alone) and JPEG snapshots: a push process each, remuxing (Ogg pages
//!   are written as they fill, so an Ogg file too survives a crash) or decoding keyframes.
//!   Local outputs are not retried: an error ends that output with the error in its result.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use livekit_protocol as proto;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::feeder::{Fed, Feeder, Taken};
use super::push::{Dest, PushSpec};
use crate::clock::unix_ns as now_ns;
use crate::media::ChunkMeta;
use crate::spec::{FileKind, FileSpec, ImageSpec, ImageSuffix};

/// An MP4 written fragment by fragment.
struct Mp4 {
    path: PathBuf,
    file: Option<std::fs::File>,
    feeder: Feeder,
    info: proto::FileInfo,
    first_pts: Option<u64>,
    end_ns: u64,
    error: Option<String>,
}

impl Mp4 {
    fn write(&mut self, bytes: &[u8]) {
        use std::io::Write;
        if let Some(f) = self.file.as_mut() {
            if let Err(e) = f.write_all(bytes) {
                warn!(path = %self.path.display(), "mp4 output: {e}");
                self.error = Some(format!("writing {}: {e}", self.info.filename));
                self.file = None;
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Ogg,
    Images,
}

/// A push process writing a local file (Ogg) or snapshots.
struct Sidecar {
    kind: Kind,
    tx: Option<mpsc::Sender<Fed>>,
    task: Option<JoinHandle<()>>,
    file: Arc<Mutex<proto::FileInfo>>,
    images: Arc<Mutex<proto::ImagesInfo>>,
    path: PathBuf,
    /// Why its push process failed, if it did.
    error: Arc<Mutex<Option<String>>>,
    feeder: Feeder,
}

pub struct FileOutputs {
    mp4: Option<Mp4>,
    sidecars: Vec<Sidecar>,
    tracks: (bool, bool),
    opus: bool,
}

/// Chunks queued per local output before it counts as slow.
const QUEUE_CHUNKS: usize = 100;

impl FileOutputs {
    /// Outputs under `dir` (the egress's folder); `tracks` = (video, audio).
    pub fn new(dir: &Path, files: &[FileSpec], images: &[ImageSpec], tracks: (bool, bool), opus: bool) -> Self {
        let mut out = Self { mp4: None, sidecars: vec![], tracks, opus };
        for f in files {
            let path = dir.join(&f.filepath);
            if let Some(parent) = path.parent() {
                let _ = std::fs::create_dir_all(parent);
            }
            let info = proto::FileInfo { filename: f.filepath.clone(), location: path.display().to_string(), ..Default::default() };
            match f.kind {
                FileKind::Mp4 => {
                    let (file, error) = match std::fs::File::create(&path) {
                        Ok(file) => (Some(file), None),
                        Err(e) => (None, Some(format!("creating {}: {e}", f.filepath))),
                    };
                    out.mp4 = Some(Mp4 { path, file, feeder: Feeder::default(), info, first_pts: None, end_ns: 0, error });
                }
                FileKind::Ogg => {
                    out.spawn(Kind::Ogg, Dest::Ogg { path: path.display().to_string() }, path, info, Default::default(), false)
                }
            }
        }
        for i in images {
            let base = dir.join(&i.filename_prefix);
            if let Some(parent) = base.parent() {
                let _ = std::fs::create_dir_all(parent);
            }
            let location = match i.suffix {
                ImageSuffix::Overwrite => format!("{}.jpeg", base.display()),
                ImageSuffix::Index | ImageSuffix::Timestamp => format!("{}_%05d.jpeg", base.display()),
            };
            let dest = Dest::Images { location, interval_secs: i.interval_secs, width: i.width, height: i.height };
            let info = proto::ImagesInfo { filename_prefix: i.filename_prefix.clone(), ..Default::default() };
            let timestamped = matches!(i.suffix, ImageSuffix::Timestamp);
            out.spawn(Kind::Images, dest, base, Default::default(), info, timestamped);
        }
        out
    }

    fn spawn(&mut self, kind: Kind, dest: Dest, path: PathBuf, file: proto::FileInfo, images: proto::ImagesInfo, timestamped: bool) {
        let spec = PushSpec { dest, video: self.tracks.0, audio: self.tracks.1, opus: self.opus };
        let (tx, rx) = mpsc::channel(QUEUE_CHUNKS);
        let file = Arc::new(Mutex::new(file));
        let images = Arc::new(Mutex::new(images));
        let error = Arc::new(Mutex::new(None));
        let task = tokio::spawn(run_sidecar(spec, rx, Arc::clone(&file), Arc::clone(&images), Arc::clone(&error), timestamped));
        self.sidecars.push(Sidecar { kind, tx: Some(tx), task: Some(task), file, images, path, error, feeder: Feeder::default() });
    }

    pub fn is_empty(&self) -> bool {
        self.mp4.is_none() && self.sidecars.is_empty()
    }

    /// Takes a chunk of the main rendition (`init` its init segment); never waits.
    pub fn offer(&mut self, init: Option<&Bytes>, meta: &ChunkMeta, bytes: &Bytes) {
        if let Some(mp4) = self.mp4.as_mut() {
            // Written in place (a file never makes us wait): the feeder only says what to write.
            let mut fed = vec![];
            mp4.feeder.offer(init, meta, bytes, |f| {
                fed.push(f);
                Taken::Yes
            });
            for f in fed {
                if let Fed::Init(_) = f {
                    mp4.info.started_at = now_ns();
                } else {
                    mp4.first_pts.get_or_insert(meta.pts_ns);
                    mp4.end_ns = mp4.end_ns.max(meta.pts_ns + meta.duration_ns);
                }
                mp4.write(f.bytes());
            }
        }
        for s in &mut self.sidecars {
            let Some(tx) = s.tx.as_ref() else { continue };
            s.feeder.offer(init, meta, bytes, |fed| match tx.try_send(fed) {
                Ok(()) => Taken::Yes,
                Err(mpsc::error::TrySendError::Full(_)) => Taken::Full,
                Err(mpsc::error::TrySendError::Closed(_)) => Taken::Gone,
            });
        }
    }

    /// The outputs' states so far: (files, images).
    pub fn infos(&self) -> (Vec<proto::FileInfo>, Vec<proto::ImagesInfo>) {
        let mut files: Vec<proto::FileInfo> = self.mp4.iter().map(|m| m.info.clone()).collect();
        let mut images = vec![];
        for s in &self.sidecars {
            match s.kind {
                Kind::Ogg => files.push(s.file.lock().unwrap_or_else(|p| p.into_inner()).clone()),
                Kind::Images => images.push(s.images.lock().unwrap_or_else(|p| p.into_inner()).clone()),
            }
        }
        (files, images)
    }

    /// Ends every output: the sidecars get EOF and are waited for, the MP4 is closed and
    /// rewritten with its index first. Returns the final states and the first error (which
    /// fails the egress: its file is not what was asked for).
    pub async fn finish(mut self) -> (Vec<proto::FileInfo>, Vec<proto::ImagesInfo>, Option<String>) {
        let mut error = None;
        for s in &mut self.sidecars {
            drop(s.tx.take());
            if let Some(t) = s.task.take() {
                let abort = t.abort_handle();
                if tokio::time::timeout(Duration::from_secs(15), t).await.is_err() {
                    abort.abort();
                }
            }
            if let Some(e) = s.error.lock().unwrap_or_else(|p| p.into_inner()).clone() {
                error.get_or_insert(e);
            }
            let now = now_ns();
            match s.kind {
                Kind::Ogg => {
                    let mut f = s.file.lock().unwrap_or_else(|p| p.into_inner());
                    f.ended_at = now;
                    f.size = std::fs::metadata(&s.path).map(|m| m.len() as i64).unwrap_or(0);
                    if f.started_at > 0 {
                        f.duration = now - f.started_at;
                    }
                }
                Kind::Images => s.images.lock().unwrap_or_else(|p| p.into_inner()).ended_at = now,
            }
        }
        if let Some(mp4) = self.mp4.as_mut() {
            mp4.file = None;
            mp4.info.ended_at = now_ns();
            mp4.info.duration = mp4.end_ns.saturating_sub(mp4.first_pts.unwrap_or(mp4.end_ns)) as i64;
            if mp4.error.is_none() && mp4.first_pts.is_some() {
                if let Err(e) = faststart(&mp4.path, self.tracks, self.opus).await {
                    // The fragmented file still plays; it is only less convenient to seek in.
                    warn!(path = %mp4.path.display(), "mp4 output: rewriting with the index first: {e:#}");
                }
            }
            mp4.info.size = std::fs::metadata(&mp4.path).map(|m| m.len() as i64).unwrap_or(0);
            if let Some(e) = mp4.error.clone() {
                error = Some(e);
            }
        }
        let (files, images) = self.infos();
        (files, images, error)
    }
}

/// Rewrites the fragmented MP4 of an egress interrupted by a restart with its index first.
pub async fn finalize_mp4(path: &Path, tracks: (bool, bool), opus: bool) -> anyhow::Result<()> {
    faststart(path, tracks, opus).await
}

/// Rewrites a fragmented MP4 in place as one with its index first.
async fn faststart(path: &Path, tracks: (bool, bool), opus: bool) -> anyhow::Result<()> {
    let tmp = path.with_extension("faststart.tmp");
    let spec = PushSpec {
        dest: Dest::Remux { from: path.display().to_string(), to: tmp.display().to_string() },
        video: tracks.0,
        audio: tracks.1,
        opus,
    };
    let (mut child, stdin) = super::push::spawn(&spec).await?;
    drop(stdin);
    let status = tokio::time::timeout(Duration::from_secs(120), child.wait()).await??;
    if !status.success() {
        let _ = std::fs::remove_file(&tmp);
        anyhow::bail!("remux exited with {status}");
    }
    std::fs::rename(&tmp, path)?;
    info!(path = %path.display(), "mp4 output finalised");
    Ok(())
}

/// One sidecar: the init segment, then chunks from a fragment start, until EOF or an error.
async fn run_sidecar(
    spec: PushSpec,
    mut rx: mpsc::Receiver<Fed>,
    file: Arc<Mutex<proto::FileInfo>>,
    images: Arc<Mutex<proto::ImagesInfo>>,
    error: Arc<Mutex<Option<String>>>,
    timestamped: bool,
) {
    // LiveKit's FileInfo and ImagesInfo have no status: the error fails the egress instead.
    let fail = |e: String| {
        warn!("file output: {e}");
        error.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(format!("file output: {e}"));
    };
    let (mut child, mut stdin) = match super::push::spawn(&spec).await {
        Ok(c) => c,
        Err(e) => return fail(format!("{e:#}")),
    };
    if let Some(stdout) = child.stdout.take() {
        let images = Arc::clone(&images);
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let Some(path) = line.strip_prefix("image ") else { continue };
                if timestamped {
                    // prefix_00001.jpeg → prefix_{UTC time to the ms}.jpeg
                    let stamp = chrono_like_stamp();
                    if let Some((base, _)) = path.rsplit_once('_') {
                        let _ = std::fs::rename(path, format!("{base}_{stamp}.jpeg"));
                    }
                }
                let mut i = images.lock().unwrap_or_else(|p| p.into_inner());
                i.image_count += 1;
                if i.started_at == 0 {
                    i.started_at = now_ns();
                }
            }
        });
    }
    crate::proc::log_stderr(&mut child, "push");
    while let Some(fed) = rx.recv().await {
        {
            let mut f = file.lock().unwrap_or_else(|p| p.into_inner());
            if f.started_at == 0 {
                f.started_at = now_ns();
            }
        }
        if let Err(e) = stdin.write_all(fed.bytes()).await {
            return fail(format!("push process gone: {e}"));
        }
    }
    drop(stdin);
    match tokio::time::timeout(Duration::from_secs(10), child.wait()).await {
        Ok(Ok(s)) if s.success() => {}
        Ok(Ok(s)) => fail(format!("push process exited ({s})")),
        _ => {
            let _ = child.start_kill();
            fail("push process did not finish".into());
        }
    }
}

/// `YYYYMMDDhhmmssmmm` in UTC, LiveKit's image timestamp suffix.
fn chrono_like_stamp() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let ms = now.subsec_millis();
    let stamp = crate::clock::file_stamp(now.as_secs());
    format!("{}{ms:03}", stamp.replace(['-', 'T', ':'], ""))
}
