//! The web dashboard's built bundle (`web/dist/`, committed; `.ci/run` rebuilds it from
//! `web/package-lock.json` and fails when the result differs), embedded in the binary so that
//! `cargo run --release` serves it with nothing else installed. Debug builds embed it too
//! (`debug-embed`), so tests see what a release serves.
//!
//! This crate knows files, not HTTP: the HTTP front end (`eddy-server`) routes, negotiates
//! encodings and sets headers. [`Assets::load`] prepares every file once at start: content
//! type, a strong ETag (SHA-256 of the bytes) and a gzip copy of text files.

use std::collections::HashMap;
use std::io::Write;

use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;

#[derive(rust_embed::Embed)]
#[folder = "../../web/dist/"]
struct Dist;

/// Files under this prefix carry a content hash in their name (the bundler's output): they
/// never change under the same name and may be cached for good.
pub const HASHED_PREFIX: &str = "assets/";

/// The page every dashboard route answers with (the client-side router shows the view).
pub const INDEX: &str = "index.html";

/// One file of the bundle.
#[derive(Debug, Clone)]
pub struct Asset {
    /// The file as built.
    pub body: Bytes,
    /// The same bytes gzipped, for text files where that saves something.
    pub gzip: Option<Bytes>,
    /// `Content-Type`, with `charset=utf-8` for text.
    pub content_type: String,
    /// A strong ETag, quoted: `"<sha-256 hex>"`.
    pub etag: String,
    /// True for content-hashed names ([`HASHED_PREFIX`]).
    pub immutable: bool,
}

/// The whole bundle, ready to serve.
#[derive(Debug, Clone, Default)]
pub struct Assets {
    files: HashMap<String, Asset>,
}

impl Assets {
    /// Prepares every embedded file.
    pub fn load() -> Self {
        let files = Dist::iter()
            .filter_map(|name| {
                let file = Dist::get(&name)?;
                Some((name.to_string(), prepare(&name, file)))
            })
            .collect();
        Self { files }
    }

    /// The file at `path` (relative to the bundle's root, no leading `/`).
    pub fn get(&self, path: &str) -> Option<&Asset> {
        self.files.get(path)
    }

    /// `index.html`, if the bundle has one.
    pub fn index(&self) -> Option<&Asset> {
        self.get(INDEX)
    }

    /// Number of files.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// True when nothing is embedded.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// File names, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.files.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }
}

fn prepare(name: &str, file: rust_embed::EmbeddedFile) -> Asset {
    let mime = file.metadata.mimetype().to_string();
    let text = mime.starts_with("text/")
        || mime.contains("javascript")
        || mime.contains("json")
        || mime.contains("svg")
        || mime.contains("xml");
    let content_type = if text && !mime.contains("charset") {
        format!("{mime}; charset=utf-8")
    } else {
        mime
    };
    let hash: String = file
        .metadata
        .sha256_hash()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let body = Bytes::from(file.data.into_owned());
    let gzip = text.then(|| gzip(&body)).flatten();
    Asset {
        body,
        gzip,
        content_type,
        etag: format!("\"{hash}\""),
        immutable: name.starts_with(HASHED_PREFIX),
    }
}

/// `body` gzipped at the best level, when that is smaller.
fn gzip(body: &[u8]) -> Option<Bytes> {
    let mut enc = GzEncoder::new(Vec::with_capacity(body.len() / 3), Compression::best());
    // Writing into a Vec cannot fail.
    enc.write_all(body).ok()?;
    let out = enc.finish().ok()?;
    (out.len() < body.len()).then(|| Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn the_bundle_is_embedded_with_an_index_and_hashed_assets() {
        let a = Assets::load();
        let index = a.index().expect("web/dist/index.html is embedded");
        assert_eq!(index.content_type, "text/html; charset=utf-8");
        assert!(!index.immutable);
        let html = std::str::from_utf8(&index.body).unwrap();
        let hashed: Vec<&str> = a
            .names()
            .into_iter()
            .filter(|n| n.starts_with(HASHED_PREFIX))
            .collect();
        assert!(
            hashed.iter().any(|n| n.ends_with(".js")),
            "a script: {hashed:?}"
        );
        for n in &hashed {
            let asset = a.get(n).unwrap();
            assert!(asset.immutable);
            if n.ends_with(".js") || n.ends_with(".css") {
                assert!(html.contains(&format!("/{n}")), "index.html references {n}");
                let mut plain = Vec::new();
                flate2::read::GzDecoder::new(&asset.gzip.as_ref().unwrap()[..])
                    .read_to_end(&mut plain)
                    .unwrap();
                assert_eq!(plain, asset.body);
            }
        }
        assert!(
            !html.contains("<script>") && !html.contains("<style"),
            "no inline script or style (the CSP forbids them)"
        );
    }
}
