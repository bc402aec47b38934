//! The data files' identity: a file that is not the standard one of its data set is named in
//! a warning (it may be a deliberate custom set), the standard files pass in any form.

use std::io::Read;
use std::path::Path;

use organics_data::{DataSource, DatasetName};

const GZ: [&str; 4] = [
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
];

fn shipped() -> std::path::PathBuf {
    DatasetName::Mnist
        .shipped_dir()
        .expect("the repository's data/mnist folder")
}

fn gunzip(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).expect("open"))
        .read_to_end(&mut out)
        .expect("gunzip");
    out
}

fn source(dataset: DatasetName, dir: &Path) -> DataSource {
    let mut source = DataSource::new(dataset).with_data_dir(Some(dir.to_path_buf()));
    source.download = false;
    source
}

#[test]
fn the_standard_files_pass_compressed_or_not() {
    let dir = tempfile::tempdir().expect("tmp");
    // two compressed as shipped, two decompressed (as Burn's cache holds them)
    for (i, name) in GZ.iter().enumerate() {
        let from = shipped().join(name);
        if i % 2 == 0 {
            std::fs::copy(&from, dir.path().join(name)).expect("copy");
        } else {
            let raw = name.trim_end_matches(".gz");
            std::fs::write(dir.path().join(raw), gunzip(&from)).expect("write");
        }
    }
    let source = source(DatasetName::Mnist, dir.path());
    let files = source.locate().expect("found");
    assert_eq!(source.unrecognised(&files), Vec::new());
}

#[test]
fn a_changed_file_is_named_and_the_others_are_not() {
    let dir = tempfile::tempdir().expect("tmp");
    for name in GZ {
        std::fs::copy(shipped().join(name), dir.path().join(name)).expect("copy");
    }
    // one training label changed: still a valid IDX file of the right size
    let labels = dir.path().join("train-labels-idx1-ubyte");
    std::fs::remove_file(dir.path().join(GZ[1])).expect("rm");
    let mut bytes = gunzip(&shipped().join(GZ[1]));
    bytes[8] = (bytes[8] + 1) % 10;
    std::fs::write(&labels, &bytes).expect("write");
    let source = source(DatasetName::Mnist, dir.path());
    let files = source.locate().expect("found");
    let found = source.unrecognised(&files);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].path, labels);
    let text = found[0].to_string();
    assert!(
        text.contains("train-labels-idx1-ubyte") && text.contains("not the standard mnist file"),
        "{text}"
    );
    // the data still loads: a warning, not an error
    organics_data::Mnist::load_files(&files).expect("loads");
}

#[test]
fn mnist_files_are_not_taken_for_fashion_mnist() {
    let dir = tempfile::tempdir().expect("tmp");
    for name in GZ {
        std::fs::copy(shipped().join(name), dir.path().join(name)).expect("copy");
    }
    let source = source(DatasetName::FashionMnist, dir.path());
    let files = source.locate().expect("found");
    let found = source.unrecognised(&files);
    assert_eq!(found.len(), 4, "{found:?}");
    assert!(found.iter().all(|f| f.dataset == DatasetName::FashionMnist));
}

#[test]
fn the_repository_copy_passes() {
    let source = source(DatasetName::Mnist, &shipped());
    let files = source.locate().expect("found");
    assert_eq!(source.unrecognised(&files), Vec::new());
}
