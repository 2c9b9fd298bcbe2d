//! Imports of image archives: a `docker save` tar (`manifest.json`, a config and layer tars)
//! or a tarred OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/…`). The archive
//! is spooled to the store's staging first (its entries come in any order) and read in
//! place; every blob is checked against its digest as a pulled one is.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use serde::Deserialize;

use crate::error::ImageError;
use crate::layer::{sha256, store_layer};
use crate::manifest::{self, ImageConfigFile, Parsed};
use crate::reference::Reference;
use crate::store::{ContentStore, Pulled};

/// Most entries an archive may hold.
const MAX_ENTRIES: usize = 100_000;

/// Where each regular file of the archive lies in it.
struct Archive {
    file: File,
    entries: HashMap<String, (u64, u64)>,
}

impl Archive {
    fn open(path: &Path) -> Result<Self, ImageError> {
        let mut archive = tar::Archive::new(File::open(path)?);
        let mut entries = HashMap::new();
        for entry in archive.entries().map_err(bad)? {
            let entry = entry.map_err(bad)?;
            if entry.header().entry_type() != tar::EntryType::Regular {
                continue;
            }
            if entries.len() == MAX_ENTRIES {
                return Err(ImageError::BadArchive(format!(
                    "the archive has more than {MAX_ENTRIES} files"
                )));
            }
            let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let name = name.trim_start_matches("./").to_string();
            entries.insert(name, (entry.raw_file_position(), entry.size()));
        }
        Ok(Archive {
            file: File::open(path)?,
            entries,
        })
    }

    fn reader(&self, name: &str) -> Result<impl Read + use<>, ImageError> {
        let &(offset, size) = self
            .entries
            .get(name)
            .ok_or_else(|| ImageError::BadArchive(format!("the archive lacks {name}")))?;
        let mut file = self.file.try_clone()?;
        file.seek(SeekFrom::Start(offset))?;
        Ok(file.take(size))
    }

    fn small(&self, name: &str) -> Result<Vec<u8>, ImageError> {
        let mut body = Vec::new();
        self.reader(name)?
            .take(manifest::MAX_DOCUMENT as u64 + 1)
            .read_to_end(&mut body)?;
        if body.len() > manifest::MAX_DOCUMENT {
            return Err(ImageError::BadArchive(format!("{name} is over 4 MiB")));
        }
        Ok(body)
    }

    /// A blob of an OCI layout, checked against its digest.
    fn blob(&self, digest: &str) -> Result<Vec<u8>, ImageError> {
        let body = self.small(&blob_name(digest)?)?;
        if sha256(&body) != digest {
            return Err(ImageError::DigestMismatch {
                what: format!("blob {digest} of the archive"),
                digest: digest.to_string(),
            });
        }
        Ok(body)
    }
}

fn blob_name(digest: &str) -> Result<String, ImageError> {
    crate::reference::check_digest(digest).map_err(ImageError::BadArchive)?;
    Ok(format!("blobs/sha256/{}", &digest[7..]))
}

fn bad(e: std::io::Error) -> ImageError {
    ImageError::BadArchive(format!("the body is not a valid tar archive: {e}"))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SavedImage {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// Imports the archive at `path` as `reference` (or the name the archive gives, when it
/// gives exactly one).
pub fn import_archive(
    store: &ContentStore,
    path: &Path,
    reference: Option<&Reference>,
) -> Result<Pulled, ImageError> {
    let archive = Archive::open(path)?;
    let (digest, config_body, layers, named) = if archive.entries.contains_key("index.json") {
        oci_layout(&archive)?
    } else if archive.entries.contains_key("manifest.json") {
        docker_save(&archive)?
    } else {
        return Err(ImageError::BadArchive(
            "the archive is neither a docker save archive (manifest.json) nor an OCI image \
             layout (index.json)"
                .into(),
        ));
    };
    let reference = match (reference, named) {
        (Some(r), _) => r.clone(),
        (None, Some(name)) => Reference::parse(&name)?,
        (None, None) => {
            return Err(ImageError::BadArchive(
                "the archive names no image; give one with ?ref=name:tag".into(),
            ));
        }
    };
    let config = ImageConfigFile::parse(&config_body).map_err(ImageError::BadArchive)?;
    if config.rootfs.diff_ids.len() != layers.len() {
        return Err(ImageError::BadArchive(format!(
            "the image has {} layers but its config {}",
            layers.len(),
            config.rootfs.diff_ids.len()
        )));
    }
    let mut stored = Vec::with_capacity(layers.len());
    for (name, diff_id) in layers.iter().zip(&config.rootfs.diff_ids) {
        let info = match store.layer(diff_id) {
            Some(info) => info,
            None => store_layer(store, archive.reader(name)?, name, diff_id)?,
        };
        stored.push(info);
    }
    store.put_blob(&sha256(&config_body), &config_body)?;
    Ok(Pulled {
        reference: reference.to_string(),
        digest,
        layers: stored,
        settings: config.settings(),
    })
}

type Found = (String, Vec<u8>, Vec<String>, Option<String>);

fn oci_layout(archive: &Archive) -> Result<Found, ImageError> {
    let index = archive.small("index.json")?;
    let Parsed::Index(entries) =
        manifest::parse(&index, Some(manifest::OCI_INDEX)).map_err(ImageError::BadArchive)?
    else {
        return Err(ImageError::BadArchive(
            "index.json is not an OCI index".into(),
        ));
    };
    let pick = |entries: &[manifest::Descriptor]| -> Result<manifest::Descriptor, ImageError> {
        match entries {
            [one] => Ok(one.clone()),
            many => manifest::pick_platform(many).cloned().ok_or_else(|| {
                ImageError::BadArchive(
                    "the layout holds several images and none for linux/amd64".into(),
                )
            }),
        }
    };
    let mut entry = pick(&entries)?;
    let named = index_ref_name(&index);
    for _ in 0..2 {
        let body = archive.blob(&entry.digest)?;
        match manifest::parse(&body, Some(&entry.media_type)).map_err(ImageError::BadArchive)? {
            Parsed::Manifest(m) => {
                let config = archive.blob(&m.config.digest)?;
                let layers = m
                    .layers
                    .iter()
                    .map(|l| blob_name(&l.digest))
                    .collect::<Result<_, _>>()?;
                return Ok((entry.digest.clone(), config, layers, named));
            }
            Parsed::Index(inner) => entry = pick(&inner)?,
        }
    }
    Err(ImageError::BadArchive(
        "the layout's index nests too deep".into(),
    ))
}

/// The `org.opencontainers.image.ref.name` of the layout's only image, when it is a full
/// reference (a bare tag names nothing).
fn index_ref_name(index: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(index).ok()?;
    let manifests = v.get("manifests")?.as_array()?;
    let [only] = manifests.as_slice() else {
        return None;
    };
    let name = only
        .get("annotations")?
        .get("org.opencontainers.image.ref.name")?
        .as_str()?;
    (name.contains(':') || name.contains('/')).then(|| name.to_string())
}

fn docker_save(archive: &Archive) -> Result<Found, ImageError> {
    let body = archive.small("manifest.json")?;
    let images: Vec<SavedImage> = serde_json::from_slice(&body)
        .map_err(|e| ImageError::BadArchive(format!("manifest.json is not valid: {e}")))?;
    let [image] = images.as_slice() else {
        return Err(ImageError::BadArchive(format!(
            "the archive holds {} images; import one at a time",
            images.len()
        )));
    };
    let config = archive.small(&image.config)?;
    let named = image
        .repo_tags
        .as_ref()
        .and_then(|tags| (tags.len() == 1).then(|| tags[0].clone()));
    // A saved image has no manifest: its config's digest (Docker's image id) names it.
    Ok((sha256(&config), config, image.layers.clone(), named))
}
