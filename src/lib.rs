//! roomcast: a headless-browser composition egress. Per egress it launches a headless
//! Chromium, captures the page over CDP into GStreamer, encodes H.264 into CMAF and serves
//! HLS from its own origin, behind the LiveKit Egress Twirp API.
//!
//! Data flows one way: [`api`] → [`job`] → [`worker`] ([`browser`] + [`capture`] →
//! [`pipeline`]) → [`output`] → [`origin`].

pub mod api;
pub mod browser;
pub mod capture;
pub mod clock;
pub mod config;
pub mod job;
pub mod media;
pub mod metrics;
pub mod origin;
pub mod output;
pub mod pipeline;
pub mod proc;
pub mod room;
pub mod server;
pub mod worker;
