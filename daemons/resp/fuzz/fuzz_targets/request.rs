//! Arbitrary bytes into the request parser (as a connection would feed them,
//! repeatedly from the front) and the frame decoder: no panic, no consuming
//! more than was given, arguments always inside the buffer.
#![no_main]

use kvfleet_resp::{Limits, RequestParser};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut p = RequestParser::new();
    let limits = Limits { max_bulk_len: 1 << 20, authenticated: data.first().is_some_and(|b| b & 1 == 0) };
    let mut buf = data;
    while let Ok(Some(n)) = p.parse(buf, &limits) {
        assert!(n > 0 && n <= buf.len());
        for i in 0..p.args.len() {
            let _ = p.arg(buf, i);
        }
        buf = &buf[n..];
    }
    if let Ok(Some(n)) = kvfleet_resp::frame_len(data) {
        assert!(n <= data.len());
        let b = bytes::Bytes::copy_from_slice(data);
        let (f, used) = kvfleet_resp::parse_frame(&b).unwrap().unwrap();
        assert_eq!(used, n);
        let mut out = Vec::new();
        f.encode(&mut out);
    }
});
