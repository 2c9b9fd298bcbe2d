//! The node reads frames from an agent, which runs inside a sandbox whose code may be hostile:
//! any bytes must decode to messages or to an error, never to a panic or an allocation past
//! the limits; and what decodes must encode back to the same message.

#![no_main]

use ai2in_protocol::{Event, Limits, Request, read_frame, write_frame};
use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::OnceLock;
use tokio::runtime::Runtime;

fuzz_target!(|data: &[u8]| {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    let runtime = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
    });
    runtime.block_on(async {
        decode_all::<Event>(data).await;
        decode_all::<Request>(data).await;
    });
});

/// Reads frames of `T` from `data` until the end or an error, checking each round trip.
async fn decode_all<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(data: &[u8]) {
    let limits = Limits {
        max_header: 1 << 16,
        max_data: 1 << 16,
    };
    let mut input = data;
    while let Ok(Some((message, bytes))) = read_frame::<_, T>(&mut input, limits).await {
        let mut encoded = Vec::new();
        write_frame(&mut encoded, &message, &bytes)
            .await
            .expect("a decoded message encodes");
        let (again, again_bytes) = read_frame::<_, T>(&mut encoded.as_slice(), limits)
            .await
            .expect("an encoded message decodes")
            .expect("one frame");
        assert_eq!(again, message);
        assert_eq!(again_bytes, bytes);
    }
}
