// A customer's room-composite template, as LiveKit's custom-template guide has one written:
// @livekit/egress-sdk reads the URL, token and layout from the query and owns the
// START_RECORDING / END_RECORDING signals; livekit-client joins the room. Nothing in it knows
// roomcast: tests/room_sfu.rs runs it unchanged as `custom_base_url`.
//   layout "grid": every camera side by side; "speaker": the first participant alone.
import EgressHelper from '@livekit/egress-sdk';
import { Room, RoomEvent, Track } from 'livekit-client';

const stage = document.getElementById('stage');
const room = new Room({ adaptiveStream: false, dynacast: false });
let started = false;

function render() {
  stage.className = EgressHelper.getLayout() || 'grid';
  // A stable order, so "the first participant" is the same on every render.
  const videos = [...stage.querySelectorAll('video')].sort((a, b) => a.dataset.identity.localeCompare(b.dataset.identity));
  videos.forEach((v) => stage.appendChild(v));
}

room.on(RoomEvent.TrackSubscribed, (track, _publication, participant) => {
  const el = track.attach();
  if (track.kind === Track.Kind.Video) {
    el.dataset.identity = participant.identity;
    stage.appendChild(el);
    render();
    if (!started) {
      // Ready once there is something to show.
      started = true;
      EgressHelper.startRecording();
    }
  } else {
    document.body.appendChild(el);
  }
});
room.on(RoomEvent.TrackUnsubscribed, (track) => {
  track.detach().forEach((el) => el.remove());
  render();
});

EgressHelper.onLayoutChanged(() => render());
await room.connect(EgressHelper.getLiveKitURL(), EgressHelper.getAccessToken());
// The SDK follows the recorder's metadata for layouts and ends the recording on disconnect.
EgressHelper.setRoom(room);
render();
