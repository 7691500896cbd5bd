//! Constructors and classification of `RouterService.Stream` frames.

use crate::v1::{FrameType, StreamRequest, StreamResponse};

/// What a received frame means to a byte-stream endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Bytes for the peer (possibly empty).
    Data(bytes::Bytes),
    /// End of stream for the direction the frame travelled in.
    GoAway,
    /// PING, RST_STREAM or an unknown frame type: carried on the wire, no effect.
    Ignored,
}

fn classify(payload: bytes::Bytes, frame_type: i32) -> Frame {
    match FrameType::try_from(frame_type) {
        Ok(FrameType::Data) => Frame::Data(payload),
        Ok(FrameType::Goaway) => Frame::GoAway,
        Ok(FrameType::Ping) | Ok(FrameType::RstStream) | Err(_) => Frame::Ignored,
    }
}

impl StreamRequest {
    pub fn data(payload: bytes::Bytes) -> Self {
        Self {
            payload,
            frame_type: FrameType::Data as i32,
        }
    }
    pub fn goaway() -> Self {
        Self {
            payload: bytes::Bytes::new(),
            frame_type: FrameType::Goaway as i32,
        }
    }
    pub fn frame(self) -> Frame {
        classify(self.payload, self.frame_type)
    }
}

impl StreamResponse {
    pub fn data(payload: bytes::Bytes) -> Self {
        Self {
            payload,
            frame_type: FrameType::Data as i32,
        }
    }
    pub fn goaway() -> Self {
        Self {
            payload: bytes::Bytes::new(),
            frame_type: FrameType::Goaway as i32,
        }
    }
    pub fn frame(self) -> Frame {
        classify(self.payload, self.frame_type)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn encodings_match_the_wire_examples() {
        // DATA "hello" = 0a 05 68 65 6c 6c 6f; GOAWAY = 10 07; PING = 10 06.
        let d = StreamRequest::data(bytes::Bytes::from_static(b"hello")).encode_to_vec();
        assert_eq!(d, b"\x0a\x05hello");
        assert_eq!(StreamResponse::goaway().encode_to_vec(), b"\x10\x07");
        let ping = StreamRequest {
            payload: bytes::Bytes::new(),
            frame_type: FrameType::Ping as i32,
        };
        assert_eq!(ping.encode_to_vec(), b"\x10\x06");
        let big = StreamRequest::data(bytes::Bytes::from(vec![0u8; 65536])).encode_to_vec();
        assert_eq!(&big[..4], b"\x0a\x80\x80\x04");
    }

    #[test]
    fn frames_classify() {
        assert_eq!(StreamRequest::goaway().frame(), Frame::GoAway);
        let rst = StreamRequest {
            payload: bytes::Bytes::new(),
            frame_type: 3,
        };
        assert_eq!(rst.frame(), Frame::Ignored);
        let unknown = StreamResponse {
            payload: bytes::Bytes::from_static(b"x"),
            frame_type: 42,
        };
        assert_eq!(unknown.frame(), Frame::Ignored);
    }
}
