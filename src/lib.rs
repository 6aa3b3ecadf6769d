//! roomcast: a headless-browser composition egress. Per egress it launches a headless
//! Chromium, captures the page into GStreamer, encodes it and serves LL-HLS from its own
//! origin (and pushes RTMP/SRT, writes files), behind the LiveKit Egress Twirp API.
//!
//! The modules read as the data path, each importing only those below it (the layer list in
//! `src/layers.txt`, enforced by `tests/layers.rs`): [`api`] → [`job`] → [`worker`]
//! ([`browser`] + [`capture`] → [`pipeline`]) → [`output`] → [`origin`], all on the
//! [`spec`] and the ground floor ([`config`], [`clock`], [`load`], [`media`], [`net`], [`proc`], [`metrics`], [`psrpc`]).

pub mod api;
pub mod browser;
pub mod capture;
pub mod clock;
pub mod config;
pub mod job;
pub mod listener;
pub mod load;
pub mod media;
pub mod metrics;
pub mod net;
pub mod origin;
pub mod output;
pub mod pipeline;
pub mod proc;
pub mod psrpc;
pub mod server;
pub mod spec;
pub mod worker;
