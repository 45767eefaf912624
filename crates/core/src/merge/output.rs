//! How a merge's outputs are encoded: plain CSV, or gzip for the analytics
//! readers (Athena, Spark, pandas, DuckDB) that read `.csv.gz` directly.
//!
//! A gzip output is one gzip member, compressed as the merged CSV is
//! produced, so memory holds one upload part whatever the output's size.
//! Its object is `application/gzip` without `Content-Encoding`: it is a
//! gzip file, and HTTP clients must not unpack it on the way.

use flate2::Compression as Level;
use flate2::write::GzEncoder;
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    None,
    Gzip,
}

impl Compression {
    /// What an output's key ends with.
    pub fn extension(self) -> &'static str {
        match self {
            Self::None => ".csv",
            Self::Gzip => ".csv.gz",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::None => "text/csv",
            Self::Gzip => "application/gzip",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "none" => Some(Self::None),
            "gzip" => Some(Self::Gzip),
            _ => None,
        }
    }

    /// An output's CSV, unpacked when it was written compressed.
    pub fn decode(self, body: &[u8]) -> std::io::Result<Vec<u8>> {
        match self {
            Self::None => Ok(body.to_vec()),
            Self::Gzip => {
                let mut csv = Vec::with_capacity(body.len() * 4);
                flate2::read::MultiGzDecoder::new(body).read_to_end(&mut csv)?;
                Ok(csv)
            }
        }
    }
}

/// Turns merged CSV into the bytes to upload, a piece at a time.
pub(super) struct Encoder {
    gzip: Option<GzEncoder<Vec<u8>>>,
    ready: Vec<u8>,
}

impl Encoder {
    pub(super) fn new(compression: Compression) -> Self {
        // Level 6 (gzip's default): most of level 9's size at a fraction
        // of its CPU, which a Lambda's share of a core pays for.
        let gzip = (compression == Compression::Gzip).then(|| GzEncoder::new(Vec::new(), Level::default()));
        Self { gzip, ready: Vec::new() }
    }

    pub(super) fn push(&mut self, csv: Vec<u8>) {
        match &mut self.gzip {
            // Writing into a Vec cannot fail.
            Some(gzip) => {
                let _ = gzip.write_all(&csv);
            }
            None if self.ready.is_empty() => self.ready = csv,
            None => self.ready.extend_from_slice(&csv),
        }
    }

    /// Bytes ready to upload.
    pub(super) fn ready(&self) -> usize {
        self.ready.len() + self.gzip.as_ref().map_or(0, |g| g.get_ref().len())
    }

    pub(super) fn take(&mut self) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.ready);
        if let Some(gzip) = &mut self.gzip {
            out.append(gzip.get_mut());
        }
        out
    }

    /// The last bytes: the rest of the gzip stream and its trailer.
    pub(super) fn finish(mut self) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.ready);
        if let Some(gzip) = self.gzip.take() {
            // Finishing into a Vec cannot fail.
            out.extend(gzip.finish().unwrap_or_default());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(compression: Compression, pieces: &[&[u8]], take_every: usize) -> Vec<u8> {
        let mut encoder = Encoder::new(compression);
        let mut out = Vec::new();
        for (i, piece) in pieces.iter().enumerate() {
            encoder.push(piece.to_vec());
            if (i + 1) % take_every == 0 {
                out.extend(encoder.take());
            }
        }
        out.extend(encoder.finish());
        out
    }

    #[test]
    fn plain_output_is_the_csv_itself() {
        assert_eq!(encode(Compression::None, &[b"a,b\n", b"1,2\n", b"3,4\n"], 2), b"a,b\n1,2\n3,4\n");
    }

    #[test]
    fn gzip_output_unpacks_to_the_csv_however_it_was_taken() {
        let pieces: Vec<Vec<u8>> = (0..2_000).map(|i| format!("{i},row {i}\n").into_bytes()).collect();
        let refs: Vec<&[u8]> = pieces.iter().map(Vec::as_slice).collect();
        let csv = pieces.concat();
        for every in [1, 7, 10_000] {
            let gz = encode(Compression::Gzip, &refs, every);
            assert_eq!(&gz[..2], &[0x1f, 0x8b], "a gzip stream");
            assert!(gz.len() < csv.len() / 2);
            assert_eq!(Compression::Gzip.decode(&gz).expect("valid gzip"), csv);
        }
    }

    #[test]
    fn names_and_types() {
        assert_eq!(Compression::parse("gzip"), Some(Compression::Gzip));
        assert_eq!(Compression::parse("zstd"), None);
        assert_eq!(Compression::Gzip.extension(), ".csv.gz");
        assert_eq!(serde_json::to_string(&Compression::Gzip).expect("json"), "\"gzip\"");
        assert!(Compression::Gzip.decode(b"not gzip").is_err());
    }
}
