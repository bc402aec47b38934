//! The real MNIST files shipped in the repository's `data/mnist/` (see its README for counts
//! and checksums).

use std::path::PathBuf;

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::prelude::*;
use organics_data::{
    DataSource, DatasetName, Mnist, PixelOrder, SequenceBatcher, StaticBatcher, VALID_SIZE,
    pixel_permutation,
};

fn shipped_mnist() -> PathBuf {
    DatasetName::Mnist
        .shipped_dir()
        .expect("the repository's data/mnist folder: these tests need it")
}

fn load() -> Mnist {
    let source = DataSource {
        download: false,
        ..DataSource::new(DatasetName::Mnist)
    }
    .with_data_dir(Some(shipped_mnist()));
    Mnist::load(&source).expect("shipped MNIST loads")
}

#[test]
fn counts_classes_and_first_labels() {
    let m = load();
    assert_eq!(m.train.len(), 60_000);
    assert_eq!(m.test.len(), 10_000);
    assert_eq!(
        m.train.class_counts(),
        [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    );
    assert_eq!(
        m.test.class_counts(),
        [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    );
    assert_eq!(m.train.label(0), 5);
    assert_eq!(m.test.label(0), 7);
    // pixels are u8; some are 0 and some 255 in any real digit set
    let first = m.train.image(0);
    assert!(first.contains(&0) && first.iter().any(|&p| p > 250));
}

#[test]
fn raw_and_gz_give_equal_data() {
    let dir = tempfile::tempdir().expect("temp dir");
    for name in organics_data::source::FILES {
        let gz = std::fs::read(shipped_mnist().join(format!("{name}.gz"))).expect("read gz");
        let mut raw = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut raw)
            .expect("gunzip");
        std::fs::write(dir.path().join(name), raw).expect("write raw");
    }
    let source = DataSource {
        download: false,
        ..DataSource::new(DatasetName::Mnist)
    }
    .with_data_dir(Some(dir.path().into()));
    let raw = Mnist::load(&source).expect("raw loads");
    let gz = load();
    for i in [0, 1, 59_999] {
        assert_eq!(raw.train.image(i), gz.train.image(i));
        assert_eq!(raw.train.label(i), gz.train.label(i));
    }
    assert_eq!(raw.test.image(9_999), gz.test.image(9_999));
}

#[test]
fn split_sizes_disjoint_and_deterministic() {
    let m = load();
    let (train, valid) = m.train.split(VALID_SIZE, 7).expect("split");
    assert_eq!((train.len(), valid.len()), (57_000, 3_000));
    let mut all: Vec<usize> = train
        .source_indices()
        .iter()
        .chain(valid.source_indices())
        .copied()
        .collect();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), 60_000, "train and valid overlap or lose images");
    let (_, again) = m.train.split(VALID_SIZE, 7).expect("split");
    assert_eq!(again.source_indices(), valid.source_indices());
    let (_, other) = m.train.split(VALID_SIZE, 8).expect("split");
    assert_ne!(other.source_indices(), valid.source_indices());
    assert!(m.train.split(0, 1).is_err() && m.train.split(60_000, 1).is_err());
    assert_eq!(train.limit(Some(100)).len(), 100);
}

#[test]
fn permutation_is_a_fixed_bijection() {
    let p = pixel_permutation(1);
    let mut sorted = p.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..784).collect::<Vec<_>>());
    assert_eq!(p, pixel_permutation(1));
    assert_ne!(p, pixel_permutation(2));
    assert_ne!(p, (0..784).collect::<Vec<_>>());
}

fn floats<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32")
}

#[test]
fn batchers_produce_the_three_views() {
    let m = load();
    let device = Device::flex();
    let items = m.test.get_many(vec![0, 1, 2]).expect("items");
    let stat = StaticBatcher.batch(items.clone(), &device);
    assert_eq!(stat.images.dims(), [3, 784]);
    let pixels = floats(stat.images);
    assert!(pixels.iter().all(|&p| (0.0..=1.0).contains(&p)));
    assert!(pixels.contains(&1.0));
    assert_eq!(
        stat.targets
            .into_data()
            .convert::<i64>()
            .try_into_vec::<i64>()
            .expect("ints")[0],
        7
    );

    let seq = SequenceBatcher {
        order: PixelOrder::ScanLine,
    }
    .batch(items.clone(), &device);
    assert_eq!(seq.inputs.dims(), [3, 784, 1]);
    assert_eq!(floats(seq.inputs), pixels);

    let perm = std::sync::Arc::new(pixel_permutation(3));
    let permuted = SequenceBatcher {
        order: PixelOrder::Permuted(perm.clone()),
    }
    .batch(items.clone(), &device);
    let permuted = floats(permuted.inputs);
    for s in 0..3 {
        for t in 0..784 {
            assert_eq!(
                permuted[s * 784 + t],
                pixels[s * 784 + perm[t]],
                "sample {s} step {t}"
            );
        }
    }
    let rows = SequenceBatcher {
        order: PixelOrder::Rows,
    }
    .batch(items, &device);
    assert_eq!(rows.inputs.dims(), [3, 28, 28]);
}

#[test]
fn the_shipped_copy_is_the_default_and_is_checked() {
    // With no folder given (and ORGANICS_DATA_DIR ignored), the repository's copy is used.
    let source = DataSource {
        data_dir: None,
        download: false,
        cache_root: Some(PathBuf::from("/nonexistent-cache")),
        ..DataSource::new(DatasetName::Mnist)
    };
    let files = source.locate().expect("the shipped copy is found");
    assert!(files.train_images.starts_with(shipped_mnist()));

    // A copy of it with one byte changed is refused by name, not read.
    let dir = tempfile::tempdir().expect("tmp");
    for name in organics_data::source::FILES {
        let name = format!("{name}.gz");
        std::fs::copy(shipped_mnist().join(&name), dir.path().join(&name)).expect("copy");
    }
    let labels = dir.path().join("t10k-labels-idx1-ubyte.gz");
    let mut bytes = std::fs::read(&labels).expect("read");
    let last = bytes.len() - 9; // inside the deflate stream, before the gzip trailer
    bytes[last] ^= 1;
    std::fs::write(&labels, &bytes).expect("write");
    let changed = DataSource {
        shipped_dir: Some(dir.path().into()),
        ..source.clone()
    };
    let err = changed.locate().expect_err("a changed file");
    assert!(
        matches!(&err, organics_data::DataError::ShippedChanged { path, .. } if path == &labels),
        "{err:?}"
    );
    // A truncated one too (the size differs).
    std::fs::write(&labels, &bytes[..100]).expect("write");
    assert!(matches!(
        changed.locate(),
        Err(organics_data::DataError::ShippedChanged { .. })
    ));

    // Without all four files the copy is skipped and the cache is searched next.
    std::fs::remove_file(&labels).expect("rm");
    let err = changed.locate().expect_err("nothing in the cache");
    assert!(
        matches!(&err, organics_data::DataError::NotFound { searched, .. } if searched.len() == 2),
        "{err:?}"
    );
}
