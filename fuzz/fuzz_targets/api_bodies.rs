//! Request bodies come from anyone on the network: any bytes must parse to a body or to an
//! error sentence, never to a panic; and a body that parses must survive its own
//! serialization (what the SDKs send is what the node reads).

#![no_main]

use ai2in_api::{
    CommandKillRequest, CommandLogsRequest, CommandRequest, ContextRequest, CreateKeyRequest,
    CreateSandboxRequest, CreateVolumeRequest, ExposeRequest, FsPathRequest, FsWriteBytesRequest,
    FsWriteRequest, PtyInput, PtyRequest, PtyResize, PullImageRequest, RunRequest,
    SetTimeoutRequest, ShellRequest, SnapshotRequest, WatchRequest, parse_body,
};
use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    let check = [
        round_trip::<CreateSandboxRequest>,
        round_trip::<SetTimeoutRequest>,
        round_trip::<ExposeRequest>,
        round_trip::<ShellRequest>,
        round_trip::<RunRequest>,
        round_trip::<ContextRequest>,
        round_trip::<CommandRequest>,
        round_trip::<CommandLogsRequest>,
        round_trip::<CommandKillRequest>,
        round_trip::<PtyRequest>,
        round_trip::<PtyInput>,
        round_trip::<PtyResize>,
        round_trip::<FsPathRequest>,
        round_trip::<FsWriteRequest>,
        round_trip::<FsWriteBytesRequest>,
        round_trip::<WatchRequest>,
        round_trip::<CreateKeyRequest>,
        round_trip::<PullImageRequest>,
        round_trip::<CreateVolumeRequest>,
        round_trip::<SnapshotRequest>,
    ];
    check[usize::from(which) % check.len()](body);
});

/// Parses `body` as a `T`; when it parses, its serialization parses to the same serialization.
fn round_trip<T: Serialize + DeserializeOwned>(body: &[u8]) {
    let Ok(parsed) = parse_body::<T>(body) else {
        return;
    };
    let json = serde_json::to_vec(&parsed).expect("a parsed body serializes");
    let again: T = parse_body(&json).expect("a serialized body parses");
    assert_eq!(serde_json::to_vec(&again).expect("serializes"), json);
}
