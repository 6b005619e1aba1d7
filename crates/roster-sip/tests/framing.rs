//! StreamFramer tests: splits at every byte offset, several messages per push, CRLF keep-alives,
//! size bounds and a missing Content-Length.

use roster_sip::{parse_message, Frame, FrameError, StreamFramer, SIP_MESSAGE_SIZE_MAX};

const REGISTER: &[u8] = b"REGISTER sip:example.com SIP/2.0\r\n\
Via: SIP/2.0/TCP 192.0.2.4:49152;branch=z9hG4bK77;rport\r\n\
Max-Forwards: 70\r\n\
From: <sip:bob@example.com>;tag=1\r\n\
To: <sip:bob@example.com>\r\n\
Call-ID: framing@192.0.2.4\r\n\
CSeq: 1 REGISTER\r\n\
Contact: <sip:bob@192.0.2.4:49152;transport=tcp>\r\n\
Content-Length: 4\r\n\
\r\n\
body";

const OPTIONS: &[u8] = b"OPTIONS sip:example.com SIP/2.0\r\nl: 0\r\n\r\n";

/// Pushes `chunks` one by one, draining frames after each push.
fn frames_of<'a>(
    framer: &mut StreamFramer,
    chunks: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Vec<Frame>, FrameError> {
    let mut frames = Vec::new();
    for chunk in chunks {
        framer.push(chunk)?;
        while let Some(frame) = framer.next_frame()? {
            frames.push(frame);
        }
    }
    Ok(frames)
}

fn message(bytes: &[u8]) -> Frame {
    Frame::Message(bytes.to_vec())
}

#[test]
fn split_at_every_byte_offset() {
    for split in 0..=REGISTER.len() {
        let mut framer = StreamFramer::new(SIP_MESSAGE_SIZE_MAX);
        let (first, second) = REGISTER.split_at(split);
        let frames = frames_of(&mut framer, [first, second]).expect("frames");
        assert_eq!(frames, [message(REGISTER)], "split at {split}");
        assert_eq!(framer.buffered(), 0);
    }
}

#[test]
fn split_at_every_pair_of_offsets_with_keep_alives() {
    let mut stream = b"\r\n\r\n".to_vec();
    stream.extend_from_slice(OPTIONS);
    stream.extend_from_slice(b"\r\n");
    stream.extend_from_slice(OPTIONS);
    let expected = [Frame::KeepAlivePing, message(OPTIONS), message(OPTIONS)];
    for first in 0..=stream.len() {
        for second in first..=stream.len() {
            let mut framer = StreamFramer::new(SIP_MESSAGE_SIZE_MAX);
            let chunks = [&stream[..first], &stream[first..second], &stream[second..]];
            let frames = frames_of(&mut framer, chunks).expect("frames");
            assert_eq!(frames, expected, "splits at {first} and {second}");
        }
    }
}

#[test]
fn one_byte_at_a_time() {
    let mut framer = StreamFramer::new(SIP_MESSAGE_SIZE_MAX);
    let frames = frames_of(&mut framer, REGISTER.chunks(1)).expect("frames");
    assert_eq!(frames, [message(REGISTER)]);
}

#[test]
fn several_messages_in_one_push() {
    let mut stream = Vec::new();
    for _ in 0..50 {
        stream.extend_from_slice(REGISTER);
        stream.extend_from_slice(OPTIONS);
    }
    let mut framer = StreamFramer::new(SIP_MESSAGE_SIZE_MAX);
    let frames = frames_of(&mut framer, [stream.as_slice()]).expect("frames");
    assert_eq!(frames.len(), 100);
    for pair in frames.chunks(2) {
        assert_eq!(pair, [message(REGISTER), message(OPTIONS)]);
    }
    for frame in frames {
        let Frame::Message(bytes) = frame else {
            panic!("expected a message")
        };
        assert!(parse_message(&bytes).is_ok());
    }
}

#[test]
fn keep_alives_between_messages() {
    let mut stream = Vec::new();
    stream.extend_from_slice(b"\r\n\r\n\r\n\r\n");
    stream.extend_from_slice(REGISTER);
    stream.extend_from_slice(b"\r\n");
    stream.extend_from_slice(OPTIONS);
    stream.extend_from_slice(b"\r\n\r\n");
    let mut framer = StreamFramer::new(SIP_MESSAGE_SIZE_MAX);
    let frames = frames_of(&mut framer, [stream.as_slice()]).expect("frames");
    assert_eq!(
        frames,
        [
            Frame::KeepAlivePing,
            Frame::KeepAlivePing,
            message(REGISTER),
            message(OPTIONS),
            Frame::KeepAlivePing,
        ]
    );
    assert_eq!(framer.buffered(), 0);
}

#[test]
fn a_lone_crlf_waits_for_more() {
    let mut framer = StreamFramer::new(SIP_MESSAGE_SIZE_MAX);
    framer.push(b"\r\n").unwrap();
    assert_eq!(framer.next_frame(), Ok(None));
    framer.push(b"\r").unwrap();
    assert_eq!(framer.next_frame(), Ok(None));
    framer.push(b"\n").unwrap();
    assert_eq!(framer.next_frame(), Ok(Some(Frame::KeepAlivePing)));
    assert_eq!(framer.buffered(), 0);
}

#[test]
fn missing_content_length_is_an_error() {
    let mut framer = StreamFramer::new(SIP_MESSAGE_SIZE_MAX);
    framer
        .push(b"OPTIONS sip:a SIP/2.0\r\nVia: SIP/2.0/TCP h\r\n\r\n")
        .unwrap();
    assert_eq!(framer.next_frame(), Err(FrameError::MissingContentLength));
    assert_eq!(
        FrameError::MissingContentLength.to_string(),
        "stream message without Content-Length header"
    );
}

#[test]
fn bad_content_length_is_an_error() {
    for value in ["abc", "-1", "1 1", "99999999999999999999", ""] {
        let mut framer = StreamFramer::new(SIP_MESSAGE_SIZE_MAX);
        let text = format!("OPTIONS sip:a SIP/2.0\r\nContent-Length: {value}\r\n\r\n");
        framer.push(text.as_bytes()).unwrap();
        assert!(
            matches!(
                framer.next_frame(),
                Err(FrameError::InvalidContentLength(_))
            ),
            "{value:?}"
        );
    }
    let mut framer = StreamFramer::new(SIP_MESSAGE_SIZE_MAX);
    framer
        .push(b"OPTIONS sip:a SIP/2.0\r\nl: 0\r\nContent-Length: 0\r\n\r\n")
        .unwrap();
    assert!(matches!(
        framer.next_frame(),
        Err(FrameError::InvalidContentLength(_))
    ));
}

#[test]
fn declared_body_over_the_bound_is_rejected_before_it_arrives() {
    let mut framer = StreamFramer::new(1000);
    framer
        .push(b"OPTIONS sip:a SIP/2.0\r\nContent-Length: 5000\r\n\r\n")
        .unwrap();
    assert_eq!(framer.next_frame(), Err(FrameError::TooLarge { max: 1000 }));
}

#[test]
fn endless_header_section_is_rejected() {
    let mut framer = StreamFramer::new(1000);
    framer.push(b"OPTIONS sip:a SIP/2.0\r\n").unwrap();
    let mut result = Ok(None);
    for _ in 0..100 {
        framer.push(b"X-Padding: aaaaaaaaaaaaaaaaaaaa\r\n").unwrap();
        result = framer.next_frame();
        if result.is_err() {
            break;
        }
    }
    assert_eq!(result, Err(FrameError::TooLarge { max: 1000 }));
    assert!(framer.buffered() <= 2000);
}

#[test]
fn push_beyond_twice_the_bound_is_refused() {
    let mut framer = StreamFramer::new(100);
    assert_eq!(
        framer.push(&[b'x'; 201]),
        Err(FrameError::TooLarge { max: 100 })
    );
    assert_eq!(framer.buffered(), 0);
    framer.push(&[b'x'; 200]).unwrap();
    assert_eq!(framer.push(b"x"), Err(FrameError::TooLarge { max: 100 }));
    assert_eq!(framer.buffered(), 200);
}

#[test]
fn message_of_exactly_the_bound_is_accepted() {
    let head = b"OPTIONS sip:a SIP/2.0\r\nContent-Length: 00000\r\n\r\n";
    let size_max = 1000;
    let body_len = size_max - head.len();
    let mut bytes =
        format!("OPTIONS sip:a SIP/2.0\r\nContent-Length: {body_len:05}\r\n\r\n").into_bytes();
    bytes.resize(size_max, b'b');
    let mut framer = StreamFramer::new(size_max);
    let frames = frames_of(&mut framer, [bytes.as_slice()]).expect("frames");
    assert_eq!(frames, [Frame::Message(bytes.clone())]);
    bytes.push(b'b');
    let over = format!(
        "OPTIONS sip:a SIP/2.0\r\nContent-Length: {:05}\r\n\r\n",
        body_len + 1
    );
    let mut framer = StreamFramer::new(size_max);
    framer.push(over.as_bytes()).unwrap();
    assert_eq!(
        framer.next_frame(),
        Err(FrameError::TooLarge { max: size_max })
    );
}

#[test]
fn pipelined_large_messages_are_not_refused() {
    // Two messages near the bound arriving in reads that straddle them.
    let size_max = 2000;
    let mut one = b"OPTIONS sip:a SIP/2.0\r\nContent-Length: 1900\r\n\r\n".to_vec();
    one.resize(one.len() + 1900, b'x');
    assert!(one.len() <= size_max);
    let stream = [one.clone(), one.clone(), one.clone()].concat();
    let mut framer = StreamFramer::new(size_max);
    let frames = frames_of(&mut framer, stream.chunks(size_max)).expect("frames");
    assert_eq!(frames, vec![Frame::Message(one); 3]);
}

#[test]
fn garbage_start_line_is_rejected() {
    let mut framer = StreamFramer::new(SIP_MESSAGE_SIZE_MAX);
    framer.push(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert!(matches!(
        framer.next_frame(),
        Err(FrameError::InvalidStartLine(_))
    ));
}

#[test]
fn body_bytes_are_not_searched_for_terminators() {
    let body = b"\r\n\r\nOPTIONS sip:b SIP/2.0\r\n\r\n";
    let mut bytes = format!("OPTIONS sip:a SIP/2.0\r\nl: {}\r\n\r\n", body.len()).into_bytes();
    bytes.extend_from_slice(body);
    let mut framer = StreamFramer::new(SIP_MESSAGE_SIZE_MAX);
    let frames = frames_of(&mut framer, bytes.chunks(3)).expect("frames");
    assert_eq!(frames, [Frame::Message(bytes.clone())]);
}
