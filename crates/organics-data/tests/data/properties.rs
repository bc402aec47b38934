//! Property tests of the IDX reader: thousands of mutated files (bytes flipped, cut,
//! inserted; headers with random counts and sizes), raw and gzip-compressed. Each either
//! parses into consistent data or gives an error; none panics.

use std::io::Write;
use std::path::Path;

use crate::mutate::{apply, edits};
use organics_data::idx::{PIXELS, parse_images, parse_labels, read_images, read_labels};
use proptest::prelude::*;

fn header(magic: u32, dims: &[u32]) -> Vec<u8> {
    let mut v = magic.to_be_bytes().to_vec();
    for d in dims {
        v.extend(d.to_be_bytes());
    }
    v
}

fn valid_images(n: u32) -> Vec<u8> {
    let mut v = header(2051, &[n, 28, 28]);
    v.extend((0..n as usize * PIXELS).map(|i| (i % 256) as u8));
    v
}

fn valid_labels(n: u32) -> Vec<u8> {
    let mut v = header(2049, &[n]);
    v.extend((0..n as usize).map(|i| (i % 10) as u8));
    v
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).expect("gzip");
    e.finish().expect("gzip")
}

/// What a successful parse must satisfy.
fn consistent_images(result: Result<Vec<u8>, organics_data::DataError>) {
    if let Ok(pixels) = result {
        assert_eq!(pixels.len() % PIXELS, 0);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn mutated_image_files_never_panic(n in 0u32..4, e in edits()) {
        let bytes = apply(valid_images(n), &e);
        consistent_images(parse_images(&bytes, Path::new("mutated")));
    }

    #[test]
    fn mutated_label_files_never_panic(n in 0u32..40, e in edits()) {
        let bytes = apply(valid_labels(n), &e);
        if let Ok(labels) = parse_labels(&bytes, Path::new("mutated")) {
            prop_assert!(labels.iter().all(|&l| l < 10));
        }
    }

    #[test]
    fn random_headers_never_panic(
        magic in prop_oneof![Just(2051u32), Just(2049u32), any::<u32>()],
        dims in prop::collection::vec(any::<u32>(), 0..4),
        body in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut bytes = header(magic, &dims);
        bytes.extend(body);
        consistent_images(parse_images(&bytes, Path::new("random")));
        let _ = parse_labels(&bytes, Path::new("random"));
    }
}

proptest! {
    // Each case writes two files; fewer cases, same kinds of damage.
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn mutated_gzip_files_never_panic(n in 0u32..3, e in edits(), before in any::<bool>()) {
        let dir = tempfile::tempdir().expect("tmp");
        // damage the gzip stream itself, or the IDX bytes inside a sound stream
        let (images, labels) = if before {
            (gz(&apply(valid_images(n), &e)), gz(&apply(valid_labels(n), &e)))
        } else {
            (apply(gz(&valid_images(n)), &e), apply(gz(&valid_labels(n)), &e))
        };
        let ip = dir.path().join("images.gz");
        let lp = dir.path().join("labels.gz");
        std::fs::write(&ip, images).expect("write");
        std::fs::write(&lp, labels).expect("write");
        consistent_images(read_images(&ip));
        let _ = read_labels(&lp);
    }
}
