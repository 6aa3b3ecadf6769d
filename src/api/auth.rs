//! Caller authentication as LiveKit does it: `Authorization: Bearer <JWT>`, HS256 with the API
//! secret, issued by the API key, and the `roomRecord` video grant for every Egress call.

use axum::http::{header, HeaderMap};
use livekit_api::access_token::TokenVerifier;

use super::twirp::TwirpError;

pub struct Auth {
    verifier: TokenVerifier,
}

impl Auth {
    pub fn new(api_key: &str, api_secret: &str) -> Self {
        Self { verifier: TokenVerifier::with_api_key(api_key, api_secret) }
    }

    pub fn require_record(&self, headers: &HeaderMap) -> Result<(), TwirpError> {
        let value = headers.get(header::AUTHORIZATION).ok_or_else(|| TwirpError::new("unauthenticated", "missing Authorization header"))?;
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| TwirpError::new("unauthenticated", "Authorization must be 'Bearer <token>'"))?;
        let claims = self.verifier.verify(token).map_err(|e| TwirpError::new("unauthenticated", format!("invalid token: {e}")))?;
        if !claims.video.room_record {
            return Err(TwirpError::new("permission_denied", "token lacks the roomRecord grant"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use livekit_api::access_token::{AccessToken, VideoGrants};

    fn headers(token: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
        h
    }

    fn token(secret: &str, record: bool) -> String {
        AccessToken::with_api_key("key", secret).with_grants(VideoGrants { room_record: record, ..Default::default() }).to_jwt().unwrap()
    }

    #[test]
    fn grants_and_signatures_are_checked() {
        let auth = Auth::new("key", "secret-secret-secret");
        assert!(auth.require_record(&headers(&token("secret-secret-secret", true))).is_ok());
        assert_eq!(auth.require_record(&headers(&token("secret-secret-secret", false))).unwrap_err().code, "permission_denied");
        assert_eq!(auth.require_record(&headers(&token("another-secret", true))).unwrap_err().code, "unauthenticated");
        assert_eq!(auth.require_record(&headers("garbage")).unwrap_err().code, "unauthenticated");
        assert_eq!(auth.require_record(&HeaderMap::new()).unwrap_err().code, "unauthenticated");
    }
}
