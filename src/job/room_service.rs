//! LiveKit's RoomService, for the one call room composites need: UpdateLayout sets the
//! recorder participant's metadata to `{"layout": …}`, which is how `@livekit/egress-sdk`
//! templates learn of it (livekit-server does the same for LiveKit Egress).

use anyhow::{Context, Result};
use livekit_api::services::room::{RoomClient, UpdateParticipantOptions};

pub async fn set_recorder_layout(api_url: &str, key: &str, secret: &str, room: &str, egress_id: &str, layout: &str) -> Result<()> {
    let client = RoomClient::with_api_key(api_url, key, secret);
    let metadata = serde_json::json!({ "layout": layout }).to_string();
    client
        .update_participant(room, egress_id, UpdateParticipantOptions { metadata, ..Default::default() })
        .await
        .with_context(|| format!("RoomService.UpdateParticipant at {api_url} (room {room}, identity {egress_id})"))?;
    Ok(())
}
