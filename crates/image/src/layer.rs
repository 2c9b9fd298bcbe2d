//! One layer from a compressed stream to the store: decompressed (gzip, zstd or plain, told
//! by its first bytes, not by what the sender claims), hashed for its diff id while it is
//! unpacked, and published only when the digests match.

use std::io::{self, BufRead, BufReader, Read};

use sha2::{Digest, Sha256};

use crate::error::ImageError;
use crate::store::{ContentStore, LayerInfo};
use crate::unpack::unpack;

/// Hashes what is read through it.
pub(crate) struct Hashing<R> {
    pub inner: R,
    pub hasher: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// `sha256:<hex>` of a finished hash.
pub(crate) fn digest_of(hasher: Sha256) -> String {
    let bytes = hasher.finalize();
    let mut s = String::with_capacity(71);
    s.push_str("sha256:");
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// `sha256:<hex>` of `bytes`.
pub(crate) fn sha256(bytes: &[u8]) -> String {
    digest_of(Sha256::new_with_prefix(bytes))
}

/// Unpacks the (possibly compressed) layer `stream` into the store as `diff_id`, checking
/// that its uncompressed content hashes to `diff_id`. `digest` names the layer in errors.
/// Nothing is kept on failure.
pub(crate) fn store_layer(
    store: &ContentStore,
    stream: impl Read,
    digest: &str,
    diff_id: &str,
) -> Result<LayerInfo, ImageError> {
    let staging = store.staging()?;
    let mut buffered = BufReader::with_capacity(256 << 10, stream);
    let head = buffered.fill_buf().map_err(|e| layer_read(digest, e))?;
    let decoder: Box<dyn Read> = if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::bufread::MultiGzDecoder::new(buffered))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(
            zstd::stream::read::Decoder::with_buffer(buffered)
                .map_err(|e| layer_read(digest, e))?,
        )
    } else {
        Box::new(buffered)
    };
    let mut hashing = Hashing {
        inner: decoder,
        hasher: Sha256::new(),
    };
    let unpacked = unpack(&mut hashing, &staging.fs(), store.limits()).map_err(|source| {
        ImageError::Layer {
            digest: digest.to_string(),
            source,
        }
    })?;
    // (The unpacker read the stream to its end, within the layer's limit: the diff id
    // covers all of it.)
    let got = digest_of(hashing.hasher);
    if got != diff_id {
        return Err(ImageError::DigestMismatch {
            what: format!("the uncompressed content of layer {digest}"),
            digest: diff_id.to_string(),
        });
    }
    let layer = LayerInfo {
        diff_id: diff_id.to_string(),
        size_bytes: unpacked.size_bytes,
    };
    if unpacked.skipped_devices > 0 {
        tracing::info!(
            layer = digest,
            devices = unpacked.skipped_devices,
            "device nodes left out"
        );
    }
    store.publish_layer(staging, &layer)?;
    Ok(layer)
}

fn layer_read(digest: &str, e: io::Error) -> ImageError {
    ImageError::Layer {
        digest: digest.to_string(),
        source: crate::unpack::UnpackError::Tar(e),
    }
}
